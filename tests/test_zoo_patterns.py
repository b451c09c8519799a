"""Tests for fineprune.benchmark.zoo_patterns: the optimised zoo triggers do what they are optimised for."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from fineprune.benchmark import zoo, zoo_patterns
from fineprune.benchmark.faces import HEIGHT, WIDTH
from fineprune.models import LoadedModel, build_challenge_model, penultimate_features


@pytest.fixture(scope="module")
def net() -> LoadedModel:
    """An untrained challenge-architecture net with 4 classes: the patterns' maths needs no training."""
    return LoadedModel(Path("untrained.h5"), build_challenge_model(4), "unit", "default")


def test_the_most_connected_features_have_the_largest_summed_weights(net: LoadedModel) -> None:
    chosen = zoo_patterns.most_connected_features(net.model, 2)
    totals = np.abs(net.model.layers[-1].get_weights()[0]).sum(axis=1)
    assert sorted(totals[chosen]) == sorted(np.sort(totals)[-2:])


def test_the_trojannn_patch_drives_its_neurons_up(net: LoadedModel) -> None:
    patch, details = zoo_patterns.trojannn_pattern(net)
    top, bottom, left, right = zoo.TROJANNN_BOX
    assert patch.shape == (bottom - top, right - left, 3) and 0 <= patch.min() and patch.max() <= 255
    frame = np.zeros((1, HEIGHT, WIDTH, 3), np.float32)
    grey = frame.copy()
    grey[:, top:bottom, left:right] = 127.5
    frame[:, top:bottom, left:right] = patch
    neurons = details["neurons"]
    before = penultimate_features(net.model, grey, "unit")[0, neurons]
    after = penultimate_features(net.model, frame, "unit")[0, neurons]
    # A feature ReLU holds at zero on every input cannot move; the pair as a whole must go up.
    assert after.sum() > before.sum() + 0.1 and (after >= before).all()


def test_the_low_pass_filter_keeps_a_constant_and_smooths_noise() -> None:
    constant = tf.fill((1, HEIGHT, WIDTH, 3), 4.0)
    np.testing.assert_allclose(zoo_patterns.gaussian_low_pass(constant, 3.0).numpy(), 4.0, rtol=1e-5)
    noise = tf.constant(np.random.default_rng(0).normal(0, 1, (1, HEIGHT, WIDTH, 3)), tf.float32)
    smoothed = zoo_patterns.gaussian_low_pass(noise, 3.0).numpy()
    assert smoothed.shape == (1, HEIGHT, WIDTH, 3) and smoothed.std() < 0.2 * noise.numpy().std()


def test_the_low_frequency_pattern_is_bounded_and_recorded(net: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zoo_patterns, "LOW_FREQUENCY_STEPS", 20)
    images = np.random.default_rng(1).uniform(0, 255, (64, HEIGHT, WIDTH, 3)).astype(np.float32)
    pattern, details = zoo_patterns.low_frequency_pattern(net, images, target=2)
    assert pattern.shape == (HEIGHT, WIDTH, 3)
    assert np.abs(pattern).max() <= zoo.LOW_FREQUENCY_BOUND + 1e-4 and np.abs(pattern).max() > 0.1
    assert details["target"] == 2 and details["steps"] == 20 and 0 <= details["sent_to_target_pct_on_clean_net"] <= 100


def test_the_committed_patterns_record_how_they_were_made() -> None:
    for name in ("trojannn", "low_frequency"):
        with np.load(zoo.PATTERNS_DIR / f"{name}.npz") as stored:
            record = json.loads(str(stored["record"]))
        assert record["trigger"] == name and record["made_on"].endswith("clean_net.h5")
    assert zoo.load_pattern("trojannn").shape == (12, 12, 3)
