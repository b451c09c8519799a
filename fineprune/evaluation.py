"""Evaluating a repair: run the BadNet, its repaired net and G on clean data, poisoned data, images.

The numbers are the original project's (clean accuracy and attack success rate, original vs
repaired detector G), plus the repaired net alone and the share of poisoned inputs G flags.
On request it also keeps a few examples of what G gets wrong, for the gallery in `plots`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from fineprune import metrics
from fineprune.data import IMAGE_SUFFIXES, DataFile, check_same_data, first_run_hint, load_images, open_dataset
from fineprune.detector import Predictions, RepairedDetector
from fineprune.errors import InputError
from fineprune.progress import Progress, silent

POISONED_SUFFIX = "_poisoned_data"


@dataclass(frozen=True)
class CleanResult:
    file: str
    images: int
    accuracy_original_pct: float
    accuracy_repaired_net_pct: float
    accuracy_detector_pct: float


@dataclass(frozen=True)
class PoisonedResult:
    file: str
    name: str  # the row's BadNet/trigger label, e.g. "sunglasses" or "Multi-trigger Multi-target/eyebrows"
    images: int
    target: int
    asr_original_pct: float
    asr_repaired_net_pct: float
    asr_detector_pct: float
    detected_pct: float


@dataclass(frozen=True)
class ImageResult:
    file: str
    detector: int  # G's class in [0, N]
    original: int
    repaired: int


@dataclass(frozen=True)
class Mistake:
    """One input G got wrong: a clean face misclassified or flagged, or a poisoned face let through."""

    image: np.ndarray  # (H, W, 3), pixels 0..255
    data: str  # "clean", or the poisoned set's row label
    kind: str  # "misclassified" or "flagged" (clean data), "got through" (poisoned data)
    true_label: int | None  # the person shown; None where a poisoned file does not record it
    original: int  # the BadNet's class
    detector: int  # G's class, N meaning "backdoor detected"


STREAM_CHUNK_IMAGES = 512  # images read and run at a time: 512 float64 challenge images are 32 MB
MISTAKES_PER_KIND = 6  # examples of each kind per data file in a gallery


@dataclass
class Evaluation:
    model: str
    repaired_model: str
    num_classes: int
    input_scale: str
    clean: CleanResult | None = None
    poisoned: list[PoisonedResult] = field(default_factory=list)
    images: list[ImageResult] = field(default_factory=list)
    mistakes: list[Mistake] = field(default_factory=list)  # examples only; not part of the JSON

    def to_json(self) -> dict[str, Any]:
        """The documented JSON layout (percentages 0..100)."""
        return {
            "model": self.model,
            "repaired_model": self.repaired_model,
            "num_classes": self.num_classes,
            "input_scale": self.input_scale,
            "clean": asdict(self.clean) if self.clean else None,
            "poisoned": [asdict(row) for row in self.poisoned],
            "images": [
                {"file": row.file, "class": row.detector, "original": row.original, "repaired": row.repaired}
                for row in self.images
            ],
        }


class PoisonedFile(NamedTuple):
    """A poisoned data file and its row label in the results table."""

    path: Path
    name: str


def collect_inputs(paths: Sequence[str | os.PathLike]) -> tuple[list[PoisonedFile], list[Path]]:
    """Split DATA arguments into (poisoned .h5 files, image files); a folder gives its .h5 files.

    A file's row label is its stem without `_poisoned_data`; files found in a folder keep the
    folder's name in front, e.g. "Multi-trigger Multi-target/eyebrows".
    """
    h5_files: list[PoisonedFile] = []
    images: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder{first_run_hint(path)}")
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() == ".h5" and p.is_file())
            if not found:
                raise InputError(f"{path}: folder holds no .h5 data files")
            h5_files.extend(PoisonedFile(p, f"{path.name}/{poisoned_name(p)}") for p in found)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            images.append(path)
        elif path.suffix.lower() in (".h5", ".hdf5"):
            h5_files.append(PoisonedFile(path, poisoned_name(path)))
        else:
            raise InputError(f"{path}: not a data file (.h5), a folder of them, or an image (.png/.jpg/.jpeg)")
    if h5_files and images:
        raise InputError(f"{images[0]}: give either .h5 data or images in one run, not both")
    return h5_files, images


def poisoned_name(path: str | os.PathLike) -> str:
    """The trigger's name in a poisoned file's name: `sunglasses_poisoned_data.h5` -> `sunglasses`."""
    return Path(path).stem.removesuffix(POISONED_SUFFIX)


def evaluate(
    detector: RepairedDetector,
    poisoned_files: Sequence[PoisonedFile],
    clean_file: Path | None,
    image_files: Sequence[Path],
    progress: Progress = silent,
    mistakes_per_kind: int = 0,
) -> Evaluation:
    """Every number eval.py reports, for the given inputs; with `mistakes_per_kind` > 0, also up to
    that many examples of each kind of mistake G makes on each data file."""
    original = detector.original
    result = Evaluation(
        model=str(original.path),
        repaired_model=str(detector.repaired.path),
        num_classes=original.num_classes,
        input_scale=original.input_scale,
    )

    def read(path: Path) -> DataFile:
        data = open_dataset(path, image_shape=original.image_shape, num_classes=original.num_classes)
        check_same_data(original.metadata, original.path, data)
        return data

    # Every file's layout and labels are checked before any image is run.
    clean = read(clean_file) if clean_file is not None else None
    poisoned_data = [read(path) for path, _ in poisoned_files]
    if clean is not None:
        progress(f"evaluating clean data {clean_file} ({len(clean)} images)")
        predicted = _predict_streaming(detector, clean)
        result.clean = CleanResult(
            file=str(clean_file),
            images=len(clean),
            accuracy_original_pct=metrics.accuracy_pct(predicted.original, clean.y),
            accuracy_repaired_net_pct=metrics.accuracy_pct(predicted.repaired, clean.y),
            accuracy_detector_pct=metrics.accuracy_pct(predicted.detector, clean.y),
        )
        flagged = predicted.detector == detector.backdoor_class
        wrong = {"misclassified": (predicted.detector != clean.y) & ~flagged, "flagged": flagged}
        for kind, where in wrong.items():
            result.mistakes += _examples(clean, predicted, "clean", kind, where, clean.y, mistakes_per_kind)
    for (path, name), poisoned in zip(poisoned_files, poisoned_data):
        progress(f"evaluating poisoned data {path} ({len(poisoned)} images)")
        predicted = _predict_streaming(detector, poisoned)
        result.poisoned.append(PoisonedResult(
            file=str(path),
            name=name,
            images=len(poisoned),
            target=metrics.most_common_label(poisoned.y),
            asr_original_pct=metrics.attack_success_pct(predicted.original, poisoned.y),
            asr_repaired_net_pct=metrics.attack_success_pct(predicted.repaired, poisoned.y),
            asr_detector_pct=metrics.attack_success_pct(predicted.detector, poisoned.y),
            detected_pct=metrics.detected_pct(predicted.detector, detector.backdoor_class),
        ))
        result.mistakes += _examples(poisoned, predicted, name, "got through", predicted.detector == poisoned.y,
                                     poisoned.identities, mistakes_per_kind)
    if image_files:
        predicted = detector.predict(load_images(image_files, original.image_shape))
        result.images = [
            ImageResult(str(path), int(g), int(o), int(r))
            for path, g, o, r in zip(image_files, predicted.detector, predicted.original, predicted.repaired)
        ]
    return result


def _predict_streaming(detector: RepairedDetector, data: DataFile) -> Predictions:
    """G's predictions for every image of `data`, read and run chunk by chunk: memory holds one
    chunk of images and the labels, whatever the file's size."""
    parts = [detector.predict(chunk) for chunk in data.image_chunks(STREAM_CHUNK_IMAGES)]
    return Predictions(*(np.concatenate([getattr(part, name) for part in parts])
                         for name in ("original", "repaired", "detector")))


def _examples(data: DataFile, predicted: Predictions, name: str, kind: str, where: np.ndarray,
              true_labels: np.ndarray | None, count: int) -> list[Mistake]:
    """Up to `count` of the images where `where` holds, spread evenly through the file (which is
    ordered by person, so the examples show different people)."""
    indices = np.flatnonzero(where)
    if count < 1 or len(indices) == 0:
        return []
    if len(indices) > count:
        indices = indices[np.linspace(0, len(indices) - 1, count).round().astype(int)]
    images = data.images_at(indices)
    return [
        Mistake(image, name, kind, None if true_labels is None else int(true_labels[i]),
                int(predicted.original[i]), int(predicted.detector[i]))
        for i, image in zip(indices, images)
    ]
