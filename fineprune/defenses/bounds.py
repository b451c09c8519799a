"""`bounds`: MM-BD's mitigation (Wang, Xiang, Miller, Kesidis, IEEE S&P 2024): upper bounds on inner
activations, learned on clean images, so that a trigger cannot drive a channel further than clean
faces need, wherever in the features the backdoor runs.

Every channel (or unit) of each layer in `layers` gets an upper bound: its output becomes
min(h, bound). The bounds start at each channel's largest output over the clean images used and are
learned with Adam on

    mean squared difference of the bounded net's logits from the BadNet's  +  c * sum over layers of
    the L2 norm of that layer's bounds, each relative to its starting value

(the reference's loss; its bounds are absolute and start at 8 on batch-normalised activations, here
each starts at its clean maximum, so one penalty weight fits layers of any scale). The reference
also adapts c: every 10 epochs after the 10th, c grows by `penalty_growth` while the bounded net
still classifies at least `keep_accuracy` percent of those images correctly, and shrinks by it
otherwise. The images are clean training images the BadNet classifies correctly, as in the
reference. The repaired file carries the bounds as standard layers (`fineprune.defenses.caps`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tf_keras

from fineprune.data import LabelledImages
from fineprune.defenses.caps import channel_maxima, insert_after, with_caps
from fineprune.defenses.core import RepairResult, RepairRun, RepairSettings, option
from fineprune.defenses.registry import register
from fineprune.errors import InputError
from fineprune.models import LoadedModel, in_batches, layer_model, output_layer, scale_inputs
from fineprune.progress import Progress, silent


@dataclass(frozen=True)
class ActivationBoundSettings(RepairSettings):
    """`bounds`: where the bounds go and the reference's optimisation of them."""

    method: str = "bounds"
    layers: str = option("conv_1,conv_2,conv_3", "comma-separated layers whose outputs are bounded, channel by "
                         "channel (the reference bounds early and middle layers)", "NAMES")
    bound_images: int = option(1000, "clean training images (classified correctly by the BadNet) the bounds are "
                               "learned on", "N", low=1)
    bound_epochs: int = option(50, "passes over those images", "N", low=1)
    bound_batch_size: int = option(200, "images per Adam step", "N", low=1)
    bound_learning_rate: float = option(0.01, "Adam rate on the bounds relative to their starting values", "LR",
                                        low=0, low_open=True)
    penalty: float = option(0.5, "starting weight c of the bounds' size against the logits' fidelity", "C", low=0)
    penalty_growth: float = option(1.2, "factor c grows or shrinks by every 10 epochs after the 10th", "A", low=1)
    keep_accuracy: float = option(95.0, "c grows while the bounded net keeps at least this share (percent) of the "
                                  "bound images correct, and shrinks otherwise", "PCT", low=0, high=100)

    def layer_names(self, option: str = "--layers") -> list[str]:
        names = [name.strip() for name in self.layers.split(",") if name.strip()]
        if not names:
            raise InputError(f"{option} names no layer")
        return names


def check_layers(model: tf_keras.Model, names: list[str], option: str = "--layers") -> None:
    """Refuse, naming `option`, layers the model does not have."""
    known = {layer.name for layer in model.layers}
    missing = [name for name in names if name not in known]
    if missing:
        raise InputError(f"{option}: the model has no layer {', '.join(missing)}")


class RelativeBound(tf_keras.layers.Layer):
    """min(h, ratio * start) per channel, with `ratio` the learned variable (starting at 1). A
    channel whose clean maximum is not positive (a linear layer's unit that clean faces never drive
    above zero) is bounded at zero: no input may drive it further than clean faces do."""

    def __init__(self, start: np.ndarray, name: str) -> None:
        super().__init__(name=name, trainable=False)
        self.start = tf.constant(np.maximum(start, 0.0), tf.float32)
        self.ratio = tf.Variable(tf.ones(len(start)), name="ratio")

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.minimum(inputs, self.ratio * self.start)


@register("bounds", "MM-BD's mitigation: learn per-channel upper bounds on inner layers' activations that keep "
          "the logits of clean faces, so no trigger drives a channel beyond them", ActivationBoundSettings, order=16)
def activation_bounds(badnet: LoadedModel, clean: LabelledImages, settings: ActivationBoundSettings,
                      progress: Progress = silent) -> RepairResult:
    """Learn the bounds on the clean training part and build the bounded net; the BadNet is untouched."""
    names = settings.layer_names()
    check_layers(badnet.model, names)
    run = RepairRun.start(badnet, clean, settings)
    x = bound_images(badnet, run, settings)
    start = channel_maxima(badnet.model, names, x, badnet.input_scale)
    ratios, penalty, correct = learn_bounds(badnet, x, start, settings, progress)
    model = with_caps(badnet.model, {name: ratios[name] * np.maximum(start[name], 0.0) for name in names})
    steps = settings.bound_epochs * math.ceil(len(x) / settings.bound_batch_size)
    shrunk = {name: round(float(np.mean(ratios[name][start[name] > 0])), 3) for name in names}
    return run.finish(model, steps, removed=f"activations of {', '.join(names)} bounded", details={
        "bounded_layers": names,
        "mean_bound_over_clean_max": shrunk,
        "final_penalty": round(penalty, 4),
        "bound_images": len(x),
        "bound_images_correct_pct": round(correct, 2),
    })


def bound_images(badnet: LoadedModel, run: RepairRun, settings: ActivationBoundSettings) -> np.ndarray:
    """Up to `bound_images` clean training images the BadNet classifies correctly, drawn by the seed."""
    x, y = run.x_train, run.y_train
    correct = np.flatnonzero(badnet.predict_classes(x) == y)
    if not len(correct):
        raise InputError("the BadNet classifies none of the clean training images correctly")
    chosen = np.random.default_rng(settings.seed).permutation(correct)[: settings.bound_images]
    return np.asarray(x[np.sort(chosen)], np.float32)


def learn_bounds(badnet: LoadedModel, x: np.ndarray, start: dict[str, np.ndarray],
                 settings: ActivationBoundSettings, progress: Progress) -> tuple[dict[str, np.ndarray], float, float]:
    """The reference's optimisation; returns each layer's bounds relative to its clean maxima, the
    final penalty weight c and the share (percent) of `x` the bounded net still classifies as the
    BadNet does."""
    relative = {name: RelativeBound(values, f"{name}_bound") for name, values in start.items()}
    bounded = insert_after(badnet.model, relative)
    head = output_layer(badnet.model)
    kernel, bias = (tf.constant(w) for w in head.get_weights())
    features = tf_keras.Model(bounded.input, output_layer(bounded).input)
    reference_features = layer_model(badnet.model, head.input)
    ratios = [layer.ratio for layer in relative.values()]
    optimizer = tf_keras.optimizers.Adam(settings.bound_learning_rate)
    scale = badnet.input_scale
    penalty = tf.Variable(settings.penalty, dtype=tf.float32, trainable=False)

    @tf.function
    def logits_of(batch: tf.Tensor) -> tf.Tensor:
        return tf.matmul(reference_features(scale_inputs(batch, scale), training=False), kernel) + bias

    @tf.function
    def step(batch: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = tf.matmul(features(scale_inputs(batch, scale), training=False), kernel) + bias
            fidelity = tf.reduce_mean(tf.square(logits - target))
            size = tf.add_n([tf.norm(ratio) for ratio in ratios])
            loss = fidelity + penalty * size
        optimizer.apply_gradients(zip(tape.gradient(loss, ratios), ratios))
        for ratio in ratios:
            ratio.assign(tf.maximum(ratio, 0.0))
        return tf.argmax(logits, axis=1)

    targets = np.concatenate([logits_of(batch).numpy() for batch in in_batches(x)])
    labels = targets.argmax(axis=1)
    rng = np.random.default_rng(settings.seed)
    correct = 100.0
    for epoch in range(settings.bound_epochs):
        order = rng.permutation(len(x))
        hits = 0
        for begin in range(0, len(x), settings.bound_batch_size):
            chosen = order[begin : begin + settings.bound_batch_size]
            predicted = step(tf.constant(x[chosen]), tf.constant(targets[chosen])).numpy()
            hits += int((predicted == labels[chosen]).sum())
        correct = 100.0 * hits / len(x)
        if epoch > 10 and epoch % 10 == 0:
            factor = settings.penalty_growth if correct >= settings.keep_accuracy else 1 / settings.penalty_growth
            penalty.assign(penalty * factor)
        if (epoch + 1) % 10 == 0:
            progress(f"bounds: epoch {epoch + 1}/{settings.bound_epochs}, {correct:.1f}% kept, c {float(penalty):.3g}")
    return {name: layer.ratio.numpy() for name, layer in relative.items()}, float(penalty), correct
