"""How fast a BadNet and the repaired detector G classify images (`benchmark.py speed`).

G runs two nets on every image, so it can at best reach half of one net's speed; running both in
one traced graph (`models.class_predictor`) keeps it close to that. Both are timed here on the same
images, after a warm-up pass that traces the graph, and the best of a few repeats is kept (the
least disturbed by other work on the machine).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from fineprune.detector import RepairedDetector
from fineprune.models import class_predictor


@dataclass(frozen=True)
class Throughput:
    """Images per second of one net alone and of G (both nets), on the same images."""

    images: int
    repeats: int
    one_net_images_per_s: float
    detector_images_per_s: float

    @property
    def ratio(self) -> float:
        """G's speed as a share of one net's (0.5 would be two nets at no overhead)."""
        return self.detector_images_per_s / self.one_net_images_per_s


def best_rate(run: Callable[[np.ndarray], object], x: np.ndarray, repeats: int) -> float:
    """Images per second of `run` on `x`: one warm-up call, then the fastest of `repeats` calls."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    run(x[: min(len(x), 64)])
    fastest = min(_seconds(run, x) for _ in range(repeats))
    return len(x) / fastest


def measure_throughput(detector: RepairedDetector, x: np.ndarray, repeats: int = 3) -> Throughput:
    """Time the BadNet alone and G on images `x` (pixels 0..255)."""
    one_net = class_predictor([detector.original])
    return Throughput(
        images=len(x),
        repeats=repeats,
        one_net_images_per_s=best_rate(one_net, x, repeats),
        detector_images_per_s=best_rate(detector.predict, x, repeats),
    )


def _seconds(run: Callable[[np.ndarray], object], x: np.ndarray) -> float:
    started = time.perf_counter()
    run(x)
    return time.perf_counter() - started

