"""Is this net backdoored, which class is the target, what does the trigger look like (inspect_net.py).

From a net and clean data alone, with one of two detectors:

- `margin` (the default): MM-BD's maximum-margin test (`fineprune.detection.margins`) over every class
  decides; the flagged classes are then reversed as Neural Cleanse would, beside a population of
  ordinary classes drawn at random, for a picture of each trigger, its size, its anomaly index
  and its hit rate.
- `reversal`: Neural Cleanse's detection (`fineprune.detection.reversal.examine_classes`) proposes suspect
  classes by untargeted stamp searches, reverses a trigger for each and for the ordinary classes,
  and flags the classes whose reversed trigger is anomalously small. The `unlearn` repair runs
  this detection with the same settings.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np

from fineprune.data import LabelledImages
from fineprune.errors import InputError
from fineprune.detection.margins import MarginScan, MarginTestSettings, scan_margins
from fineprune.models import LoadedModel
from fineprune.seeding import seeded
from fineprune.settings import option, split_heldout
from fineprune.detection.reversal import (
    ExaminedClass,
    ReversalDetectionSettings,
    ReversalSettings,
    ReversedTrigger,
    examine_classes,
)

DETECTORS = ("margin", "reversal")


@dataclass(frozen=True)
class DetectionSettings(ReversalDetectionSettings, MarginTestSettings):
    """inspect_net.py's settings: which detector decides, and both detectors' settings (with the
    `margin` detector, `suspects` is not used: the flagged classes are the ones reversed)."""

    detector: str = option("margin", "what decides: margin (MM-BD's maximum-margin test over every class, on the "
                           "clean feature range) or reversal (Neural Cleanse's anomaly index of reversed trigger "
                           "sizes)", "KIND")

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise InputError(f"--detector {self.detector} is not one of {', '.join(DETECTORS)}")
        super().__post_init__()


@dataclass
class Inspection:
    """What the detection found on one net."""

    model: str
    settings: DetectionSettings
    triggers: list[ReversedTrigger]  # one per examined class, in the order of `examined`
    examined: list[ExaminedClass]
    heldout_images: int
    seconds: float
    margins: MarginScan | None = None  # with the margin detector

    @property
    def suspects(self) -> list[ExaminedClass]:
        """The flagged classes, most anomalous first (by margin with the margin detector)."""
        key = (lambda e: -e.margin) if self.margins is not None else (lambda e: -e.anomaly_index)
        return sorted((e for e in self.examined if e.flagged), key=key)

    @property
    def classes_examined(self) -> int:
        """How many classes the deciding statistic covers: every class for the margin detector."""
        return len(self.margins.margins) if self.margins is not None else len(self.examined)

    @property
    def backdoored(self) -> bool:
        return bool(self.suspects)

    def trigger_of(self, target: int) -> ReversedTrigger:
        return next(t for t in self.triggers if t.target == target)

    def to_json(self) -> dict[str, Any]:
        """The documented JSON layout (percentages 0..100)."""
        p_values = {f.target: f.p_value for f in self.margins.flagged} if self.margins is not None else {}
        record = {
            "model": self.model,
            "backdoored": self.backdoored,
            "detector": self.settings.detector,
            "suspects": [{"class": e.target, "mask_share_pct": e.mask_share_pct, "anomaly_index": e.anomaly_index,
                          "hit_rate_pct": e.hit_rate_pct,
                          **({"margin": e.margin, "margin_index": e.margin_index, "p_value": p_values[e.target]}
                             if self.margins is not None else {})}
                         for e in self.suspects],
            "classes_examined": self.classes_examined,
            "classes_reversed": len(self.examined),
            "seconds": self.seconds,
            "anomaly_threshold": self.settings.anomaly_threshold,
            "heldout_images": self.heldout_images,
            "examined": [asdict(e) for e in self.examined],
            "settings": asdict(self.settings),
        }
        if self.margins is not None:
            record["median_margin"] = self.margins.median
            passed = self.margins.largest_unflagged()
            record["largest_unflagged"] = None if passed is None else {
                "class": passed.target, "margin": passed.margin, "p_value": passed.p_value}
        return record


def inspect(net: LoadedModel, clean: LabelledImages, settings: DetectionSettings,
            progress: Callable[[str], None] = lambda message: None, asked: Sequence[int] = ()) -> Inspection:
    """Run the detection on `net` with clean data `clean` (seeded: the same settings repeat a run);
    the classes `asked` are examined besides the proposed and the ordinary ones."""
    with seeded(settings.seed):
        return _inspect(net, clean, settings, progress, asked)


def _inspect(net: LoadedModel, clean: LabelledImages, settings: DetectionSettings,
             progress: Callable[[str], None], asked: Sequence[int]) -> Inspection:
    started = time.perf_counter()
    train, heldout = split_heldout(len(clean), settings.validation_split, settings.seed)
    scan, proposed = None, None
    if settings.detector == "margin":
        progress("maximum margin of every class over the clean feature range")
        try:
            scan = scan_margins(net, clean.x[train], settings)
        except InputError as error:  # e.g. too few classes for the test: Neural Cleanse may still serve
            raise InputError(f"{error}; --detector reversal does not need it") from None
        proposed = [f.target for f in scan.flagged]
    triggers, examined = examine_classes(
        net.model, net.input_scale, clean.x[train], clean.y[train], clean.x[heldout], clean.y[heldout],
        settings.suspects, settings.ordinary_classes, settings.anomaly_threshold,
        ReversalSettings(steps=settings.reversal_steps), settings.seed, progress, asked, proposed)
    if scan is not None:  # the margin test decides; Neural Cleanse's numbers are kept beside it
        deviations = scan.deviations()
        examined = [replace(e, flagged=e.target in proposed, margin=float(scan.margins[e.target]),
                            margin_index=float(deviations[e.target])) for e in examined]
    return Inspection(str(net.path), settings, triggers, examined, len(heldout), time.perf_counter() - started,
                      scan)


def threshold_mask_share_pct(examined: list[ExaminedClass], anomaly_threshold: float) -> float:
    """The mask size (% of the image) below which a class is flagged: the anomaly threshold in the
    units of the mask sizes, for drawing it on their distribution."""
    sizes = np.array([e.mask_share_pct for e in examined])
    indices = np.array([e.anomaly_index for e in examined])
    median = float(np.median(sizes))
    spread = [(median - size) / index for size, index in zip(sizes, indices) if abs(index) > 1e-9]
    return median - anomaly_threshold * (float(np.median(spread)) if spread else 0.0)
