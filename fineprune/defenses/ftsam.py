"""`ftsam`: FT-SAM (Zhu et al., "Enhancing Fine-Tuning Based Backdoor Defense with Sharpness-Aware
Minimization", ICCV 2023).

Plain fine-tuning on little clean data leaves the backdoor alone: the BadNet already sits in a
minimum of the clean loss, and the neurons the trigger uses are not needed for clean images, so
nothing moves them. FT-SAM fine-tunes the whole net on the clean training part with adaptive
sharpness-aware minimisation (ASAM): each step first climbs to the worst weights nearby, then
descends with the gradient taken there. The paper finds that backdoor-related neurons have large
weight norms, and ASAM's climb grows with the weights, so the descent acts most on them.
One step, for a batch:
1. g = the gradient of the label-smoothed cross-entropy at the weights w;
2. e = `rho` x T^2 g / ||T g|| with T = |w| + `eta`, elementwise over every weight (the climb of
   length `rho` in the weight-scaled norm ||e / T||);
3. the gradient at w + e is applied to w (the climb undone first) by the optimizer.

BackdoorBench's defaults (defense/ft-sam.py, config/defense/ft-sam/): ASAM with rho 2 (CIFAR-10;
8 for GTSRB and Tiny-ImageNet), label smoothing 0.1 (0 for GTSRB and Tiny-ImageNet), SGD at 0.01
with momentum 0.9 and weight decay 5e-4 (cosine schedule; on Tiny-ImageNet reduced on plateau),
batch 256, 100 epochs (50 on GTSRB) over 5% of the training set. Its ASAM has no `eta`; ASAM's
paper (Kwon et al., ICML 2021) uses 0.01, which also lets weights at zero move.

Scaled to this net: it has no batch normalisation and about 8 clean images a class (1283
classes), and whole-net SGD at 0.01 costs even plain fine-tuning 60 held-out points (Adam at
1e-3 costs 20, at 1e-4 about 1.5). So the descent is Adam without weight decay, as every
fine-tuning here, for 2 epochs in batches of 64, and the strength rule (`strength`) picks its
learning rate unless `--learning-rate` is given: the strongest of `core.LEARNING_RATES` whose
held-out accuracy stays within `accuracy_budget` points. SAM changes the direction of each
step, Adam its size, so the climb's radius needs no rescaling for Adam.

`rho` stays at the reference's 2 (its default and CIFAR-10's value), not GTSRB's 8. The climb is
measured relative to the weights, so its radius carries over between nets of different weight
scales; but this net has 0.6 M weights against PreAct-ResNet18's 11 M, so the same radius is a
larger change per weight, and ~8 images a class leave no slack. Measured on the feature-collision
BadNet, four clean batches of 64: the climb at rho 2 takes the batch's accuracy from 97-100% to
38-47% (the loss from ~4.5 to ~10; up to 0.5 x T per weight), still a net whose gradient says
something about the batch; at rho 8 to 0-3%, with the loss at 70-87, ten times chance level's
7.2, and weights moved by twice their size: the gradient there no longer describes this net.

`label_smoothing` is 0, as BackdoorBench's configs for GTSRB and Tiny-ImageNet (its CIFAR-10 one
uses 0.1): a net of many classes, as these are. Spread over 1282 other classes, 0.1 weighs more
than over 10, and with the climb it costs accuracy. Measured on the feature-collision BadNet
(held-out 97.6%), Adam 1e-4, 2 epochs: rho 2 without smoothing keeps 97.6%, smoothing 0.1 with rho
~0 gives 96.7%, both together 93.9%; with 0.1 no rate of the ladder stays within 1 point (1e-5:
90.0%), with 0 the rule picks 3e-4 (97.1%).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import tensorflow as tf
import tf_keras

from fineprune.data import LabelledImages
from fineprune.defenses.core import RepairResult, RepairRun, TunedFineTuningSettings, option
from fineprune.defenses.registry import register
from fineprune.models import LoadedModel, copy_model
from fineprune.progress import Progress, silent

NORM_FLOOR = 1e-12  # keeps the climb finite where the gradient vanishes (the reference's perturb_eps)


@dataclass(frozen=True)
class SharpnessAwareSettings(TunedFineTuningSettings):
    """`ftsam`: fine-tuning (learning rate chosen by the strength rule unless given) whose every
    step is an ASAM step of radius `rho`, on label-smoothed targets."""

    method: str = "ftsam"
    rho: float = option(2.0, "radius of ASAM's climb to the worst nearby weights, in weight-relative units "
                        "(the reference's CIFAR-10 value)", "R", low=0, low_open=True)
    eta: float = option(0.01, "added to |w| in ASAM's weight scaling, so that zero weights are perturbed too", "E",
                        low=0)
    label_smoothing: float = option(0.0, "share of each training target spread over the other classes", "S",
                                    low=0, high=1, high_open=True)


def ascent(weights: Sequence[tf.Tensor], gradients: Sequence[tf.Tensor], rho: float, eta: float) -> list[tf.Tensor]:
    """ASAM's climb e = rho T^2 g / ||T g|| (T = |w| + eta, elementwise; the norm over all weights):
    the steepest ascent of length `rho` measured in the weight-scaled norm ||e / T||."""
    scales = [tf.abs(w) + eta for w in weights]
    scaled = [t * g for t, g in zip(scales, gradients)]
    norm = tf.linalg.global_norm(scaled)
    return [rho * t * s / (norm + NORM_FLOOR) for t, s in zip(scales, scaled)]


def smoothed_targets(y: tf.Tensor, classes: int, smoothing: float) -> tf.Tensor:
    """Each label's target row: 1 - `smoothing` on the label, the rest shared by the other classes
    (the reference's smooth cross-entropy); rows of probabilities are smoothed the same way."""
    y = tf.convert_to_tensor(y)
    rows = tf.one_hot(tf.cast(y, tf.int32), classes) if y.shape.rank == 1 else tf.cast(y, tf.float32)
    return rows * (1.0 - smoothing) + (1.0 - rows) * (smoothing / max(classes - 1, 1))


class SharpnessAwareNet(tf_keras.Model):
    """`net`'s layers and weights (shared, not copied) as a functional model whose `fit` takes ASAM
    steps: the optimizer given to `compile` makes the descent; the compiled loss and metrics are
    only reported, the gradients come from the label-smoothed loss."""

    def __init__(self, net: tf_keras.Model, rho: float, eta: float, label_smoothing: float) -> None:
        super().__init__(inputs=net.inputs, outputs=net.outputs, name=net.name)
        self.rho, self.eta, self.label_smoothing = rho, eta, label_smoothing

    def smoothed_loss(self, y: tf.Tensor, scores: tf.Tensor) -> tf.Tensor:
        """Mean cross-entropy of the (softmax) scores against the smoothed targets, plus any added losses."""
        targets = smoothed_targets(y, scores.shape[-1], self.label_smoothing)
        loss = tf.reduce_mean(tf_keras.losses.categorical_crossentropy(targets, scores))
        return loss + tf.add_n(self.losses) if self.losses else loss

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        """One ASAM step on a batch (x, y): climb, take the gradient there, undo the climb, descend."""
        x, y = data[0], data[1]
        weights = self.trainable_variables
        with tf.GradientTape() as tape:
            scores = self(x, training=True)
            loss = self.smoothed_loss(y, scores)
        climb = ascent(weights, tape.gradient(loss, weights), self.rho, self.eta)
        for weight, step in zip(weights, climb):
            weight.assign_add(step)
        with tf.GradientTape() as tape:
            perturbed_loss = self.smoothed_loss(y, self(x, training=True))
        gradients = tape.gradient(perturbed_loss, weights)
        for weight, step in zip(weights, climb):
            weight.assign_sub(step)
        self.optimizer.apply_gradients(zip(gradients, weights))
        self.compute_loss(x, y, scores)  # the reported loss: the compiled one, at the weights before the step
        return self.compute_metrics(x, y, scores, None)


@register("ftsam", "FT-SAM: fine-tune the whole net with adaptive sharpness-aware minimisation; learning rate "
          "chosen by held-out clean accuracy", SharpnessAwareSettings, order=33)
def sharpness_aware_fine_tuning(badnet: LoadedModel, clean: LabelledImages, settings: SharpnessAwareSettings,
                                progress: Progress = silent) -> RepairResult:
    """FT-SAM on the clean training part; the BadNet is untouched. The net returned is a plain
    Keras model of the BadNet's architecture."""
    run = RepairRun.start(badnet, clean, settings)
    rho, eta, smoothing = settings.rho, settings.eta, settings.label_smoothing

    def start() -> tf_keras.Model:
        return SharpnessAwareNet(copy_model(badnet.model), rho, eta, smoothing)

    tuned, steps, choice = run.tuned_fine_tune(start, settings, progress=lambda line: progress(f"ftsam: {line}"))
    model = copy_model(badnet.model)
    model.set_weights(tuned.get_weights())
    return run.finish(model, steps, details={"strength": choice.record()})
