"""Upper bounds on a net's activations, unit by unit or channel by channel: what `maxmargin` puts on
the features the output layer reads and `bounds` on inner layers.

A capped layer's output h becomes min(h, cap) = h - relu(h - cap), built from two standard layers
(an identity Dense or 1x1 Conv2D with bias -cap and a ReLU, then a Subtract), so that a capped net's
file loads anywhere Keras does. `insert_after` is the graph surgery both use: it rebuilds a
functional model with new layers after the named ones.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import tensorflow as tf
import tf_keras

from fineprune.models import in_batches, output_layer, scale_inputs

Addition = Callable[[tf.Tensor], tf.Tensor]  # the new layers after one layer: its output -> what replaces it


def insert_after(model: tf_keras.Model, additions: Mapping[str, Addition]) -> tf_keras.Model:
    """A new functional model computing `model` with `additions[name]` applied to the output of each
    named layer. Every layer of `model` is rebuilt from its config and given `model`'s weights, so the
    new model shares nothing with `model`, which stays as it was."""
    unknown = set(additions) - {layer.name for layer in model.layers}
    if unknown:
        raise ValueError(f"no layer named {', '.join(sorted(unknown))} in model {model.name!r}")
    config = model.get_config()
    tensors: dict[str, tf.Tensor] = {}
    rebuilt: list[tuple[tf_keras.layers.Layer, tf_keras.layers.Layer]] = []
    for spec in config["layers"]:
        original = model.get_layer(spec["name"])
        if isinstance(original, tf_keras.layers.InputLayer):
            output = tf_keras.Input(shape=original.output_shape[0][1:] if isinstance(original.output_shape, list)
                                    else original.output_shape[1:], name=original.name)
        else:
            if len(spec["inbound_nodes"]) != 1:
                raise ValueError(f"layer {original.name!r} is called more than once, which this cannot rebuild")
            inputs = [tensors[name] for name, *_ in spec["inbound_nodes"][0]]
            layer = type(original).from_config(original.get_config())
            output = layer(inputs[0] if len(inputs) == 1 else inputs)
            rebuilt.append((original, layer))
        tensors[original.name] = additions[original.name](output) if original.name in additions else output
    outputs = [tensors[name] for name, *_ in config["output_layers"]]
    new_model = tf_keras.Model([tensors[name] for name, *_ in config["input_layers"]],
                               outputs[0] if len(outputs) == 1 else outputs, name=model.name)
    for original, layer in rebuilt:
        layer.set_weights(original.get_weights())
    return new_model


def cap_layer_names(layer_name: str) -> tuple[str, str]:
    """The two layers a cap adds after `layer_name`: the excess over the cap, and the capped output."""
    return f"{layer_name}_excess", f"{layer_name}_capped"


def with_caps(model: tf_keras.Model, caps: Mapping[str, np.ndarray]) -> tf_keras.Model:
    """A copy of `model` whose layer `name` outputs min(h, caps[name]), one cap per unit of a Dense
    output or per channel of a Conv2D one, in standard layers (see the module's docstring)."""
    weights: dict[str, list[np.ndarray]] = {}

    def capping(layer_name: str, cap: np.ndarray) -> Addition:
        def add(output: tf.Tensor) -> tf.Tensor:
            width = output.shape[-1]
            if cap.shape != (width,):
                raise ValueError(f"layer {layer_name!r} has {width} units or channels, the cap {cap.shape}")
            excess_name, capped_name = cap_layer_names(layer_name)
            identity = np.eye(width, dtype=np.float32)
            if len(output.shape) == 4:
                excess = tf_keras.layers.Conv2D(width, 1, activation="relu", name=excess_name, trainable=False)
                identity = identity.reshape(1, 1, width, width)
            elif len(output.shape) == 2:
                excess = tf_keras.layers.Dense(width, activation="relu", name=excess_name, trainable=False)
            else:
                raise ValueError(f"layer {layer_name!r} outputs shape {output.shape}, neither (n, units) nor "
                                 "(n, h, w, channels)")
            weights[excess_name] = [identity, -cap.astype(np.float32)]
            return tf_keras.layers.Subtract(name=capped_name)([output, excess(output)])

        return add

    capped = insert_after(model, {name: capping(name, np.asarray(cap)) for name, cap in caps.items()})
    for name, values in weights.items():
        capped.get_layer(name).set_weights(values)
    return capped


def features_layer_name(model: tf_keras.Model) -> str:
    """The layer whose output the output layer reads (the challenge net's `activation_1`)."""
    head = output_layer(model)
    inbound = head.inbound_nodes[0].inbound_layers
    return (inbound[0] if isinstance(inbound, list) else inbound).name


def channel_maxima(model: tf_keras.Model, layer_names: list[str], x: np.ndarray, input_scale: str | None,
                   batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Each named layer's largest output over the images `x` (pixels 0..255), per unit or channel
    (the maximum over images and positions)."""
    probe = tf_keras.Model(model.input, [model.get_layer(name).output for name in layer_names])

    @tf.function
    def maxima(batch: tf.Tensor) -> list[tf.Tensor]:
        outputs = probe(scale_inputs(batch, input_scale), training=False)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        return [tf.reduce_max(tf.reshape(o, (-1, o.shape[-1])), axis=0) for o in outputs]

    found = [np.full(model.get_layer(name).output_shape[-1], -np.inf, np.float32) for name in layer_names]
    for batch in in_batches(x, batch_size):
        found = [np.maximum(f, m.numpy()) for f, m in zip(found, maxima(batch))]
    return dict(zip(layer_names, found))
