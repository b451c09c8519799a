"""`maxmargin`: MM-BD's maximum-margin detection (Wang, Xiang, Miller, Kesidis, IEEE S&P 2024),
computed on the features the output layer reads, then a repair of what it flags.

A backdoor gives its target class an abnormally large maximum margin: some input drives that
class's logit far above every other class's, much further than any input can for an ordinary
class. MM-BD estimates each class's maximum margin (its logit minus the largest other logit) by
gradient ascent over the input space and tests the largest against a gamma distribution fitted to
the others. With 1283 classes, 1283 searches through the whole net cost too much on a CPU; the
output layer is linear, so here the search runs over its input, the penultimate features, within
the box their clean values span (each unit between its minimum and maximum on the clean training
part). All classes are searched at once by projected Adam, `margin_steps` steps.

1. Maximum margin of every class within the clean feature box.
2. Flag classes one at a time, largest margin first: a gamma distribution is fitted to the
   margins below the class's own and the class is flagged if the largest of that many draws would
   reach its margin with probability below `significance` (MM-BD's test; the reference tests the
   largest class only, the sequence lets a net with several targets have them all flagged, up to
   `max_targets`).
3. Repair, in the spirit of MM-BD's mitigation (MM-BM), which bounds activations at what clean
   data needs: every penultimate unit is capped at its clean maximum (the net gains two layers
   computing min(feature, cap)), so that no input can drive a unit further than clean faces do;
   and each flagged class's output weights are discarded and fitted again from zero on the clean
   features (softmax regression, every other class's weights kept), so that no reading of the
   features the clean data does not ask for survives.

A flagged class no clean training image belongs to is fitted like the others, and only pushed
down; with nothing flagged only the caps change the net. The repaired file records every flagged class with its margin and
test probability, and its margin after the repair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tf_keras
from scipy.stats import gamma

from fineprune.data import LabelledImages
from fineprune.defenses.core import RepairResult, RepairRun, RepairSettings, copy_model, option
from fineprune.defenses.head import WEIGHT_DECAY_HELP, fit_output_weights, output_layer
from fineprune.defenses.registry import register
from fineprune.models import LoadedModel, penultimate_features

SEARCH_STEP_SHARE = 0.05  # the margin search's Adam rate, as a share of the mean width of the feature box
MIN_NULL_CLASSES = 3  # fewer margins than this below a class cannot be fitted by a gamma distribution
CAP_LAYER, CAPPED_LAYER = "feature_excess", "feature_cap"


@dataclass(frozen=True)
class MaxMarginSettings(RepairSettings):
    """`maxmargin`: the margin search and test, then the re-fit of the flagged classes."""

    method: str = "maxmargin"
    margin_steps: int = option(300, "maximum-margin search: projected Adam steps over the clean feature box", "N",
                               low=1)
    significance: float = option(0.05, "maximum-margin test: flag a class whose margin is this improbable under "
                                 "the gamma fitted to the margins below it", "P", low=0, high=1, low_open=True,
                                 high_open=True)
    max_targets: int = option(10, "maximum-margin test: at most this many classes flagged", "N", low=1)
    refit_steps: int = option(400, "full-batch Adam steps re-fitting the flagged classes' output weights", "N",
                              low=1)
    refit_learning_rate: float = option(0.01, "Adam rate of that re-fit", "LR", low=0, low_open=True)
    weight_decay: float = option(1e-4, WEIGHT_DECAY_HELP, "L2", low=0)


@dataclass(frozen=True)
class FlaggedClass:
    """A class the maximum-margin test flagged."""

    target: int
    margin: float  # its maximum margin within the clean feature box, before the repair
    p_value: float
    margin_after: float = float("nan")  # the same search on the repaired output layer


@register("maxmargin", "MM-BD: find the classes with an abnormally large maximum margin over the clean feature "
          "range, cap the features at that range and re-fit those classes' output weights", MaxMarginSettings,
          order=15)
def max_margin_repair(badnet: LoadedModel, clean: LabelledImages, settings: MaxMarginSettings,
                      verbose: int = 1) -> RepairResult:
    """Detect by maximum margin, cap the features, re-fit the flagged classes; the BadNet is untouched."""
    run = RepairRun.start(badnet, clean, settings)
    head = output_layer(badnet.model)
    kernel, bias = head.get_weights()
    features = penultimate_features(badnet.model, run.x_train, badnet.input_scale)
    floor, cap = features.min(axis=0), features.max(axis=0)
    margins = max_margins(kernel, bias, floor, cap, settings.margin_steps)
    median = float(np.median(margins))
    flagged = flag_classes(margins, settings.significance, settings.max_targets)
    if verbose:
        found = ", ".join(f"{f.target} (margin {f.margin:.1f}, p {f.p_value:.2g})" for f in flagged) or "none"
        print(f"maxmargin: median maximum margin {median:.1f}; flagged: {found}", flush=True)
    columns = np.array([f.target for f in flagged], dtype=np.int64)
    if len(columns):
        start_kernel, start_bias = kernel.copy(), bias.copy()
        start_kernel[:, columns], start_bias[columns] = 0.0, np.median(bias)
        kernel, bias = fit_output_weights(features, run.y_train, start_kernel, start_bias,  # all within the caps
                                          settings.refit_steps, settings.refit_learning_rate,
                                          settings.weight_decay, columns=columns, progress="maxmargin: re-fit",
                                          verbose=verbose)
        after = max_margins(kernel, bias, floor, cap, settings.margin_steps)
        flagged = [FlaggedClass(f.target, f.margin, f.p_value, float(after[f.target])) for f in flagged]
    model = with_feature_cap(copy_model(badnet.model), cap)
    output_layer(model).set_weights([kernel, bias])
    removed = (f"output weights of class {', '.join(str(c) for c in columns)} re-fitted; features capped"
               if len(columns) else "nothing flagged; features capped")
    return run.finish(model, settings.refit_steps if len(columns) else 0, removed=removed, details={
        "flagged": [f.target for f in flagged],
        "flagged_classes": [{"class": f.target, "margin": round(f.margin, 2), "p_value": float(f"{f.p_value:.3g}"),
                             "margin_after": round(f.margin_after, 2)} for f in flagged],
        "median_margin": round(median, 2),
        "units_capped_at_zero": int((cap <= 0).sum()),
    })


def max_margins(kernel: np.ndarray, bias: np.ndarray, floor: np.ndarray, cap: np.ndarray, steps: int) -> np.ndarray:
    """Each class's maximum margin (its logit minus the largest other) over features in the box
    [floor, cap], by projected Adam from the box's centre; one search per class, all at once."""
    classes = kernel.shape[1]
    k, b = tf.constant(kernel, tf.float32), tf.constant(bias, tf.float32)
    own = tf.one_hot(tf.range(classes), classes)
    low, high = tf.constant(floor, tf.float32), tf.constant(cap, tf.float32)
    points = tf.Variable(tf.tile(((low + high) / 2)[None], (classes, 1)))
    optimizer = tf_keras.optimizers.Adam(SEARCH_STEP_SHARE * float(np.mean(cap - floor)) or 1e-3)

    def margins() -> tf.Tensor:
        logits = tf.matmul(points, k) + b
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
    order = np.argsort(-margins, kind="stable")
    flagged: list[FlaggedClass] = []
    for rank, target in enumerate(order):
        below = margins[order[rank + 1 :]]
        if len(flagged) == max_targets or len(below) < MIN_NULL_CLASSES:
            break
        shape, loc, scale = gamma.fit(below)
        p_value = float(1.0 - gamma.cdf(margins[target], shape, loc=loc, scale=scale) ** (len(below) + 1))
        if p_value >= significance:
            break
        flagged.append(FlaggedClass(int(target), float(margins[target]), p_value))
    return flagged


def with_feature_cap(model: tf_keras.Model, cap: np.ndarray) -> tf_keras.Model:
    """`model` with the features entering its output layer capped at `cap`, unit by unit:
    min(h, cap) = h - relu(h - cap), two standard layers (an identity Dense with bias -cap and a
    ReLU, then a Subtract), so that the file loads anywhere Keras does."""
    head = output_layer(model)
    features = head.input
    excess = tf_keras.layers.Dense(len(cap), activation="relu", name=CAP_LAYER, trainable=False)(features)
    capped = tf_keras.layers.Subtract(name=CAPPED_LAYER)([features, excess])
    new_head = tf_keras.layers.Dense.from_config(head.get_config())
    capped_model = tf_keras.Model(model.input, new_head(capped), name=model.name)
    capped_model.get_layer(CAP_LAYER).set_weights([np.eye(len(cap), dtype=np.float32), -cap.astype(np.float32)])
    new_head.set_weights(head.get_weights())
    return capped_model
