"""Pruning defenses: turn a BadNet into a repaired net using clean data only.

`magnitude` is the original course project's recipe: wrap every Dense layer in TF-MOT's
`prune_low_magnitude` with a PolynomialDecay sparsity schedule (50% -> 70% by default), fine-tune
on the clean data with `UpdatePruningStep`, then `strip_pruning`. Part of the clean data is held
out (a seeded shuffle, not Keras's "last 10%", because the challenge files are ordered by identity)
to measure the repair's clean accuracy before and after.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

from fineprune.data import LabelledImages
from fineprune.errors import InputError
from fineprune.metrics import accuracy_pct
from fineprune.models import LoadedModel, predict_classes, scale_inputs

METHODS: tuple[str, ...] = ("magnitude",)


@dataclass(frozen=True)
class MagnitudePruningSettings:
    """The `magnitude` recipe; defaults are the original project's."""

    initial_sparsity: float = 0.5
    final_sparsity: float = 0.7
    epochs: int = 2
    batch_size: int = 10
    validation_split: float = 0.1
    learning_rate: float = 1e-3
    pruning_frequency: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        """Check every setting up front, naming the command-line option that sets it."""
        for option, value in (("--initial-sparsity", self.initial_sparsity), ("--final-sparsity", self.final_sparsity)):
            if not 0.0 <= value < 1.0:
                raise InputError(f"{option} {value:g} is outside [0, 1)")
        if self.initial_sparsity > self.final_sparsity:
            raise InputError(
                f"--initial-sparsity {self.initial_sparsity:g} is greater than --final-sparsity {self.final_sparsity:g}"
            )
        if not 0.0 < self.validation_split < 1.0:
            raise InputError(f"--validation-split {self.validation_split:g} is outside (0, 1)")
        for option, count in (("--epochs", self.epochs), ("--batch-size", self.batch_size),
                              ("--pruning-frequency", self.pruning_frequency)):
            if count < 1:
                raise InputError(f"{option} {count} must be at least 1")
        if not self.learning_rate > 0:
            raise InputError(f"--learning-rate {self.learning_rate:g} must be positive")


@dataclass
class RepairResult:
    """A repaired net and what the repair measured on held-out clean data."""

    model: tf_keras.Model
    sparsity: dict[str, float]  # fraction of zero kernel weights per pruned layer
    heldout_accuracy_before_pct: float
    heldout_accuracy_after_pct: float
    train_images: int
    heldout_images: int
    fine_tuning_steps: int
    seconds: float

    def summary(self) -> dict[str, object]:
        """Everything but the model, for recording in the repaired file and in reports."""
        return {key: value for key, value in asdict(self).items() if key != "model"}


def split_heldout(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded shuffle of range(count) into (train indices, held-out indices), both non-empty."""
    if count < 2:
        raise InputError(f"need at least 2 clean images to fine-tune and hold out, got {count}")
    heldout = min(max(1, round(count * fraction)), count - 1)
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[heldout:]), np.sort(order[:heldout])


def prune_by_magnitude(
    badnet: LoadedModel,
    clean: LabelledImages,
    settings: MagnitudePruningSettings,
    verbose: int = 1,
) -> RepairResult:
    """Magnitude-prune every Dense layer while fine-tuning on clean data; the BadNet is untouched.

    `verbose` is passed to Keras: 1 for progress bars, 2 for a line per epoch, 0 for silence.
    """
    started = time.perf_counter()
    tf_keras.utils.set_random_seed(settings.seed)
    tf.config.experimental.enable_op_determinism()
    train_idx, heldout_idx = split_heldout(len(clean), settings.validation_split, settings.seed)
    x_train = scale_inputs(clean.x[train_idx], badnet.input_scale)
    x_heldout = clean.x[heldout_idx]
    y_train, y_heldout = clean.y[train_idx], clean.y[heldout_idx]

    steps = math.ceil(len(train_idx) / settings.batch_size) * settings.epochs
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=settings.initial_sparsity,
        final_sparsity=settings.final_sparsity,
        begin_step=0,
        end_step=steps,
        frequency=settings.pruning_frequency,
    )
    pruned = _wrap_dense_layers(badnet.model, schedule)
    pruned.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate=settings.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    pruned.fit(
        x_train,
        y_train,
        batch_size=settings.batch_size,
        epochs=settings.epochs,
        validation_data=(scale_inputs(x_heldout, badnet.input_scale), y_heldout),
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
        verbose=verbose,
    )
    repaired = tfmot.sparsity.keras.strip_pruning(pruned)

    return RepairResult(
        model=repaired,
        sparsity=dense_sparsity(repaired),
        heldout_accuracy_before_pct=accuracy_pct(badnet.predict_classes(x_heldout), y_heldout),
        heldout_accuracy_after_pct=accuracy_pct(
            predict_classes(repaired, x_heldout, badnet.input_scale), y_heldout
        ),
        train_images=len(train_idx),
        heldout_images=len(heldout_idx),
        fine_tuning_steps=steps,
        seconds=time.perf_counter() - started,
    )


def dense_sparsity(model: tf_keras.Model) -> dict[str, float]:
    """Fraction of exactly-zero kernel weights in each Dense layer."""
    return {
        layer.name: float(np.mean(layer.kernel.numpy() == 0.0))
        for layer in model.layers
        if isinstance(layer, tf_keras.layers.Dense)
    }


def _wrap_dense_layers(model: tf_keras.Model, schedule: tfmot.sparsity.keras.PruningSchedule) -> tf_keras.Model:
    """A copy of `model` with every Dense layer wrapped for magnitude pruning.

    The copy has its own weights, so fine-tuning it leaves the loaded BadNet as it was.
    """
    copy = tf_keras.models.clone_model(model)
    copy.set_weights(model.get_weights())

    def wrap(layer: tf_keras.layers.Layer) -> tf_keras.layers.Layer:
        if isinstance(layer, tf_keras.layers.Dense):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    return tf_keras.models.clone_model(copy, clone_function=wrap)

