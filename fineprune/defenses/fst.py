"""`fst`: Feature Shift Tuning (Min et al., "Towards Stable Backdoor Purification through Feature
Shift Tuning", NeurIPS 2023).

Plain fine-tuning on little clean data barely moves the features a backdoor uses, because the old
output layer keeps reading them. FST re-initialises the output layer and fine-tunes the whole net
with a penalty on the new output weights' inner product with the old ones (weight `alpha`), the
new weights held at the old weights' norm after every step. The features must shift to suit a
classifier that points away from the backdoored one. The reference fine-tunes ResNets (with batch
normalisation) by SGD at 0.01; this net has no normalisation and SGD at that rate wrecked it in a
test, so `fst` fine-tunes with Adam, as every other method here does. The reference's `alpha`
(0.1-0.2) is for 10 classes; its README advises a smaller one, or none, for 100 and 200 classes.
Here the penalty sums over 1283 output columns (it spans about +-300 at 0.2, against a
cross-entropy of about 7), which is why `fst` at its defaults collapses these nets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tf_keras

from fineprune.data import LabelledImages
from fineprune.defenses.core import FineTuningSettings, RepairResult, RepairRun, option
from fineprune.defenses.registry import register
from fineprune.models import LoadedModel, copy_model, output_layer
from fineprune.progress import Progress, silent


@dataclass(frozen=True)
class FeatureShiftSettings(FineTuningSettings):
    """`fst`: the penalty's weight; longer fine-tuning than the other methods, as the output layer
    starts from scratch."""

    method: str = "fst"
    epochs: int = option(4, "fine-tuning epochs", "N", low=1)
    batch_size: int = option(64, "fine-tuning batch size", "N", low=1)
    alpha: float = option(0.2, "weight of the penalty on the new output weights' inner product with the old", "A",
                          low=0)


class KeepNorm(tf_keras.callbacks.Callback):
    """Rescales a Dense layer's kernel to a fixed Frobenius norm after every batch."""

    def __init__(self, layer: tf_keras.layers.Dense, norm: float) -> None:
        super().__init__()
        self.layer, self.norm = layer, norm

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        kernel = self.layer.kernel
        kernel.assign(kernel * (self.norm / tf.norm(kernel)))


@register("fst", "Feature Shift Tuning: re-initialise the output layer, fine-tune everything with its new weights "
          "pushed away from the old", FeatureShiftSettings, order=30)
def feature_shift_tuning(badnet: LoadedModel, clean: LabelledImages, settings: FeatureShiftSettings,
                         progress: Progress = silent) -> RepairResult:
    """Feature Shift Tuning on the clean training part; the BadNet is untouched."""
    run = RepairRun.start(badnet, clean, settings)
    model = copy_model(badnet.model)
    head = output_layer(model)
    old_kernel = tf.constant(head.kernel.numpy())
    norm = float(tf.norm(old_kernel))
    bound = 1.0 / np.sqrt(head.kernel.shape[0])  # the reference's uniform re-initialisation
    rng = np.random.default_rng(settings.seed)
    head.set_weights([rng.uniform(-bound, bound, head.kernel.shape).astype(np.float32),
                      rng.uniform(-bound, bound, head.units).astype(np.float32)])
    model.add_loss(lambda: settings.alpha * tf.reduce_sum(head.kernel * old_kernel))
    steps = run.fine_tune(model, settings, [KeepNorm(head, norm)], progress)
    repaired = copy_model(model)  # the same weights, without the training-only penalty
    return run.finish(repaired, steps, removed="the output layer (re-initialised; features shifted)")
