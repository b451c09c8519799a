"""Pruning defenses: turn a BadNet into a repaired net using clean data only.

`magnitude` is the original course project's recipe: wrap every Dense layer in TF-MOT's
`prune_low_magnitude` with a PolynomialDecay sparsity schedule (50% -> 70% by default), fine-tune
on the clean data with `UpdatePruningStep`, then `strip_pruning`. Part of the clean data is held
out (a seeded shuffle, not Keras's "last 10%", because the challenge files are ordered by identity)
to measure the repair's clean accuracy before and after.

Activation pruning is the pruning step of Fine-Pruning (Liu, Dolan-Gavitt, Garg, RAID 2018): the
backdoor tends to live in channels of a late convolutional layer that clean inputs leave dormant,
so channels are removed in increasing order of their mean activation on clean data.
`pruning_sweep` measures clean accuracy and attack success after every step of that order (the
paper's pruning curve), and `accuracy_drop_points` reads off how far one can prune for a given
loss of clean accuracy.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

from fineprune.data import LabelledImages
from fineprune.errors import InputError
from fineprune.metrics import accuracy_pct, attack_success_pct
from fineprune.models import LoadedModel, predict_classes, scale_inputs

METHODS: tuple[str, ...] = ("magnitude", "activation", "finetune", "prune")


@dataclass(frozen=True)
class FineTuningSettings:
    """What every repair shares: the held-out split, fine-tuning on the rest, the seed."""

    epochs: int = 2
    batch_size: int = 10
    validation_split: float = 0.1
    learning_rate: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        """Check every setting up front, naming the command-line option that sets it."""
        if not 0.0 < self.validation_split < 1.0:
            raise InputError(f"--validation-split {self.validation_split:g} is outside (0, 1)")
        for option, count in (("--epochs", self.epochs), ("--batch-size", self.batch_size)):
            if count < 1:
                raise InputError(f"{option} {count} must be at least 1")
        if not self.learning_rate > 0:
            raise InputError(f"--learning-rate {self.learning_rate:g} must be positive")


@dataclass(frozen=True)
class MagnitudePruningSettings(FineTuningSettings):
    """The `magnitude` recipe; defaults are the original project's."""

    initial_sparsity: float = 0.5
    final_sparsity: float = 0.7
    pruning_frequency: int = 100

    def __post_init__(self) -> None:
        for option, value in (("--initial-sparsity", self.initial_sparsity), ("--final-sparsity", self.final_sparsity)):
            if not 0.0 <= value < 1.0:
                raise InputError(f"{option} {value:g} is outside [0, 1)")
        if self.initial_sparsity > self.final_sparsity:
            raise InputError(
                f"--initial-sparsity {self.initial_sparsity:g} is greater than --final-sparsity {self.final_sparsity:g}"
            )
        if self.pruning_frequency < 1:
            raise InputError(f"--pruning-frequency {self.pruning_frequency} must be at least 1")
        super().__post_init__()

    @property
    def method(self) -> str:
        return "magnitude"


@dataclass(frozen=True)
class ActivationPruningSettings(FineTuningSettings):
    """Fine-Pruning (Liu et al.) and its two baselines.

    - `activation`: prune `layer`'s channels in increasing order of mean activation on the clean
      training part until held-out accuracy has fallen by `max_accuracy_drop` points (or exactly
      `prune_fraction` of them), then fine-tune with the pruned channels held at zero;
    - `prune`: the pruning step alone;
    - `finetune`: the fine-tuning step alone.
    """

    method: str = "activation"
    layer: str = "conv_3"
    max_accuracy_drop: float = 4.0
    prune_fraction: float | None = None
    channels: tuple[int, ...] | None = None  # prune exactly these, found by other means (analysis only)

    def __post_init__(self) -> None:
        if self.method not in ("activation", "prune", "finetune"):
            raise InputError(f"--method {self.method} is not one of {', '.join(METHODS)}")
        if not self.max_accuracy_drop >= 0:
            raise InputError(f"--max-accuracy-drop {self.max_accuracy_drop:g} must be at least 0")
        if self.prune_fraction is not None and not 0.0 < self.prune_fraction < 1.0:
            raise InputError(f"--prune-fraction {self.prune_fraction:g} is outside (0, 1)")
        if self.channels is not None and (self.prune_fraction is not None or not self.channels):
            raise InputError("give either a non-empty list of channels or --prune-fraction, not both")
        super().__post_init__()


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
    pruned_channels: dict[str, list[int]] = field(default_factory=dict)  # per layer, in pruning order

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


def _seeded_split(clean: LabelledImages, settings: FineTuningSettings) -> tuple[np.ndarray, np.ndarray]:
    """Make the run repeatable from `settings.seed`, and split the clean data into train / held out."""
    tf_keras.utils.set_random_seed(settings.seed)
    tf.config.experimental.enable_op_determinism()
    return split_heldout(len(clean), settings.validation_split, settings.seed)


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
    train_idx, heldout_idx = _seeded_split(clean, settings)
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


def fine_prune(
    badnet: LoadedModel,
    clean: LabelledImages,
    settings: ActivationPruningSettings,
    verbose: int = 1,
) -> RepairResult:
    """Fine-Pruning or one of its halves (see ActivationPruningSettings); the BadNet is untouched.

    Every decision uses the clean data alone: channels are ranked on the training part, and the
    accuracy budget is checked on the held-out part.
    """
    started = time.perf_counter()
    train_idx, heldout_idx = _seeded_split(clean, settings)
    x_heldout, y_heldout = clean.x[heldout_idx], clean.y[heldout_idx]
    before = accuracy_pct(badnet.predict_classes(x_heldout), y_heldout)
    model = _copy_model(badnet.model)

    pruned: list[int] = []
    if settings.method in ("activation", "prune"):
        pruned = _prune_within_budget(model, clean.x[train_idx], x_heldout, y_heldout, before, badnet.input_scale,
                                      settings)
    steps = 0
    if settings.method in ("activation", "finetune"):
        steps = math.ceil(len(train_idx) / settings.batch_size) * settings.epochs
        model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate=settings.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(
            scale_inputs(clean.x[train_idx], badnet.input_scale), clean.y[train_idx],
            batch_size=settings.batch_size, epochs=settings.epochs,
            validation_data=(scale_inputs(x_heldout, badnet.input_scale), y_heldout),
            callbacks=[HoldChannelsAtZero(settings.layer, pruned)] if pruned else [],
            verbose=verbose,
        )
    return RepairResult(
        model=model,
        sparsity={},
        heldout_accuracy_before_pct=before,
        heldout_accuracy_after_pct=accuracy_pct(predict_classes(model, x_heldout, badnet.input_scale), y_heldout),
        train_images=len(train_idx),
        heldout_images=len(heldout_idx),
        fine_tuning_steps=steps,
        seconds=time.perf_counter() - started,
        pruned_channels={settings.layer: pruned} if settings.method != "finetune" else {},
    )


def _prune_within_budget(model: tf_keras.Model, x_rank: np.ndarray, x_heldout: np.ndarray, y_heldout: np.ndarray,
                         accuracy_before: float, input_scale: str, settings: ActivationPruningSettings) -> list[int]:
    """Zero `settings.layer`'s channels of `model` in increasing order of mean activation on
    `x_rank`, as far as the budget allows; returns the pruned channels in pruning order."""
    layer = _conv_layer(model, settings.layer)
    if settings.channels is not None:
        _zero_channels(layer, _channel_indices(settings.channels, layer))
        return [int(c) for c in settings.channels]
    order = pruning_order(mean_channel_activations(model, settings.layer, x_rank, input_scale))
    if settings.prune_fraction is not None:
        pruned = [int(c) for c in order[: round(settings.prune_fraction * len(order))]]
        _zero_channels(layer, np.array(pruned, dtype=np.int64))
        return pruned
    pruned = []
    for channel in order[:-1]:  # never the last channel: the layer would output nothing at all
        kept = layer.get_weights()
        _zero_channels(layer, np.array([channel]))
        accuracy = accuracy_pct(predict_classes(model, x_heldout, input_scale), y_heldout)
        if accuracy < accuracy_before - settings.max_accuracy_drop:
            layer.set_weights(kept)
            break
        pruned.append(int(channel))
    return pruned


def repair(
    badnet: LoadedModel,
    clean: LabelledImages,
    settings: MagnitudePruningSettings | ActivationPruningSettings,
    verbose: int = 1,
) -> RepairResult:
    """Run the repair method the settings describe."""
    if isinstance(settings, MagnitudePruningSettings):
        return prune_by_magnitude(badnet, clean, settings, verbose)
    return fine_prune(badnet, clean, settings, verbose)


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
    copy = _copy_model(model)

    def wrap(layer: tf_keras.layers.Layer) -> tf_keras.layers.Layer:
        if isinstance(layer, tf_keras.layers.Dense):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    return tf_keras.models.clone_model(copy, clone_function=wrap)



# --- Activation pruning: the Fine-Pruning paper's pruning curve ---------------------------------


@dataclass(frozen=True)
class SweepPoint:
    """The pruned net's numbers after removing the `channels_pruned` least active channels."""

    channels_pruned: int
    fraction_pruned: float  # channels_pruned / channels in the layer
    clean_accuracy_pct: float
    attack_success_pct: dict[str, float]  # per poisoned set name


def mean_channel_activations(
    model: tf_keras.Model, layer_name: str, x: np.ndarray, input_scale: str, batch_size: int = 256
) -> np.ndarray:
    """Mean output (after the layer's ReLU) of each channel of a Conv2D layer, over images and positions.

    `x` is (N, H, W, 3) with pixels 0..255. Only one batch of the layer's output exists at a time,
    so memory stays bounded however many images there are (11547 for the challenge's validation set).
    """
    layer = _conv_layer(model, layer_name)
    if batch_size < 1:
        raise InputError(f"batch size {batch_size} must be at least 1")
    if len(x) == 0:
        raise InputError(f"no images to measure the activations of layer {layer_name!r} on")
    features = tf_keras.Model(model.input, layer.output)
    reduce_axes = [0, 1, 2] if layer.data_format == "channels_last" else [0, 2, 3]

    @tf.function(reduce_retracing=True)
    def channel_sums(batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        output = tf.cast(features(batch, training=False), tf.float64)
        return tf.reduce_sum(output, axis=reduce_axes), tf.size(output) // layer.filters

    totals = np.zeros(layer.filters, dtype=np.float64)
    positions = 0
    for start in range(0, len(x), batch_size):
        batch = np.asarray(scale_inputs(x[start : start + batch_size], input_scale), dtype=np.float32)
        sums, count = channel_sums(batch)
        totals += sums.numpy()
        positions += int(count)
    return totals / positions


def pruning_order(activations: np.ndarray) -> np.ndarray:
    """Channel indices from least to most active; ties keep index order (a stable sort)."""
    return np.argsort(np.asarray(activations), kind="stable")


def prune_channels(model: tf_keras.Model, layer_name: str, channels: Sequence[int]) -> tf_keras.Model:
    """A copy of `model` whose Conv2D layer `layer_name` has the given output channels removed.

    Removing a channel zeroes its kernel slice and bias, so its pre-activation is 0 everywhere and
    after the ReLU it outputs exactly 0. `model` itself is left untouched.
    """
    layer = _conv_layer(model, layer_name)
    indices = _channel_indices(channels, layer)
    copy = _copy_model(model)
    _zero_channels(copy.get_layer(layer_name), indices)
    return copy


def pruning_sweep(
    badnet: LoadedModel,
    layer_name: str,
    clean: LabelledImages,
    poisoned: dict[str, LabelledImages],
    activations: np.ndarray | None = None,
    step: int = 1,
) -> list[SweepPoint]:
    """Clean accuracy and attack success after pruning the k least active channels, k = 0, step, ..., all.

    Channels are ranked by their mean `activations` (default: measured on `clean`). Pruning is cumulative
    in that order, so one copy of the net is made and each step only zeroes the next channels.
    The last point always prunes every channel, even when `step` does not divide their number.
    Poisoned sets carry the attacker's targets as labels. `badnet.model` is left untouched.
    """
    if step < 1:
        raise InputError(f"step {step} must be at least 1")
    layer = _conv_layer(badnet.model, layer_name)
    channels = layer.filters
    if activations is None:
        activations = mean_channel_activations(badnet.model, layer_name, clean.x, badnet.input_scale)
    if len(activations) != channels:
        raise InputError(f"{len(activations)} activations for the {channels} channels of layer {layer_name!r}")
    order = pruning_order(activations)

    predict = _pruned_predictor(badnet, layer_name, {"clean": clean.x, **{n: d.x for n, d in poisoned.items()}})
    points: list[SweepPoint] = []
    for count in sorted(set(range(0, channels, step)) | {channels}):
        predicted = predict(order[:count])
        points.append(SweepPoint(
            channels_pruned=count,
            fraction_pruned=count / channels,
            clean_accuracy_pct=accuracy_pct(predicted["clean"], clean.y),
            attack_success_pct={name: attack_success_pct(predicted[name], images.y) for name, images in poisoned.items()},
        ))
    return points


def _pruned_predictor(badnet: LoadedModel, layer_name: str,
                      images: dict[str, np.ndarray]) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A function from the channels of `layer_name` removed to each image set's predicted classes.

    Where every path from the input to the output runs through the layer (conv_3 in the challenge
    net), its output is computed once and only the rest of the net is rerun, with the removed
    channels masked: the same numbers as zeroing their weights, since a zeroed channel outputs
    relu(0) = 0. Otherwise every call predicts with a copy of the net whose channels are zeroed.
    """
    model, layer = badnet.model, _conv_layer(badnet.model, layer_name)
    try:
        rest = tf_keras.Model(layer.output, model.output)
    except ValueError:  # a path bypasses the layer (conv_4 in the challenge net)
        pruned = _copy_model(model)

        def predict_zeroed(removed: np.ndarray) -> dict[str, np.ndarray]:
            _zero_channels(pruned.get_layer(layer_name), removed)
            return {name: predict_classes(pruned, x, badnet.input_scale) for name, x in images.items()}

        return predict_zeroed

    features = tf_keras.Model(model.input, layer.output)
    cached = {name: np.concatenate([features.predict(scale_inputs(x[start : start + 2048], badnet.input_scale),
                                                     batch_size=256, verbose=0)
                                    for start in range(0, len(x), 2048)])
              for name, x in images.items()}
    shape = (-1, 1, 1) if layer.data_format == "channels_first" else (-1,)

    def predict_masked(removed: np.ndarray) -> dict[str, np.ndarray]:
        mask = np.ones(layer.filters, np.float32)
        mask[np.asarray(removed, dtype=np.int64)] = 0.0
        mask = mask.reshape(shape)
        return {name: np.concatenate([np.argmax(rest.predict(f[start : start + 2048] * mask, batch_size=256,
                                                             verbose=0), axis=1)
                                      for start in range(0, len(f), 2048)]).astype(np.int64)
                for name, f in cached.items()}

    return predict_masked


def accuracy_drop_points(points: list[SweepPoint], drops: Sequence[float]) -> dict[float, SweepPoint]:
    """For each allowed clean-accuracy drop (percentage points), the point pruning the most channels
    whose clean accuracy is still at least the unpruned accuracy minus that drop.

    This is how the pruning curve is reported: "2% accuracy drop: 75% of channels pruned, ASR 100%".
    Every point counts, not only those before the accuracy first falls too far.
    """
    baseline = next((point for point in points if point.channels_pruned == 0), None)
    if baseline is None:
        raise InputError("the sweep has no point with 0 channels pruned to measure accuracy drops from")
    chosen: dict[float, SweepPoint] = {}
    for drop in drops:
        if not drop >= 0:
            raise InputError(f"accuracy drop {drop:g} must be at least 0")
        # A tiny tolerance so that e.g. 95.0 - 2 does not exclude a point at exactly 93.0.
        floor = baseline.clean_accuracy_pct - drop - 1e-9
        allowed = [point for point in points if point.clean_accuracy_pct >= floor]
        chosen[float(drop)] = max(allowed, key=lambda point: point.channels_pruned)
    return chosen


class HoldChannelsAtZero(tf_keras.callbacks.Callback):
    """Keeps pruned channels of a Conv2D layer at exactly zero while a model trains.

    The optimizer updates every weight; after each batch the pruned channels' kernel slices and
    biases are set back to zero, so they stay removed however long fine-tuning runs.
    """

    def __init__(self, layer_name: str, channels: Sequence[int]) -> None:
        super().__init__()
        self.layer_name = layer_name
        self.channels = np.asarray(channels, dtype=np.int64)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.layer = _conv_layer(self.model, self.layer_name)
        _zero_channels(self.layer, _channel_indices(self.channels, self.layer))

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        _zero_channels(self.layer, self.channels)


def _conv_layer(model: tf_keras.Model, layer_name: str) -> tf_keras.layers.Conv2D:
    """The Conv2D layer `layer_name` of `model`, or InputError naming the layers one could prune."""
    convs = [
        layer.name for layer in model.layers
        if isinstance(layer, tf_keras.layers.Conv2D) and not isinstance(layer, tf_keras.layers.Conv2DTranspose)
    ]
    choices = f"its Conv2D layers: {', '.join(convs) or 'none'}"
    try:
        layer = model.get_layer(layer_name)
    except ValueError:
        raise InputError(f"layer {layer_name!r} is not in the model ({choices})") from None
    if layer.name not in convs:
        raise InputError(f"layer {layer_name!r} is a {type(layer).__name__}, not a Conv2D layer ({choices})")
    return layer


def _channel_indices(channels: Sequence[int], layer: tf_keras.layers.Conv2D) -> np.ndarray:
    """`channels` as an index array, each checked to be an output channel of `layer`."""
    indices = np.asarray(channels, dtype=np.int64).reshape(-1)
    outside = indices[(indices < 0) | (indices >= layer.filters)]
    if outside.size:
        raise InputError(
            f"channel {int(outside[0])} is not in layer {layer.name!r}, which has channels 0..{layer.filters - 1}"
        )
    return indices


def _copy_model(model: tf_keras.Model) -> tf_keras.Model:
    """A copy of `model` with its own weights."""
    copy = tf_keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _zero_channels(layer: tf_keras.layers.Conv2D, indices: np.ndarray) -> None:
    """Zero the kernel slice and bias of the given output channels of `layer`, in place."""
    if len(indices) == 0:
        return
    weights = layer.get_weights()
    weights[0][..., indices] = 0.0  # a Conv2D kernel is (h, w, in, filters) whatever the data format
    if layer.use_bias:
        weights[1][indices] = 0.0
    layer.set_weights(weights)
