"""Maximum-margin detection over the input space, as MM-BD itself runs it (Wang, Xiang, Miller,
Kesidis, IEEE S&P 2024), no clean data needed.

For every class, gradient ascent from random images in the valid pixel range raises that class's
logit above the largest other; a backdoor's target reaches a far larger margin than an ordinary
class, because the trigger is a small change of the input that lifts its logit whatever the face.
Unlike the search over the clean feature range (`fineprune.detection.margins`), this one goes
through the whole net, so it also sees a backdoor whose triggered features look, to the output
layer, like the target's own clean faces: the features it reaches are whatever the net computes.

MM-BD's reference (10 classes) starts 30 uniform random images per class and takes 300 steps of
SGD (rate 0.01 on pixels in 0..1). With 1283 classes on a CPU that is 11.5 million passes through
the net, so here each class gets `input_starts` random images (1 by default) and `input_steps`
Adam steps (30 by default, rate 0.01): Adam's steps of about the rate per pixel cover the pixel
range in far fewer steps than SGD's. The classes run in batches; the test on the margins is
MM-BD's gamma test, shared with the feature-range search (`flag_classes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tf_keras

from fineprune.detection.margins import MarginScan, ascend_margins, check_enough_classes, flag_classes
from fineprune.models import LoadedModel, layer_model
from fineprune.settings import CheckedSettings, option
from fineprune.progress import Progress, silent


@dataclass(frozen=True)
class InputMarginSettings(CheckedSettings):
    """The search over the input space, as `inspect_net.py` offers it."""

    input_steps: int = option(30, "input-space maximum-margin search: Adam steps on each class's random images",
                              "N", low=1)
    input_rate: float = option(0.01, "input-space search: Adam rate, on pixels scaled to 0..1", "LR", low=0,
                               low_open=True)
    input_starts: int = option(1, "input-space search: random starting images per class (the largest margin "
                               "kept)", "N", low=1)
    class_batch: int = option(256, "input-space search: classes searched at once (memory against speed)", "N",
                              low=1)


def input_margins(net: LoadedModel, settings: InputMarginSettings, seed: int = 0,
                  progress: Progress = silent) -> tuple[np.ndarray, np.ndarray]:
    """Each class's maximum margin (its logit minus the largest other) over images in the valid
    pixel range, and for each class the image that reached it (pixels 0..255, channels last)."""
    head = check_enough_classes(net)
    kernel, bias = (tf.constant(w, tf.float32) for w in head.get_weights())
    features = layer_model(net.model, head.input)
    pixel_scale = 255.0 if net.input_scale == "raw" else 1.0  # the search works on 0..1
    classes, shape = head.units, net.image_shape
    rng = np.random.default_rng(seed)
    margins = np.full(classes, -np.inf, np.float32)
    images = np.zeros((classes, *shape), np.float32)
    for start in range(settings.input_starts):
        for first in range(0, classes, settings.class_batch):
            ids = np.arange(first, min(classes, first + settings.class_batch))
            reached, found = _search(features, kernel, bias, ids, rng.uniform(0.0, 1.0, (len(ids), *shape)),
                                     pixel_scale, settings)
            better = reached > margins[ids]
            margins[ids[better]], images[ids[better]] = reached[better], found[better]
            progress(f"input-space margins: start {start + 1}/{settings.input_starts}, "
                     f"classes {ids[-1] + 1}/{classes}")
    return margins, images * 255.0


def _search(features: tf_keras.Model, kernel: tf.Tensor, bias: tf.Tensor, ids: np.ndarray, start: np.ndarray,
            pixel_scale: float, settings: InputMarginSettings) -> tuple[np.ndarray, np.ndarray]:
    """Adam ascent of each class in `ids`'s margin from its image in `start` (0..1), clipped to 0..1."""
    x = tf.Variable(start.astype(np.float32))
    reached = ascend_margins(x, lambda images: tf.matmul(features(images * pixel_scale, training=False), kernel) + bias,
                             ids, settings.input_rate, 0.0, 1.0, settings.input_steps)
    return reached, x.numpy()


def scan_input_margins(net: LoadedModel, settings: InputMarginSettings, significance: float, max_targets: int,
                       seed: int = 0, progress: Progress = silent
                       ) -> tuple[MarginScan, np.ndarray]:
    """Every class's input-space maximum margin and the classes MM-BD's test flags, with the
    image that reached each class's margin (the picture of a flagged class's trigger)."""
    margins, images = input_margins(net, settings, seed, progress)
    return MarginScan(margins, flag_classes(margins, significance, max_targets)), images
