"""The pruning curve of Fine-Pruning (Liu, Dolan-Gavitt, Garg, RAID 2018): clean accuracy and attack
success after removing a layer's channels one by one, least active on clean data first.

`pruning_sweep` measures every step of that order; `accuracy_drop_points` reads off how far one
can prune for a given loss of clean accuracy ("2% accuracy drop: 75% of channels pruned, ASR
100%"). It reads poisoned data, so it is an analysis of a BadNet, not a repair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import tf_keras

from fineprune.data import LabelledImages
from fineprune.defenses.channels import conv_layer, mean_channel_activations, pruning_order, zero_channels
from fineprune.errors import InputError
from fineprune.metrics import accuracy_pct, attack_success_pct
from fineprune.models import LoadedModel, copy_model, layer_outputs, predict_classes


@dataclass(frozen=True)
class SweepPoint:
    """The pruned net's numbers after removing the `channels_pruned` least active channels."""

    channels_pruned: int
    fraction_pruned: float  # channels_pruned / channels in the layer
    clean_accuracy_pct: float
    attack_success_pct: dict[str, float]  # per poisoned set name


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
    layer = conv_layer(badnet.model, layer_name)
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
    model, layer = badnet.model, conv_layer(badnet.model, layer_name)
    try:
        rest = tf_keras.Model(layer.output, model.output)
    except ValueError:  # a path bypasses the layer (conv_4 in the challenge net)
        pruned = copy_model(model)

        def predict_zeroed(removed: np.ndarray) -> dict[str, np.ndarray]:
            zero_channels(pruned.get_layer(layer_name), removed)
            return {name: predict_classes(pruned, x, badnet.input_scale) for name, x in images.items()}

        return predict_zeroed

    cached = {name: layer_outputs(model, layer_name, x, badnet.input_scale) for name, x in images.items()}
    shape = (-1, 1, 1) if layer.data_format == "channels_first" else (-1,)

    def predict_masked(removed: np.ndarray) -> dict[str, np.ndarray]:
        mask = np.ones(layer.filters, np.float32)
        mask[np.asarray(removed, dtype=np.int64)] = 0.0
        mask = mask.reshape(shape)
        return {name: predict_classes(rest, f * mask, None) for name, f in cached.items()}

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
