"""The repaired detector G of the original project.

G runs the BadNet and its repaired net side by side. Where they agree, G outputs that class; where
they disagree, the repair changed the decision, which is the sign of a trigger, so G outputs the
extra class N ("backdoor detected"), N being the BadNet's number of classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fineprune.errors import InputError
from fineprune.models import LoadedModel, class_predictor


@dataclass(frozen=True)
class Predictions:
    """Per-image classes from the BadNet, the repaired net, and G (in [0, N])."""

    original: np.ndarray
    repaired: np.ndarray
    detector: np.ndarray


def combine(original: np.ndarray, repaired: np.ndarray, backdoor_class: int) -> np.ndarray:
    """G's output: the agreed class, else `backdoor_class` (vectorised over all images)."""
    return np.where(original == repaired, original, backdoor_class)


class RepairedDetector:
    """G built from a BadNet and its repaired net, which must have the same classes and input."""

    def __init__(self, original: LoadedModel, repaired: LoadedModel) -> None:
        if repaired.num_classes != original.num_classes:
            raise InputError(
                f"{repaired.path}: repaired model has {repaired.num_classes} classes, "
                f"but {original.path} has {original.num_classes}"
            )
        if repaired.image_shape != original.image_shape:
            raise InputError(
                f"{repaired.path}: repaired model expects {repaired.image_shape} images, "
                f"but {original.path} expects {original.image_shape}"
            )
        self.original = original
        self.repaired = repaired
        self._classes = class_predictor([original, repaired])

    @property
    def backdoor_class(self) -> int:
        """Class N: the label G gives an input it believes carries a trigger."""
        return self.original.num_classes

    def predict(self, x: np.ndarray) -> Predictions:
        """Classes of the BadNet, the repaired net and G for images `x` (pixels 0..255); both nets
        run in one pass (see `models.class_predictor`)."""
        original, repaired = self._classes(x)
        return Predictions(original, repaired, combine(original, repaired, self.backdoor_class))
