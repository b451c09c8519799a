"""Tests for fineprune.benchmark.throughput: the speed of one net and of G is timed on the same images."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TinyBenchmark
from fineprune.detector import RepairedDetector
from fineprune.models import load_model
from fineprune.benchmark.throughput import Throughput, best_rate, measure_throughput


def test_ratio_is_g_over_one_net() -> None:
    assert Throughput(100, 1, one_net_images_per_s=800.0, detector_images_per_s=400.0).ratio == 0.5


def test_best_rate_warms_up_then_keeps_the_fastest_pass() -> None:
    calls: list[int] = []
    x = np.zeros((128, 2))

    rate = best_rate(lambda images: calls.append(len(images)), x, repeats=3)

    assert calls == [64, 128, 128, 128] and rate > 0
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        best_rate(lambda images: None, x, repeats=0)


def test_both_speeds_are_measured_on_the_same_images(tiny: TinyBenchmark) -> None:
    badnet = load_model(tiny.badnet)
    x = np.random.default_rng(0).uniform(0, 255, (256, 55, 47, 3)).astype(np.float32)

    speed = measure_throughput(RepairedDetector(badnet, load_model(tiny.badnet)), x, repeats=1)

    assert speed.images == 256 and speed.repeats == 1
    assert speed.one_net_images_per_s > 0 and speed.detector_images_per_s > 0
    assert 0.1 < speed.ratio < 1.5  # two nets cannot be much faster than one
