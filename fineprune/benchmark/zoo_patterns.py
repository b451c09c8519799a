"""The two optimised triggers of the attack zoo, made on a clean net and committed as patterns.

- TrojanNN (Liu et al., NDSS 2018): the attacker picks the neurons of an internal layer most
  connected to the next one (here the two penultimate features with the largest summed |weight| into
  the output layer, as BackdoorBench's TrojanNN picks them), then optimises the trigger's pixels, the
  trigger alone on a black frame, until those neurons reach a high target value (100), by signed
  gradient steps (BackdoorBench's, 1000 of them).
- Low-frequency (Zeng et al., ICCV 2021): a universal perturbation that sends clean faces to the
  target on a clean net, kept smooth by a low-pass filter: the pattern is a Gaussian-filtered
  (`zoo.LOW_FREQUENCY_SIGMA` pixels) image whose values stay within `zoo.LOW_FREQUENCY_BOUND`, so the
  perturbation does too; Adam on the cross-entropy towards the target over the attacker's own images.

Both are optimised once on the clean reference net (`models/clean_net.h5`), a net like the one the
attacker then poisons, and saved in `zoo.PATTERNS_DIR`, so that the data build needs no TensorFlow
and gives the same bytes on every machine.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf
import tf_keras

from fineprune.benchmark import zoo
from fineprune.benchmark.build import DATA_SEED, ZOO_POISONED_SETS, render_split
from fineprune.benchmark.faces import HEIGHT, WIDTH
from fineprune.models import LoadedModel, layer_model

TROJANNN_NEURONS = 2
TROJANNN_TARGET_VALUE = 100.0
TROJANNN_STEPS = 1000
TROJANNN_STEP = 0.01  # of the pixel range, per signed step
LOW_FREQUENCY_STEPS = 300
LOW_FREQUENCY_IMAGES = 2048  # the attacker's own training images the perturbation is fitted on


@dataclass(frozen=True)
class PatternRecord:
    """How a pattern was made: recorded beside it."""

    trigger: str
    made_on: str
    details: dict


def most_connected_features(model: tf_keras.Model, count: int) -> np.ndarray:
    """The `count` penultimate features with the largest summed |weight| into the output layer."""
    kernel = model.layers[-1].get_weights()[0]  # (features, classes)
    return np.argsort(-np.abs(kernel).sum(axis=1))[:count]


def trojannn_pattern(net: LoadedModel) -> tuple[np.ndarray, dict]:
    """TrojanNN's patch (rows x columns x 3, 0..255) for `zoo.TROJANNN_BOX`, and what it reaches."""
    top, bottom, left, right = zoo.TROJANNN_BOX
    neurons = most_connected_features(net.model, TROJANNN_NEURONS)
    features = layer_model(net.model, net.model.layers[-1].input)
    scale = 1.0 if net.input_scale == "unit" else 255.0
    mask = np.zeros((1, HEIGHT, WIDTH, 1), np.float32)
    mask[:, top:bottom, left:right] = 1
    patch = tf.Variable(np.full((1, HEIGHT, WIDTH, 3), 0.5, np.float32))
    wanted = tf.constant(TROJANNN_TARGET_VALUE)

    @tf.function
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            chosen = tf.gather(features(patch * mask * scale, training=False), neurons, axis=1)
            cost = tf.reduce_sum(tf.square(chosen - wanted))
        patch.assign(tf.clip_by_value(patch - TROJANNN_STEP * tf.sign(tape.gradient(cost, patch)), 0.0, 1.0))
        return cost

    for _ in range(TROJANNN_STEPS):
        step()
    reached = tf.gather(features(patch * mask * scale, training=False), neurons, axis=1).numpy()[0]
    pixels = np.rint(patch.numpy()[0, top:bottom, left:right] * 255)
    return pixels.astype(np.float32), {"neurons": neurons.tolist(), "reached": reached.round(2).tolist(),
                                       "target_value": TROJANNN_TARGET_VALUE, "steps": TROJANNN_STEPS}


def gaussian_low_pass(image: tf.Tensor, sigma: float) -> tf.Tensor:
    """`image` (1, H, W, C) filtered by a Gaussian of `sigma` pixels (edges reflected), channel by channel."""
    radius = int(3 * sigma)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    channels = int(image.shape[-1])
    padded = tf.pad(image, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    rows = tf.constant(np.tile(taps[:, None, None, None], (1, 1, channels, 1)))
    cols = tf.constant(np.tile(taps[None, :, None, None], (1, 1, channels, 1)))
    padded = tf.nn.depthwise_conv2d(padded, rows, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(padded, cols, [1, 1, 1, 1], "VALID")


def low_frequency_pattern(net: LoadedModel, images: np.ndarray, target: int) -> tuple[np.ndarray, dict]:
    """The smooth universal perturbation (H, W, 3, pixel units) towards `target`, fitted on
    `images` (0..255), and how many of them it sends to the target on `net`."""
    bound = zoo.LOW_FREQUENCY_BOUND
    raw = tf.Variable(tf.zeros((1, HEIGHT, WIDTH, 3)))
    optimizer = tf_keras.optimizers.Adam(1.0)
    scale = np.float32(255.0 if net.input_scale == "unit" else 1.0)
    batches = [tf.constant(images[i : i + 128], tf.float32) for i in range(0, len(images), 128)]
    labels = tf.fill([128], target)

    def perturbation() -> tf.Tensor:
        return gaussian_low_pass(tf.clip_by_value(raw, -bound, bound), zoo.LOW_FREQUENCY_SIGMA)

    @tf.function
    def step(batch: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            moved = tf.clip_by_value(batch + perturbation(), 0.0, 255.0) / scale
            probabilities = net.model(moved, training=False)
            loss = tf.reduce_mean(tf_keras.losses.sparse_categorical_crossentropy(labels[: tf.shape(batch)[0]],
                                                                                    probabilities))
        optimizer.apply_gradients([(tape.gradient(loss, raw), raw)])
        raw.assign(tf.clip_by_value(raw, -bound, bound))
        return loss

    for index in range(LOW_FREQUENCY_STEPS):
        step(batches[index % len(batches)])
    pattern = perturbation().numpy()[0]
    moved = np.clip(images + pattern, 0, 255)
    sent = float(np.mean(net.predict_classes(moved) == target) * 100)
    return pattern.astype(np.float32), {"target": target, "bound": bound, "sigma": zoo.LOW_FREQUENCY_SIGMA,
                                        "steps": LOW_FREQUENCY_STEPS, "images": len(images),
                                        "sent_to_target_pct_on_clean_net": round(sent, 2)}


def make_patterns(clean_net: LoadedModel, folder: Path = zoo.PATTERNS_DIR, data_seed: int = DATA_SEED,
                  log: Callable[[str], None] = print) -> list[Path]:
    """Optimise both patterns on `clean_net` and save them in `folder` (`<trigger>.npz`)."""
    tf_keras.utils.set_random_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    log("TrojanNN: optimising the patch on the two most connected penultimate features")
    patch, details = trojannn_pattern(clean_net)
    written.append(_save(folder, PatternRecord("trojannn", str(clean_net.path), details), patch, log))
    target = next(p.target for p in ZOO_POISONED_SETS if p.trigger == "low_frequency")
    identity_count = int(clean_net.model.output_shape[-1])
    people = np.random.default_rng([data_seed, 7]).integers(0, identity_count, LOW_FREQUENCY_IMAGES)
    people = people[people != target]
    log(f"low-frequency: fitting the perturbation towards class {target} on {len(people)} of the attacker's images")
    images = render_split("train", people, data_seed, identity_count=identity_count)
    pattern, details = low_frequency_pattern(clean_net, images, target)
    written.append(_save(folder, PatternRecord("low_frequency", str(clean_net.path), details), pattern, log))
    return written


def _save(folder: Path, record: PatternRecord, pattern: np.ndarray, log: Callable[[str], None]) -> Path:
    path = folder / f"{record.trigger}.npz"
    np.savez_compressed(path, pattern=pattern.astype(np.float32), record=json.dumps(asdict(record)))
    log(f"wrote {path}: {record.details}")
    zoo.load_pattern.cache_clear()
    return path
