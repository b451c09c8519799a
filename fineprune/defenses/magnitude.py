"""`magnitude`: the original course project's recipe on the CSAW-HackML-2020 BadNets, and prune.py's default.

Every Dense layer is wrapped in TF-MOT's `prune_low_magnitude` with a PolynomialDecay sparsity
schedule (50% -> 70% by default) over the whole fine-tuning run; the net is fine-tuned on the
clean training part with `UpdatePruningStep`, then `strip_pruning` gives a plain Keras model whose
smallest Dense weights are exactly zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow_model_optimization as tfmot
import tf_keras

from fineprune.data import LabelledImages
from fineprune.defenses.core import FineTuningSettings, RepairResult, RepairRun, fine_tuning_steps, option
from fineprune.defenses.registry import register
from fineprune.errors import InputError
from fineprune.models import LoadedModel, copy_model
from fineprune.progress import Progress, silent


@dataclass(frozen=True)
class MagnitudePruningSettings(FineTuningSettings):
    """The `magnitude` recipe; defaults are the original project's."""

    method: str = "magnitude"
    initial_sparsity: float = option(0.5, "share of Dense weights zeroed at the first step, in [0, 1)", "S",
                                     low=0, high=1, high_open=True)
    final_sparsity: float = option(0.7, "share zeroed at the last step, in [0, 1), at least the initial", "S",
                                   low=0, high=1, high_open=True)
    pruning_frequency: int = option(100, "steps between mask updates of the sparsity schedule (TF-MOT frequency)",
                                    "N", low=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.initial_sparsity > self.final_sparsity:
            raise InputError(
                f"--initial-sparsity {self.initial_sparsity:g} is greater than --final-sparsity {self.final_sparsity:g}"
            )


@register("magnitude", "TF-MOT low-magnitude pruning of every Dense layer while fine-tuning (the original project's "
          "recipe)", MagnitudePruningSettings, order=0)
def prune_by_magnitude(badnet: LoadedModel, clean: LabelledImages, settings: MagnitudePruningSettings,
                       progress: Progress = silent) -> RepairResult:
    """Magnitude-prune every Dense layer while fine-tuning on clean data; the BadNet is untouched."""
    run = RepairRun.start(badnet, clean, settings)
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=settings.initial_sparsity,
        final_sparsity=settings.final_sparsity,
        begin_step=0,
        end_step=fine_tuning_steps(len(run.train), settings),
        frequency=settings.pruning_frequency,
    )
    pruned = wrap_dense_layers(badnet.model, schedule)
    steps = run.fine_tune(pruned, settings, [tfmot.sparsity.keras.UpdatePruningStep()], progress)
    repaired = tfmot.sparsity.keras.strip_pruning(pruned)
    sparsity = dense_sparsity(repaired)
    return run.finish(repaired, steps, sparsity=sparsity, removed=f"{100 * min(sparsity.values()):.0f}% of Dense weights")


def wrap_dense_layers(model: tf_keras.Model, schedule: tfmot.sparsity.keras.PruningSchedule) -> tf_keras.Model:
    """A copy of `model` with every Dense layer wrapped for magnitude pruning; `model` keeps its weights."""

    def wrap(layer: tf_keras.layers.Layer) -> tf_keras.layers.Layer:
        if isinstance(layer, tf_keras.layers.Dense):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    return tf_keras.models.clone_model(copy_model(model), clone_function=wrap)


def dense_sparsity(model: tf_keras.Model) -> dict[str, float]:
    """Fraction of exactly-zero kernel weights in each Dense layer."""
    return {
        layer.name: float(np.mean(layer.kernel.numpy() == 0.0))
        for layer in model.layers
        if isinstance(layer, tf_keras.layers.Dense)
    }
