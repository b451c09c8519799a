"""The numbers a repair is judged by, in percent (0..100).

- clean accuracy: share of clean images classified as their true label; for the repaired detector
  G, the "backdoor detected" class N never equals a true label, so it counts as an error;
- attack success rate (ASR): share of poisoned images classified as the attacker's target (the
  poisoned file's label); for G, class N means the attack was stopped;
- detected: share of images G flags as class N.

A number that depends on a seed is reported over several seeds as a `Spread`: median and range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


def accuracy_pct(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Percentage of `predicted` equal to the true `labels`."""
    return _share_pct(_same_shape(predicted, labels))


def attack_success_pct(predicted: np.ndarray, targets: np.ndarray) -> float:
    """Percentage of poisoned images classified as the attacker's target label."""
    return _share_pct(_same_shape(predicted, targets))


def detected_pct(predicted: np.ndarray, backdoor_class: int) -> float:
    """Percentage of images the detector flags as the "backdoor detected" class."""
    return _share_pct(np.asarray(predicted) == backdoor_class)


def most_common_label(labels: np.ndarray) -> int:
    """The label that occurs most often (the attacker's target, for a poisoned file)."""
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    if values.size == 0:
        raise ValueError("no labels")
    return int(values[np.argmax(counts)])


def _same_shape(predicted: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Element-wise equality, refusing arrays numpy would silently broadcast against each other."""
    predicted, expected = np.asarray(predicted), np.asarray(expected)
    if predicted.shape != expected.shape:
        raise ValueError(f"predictions of shape {predicted.shape} for labels of shape {expected.shape}")
    return predicted == expected


def _share_pct(hits: np.ndarray) -> float:
    if hits.size == 0:
        raise ValueError("no images to measure")
    return float(100.0 * np.count_nonzero(hits) / hits.size)


@dataclass(frozen=True)
class Spread:
    """A number measured once per seed: its median and its range over the seeds."""

    median: float
    low: float
    high: float
    count: int  # how many seeds

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if len(values) == 0:
            raise ValueError("no values to summarise")
        array = np.asarray(values, dtype=float)
        return cls(float(np.median(array)), float(array.min()), float(array.max()), len(array))

    def contains(self, value: float, slack: float = 0.0) -> bool:
        """Whether `value` lies in the range widened by `slack` on each side (after rounding both
        to the hundredth, as the tables print them)."""
        return round(self.low, 2) - slack <= round(value, 2) <= round(self.high, 2) + slack
