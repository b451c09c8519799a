"""Maximum-margin detection (MM-BD: Wang, Xiang, Miller, Kesidis, IEEE S&P 2024) on the features
the output layer reads.

A backdoor gives its target class an abnormally large maximum margin: some input lifts that
class's logit far above every other class's, much further than any input can for an ordinary
class. MM-BD estimates each class's maximum margin (its logit minus the largest other logit) by
gradient ascent over the input space and tests the largest against a gamma distribution fitted to
the others. With 1283 classes, 1283 searches through the whole net cost too much on a CPU; the
output layer is linear, so here the search runs over its input, the penultimate features, within
the box their clean values span (each unit between its minimum and maximum on clean images). All
classes are searched at once by projected Adam.

The test is MM-BD's, repeated down the classes by decreasing margin so that a net with several
targets has them all flagged. The `maxmargin` repair and `inspect_net.py` both use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf
import tf_keras
from scipy.stats import gamma

from fineprune.errors import InputError
from fineprune.models import LoadedModel, output_layer, penultimate_features
from fineprune.settings import CheckedSettings, option

SEARCH_STEP_SHARE = 0.05  # the search's Adam rate, as a share of the mean width of the feature box
MIN_NULL_CLASSES = 9  # margins below a class needed to fit the gamma (the reference's 10-class nets have 9)
MAD_CONSISTENCY = 1.4826  # makes the median absolute deviation estimate a normal distribution's sigma


@dataclass(frozen=True)
class MarginTestSettings(CheckedSettings):
    """The margin search and the test, as `maxmargin` and `inspect_net.py` offer them."""

    margin_steps: int = option(300, "maximum-margin search: projected Adam steps over the clean feature range", "N",
                               low=1)
    significance: float = option(0.05, "maximum-margin test: flag a class whose margin is this improbable under "
                                 "the gamma fitted to the margins below it", "P", low=0, high=1, low_open=True,
                                 high_open=True)
    max_targets: int = option(10, "maximum-margin test: at most this many classes flagged", "N", low=1)


@dataclass(frozen=True)
class FlaggedClass:
    """A class the maximum-margin test flagged."""

    target: int
    margin: float  # its maximum margin within the clean feature box
    p_value: float
    margin_after: float = float("nan")  # the same search after a repair, where one was made


@dataclass(frozen=True)
class MarginScan:
    """Every class's maximum margin, and the classes the test flagged: over the clean feature box
    (with the box), or over the input space (`fineprune.detection.input_margins`, no box)."""

    margins: np.ndarray  # one per class
    flagged: list[FlaggedClass]
    floor: np.ndarray | None = None  # the box: each penultimate unit's clean minimum and maximum
    cap: np.ndarray | None = None

    @property
    def median(self) -> float:
        return float(np.median(self.margins))

    def largest_unflagged(self) -> FlaggedClass | None:
        """The class with the largest margin the test did not flag, with its p-value: how close the
        verdict came (None if too few classes are left below it to test)."""
        rank = len(self.flagged)
        return gamma_test(self.margins, rank) if len(self.margins) - rank > MIN_NULL_CLASSES else None

    def deviations(self) -> np.ndarray:
        """How far each class's margin lies above the median, in MAD-scaled deviations."""
        return mad_deviations(self.margins)


def mad_deviations(values: np.ndarray) -> np.ndarray:
    """How far each value lies from the median, in MAD-scaled deviations (a robust z)."""
    median = np.median(values)
    spread = MAD_CONSISTENCY * np.median(np.abs(values - median))
    return (values - median) / max(float(spread), 1e-12)


def scan_margins(net: LoadedModel, x: np.ndarray, settings: MarginTestSettings,
                 features: np.ndarray | None = None) -> MarginScan:
    """The box spanned by the penultimate features of clean images `x` (or of the given `features`),
    every class's maximum margin in it, and the classes the test flags."""
    kernel, bias = check_enough_classes(net).get_weights()
    if features is None:
        features = penultimate_features(net.model, x, net.input_scale)
    floor, cap = features.min(axis=0), features.max(axis=0)
    margins = max_margins(kernel, bias, floor, cap, settings.margin_steps)
    return MarginScan(margins, flag_classes(margins, settings.significance, settings.max_targets), floor, cap)


def check_enough_classes(net: LoadedModel) -> tf_keras.layers.Dense:
    """The net's output layer, or InputError if it has too few classes for the test."""
    head = output_layer(net.model)
    if head.units <= MIN_NULL_CLASSES:
        raise InputError(f"{net.path}: {head.units} classes; the maximum-margin test needs at least "
                         f"{MIN_NULL_CLASSES + 1} (it fits a gamma distribution to the other classes' margins)")
    return head


def max_margins(kernel: np.ndarray, bias: np.ndarray, floor: np.ndarray, cap: np.ndarray, steps: int) -> np.ndarray:
    """Each class's maximum margin (its logit minus the largest other) over features in the box
    [floor, cap], by projected Adam from the box's centre; one search per class, all at once."""
    classes = kernel.shape[1]
    k, b = tf.constant(kernel, tf.float32), tf.constant(bias, tf.float32)
    low, high = tf.constant(floor, tf.float32), tf.constant(cap, tf.float32)
    points = tf.Variable(tf.tile(((low + high) / 2)[None], (classes, 1)))
    rate = SEARCH_STEP_SHARE * float(np.mean(cap - floor)) or 1e-3
    return ascend_margins(points, lambda p: tf.matmul(p, k) + b, np.arange(classes), rate, low, high, steps)


def ascend_margins(points: tf.Variable, logits_of: Callable[[tf.Tensor], tf.Tensor], classes: np.ndarray,
                   rate: float, low: tf.Tensor | float, high: tf.Tensor | float, steps: int) -> np.ndarray:
    """Projected Adam ascent of each row of `points`' margin for its class in `classes` (its logit,
    by `logits_of`, minus the largest other), each step clipped back to [low, high]; the margins
    reached. The feature-range and the input-space searches both run on it."""
    own = tf.one_hot(classes, int(logits_of(points[:1]).shape[-1]))
    optimizer = tf_keras.optimizers.Adam(rate)

    def margins() -> tf.Tensor:
        logits = logits_of(points)
        return tf.reduce_sum(logits * own, axis=1) - tf.reduce_max(logits - 1e9 * own, axis=1)

    @tf.function
    def step() -> None:
        with tf.GradientTape() as tape:
            loss = -tf.reduce_sum(margins())
        optimizer.apply_gradients([(tape.gradient(loss, points), points)])
        points.assign(tf.clip_by_value(points, low, high))

    for _ in range(steps):
        step()
    return margins().numpy()


def flag_classes(margins: np.ndarray, significance: float, max_targets: int) -> list[FlaggedClass]:
    """MM-BD's test, repeated down the classes by decreasing margin: flag a class while the chance
    that the largest of n + 1 draws from the gamma fitted to the n margins below it reaches its
    margin is under `significance`. Stops at the first class that passes or at `max_targets`."""
    flagged: list[FlaggedClass] = []
    for rank in range(min(max_targets, len(margins) - MIN_NULL_CLASSES)):
        tested = gamma_test(margins, rank)
        if tested.p_value >= significance:
            break
        flagged.append(tested)
    return flagged


def gamma_test(margins: np.ndarray, rank: int) -> FlaggedClass:
    """The class with the `rank`-th largest margin (0: the largest) and its p-value: the chance
    that the largest of n + 1 draws from the gamma fitted to the n margins below it reaches its own."""
    order = np.argsort(-margins, kind="stable")
    target, below = order[rank], margins[order[rank + 1 :]]
    shape, loc, scale = gamma.fit(below)
    p_value = float(1.0 - gamma.cdf(margins[target], shape, loc=loc, scale=scale) ** (len(below) + 1))
    return FlaggedClass(int(target), float(margins[target]), p_value)
