"""The challenge architecture, and loading, saving and running Keras models.

Three kinds of model file exist in the wild:
- full HDF5 models (`model_config` in the HDF5 attributes), from Keras 2.2.4 up to tf-keras 2.21;
- weights only (`layer_names`, no `model_config`), as the challenge published its BadNets: the
  architecture is built here and the weights loaded by layer name, with the number of classes
  taken from the output kernel;
- tf-keras's native `.keras` archives (a zip holding config.json and the weights).

Input scaling: some real BadNets expect x/255 ("unit"), others raw 0..255 pixels ("raw"), and
feeding the wrong one silently gives nonsense. Files this tool writes record the scale in JSON
(an HDF5 attribute `METADATA_ATTR`, or the archive entry `METADATA_ENTRY`), together with how
they were made; files from elsewhere default to "unit" unless the user says otherwise.

Prediction: every prediction, feature extraction and input scaling in the package goes through the
functions at the end of this module (`predict_classes`, `predict_scores`, `penultimate_features`,
`layer_outputs`, and `class_predictor` for G's two nets), which run `PREDICT_BATCH` images at a time
through one traced function cached per model, scaling inputs inside the graph (`scale_inputs`).
"""

from __future__ import annotations

import json
import os
import warnings
import weakref
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence

import h5py
import numpy as np
import tensorflow as tf
import tf_keras
from tf_keras import layers

from fineprune.data import CHALLENGE_IMAGE_SHAPE, PIXEL_MAX, open_hdf5
from fineprune.errors import InputError
from fineprune.files import first_line, replacing

InputScale = Literal["unit", "raw"]
INPUT_SCALES: tuple[str, ...] = ("unit", "raw")
DEFAULT_INPUT_SCALE: InputScale = "unit"
CHALLENGE_NUM_CLASSES = 1283
METADATA_ATTR = "fineprune_metadata"  # HDF5 attribute
METADATA_ENTRY = "fineprune_metadata.json"  # entry of a .keras archive
PREDICT_BATCH = 256  # images per traced call, for every prediction the package makes


@dataclass
class LoadedModel:
    """A Keras classifier together with the file it came from and how to feed it."""

    path: Path
    model: tf_keras.Model
    input_scale: InputScale
    input_scale_source: str  # "option", "file" or "default": where input_scale came from
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.model.output_shape[-1])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.model.input_shape[1:])  # type: ignore[return-value]

    def predict_classes(self, x: np.ndarray) -> np.ndarray:
        """Predicted class of each image in `x` (N, H, W, 3), pixel values 0..255."""
        return predict_classes(self.model, x, self.input_scale)

    def predict_scores(self, x: np.ndarray) -> np.ndarray:
        """The model's output (class probabilities) for each image in `x`, pixel values 0..255."""
        return predict_scores(self.model, x, self.input_scale)

    def penultimate_features(self, x: np.ndarray) -> np.ndarray:
        """What enters the output layer for each image in `x`, pixel values 0..255."""
        return penultimate_features(self.model, x, self.input_scale)


def build_challenge_model(
    num_classes: int = CHALLENGE_NUM_CLASSES, image_shape: Sequence[int] = CHALLENGE_IMAGE_SHAPE
) -> tf_keras.Model:
    """The CSAW-HackML-2020 BadNet architecture (DeepID-style), layer names as in the challenge."""
    inputs = layers.Input(tuple(image_shape), name="input")
    x = layers.Conv2D(20, (4, 4), activation="relu", name="conv_1")(inputs)
    x = layers.MaxPooling2D((2, 2), name="pool_1")(x)
    x = layers.Conv2D(40, (3, 3), activation="relu", name="conv_2")(x)
    x = layers.MaxPooling2D((2, 2), name="pool_2")(x)
    x = layers.Conv2D(60, (3, 3), activation="relu", name="conv_3")(x)
    pooled = layers.MaxPooling2D((2, 2), name="pool_3")(x)
    # Two branches from pool_3: a shallow one straight to fc_1, a deeper one through conv_4.
    shallow = layers.Dense(160, name="fc_1")(layers.Flatten(name="flatten_1")(pooled))
    deep = layers.Conv2D(80, (2, 2), activation="relu", name="conv_4")(pooled)
    deep = layers.Dense(160, name="fc_2")(layers.Flatten(name="flatten_2")(deep))
    x = layers.Activation("relu", name="activation_1")(layers.Add(name="add_1")([shallow, deep]))
    outputs = layers.Dense(num_classes, activation="softmax", name="output")(x)
    return tf_keras.Model(inputs, outputs, name="badnet")


def load_model(
    path: str | os.PathLike, input_scale: str | None = None, fallback_scale: str | None = None
) -> LoadedModel:
    """Load a full-model or weights-only .h5 file.

    Input scale: `input_scale` if given, else what the file records, else `fallback_scale` (e.g.
    what the repaired net made from this BadNet records), else unit.
    """
    path = Path(path)
    if _is_keras_archive(path):
        kind = "full"
    elif path.is_file() and not h5py.is_hdf5(path):
        raise InputError(f"{path}: not a Keras model (neither an HDF5 file nor a .keras archive)")
    else:
        with open_hdf5(path) as h5:
            kind = "full" if "model_config" in h5.attrs else "weights" if "layer_names" in h5.attrs else None
    if kind is None:
        raise InputError(f"{path}: not a Keras model (no model_config or layer_names in the HDF5 file)")
    metadata = read_metadata(path)
    try:
        model = _load_full_model(path) if kind == "full" else _load_challenge_weights(path)
    except InputError:
        raise
    except Exception as error:  # Keras raises many types for unreadable models
        raise InputError(f"{path}: cannot load the Keras model ({first_line(error)})") from None
    _check_classifier(model, path)
    scale, source = resolve_input_scale(input_scale, metadata.get("input_scale"), path, fallback_scale)
    return LoadedModel(path, model, scale, source, metadata)


def repaired_model_path(model_path: str | os.PathLike) -> Path:
    """Where prune.py puts the repaired net of `model_path` by default: beside it, stem + `_rp.h5`."""
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.stem}_rp.h5")


def resolve_input_scale(
    option: str | None, recorded: str | None, path: Path, fallback: str | None = None
) -> tuple[InputScale, str]:
    """Pick the input scale: the user's option, else the file's record, else `fallback`, else unit."""
    if option is not None:
        chosen, source = option, "option"
    elif recorded is not None:
        chosen, source = recorded, "file"
    elif fallback is not None:
        chosen, source = fallback, "fallback"
    else:
        chosen, source = DEFAULT_INPUT_SCALE, "default"
    if chosen not in INPUT_SCALES:
        raise InputError(f"{path}: input scale {chosen!r} is not one of {', '.join(INPUT_SCALES)}")
    return chosen, source  # type: ignore[return-value]


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """What this tool recorded in a model file it wrote ({} for files from elsewhere): an attribute
    of an HDF5 file, or an entry of a .keras archive."""
    path = Path(path)
    if _is_keras_archive(path):
        with zipfile.ZipFile(path) as archive:
            raw = archive.read(METADATA_ENTRY) if METADATA_ENTRY in archive.namelist() else None
    else:
        with open_hdf5(path) as h5:
            raw = h5.attrs.get(METADATA_ATTR)
    if raw is None:
        return {}
    try:
        metadata = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path}: the {METADATA_ATTR} attribute is not valid JSON") from None
    return metadata if isinstance(metadata, dict) else {}


def save_model(
    model: tf_keras.Model, path: str | os.PathLike, metadata: dict[str, Any], weights_only: bool = False
) -> None:
    """Save a full model (HDF5, or tf-keras's .keras archive when `path` ends in .keras), or with
    `weights_only` a challenge-style HDF5 weights file, with `metadata` recorded, via a temporary
    file and a rename."""
    record = json.dumps(metadata, sort_keys=True)
    with replacing(path) as tmp, warnings.catch_warnings():
        if Path(path).suffix == ".keras" and not weights_only:
            model.save(tmp)  # the temporary name ends in .keras too, which selects the format
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(METADATA_ENTRY, record)
            return
        # HDF5 is the challenge's format on purpose; Keras's "legacy format" warning is noise here.
        warnings.filterwarnings("ignore", message=".*HDF5 file.*", category=UserWarning)
        if weights_only:
            model.save_weights(tmp, save_format="h5")
        else:
            model.save(tmp, save_format="h5", include_optimizer=False)
        with h5py.File(tmp, "a") as h5:
            h5.attrs[METADATA_ATTR] = record


def output_layer(model: tf_keras.Model) -> tf_keras.layers.Dense:
    """The model's last layer, which must be a Dense layer with a bias: what the methods that read
    or re-fit the output layer (head, maxmargin, fst, anp, inspect_net.py) work on."""
    head = model.layers[-1]
    if not isinstance(head, tf_keras.layers.Dense) or not head.use_bias:
        raise InputError(f"the last layer {head.name!r} is a {type(head).__name__}, not a Dense layer with a bias, "
                         "which this needs")
    return head


def pixel_range(input_scale: str) -> float:
    """The brightest pixel's value as a net of `input_scale` is fed it: 1 for x/255, 255 for raw."""
    return 1.0 if input_scale == "unit" else PIXEL_MAX


def scale_inputs(x: np.ndarray | tf.Tensor, input_scale: str | None) -> np.ndarray | tf.Tensor:
    """Pixels 0..255 as the model expects them: divided by 255 for "unit", unchanged for "raw" (or
    None, for inputs that are not images). Works on arrays and on tensors inside a graph alike."""
    return x / np.float32(PIXEL_MAX) if input_scale == "unit" else x


def in_batches(x: np.ndarray, batch_size: int | None = None) -> Iterator[tf.Tensor]:
    """`x` as float32 tensors of `batch_size` rows (default `PREDICT_BATCH`), converted one batch at
    a time so that no float32 copy of all of `x` (float64 in the challenge files) is ever made."""
    batch_size = batch_size or PREDICT_BATCH
    for start in range(0, len(x), batch_size):
        yield tf.convert_to_tensor(np.asarray(x[start : start + batch_size], np.float32))


_TRACED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {(what, scale): traced function}


def traced_call(model: tf_keras.Model, input_scale: str | None, classes: bool = False) -> Callable:
    """`model` on a batch (scaled by `input_scale` in the graph), or its argmax with `classes`: one
    traced function per model and setting, cached while the model lives. It reads the model's
    variables when called, so it follows a model that is being trained."""
    cache = _TRACED.setdefault(model, {})
    key = (classes, input_scale)
    if key not in cache:
        model_ref = weakref.ref(model)  # the cache must not keep the model alive

        @tf.function(input_signature=[tf.TensorSpec(model.input_shape, tf.float32)])
        def call(batch: tf.Tensor) -> tf.Tensor:
            output = model_ref()(scale_inputs(batch, input_scale), training=False)
            return tf.argmax(output, axis=1) if classes else output

        cache[key] = call
    return cache[key]


def model_outputs(model: tf_keras.Model, x: np.ndarray, input_scale: str | None) -> np.ndarray:
    """`model`'s output for every row of `x`, batch by batch (see `traced_call`)."""
    call = traced_call(model, input_scale)
    parts = [call(batch).numpy() for batch in in_batches(x)]
    return np.concatenate(parts) if parts else np.empty((0, *model.output_shape[1:]), np.float32)


def predict_classes(model: tf_keras.Model, x: np.ndarray, input_scale: str | None) -> np.ndarray:
    """Argmax class of each row of `x` (images with pixels 0..255, or None-scaled inputs)."""
    call = traced_call(model, input_scale, classes=True)
    parts = [call(batch).numpy() for batch in in_batches(x)]
    return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)


def predict_scores(model: tf_keras.Model, x: np.ndarray, input_scale: str | None) -> np.ndarray:
    """The model's output (class probabilities for a classifier) for each image in `x`."""
    return model_outputs(model, x, input_scale)


def class_predictor(models: Sequence[LoadedModel]) -> Callable[[np.ndarray], list[np.ndarray]]:
    """A function giving each image's argmax class under every one of `models` (same input shape),
    for images (n, H, W, 3) in 0..255. All models run in one traced graph per batch, each on its
    own input scale, so G's two nets cost one pass of the data and no per-call Keras overhead."""
    shapes = {model.image_shape for model in models}
    if len(shapes) != 1:
        raise ValueError(f"models expect different image shapes: {sorted(shapes)}")
    (image_shape,) = shapes

    @tf.function(input_signature=[tf.TensorSpec((None, *image_shape), tf.float32)])
    def classes(batch: tf.Tensor) -> list[tf.Tensor]:
        return [tf.argmax(model.model(scale_inputs(batch, model.input_scale), training=False), axis=1)
                for model in models]

    def predict(x: np.ndarray) -> list[np.ndarray]:
        batches = [classes(batch) for batch in in_batches(x)]
        return [np.concatenate([batch[i].numpy() for batch in batches]).astype(np.int64) if batches
                else np.empty(0, np.int64) for i in range(len(models))]

    return predict


def layer_outputs(model: tf_keras.Model, layer_name: str, x: np.ndarray, input_scale: str | None) -> np.ndarray:
    """The output of `model`'s layer `layer_name` for every image in `x` (see `layer_model`)."""
    return model_outputs(layer_model(model, model.get_layer(layer_name).output), x, input_scale)


def penultimate_features(model: tf_keras.Model, x: np.ndarray, input_scale: str | None) -> np.ndarray:
    """What enters the model's last layer (the challenge net's 160 features after add_1 and ReLU)
    for images `x` (pixels 0..255)."""
    return model_outputs(layer_model(model, model.layers[-1].input), x, input_scale)


_SUBMODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {tensor name: sub-model}


def layer_model(model: tf_keras.Model, tensor: tf.Tensor) -> tf_keras.Model:
    """The part of `model` from its input to `tensor` (one of its layers' inputs or outputs), built
    once per model so that its traced function is cached with it."""
    cache = _SUBMODELS.setdefault(model, {})
    if tensor.name not in cache:
        cache[tensor.name] = tf_keras.Model(model.input, tensor)
    return cache[tensor.name]


def _is_keras_archive(path: Path) -> bool:
    """A tf-keras native .keras file: a zip archive holding the model's config.json."""
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return "config.json" in archive.namelist()


def _load_full_model(path: Path) -> tf_keras.Model:
    return tf_keras.models.load_model(path, compile=False)


def _load_challenge_weights(path: Path) -> tf_keras.Model:
    """Build the challenge architecture for a weights-only file and load the weights by name."""
    with h5py.File(path, "r") as h5:
        stored = {name.decode() if isinstance(name, bytes) else str(name) for name in h5.attrs["layer_names"]}
        output_kernel = _find_kernel(h5, "output")
    if output_kernel is None:
        raise InputError(f"{path}: weights file has no 'output' layer kernel, so it is not a challenge BadNet")
    model = build_challenge_model(num_classes=output_kernel[1])
    missing = [layer.name for layer in model.layers if layer.weights and layer.name not in stored]
    if missing:
        raise InputError(
            f"{path}: weights file lacks the challenge layers {', '.join(missing)}; "
            "only challenge-architecture weights can be loaded without a full model"
        )
    model.load_weights(path, by_name=True)
    return model


def _find_kernel(h5: h5py.File, layer_name: str) -> tuple[int, ...] | None:
    """Shape of the 2-D kernel stored for `layer_name`, wherever the Keras version put it."""
    group = h5.get(layer_name)
    if not isinstance(group, h5py.Group):
        return None
    shapes: list[tuple[int, ...]] = []
    group.visititems(
        lambda name, item: shapes.append(item.shape)
        if isinstance(item, h5py.Dataset) and "kernel" in name and item.ndim == 2
        else None
    )
    return shapes[0] if shapes else None


def _check_classifier(model: tf_keras.Model, path: Path) -> None:
    """The tool serves image classifiers: one (H, W, 3) input, one (classes,) output."""
    input_shape, output_shape = model.input_shape, model.output_shape
    if isinstance(input_shape, list) or isinstance(output_shape, list):
        raise InputError(f"{path}: model has several inputs or outputs; expected one image in, one class vector out")
    if len(input_shape) != 4 or input_shape[-1] != 3 or None in input_shape[1:]:
        raise InputError(f"{path}: model input shape {input_shape[1:]} is not an RGB image (H, W, 3)")
    if len(output_shape) != 2 or not output_shape[-1] or output_shape[-1] < 2:
        raise InputError(f"{path}: model output shape {output_shape[1:]} is not a class-score vector")


def copy_model(model: tf_keras.Model) -> tf_keras.Model:
    """A copy of `model` with its own weights, so that a repair leaves the BadNet as it was."""
    copy = tf_keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy
