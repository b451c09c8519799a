"""Challenge data files (HDF5) and face images, read into one in-memory layout.

The CSAW-HackML-2020 files hold `data` shaped (N, 3, 55, 47): channels first, pixel values 0..255,
stored as float64; and `label` shaped (N,). Poisoned files carry the attacker's target as `label`.
Models want channels last, so everything read here comes back as float32 (N, H, W, 3) with the
pixel values untouched (0..255); scaling for a particular model happens in `models`.

The real validation file is 716 MB of float64, so nothing reads a file whole: `open_dataset` checks
a file and reads its labels, then hands out its images chunk by chunk (evaluation streams them in
bounded memory); `load_dataset` collects the chunks straight into one float32 array for the
commands that need all images at once (fine-tuning).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np
from PIL import Image, UnidentifiedImageError

from fineprune.errors import InputError
from fineprune.files import first_line, replacing

CHALLENGE_IMAGE_SHAPE = (55, 47, 3)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PIXEL_MAX = 255.0
_CHUNK_IMAGES = 512
IDENTITY_KEY = "identity"  # optional: the true person in each image of a poisoned file


@dataclass(frozen=True)
class LabelledImages:
    """Images (N, H, W, 3) float32 in 0..255 with integer labels (N,), and where they came from.

    `provenance` holds the file's HDF5 attributes: for the embedded benchmark's files, which
    generator version and seed built them (see `benchmark`); empty for the challenge's files.
    `identities` is the person in each image where the file says so (the benchmark's poisoned
    files, whose `label` is the attacker's target); None for the challenge's files.
    """

    path: Path
    x: np.ndarray
    y: np.ndarray
    provenance: dict[str, Any] = field(default_factory=dict)
    identities: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class DataFile:
    """A challenge HDF5 file checked and opened lazily: its labels, provenance and layout are read
    up front, its images only on request, chunk by chunk (see `image_chunks`), so a file of any
    size can be evaluated in bounded memory. Fields as in `LabelledImages`."""

    path: Path
    y: np.ndarray
    provenance: dict[str, Any]
    identities: np.ndarray | None
    channels_first: bool
    image_shape: tuple[int, int, int]

    def __len__(self) -> int:
        return len(self.y)

    def image_chunks(self, chunk_images: int | None = None) -> Iterator[np.ndarray]:
        """The images in file order as float32 (n, H, W, 3) chunks in 0..255, each checked for its
        pixel range; memory holds one chunk at a time."""
        chunk_images = chunk_images or _CHUNK_IMAGES
        with open_hdf5(self.path) as h5:
            data = _dataset(h5, "data", self.path)
            for start in range(0, len(self), chunk_images):
                yield self._converted(data[start : start + chunk_images])

    def images_at(self, indices: Sequence[int]) -> np.ndarray:
        """The images at `indices` (any order) as float32 (n, H, W, 3) in 0..255."""
        order = np.unique(np.asarray(indices, dtype=np.int64))
        if len(order) == 0:
            return np.empty((0, *self.image_shape), dtype=np.float32)
        with open_hdf5(self.path) as h5:
            images = self._converted(_dataset(h5, "data", self.path)[order])
        return images[np.searchsorted(order, indices)]

    def _converted(self, chunk: np.ndarray) -> np.ndarray:
        images = (chunk.transpose(0, 2, 3, 1) if self.channels_first else chunk).astype(np.float32)
        _check_pixel_range(images, self.path)
        return images


def open_dataset(
    path: str | os.PathLike,
    *,
    image_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
) -> DataFile:
    """Check a challenge HDF5 file's layout and labels and return it for streaming (`DataFile`).

    `image_shape` (H, W, 3), when given, is what the model expects; `num_classes`, when given,
    bounds the labels to [0, num_classes). Accepts `data` as (N, 3, H, W) or (N, H, W, 3),
    float or integer, values 0..255. Raises InputError naming the file on any problem; a bad pixel
    value is found when the images are read.
    """
    path = Path(path)
    with open_hdf5(path) as h5:
        data = _dataset(h5, "data", path)
        labels = _dataset(h5, "label", path)
        channels_first, height, width = _image_layout(data.shape, path, image_shape)
        count = data.shape[0]
        if count == 0:
            raise InputError(f"{path}: the data set is empty (0 images)")
        y = _read_labels(labels, count, path, num_classes)
        identities = _read_labels(_dataset(h5, IDENTITY_KEY, path), count, path, None) if IDENTITY_KEY in h5 else None
        provenance = {key: _plain(value) for key, value in h5.attrs.items()}
    return DataFile(path, y, provenance, identities, channels_first, (height, width, 3))


def load_dataset(
    path: str | os.PathLike,
    *,
    image_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
) -> LabelledImages:
    """Read a whole challenge HDF5 file into memory, checking everything a malformed file could get
    wrong (see `open_dataset`). The images are read chunk by chunk straight into the float32 result."""
    file = open_dataset(path, image_shape=image_shape, num_classes=num_classes)
    x = np.empty((len(file), *file.image_shape), dtype=np.float32)
    start = 0
    for chunk in file.image_chunks():
        x[start : start + len(chunk)] = chunk
        start += len(chunk)
    return LabelledImages(path=file.path, x=x, y=file.y, provenance=file.provenance, identities=file.identities)


def save_dataset(
    path: str | os.PathLike,
    x: np.ndarray,
    y: np.ndarray,
    *,
    dtype: np.typing.DTypeLike = np.float64,
    provenance: dict[str, Any] | None = None,
    identities: np.ndarray | None = None,
) -> None:
    """Write images (N, H, W, 3) and labels in the challenge layout: `data` (N, 3, H, W), `label` (N,).

    `provenance` becomes the file's HDF5 attributes; `identities`, when given, an extra `identity`
    data set (who is in each poisoned image), which readers of the challenge layout ignore. The
    file is written under a temporary name and renamed, so a reader never sees half a file.
    """
    with replacing(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("data", data=np.asarray(x).transpose(0, 3, 1, 2).astype(dtype))
        h5.create_dataset("label", data=np.asarray(y).astype(np.float64))
        if identities is not None:
            h5.create_dataset(IDENTITY_KEY, data=np.asarray(identities).astype(np.float64))
        h5.attrs.update(provenance or {})


def load_images(paths: Sequence[str | os.PathLike], image_shape: Sequence[int]) -> np.ndarray:
    """Read image files (.png/.jpg/.jpeg) as RGB float32 (N, H, W, 3) in 0..255.

    Every image must already have the model's size (H rows x W columns): resizing a face would
    change what the model sees, so a wrong size is an error, not something fixed silently.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    images = []
    for raw_path in paths:
        path = Path(raw_path)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise InputError(f"{path}: cannot read the image ({first_line(error)})") from None
        if pixels.shape[:2] != (height, width):
            raise InputError(
                f"{path}: image is {pixels.shape[1]}x{pixels.shape[0]} (width x height), "
                f"the model expects {width}x{height}"
            )
        images.append(pixels)
    return np.stack(images)


def first_run_hint(path: Path) -> str:
    """For a missing file named like the challenge's data files, how to get it: on a fresh clone
    the embedded benchmark's data is not built yet."""
    if path.name in ("clean_validation_data.h5", "clean_test_data.h5") or path.name.endswith("_poisoned_data.h5"):
        return ("; build the embedded benchmark's data with `make data`, or put the challenge's data files "
                "there (docs/formats.md, \"Using the real challenge files\")")
    return ""


def open_hdf5(path: Path) -> h5py.File:
    """An HDF5 file opened for reading, or InputError saying what is wrong with it (missing, a folder,
    not HDF5, cut short)."""
    if not path.exists():
        raise InputError(f"{path}: no such file{first_run_hint(path)}")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    if not h5py.is_hdf5(path):
        raise InputError(f"{path}: not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        cut = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", str(error))
        if cut:
            raise InputError(f"{path}: the file is cut short ({int(cut[1]):,} of {int(cut[2]):,} bytes); "
                             "copy or download it again") from None
        raise InputError(f"{path}: cannot open the HDF5 file ({first_line(error)})") from None


def _dataset(h5: h5py.File, name: str, path: Path) -> h5py.Dataset:
    item = h5.get(name)
    if not isinstance(item, h5py.Dataset):
        raise InputError(f"{path}: no '{name}' data set in the HDF5 file (it has: {_names(h5)})")
    return item


def _image_layout(
    shape: tuple[int, ...], path: Path, image_shape: Sequence[int] | None
) -> tuple[bool, int, int]:
    """Return (channels_first, height, width) for a `data` shape, or raise InputError."""
    expected = "(N, 3, H, W) or (N, H, W, 3)"
    if len(shape) != 4:
        raise InputError(f"{path}: 'data' has shape {shape}, expected rank 4: {expected}")
    channels_last = shape[3] == 3
    channels_first = shape[1] == 3
    if image_shape is not None and channels_first and channels_last:
        channels_first = tuple(shape[2:]) == tuple(image_shape[:2])
    elif not (channels_first or channels_last):
        raise InputError(f"{path}: 'data' has shape {shape}, expected {expected} (3 colour channels)")
    height, width = (shape[2], shape[3]) if channels_first else (shape[1], shape[2])
    if image_shape is not None and (height, width) != tuple(image_shape[:2]):
        raise InputError(
            f"{path}: images are {height}x{width} (rows x columns), "
            f"the model expects {image_shape[0]}x{image_shape[1]}"
        )
    return channels_first, height, width


def _read_labels(labels: h5py.Dataset, count: int, path: Path, num_classes: int | None) -> np.ndarray:
    values = np.asarray(labels[()])
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise InputError(f"{path}: 'label' has shape {values.shape}, expected ({count},)")
    if len(values) != count:
        raise InputError(f"{path}: {len(values)} labels for {count} images")
    if not np.issubdtype(values.dtype, np.number):
        raise InputError(f"{path}: 'label' holds {values.dtype}, expected numbers")
    if not (np.all(np.isfinite(values)) and np.all(values == np.round(values))):
        raise InputError(f"{path}: 'label' holds values that are not whole numbers")
    y = values.astype(np.int64)
    if num_classes is not None:
        outside = (y < 0) | (y >= num_classes)
        if outside.any():
            raise InputError(
                f"{path}: {int(outside.sum())} labels outside [0, {num_classes}) "
                f"(e.g. {int(y[outside][0])}); the model has {num_classes} classes"
            )
    return y


def _check_pixel_range(x: np.ndarray, path: Path) -> None:
    low, high = float(x.min()), float(x.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise InputError(f"{path}: 'data' holds NaN or infinite values")
    if low < 0 or high > PIXEL_MAX:
        raise InputError(f"{path}: pixel values span {low:g}..{high:g}, expected 0..255")


def _plain(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value (str, int, float or list)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if isinstance(value, np.generic) else value


def _names(h5: h5py.File) -> str:
    return ", ".join(sorted(h5.keys())) or "nothing"


def check_same_data(model_record: dict[str, Any], model: str | Path, data: LabelledImages | DataFile) -> None:
    """Refuse to use data from another generator version or seed than a benchmark BadNet's (`model`
    names it in the message)."""
    expected = model_record.get("data")
    if not expected:
        return  # not a benchmark model: nothing recorded to compare
    found = {key: data.provenance.get(key) for key in expected}
    if found != expected:
        built = (f"built by generator v{found.get('generator_version')} seed {found.get('seed')}"
                 if data.provenance.get("generator") else "not built by the project's generator")
        raise InputError(
            f"{data.path}: {built}, but {model} was trained on generator "
            f"v{expected.get('generator_version')} seed {expected.get('seed')}; rebuild the data with `make data`"
        )
