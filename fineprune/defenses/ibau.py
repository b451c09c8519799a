"""`ibau`: Implicit Backdoor Adversarial Unlearning (Zeng et al., ICLR 2022).

Unlearning as a min-max problem: the net should classify clean images correctly even with the
universal perturbation that hurts it most added. Each of `rounds` rounds:
1. Find a universal perturbation d (one image's shape, in the net's input scale): starting from
   zero, one pass over the unlearning images with a gradient step of 10 per batch on
   -cross-entropy(net(x + d), the net's own prediction) + 0.001 |d|^2, as the reference does,
   d projected after each step into an L2 ball of radius `perturbation_norm` (the reference's
   defense.py leaves d unbounded, which here grew it to a norm of about 4800 and drove the net to
   chance; its notebooks project d to radius 10 on CIFAR-10's normalised 32x32 images, about 0.045 of
   the pixel range per value, which is 4 on this net's 55x47 unit-scale images).
2. For every batch, update the net with Adam on the implicit hypergradient of the outer loss,
   cross-entropy(net(x + d on `perturbed_share` of the images), true labels): the direct gradient
   plus the indirect one through how d responds to the net, approximated by `fixed_point_iterations`
   steps of the fixed-point method on the inner gradient-descent map
   d -> d - 0.1 * grad_d[-cross-entropy(net(x0 + d), y0) + 0.001 |d|^2] (x0: the round's first batch).

The reference unlearns on 5000 clean images with batch 100 and Adam at 1e-3; `unlearning_images`
(2000) of the clean training part are used here, to keep the second-order steps within minutes on
two cores, and Adam at 1e-4, as 1e-3 alone costs these nets 40 points in one round. The strength
rule (`strength`): the net is offered before the first round and after each, and the last within
`accuracy_budget` held-out points is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tf_keras

from fineprune.data import LabelledImages
from fineprune.defenses.core import RepairResult, RepairRun, RepairSettings, option
from fineprune.defenses.registry import register
from fineprune.defenses.strength import ACCURACY_BUDGET, ACCURACY_BUDGET_HELP, Checkpoints
from fineprune.models import LoadedModel, copy_model, pixel_range
from fineprune.progress import Progress, silent

PERTURBATION_STEP = 10.0  # the reference's SGD rate for the universal perturbation
INNER_STEP = 0.1  # the reference's gradient-descent step of the inner map
REGULARISATION = 1e-3  # weight of |d|^2 in both inner objectives


@dataclass(frozen=True)
class ImplicitUnlearningSettings(RepairSettings):
    """`ibau`: the reference's rounds, fixed-point iterations, batch and Adam rate."""

    method: str = "ibau"
    rounds: int = option(5, "unlearning rounds, each with a new universal perturbation", "N", low=1)
    fixed_point_iterations: int = option(5, "fixed-point iterations of the implicit hypergradient (the paper's K)",
                                         "K", low=1)
    unlearning_images: int = option(2000, "clean training images used for unlearning", "N", low=1)
    unlearning_batch_size: int = option(100, "images per unlearning step", "N", low=1)
    unlearning_rate: float = option(1e-4, "Adam learning rate of the unlearning steps", "LR", low=0, low_open=True)
    perturbation_norm: float = option(4.0, "L2 bound of the universal perturbation, in pixel-range units (x/255)",
                                      "R", low=0, low_open=True)
    accuracy_budget: float = option(ACCURACY_BUDGET, ACCURACY_BUDGET_HELP, "POINTS", low=0)
    perturbed_share: float = option(0.01, "share of each batch the perturbation is added to (at least one image)",
                                    "F", low=0, high=1, low_open=True)


@register("ibau", "I-BAU: unlearn the worst universal perturbation, with the implicit hypergradient",
          ImplicitUnlearningSettings, order=50)
def implicit_unlearning(badnet: LoadedModel, clean: LabelledImages, settings: ImplicitUnlearningSettings,
                        progress: Progress = silent) -> RepairResult:
    """I-BAU on part of the clean training data; the BadNet is untouched."""
    run = RepairRun.start(badnet, clean, settings)
    model = copy_model(badnet.model)
    rng = np.random.default_rng(settings.seed)
    x, y = run.training_sample(settings.unlearning_images, rng)
    batches = [(tf.constant(x[i : i + settings.unlearning_batch_size]), tf.constant(y[i : i + settings.unlearning_batch_size]))
               for i in range(0, len(x), settings.unlearning_batch_size)]
    optimizer = tf_keras.optimizers.Adam(settings.unlearning_rate)
    step = _unlearning_step(model, optimizer, settings.fixed_point_iterations)
    radius = settings.perturbation_norm * pixel_range(badnet.input_scale)
    checkpoints = Checkpoints("rounds", run.heldout_accuracy_pct, run.accuracy_before_pct, settings.accuracy_budget,
                              lambda line: progress(f"ibau: {line}"))
    checkpoints.offer(0, model)
    steps = 0
    for round_ in range(1, settings.rounds + 1):
        delta = universal_perturbation(model, [batch for batch, _ in batches], radius)
        x_inner, y_inner = batches[0]
        for x_batch, y_batch in batches:
            count = len(y_batch)
            perturbed = rng.choice(count, max(1, int(count * settings.perturbed_share)), replace=False)
            where = np.zeros((count, 1, 1, 1), np.float32)
            where[perturbed] = 1.0
            step(delta, x_inner, y_inner, x_batch, y_batch, tf.constant(where))
            steps += 1
        checkpoints.offer(round_, model)
    choice = checkpoints.restore(model)
    return run.finish(model, steps, removed=f"nothing removed; unlearned universal perturbations for {choice.chosen} "
                      "rounds", details={"strength": choice.record()})


def universal_perturbation(model: tf_keras.Model, batches: list[tf.Tensor], radius: float) -> tf.Tensor:
    """The reference's universal adversarial perturbation: one pass of gradient steps pushing every
    batch away from the net's own predictions, kept within an L2 ball of `radius`."""
    delta = tf.Variable(tf.zeros((1, *batches[0].shape[1:])))

    @tf.function
    def ascend(x: tf.Tensor) -> None:
        own = tf.argmax(model(x, training=False), axis=1)
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(tf_keras.losses.sparse_categorical_crossentropy(own, model(x + delta)))
            loss += REGULARISATION * tf.reduce_sum(tf.square(delta))
        delta.assign(tf.clip_by_norm(delta - PERTURBATION_STEP * tape.gradient(loss, delta), radius))

    for x in batches:
        ascend(x)
    return tf.constant(delta.numpy())


def _unlearning_step(model: tf_keras.Model, optimizer: tf_keras.optimizers.Optimizer, iterations: int):
    """One outer step: the implicit hypergradient by the fixed-point method, applied with `optimizer`."""
    weights = model.trainable_variables

    def cross_entropy(labels: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(tf_keras.losses.sparse_categorical_crossentropy(labels, model(x, training=False)))

    @tf.function
    def step(delta: tf.Tensor, x_inner: tf.Tensor, y_inner: tf.Tensor, x: tf.Tensor, y: tf.Tensor,
             where: tf.Tensor) -> None:
        with tf.GradientTape() as tape:
            tape.watch(delta)
            outer = cross_entropy(y, x + where * delta)
        outer_delta, *outer_weights = tape.gradient(outer, [delta, *weights])
        with tf.GradientTape(persistent=True) as map_tape:
            map_tape.watch(delta)
            with tf.GradientTape() as inner_tape:
                inner_tape.watch(delta)
                inner = -cross_entropy(y_inner, x_inner + delta) + REGULARISATION * tf.reduce_sum(tf.square(delta))
            mapped = delta - INNER_STEP * inner_tape.gradient(inner, delta)
        v = tf.zeros_like(delta)
        for _ in range(iterations):  # v <- (d mapped / d delta)^T v + d outer / d delta
            v = map_tape.gradient(mapped, delta, output_gradients=v) + outer_delta
        indirect = map_tape.gradient(mapped, weights, output_gradients=v)
        del map_tape
        optimizer.apply_gradients([(direct + (0.0 if extra is None else extra), weight)
                                   for direct, extra, weight in zip(outer_weights, indirect, weights)])

    return step
