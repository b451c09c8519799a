"""Convolutional channels: how active each is on clean data, the order Fine-Pruning removes them
in, and removing them (zeroing a channel's kernel slice and bias, so it outputs relu(0) = 0).

Shared by the Fine-Pruning methods, the pruning curve and the benchmark's pruning-aware attack.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from fineprune.errors import InputError
from fineprune.models import copy_model, in_batches, layer_model, scale_inputs


def conv_layer(model: tf_keras.Model, layer_name: str) -> tf_keras.layers.Conv2D:
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


def mean_channel_activations(
    model: tf_keras.Model, layer_name: str, x: np.ndarray, input_scale: str
) -> np.ndarray:
    """Mean output (after the layer's ReLU) of each channel of a Conv2D layer, over images and positions.

    `x` is (N, H, W, 3) with pixels 0..255. Only one batch of the layer's output exists at a time,
    so memory stays bounded however many images there are (11547 for the challenge's validation set).
    """
    layer = conv_layer(model, layer_name)
    if len(x) == 0:
        raise InputError(f"no images to measure the activations of layer {layer_name!r} on")
    features = layer_model(model, layer.output)
    reduce_axes = [0, 1, 2] if layer.data_format == "channels_last" else [0, 2, 3]

    @tf.function(reduce_retracing=True)
    def channel_sums(batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        output = tf.cast(features(scale_inputs(batch, input_scale), training=False), tf.float64)
        return tf.reduce_sum(output, axis=reduce_axes), tf.size(output) // layer.filters

    totals = np.zeros(layer.filters, dtype=np.float64)
    positions = 0
    for batch in in_batches(x):
        sums, count = channel_sums(batch)
        totals += sums.numpy()
        positions += int(count)
    return totals / positions


def pruning_order(activations: np.ndarray) -> np.ndarray:
    """Channel indices from least to most active; ties keep index order (a stable sort)."""
    return np.argsort(np.asarray(activations), kind="stable")


def prune_channels(model: tf_keras.Model, layer_name: str, channels: Sequence[int]) -> tf_keras.Model:
    """A copy of `model` whose Conv2D layer `layer_name` has the given output channels removed.
    `model` itself is left untouched."""
    indices = channel_indices(channels, conv_layer(model, layer_name))
    copy = copy_model(model)
    zero_channels(copy.get_layer(layer_name), indices)
    return copy


def channel_indices(channels: Sequence[int], layer: tf_keras.layers.Conv2D) -> np.ndarray:
    """`channels` as an index array, each checked to be an output channel of `layer`."""
    indices = np.asarray(channels, dtype=np.int64).reshape(-1)
    outside = indices[(indices < 0) | (indices >= layer.filters)]
    if outside.size:
        raise InputError(
            f"channel {int(outside[0])} is not in layer {layer.name!r}, which has channels 0..{layer.filters - 1}"
        )
    return indices


def zero_channels(layer: tf_keras.layers.Layer, indices: np.ndarray) -> None:
    """Zero the kernel slice and bias of the given output channels of a Conv2D layer (or units of
    a Dense layer), in place."""
    if len(indices) == 0:
        return
    weights = layer.get_weights()
    weights[0][..., indices] = 0.0  # the last kernel axis is the output: (h, w, in, filters) or (in, units)
    if layer.use_bias:
        weights[1][indices] = 0.0
    layer.set_weights(weights)


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
        self.layer = conv_layer(self.model, self.layer_name)
        zero_channels(self.layer, channel_indices(self.channels, self.layer))

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        zero_channels(self.layer, self.channels)
