"""`fst`: Feature Shift Tuning (Min et al., "Towards Stable Backdoor Purification through Feature
Shift Tuning", NeurIPS 2023).

Plain fine-tuning on little clean data barely moves the features a backdoor uses, because the old
output layer keeps reading them. FST re-initialises the output layer and fine-tunes the whole net
with a penalty on the new output weights' inner product with the old ones, the new weights held
at the old weights' norm after every step. The features must shift to suit a classifier that
points away from the backdoored one.

Scaled to this net: the reference's `alpha` (0.1-0.2) is for 10 classes, and its penalty sums
over every output column, so here it is multiplied by 10 / classes (unscaled, at 1283 classes
it spans about +-300 against a cross-entropy of about 7, and sent held-out accuracy to 0.6%). The
reference fine-tunes ResNets (with batch normalisation) by SGD at 0.01 with momentum; this net has
none, and SGD at that rate costs even plain fine-tuning 60 points, so `fst` fine-tunes with Adam
at 1e-4. And a random output layer held at the old norm sends such large, wrong gradients into a
net without normalisation that it collapses whatever alpha (alpha 0, Adam 1e-3: 54%; 1e-4 with a
separate 1e-3 for the head: 7% after an epoch). So the new output layer is first fitted on the
frozen features from its random start (`PROBE_STEPS` full-batch Adam steps, as `head`'s probe),
then everything is fine-tuned with the penalty. Unless `--alpha` is given, the strength rule
(`strength`) picks it: the largest of `ALPHAS` whose held-out accuracy stays within
`accuracy_budget` points. Measured on the feature-collision BadNet: the fitted layer alone gives
93.9% (of 97.6%), and alpha 0.2 then turns its inner product with the old from +217 to -17 in 3
epochs at 86.9%, the attack still at 99.6%: the triggered features sit on the target's clean
ones, so any output layer that reads clean faces reads them as the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tf_keras

from fineprune.data import LabelledImages
from fineprune.defenses.core import FineTuningSettings, RepairResult, RepairRun, fine_tuning_steps, option
from fineprune.defenses.strength import ACCURACY_BUDGET, ACCURACY_BUDGET_HELP, strongest_within_budget
from fineprune.defenses.registry import register
from fineprune.defenses.output_fit import fit_output_weights
from fineprune.models import LoadedModel, copy_model, output_layer, penultimate_features
from fineprune.progress import Progress, silent


ALPHAS = (0.2, 0.1, 0.05, 0.02, 0.0)  # the strength ladder, strongest first (the reference's scale)
REFERENCE_CLASSES = 10  # the reference's alpha is for this many output columns
PROBE_STEPS, PROBE_LEARNING_RATE, PROBE_WEIGHT_DECAY = 200, 0.01, 1e-4  # the new output layer's first fit


@dataclass(frozen=True)
class FeatureShiftSettings(FineTuningSettings):
    """`fst`: the penalty's weight (chosen by the strength rule unless given); longer fine-tuning
    than the other methods, as the output layer starts from scratch."""

    method: str = "fst"
    epochs: int = option(4, "fine-tuning epochs", "N", low=1)
    batch_size: int = option(64, "fine-tuning batch size", "N", low=1)
    learning_rate: float = option(1e-4, "Adam learning rate", "LR", low=0, low_open=True)
    alpha: float | None = option(None, "weight of the penalty on the new output weights' inner product with the "
                                 "old, on the reference's scale for 10 classes", "A", kind=float, low=0,
                                 unset="the largest of " + ", ".join(f"{a:g}" for a in ALPHAS)
                                 + " within --accuracy-budget")
    accuracy_budget: float = option(ACCURACY_BUDGET, ACCURACY_BUDGET_HELP, "POINTS", low=0)


class KeepNorm(tf_keras.callbacks.Callback):
    """Rescales a Dense layer's kernel to a fixed Frobenius norm after every batch."""

    def __init__(self, layer: tf_keras.layers.Dense, norm: float) -> None:
        super().__init__()
        self.layer, self.norm = layer, norm

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        kernel = self.layer.kernel
        kernel.assign(kernel * (self.norm / tf.norm(kernel)))


@register("fst", "Feature Shift Tuning: re-initialise the output layer, fine-tune everything with its new weights "
          "pushed away from the old; alpha chosen by held-out clean accuracy", FeatureShiftSettings, order=30)
def feature_shift_tuning(badnet: LoadedModel, clean: LabelledImages, settings: FeatureShiftSettings,
                         progress: Progress = silent) -> RepairResult:
    """Feature Shift Tuning on the clean training part; the BadNet is untouched."""
    run = RepairRun.start(badnet, clean, settings)
    steps = fine_tuning_steps(len(run.train), settings)
    start = copy_model(badnet.model)
    head = output_layer(start)
    old_kernel = head.kernel.numpy()
    bound = 1.0 / np.sqrt(head.kernel.shape[0])  # the reference's uniform re-initialisation
    rng = np.random.default_rng(settings.seed)
    features = penultimate_features(start, run.x_train, badnet.input_scale)
    kernel, bias = fit_output_weights(features, run.y_train, rng.uniform(-bound, bound, old_kernel.shape),
                                      rng.uniform(-bound, bound, head.units), PROBE_STEPS, PROBE_LEARNING_RATE,
                                      PROBE_WEIGHT_DECAY, label="fst: output layer fit", progress=progress)
    head.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    progress(f"fst: the new output layer alone: held-out accuracy {run.heldout_accuracy_pct(start):.2f}%")

    def shifted(alpha: float) -> tf_keras.Model:
        model = copy_model(start)
        new_head = output_layer(model)
        weight = alpha * REFERENCE_CLASSES / new_head.units
        old = tf.constant(old_kernel)
        model.add_loss(lambda: weight * tf.reduce_sum(new_head.kernel * old))
        run.fine_tune(model, settings, [KeepNorm(new_head, float(np.linalg.norm(old_kernel)))], progress)
        return copy_model(model)  # the same weights, without the training-only penalty

    model, choice = strongest_within_budget("alpha", ALPHAS, shifted, run.heldout_accuracy_pct,
                                            run.accuracy_before_pct, settings.accuracy_budget,
                                            lambda line: progress(f"fst: {line}"), settings.alpha)
    return run.finish(model, steps, removed=f"the output layer (re-initialised; features shifted, alpha {choice.chosen:g})",
                      details={"strength": choice.record()})
