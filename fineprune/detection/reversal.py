"""Trigger reversal (Neural Cleanse, Wang et al., IEEE S&P 2019): from clean images alone, find for a
class the smallest stamp that sends almost every image to it, and flag classes whose stamp is
anomalously small.

A stamp is a mask m (H x W, values 0..1) and a pattern p (H x W x 3, pixels 0..255); a stamped
image is (1 - m) * x + m * p. For a target class the search minimises cross-entropy towards the
target plus cost * |m|_1 with Adam, both parametrised through tanh so they stay in range. The cost
follows the reference schedule: it rises by `cost_multiplier` after `patience` windows in which at
least `success_threshold` of the stamped images reach the target, and falls by
`cost_multiplier ** 1.5` after `patience` windows in which they do not. The smallest mask that
reached the threshold is kept.

A net with 1283 classes cannot afford a search per class, so `find_suspects` proposes them: an
untargeted search finds the smallest stamp that pushes half the images away from their own class
and from every class already proposed, and the class most of them land in is proposed next. A
backdoor target is where stamped images land most easily. Ordinary classes, drawn at random, are
reversed beside the suspects as the population the anomaly index measures against: the index of a
class is how many (MAD-scaled) deviations its mask size lies below the median of those drawn classes
(the reference reverses every class and takes all of them; the proposed suspects, chosen for
looking suspicious, would skew a population they were part of).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from fineprune.errors import InputError
from fineprune.models import predict_classes, scale_inputs
from fineprune.settings import HeldOutSettings, option
from fineprune.progress import Progress, silent

MIN_POPULATION = 5  # drawn classes needed to measure the anomaly index against them alone
MAD_CONSISTENCY = 1.4826  # makes the median absolute deviation estimate a normal distribution's sigma
LANDING_SAMPLE = 1024  # stamped images whose classes decide the next suspect
UNTARGETED_SUCCESS = 0.5  # share of images an untargeted stamp must move: the smallest stamp moving half
# of them is a backdoor's, if there is one (requiring 99% would also demand moving the target's own images)


@dataclass(frozen=True)
class ReversalSettings:
    """How hard each search works; the defaults follow the reference implementation where it applies."""

    steps: int = 300  # optimizer steps per class
    batch_size: int = 32
    learning_rate: float = 0.1
    initial_cost: float = 1e-3
    cost_multiplier: float = 1.5
    patience: int = 2  # windows of `window` steps
    window: int = 10
    success_threshold: float = 0.99

    def __post_init__(self) -> None:
        for name, count in (("--reversal-steps", self.steps), ("--reversal-batch-size", self.batch_size)):
            if count < 1:
                raise InputError(f"{name} {count} must be at least 1")
        if not 0.0 < self.success_threshold <= 1.0:
            raise InputError(f"success threshold {self.success_threshold:g} is outside (0, 1]")


@dataclass
class ReversedTrigger:
    """The smallest stamp found for `target`, and how well it works on images it was not made on."""

    target: int
    mask: np.ndarray  # (H, W), 0..1
    pattern: np.ndarray  # (H, W, 3), pixels 0..255
    reached_threshold: bool
    hit_rate_pct: float = float("nan")  # share of other classes' held-out images the stamp sends to target

    @property
    def mask_share_pct(self) -> float:
        """The mask's L1 norm as a share of the image's pixels (%)."""
        return float(100.0 * self.mask.sum() / self.mask.size)

    def stamp(self, x: np.ndarray) -> np.ndarray:
        """Images `x` (pixels 0..255) with this trigger stamped on."""
        mask = self.mask[..., None].astype(np.float32)
        return ((1.0 - mask) * x + mask * self.pattern).astype(np.float32)


def reverse_trigger(model: tf_keras.Model, x: np.ndarray, target: int, input_scale: str,
                    settings: ReversalSettings, seed: int) -> ReversedTrigger:
    """The smallest stamp that sends `settings.success_threshold` of images `x` to `target`."""
    search = _StampSearch(model, x.shape[1:], input_scale, settings, seed)
    return search.run(x, lambda probs, labels: -tf.math.log(tf.gather(probs, [target], axis=1)[:, 0] + 1e-7),
                      lambda probs, labels: tf.cast(tf.argmax(probs, axis=1) == target, tf.float32), target)


def find_suspects(model: tf_keras.Model, x: np.ndarray, y: np.ndarray, input_scale: str, count: int,
                  settings: ReversalSettings, seed: int, progress: Progress = silent) -> list[int]:
    """`count` classes that untargeted stamps land in most easily, one search each (see the module)."""
    found: list[int] = []
    for round_ in range(count):
        progress(f"untargeted stamp search {round_ + 1}/{count}")
        avoid = tf.constant(found, dtype=tf.int64)

        def away(probs: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
            kept = tf.gather(probs, labels[:, None], batch_dims=1)[:, 0]
            if len(found):
                kept += tf.reduce_sum(tf.gather(probs, avoid, axis=1), axis=1)
            return -tf.math.log(1.0 - tf.minimum(kept, 1.0 - 1e-6))

        def escaped(probs: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
            return tf.cast(tf.argmax(probs, axis=1) != labels, tf.float32)

        untargeted = replace(settings, success_threshold=UNTARGETED_SUCCESS)
        search = _StampSearch(model, x.shape[1:], input_scale, untargeted, seed + 7919 * (round_ + 1))
        stamp = search.run(x, away, escaped, target=-1, labels=y)
        sample = np.random.default_rng(seed + round_).choice(len(x), min(len(x), LANDING_SAMPLE), replace=False)
        landed = predict_classes(model, stamp.stamp(x[sample]), input_scale)
        landed = landed[(landed != y[sample]) & ~np.isin(landed, found)]
        if len(landed) == 0:
            break
        found.append(int(np.bincount(landed).argmax()))
    return found


@dataclass(frozen=True)
class ExaminedClass:
    """One class's reversed trigger and its score among the classes examined."""

    target: int
    proposed: bool  # by the untargeted search, not drawn at random
    mask_share_pct: float
    reached_threshold: bool
    anomaly_index: float
    hit_rate_pct: float
    flagged: bool
    asked: bool = False  # named by the user (not proposed by the search)
    margin: float = float("nan")  # maximum margin over the clean feature range, where it was measured
    margin_index: float = float("nan")  # how far above the median margin, in MAD-scaled deviations
    input_margin: float = float("nan")  # maximum margin over the input space, where it was measured
    input_margin_index: float = float("nan")

    @property
    def largest_margin_index(self) -> float:
        """The larger of the two margin indices measured (-inf where neither was)."""
        return max((i for i in (self.margin_index, self.input_margin_index) if not np.isnan(i)), default=-np.inf)


def examine_classes(model: tf_keras.Model, input_scale: str, x: np.ndarray, y: np.ndarray, heldout_x: np.ndarray,
                    heldout_y: np.ndarray, suspects: int, ordinary_classes: int, anomaly_threshold: float,
                    settings: ReversalSettings, seed: int, progress: Progress = silent,
                    asked: Sequence[int] = (), proposed: Sequence[int] | None = None,
                    ) -> tuple[list[ReversedTrigger], list[ExaminedClass]]:
    """Neural Cleanse's detection on a budget: propose `suspects` classes (`find_suspects`, on images
    `x` with labels `y`; or take the `proposed` ones given), add the `asked` ones, draw
    `ordinary_classes` others at random, reverse a trigger for each, measure its hit rate on the
    held-out images of other classes, and flag every class whose anomaly index exceeds
    `anomaly_threshold` (and whose search reached its success threshold)."""
    num_classes = int(model.output_shape[-1])
    if proposed is None:
        proposed = find_suspects(model, x, y, input_scale, suspects, settings, seed, progress)
    proposed = [int(c) for c in proposed]
    extra = [int(c) for c in dict.fromkeys(asked) if c not in proposed]
    others = np.setdiff1d(np.arange(num_classes), [*proposed, *extra])
    rng = np.random.default_rng(seed)
    ordinary = rng.choice(others, min(ordinary_classes, len(others)), replace=False).tolist()
    classes = [*proposed, *extra, *ordinary]
    triggers = []
    for number, target in enumerate(classes):
        progress(f"reversing a trigger for class {target} ({number + 1}/{len(classes)})")
        trigger = reverse_trigger(model, x, int(target), input_scale, settings, seed + number)
        others_x = heldout_x[heldout_y != target]
        landed = predict_classes(model, trigger.stamp(others_x), input_scale)
        trigger.hit_rate_pct = float(100.0 * np.mean(landed == target)) if len(landed) else float("nan")
        triggers.append(trigger)
    # The population is the classes drawn at random: the proposed and asked ones are chosen for
    # looking suspicious, and would pull the median and spread toward themselves.
    # (With fewer than MIN_POPULATION drawn, as on a net of a few classes, all examined classes are
    # the population: a median and deviation of two or three values say little.)
    population = [n >= len(proposed) + len(extra) for n in range(len(classes))]
    indices = anomaly_indices([t.mask.sum() for t in triggers],
                              population if sum(population) >= MIN_POPULATION else None)
    examined = [ExaminedClass(t.target, n < len(proposed), t.mask_share_pct, t.reached_threshold, float(index),
                              t.hit_rate_pct, bool(index > anomaly_threshold and t.reached_threshold),
                              t.target in asked)
                for n, (t, index) in enumerate(zip(triggers, indices))]
    return triggers, examined


def anomaly_indices(mask_l1: Sequence[float], population: Sequence[bool] | None = None) -> np.ndarray:
    """How far each mask size lies below the median, in MAD-scaled deviations (negative: above);
    the median and deviation are those of the `population` sizes (default: all of them)."""
    sizes = np.asarray(mask_l1, dtype=np.float64)
    reference = sizes if population is None else sizes[np.asarray(population, dtype=bool)]
    median = np.median(reference)
    mad = MAD_CONSISTENCY * np.median(np.abs(reference - median))
    return (median - sizes) / max(mad, 1e-12)


class _StampSearch:
    """One mask-and-pattern optimisation with Neural Cleanse's cost schedule."""

    def __init__(self, model: tf_keras.Model, image_shape: tuple[int, ...], input_scale: str,
                 settings: ReversalSettings, seed: int) -> None:
        self.model, self.settings = model, settings
        self.input_scale = input_scale
        self.rng = np.random.default_rng(seed)
        height, width = image_shape[:2]
        self.mask_raw = tf.Variable(self.rng.uniform(-2.0, -1.0, (height, width, 1)).astype(np.float32))
        self.pattern_raw = tf.Variable(self.rng.uniform(-1.0, 1.0, (height, width, 3)).astype(np.float32))
        self.optimizer = tf_keras.optimizers.Adam(settings.learning_rate, beta_1=0.5, beta_2=0.9)

    def mask_and_pattern(self) -> tuple[tf.Tensor, tf.Tensor]:
        mask = (tf.tanh(self.mask_raw) + 1.0) / 2.0
        pattern = (tf.tanh(self.pattern_raw) + 1.0) / 2.0 * 255.0
        return mask, pattern

    def run(self, x: np.ndarray, loss_of: Callable, success_of: Callable, target: int,
            labels: np.ndarray | None = None) -> ReversedTrigger:
        settings = self.settings
        labels = np.zeros(len(x), np.int64) if labels is None else labels

        @tf.function(reduce_retracing=True)
        def step(batch: tf.Tensor, batch_labels: tf.Tensor, cost: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                mask, pattern = self.mask_and_pattern()
                stamped = (1.0 - mask) * batch + mask * pattern
                probs = self.model(scale_inputs(stamped, self.input_scale), training=False)
                l1 = tf.reduce_sum(mask)
                loss = tf.reduce_mean(loss_of(probs, batch_labels)) + cost * l1
            variables = [self.mask_raw, self.pattern_raw]
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return tf.reduce_mean(success_of(probs, batch_labels)), l1

        cost = settings.initial_cost
        best: tuple[float, np.ndarray, np.ndarray] | None = None
        above = below = 0
        successes: list[float] = []
        for index in range(settings.steps):
            chosen = self.rng.integers(0, len(x), settings.batch_size)
            success, l1 = step(tf.constant(x[chosen], tf.float32), tf.constant(labels[chosen]),
                               tf.constant(cost, tf.float32))
            successes.append(float(success))
            if (index + 1) % settings.window:
                continue
            rate = float(np.mean(successes))
            successes = []
            if rate >= settings.success_threshold:
                mask, pattern = (t.numpy() for t in self.mask_and_pattern())
                if best is None or float(l1) < best[0]:
                    best = (float(l1), mask[..., 0], pattern)
                above, below = above + 1, 0
            else:
                above, below = 0, below + 1
            if above >= settings.patience:
                cost, above = cost * settings.cost_multiplier, 0
            elif below >= settings.patience:
                cost, below = cost / settings.cost_multiplier ** 1.5, 0
        if best is None:
            mask, pattern = (t.numpy() for t in self.mask_and_pattern())
            return ReversedTrigger(target, mask[..., 0], pattern, reached_threshold=False)
        return ReversedTrigger(target, best[1], best[2], reached_threshold=True)


@dataclass(frozen=True)
class ReversalDetectionSettings(HeldOutSettings):
    """Neural Cleanse's detection (also `unlearn`'s): how many classes are examined and when one is
    flagged; `validation_split` of the clean data is held out to measure each reversed trigger's
    hit rate."""

    suspects: int = option(5, "classes proposed by untargeted stamp searches", "N", low=1)
    ordinary_classes: int = option(20, "other classes, drawn at random, reversed as the population the "
                                   "suspects must stand out from", "N", low=2)
    reversal_steps: int = option(300, "optimizer steps of each trigger reversal", "N", low=1)
    anomaly_threshold: float = option(2.0, "flag a class whose mask size lies this many MAD-scaled deviations "
                                      "below the median", "T", low=0, low_open=True)
