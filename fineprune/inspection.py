"""Is this net backdoored, which class is the target, what does the trigger look like (inspect_net.py).

From a net and clean data, or from the net alone, with one of four detectors:

- `margin`: MM-BD's maximum-margin test (`fineprune.detection.margins`) over every class, with
  each margin searched within the range the clean data's penultimate features span: it sees how
  the output layer reads the features.
- `input`: the same test on margins searched over the whole input space, as MM-BD's reference
  does (`fineprune.detection.input_margins`): it also sees a backdoor that lives in the features,
  and needs no clean data.
- `both` (the default): a class flagged by either.
- `reversal`: Neural Cleanse's detection (`fineprune.detection.reversal.examine_classes`) proposes suspect
  classes by untargeted stamp searches, reverses a trigger for each and for the ordinary classes,
  and flags the classes whose reversed trigger is anomalously small. The `unlearn` repair runs
  this detection with the same settings.

Where a margin test decides, the verdict needs no trigger reversal; asked for
(`reverse_triggers`, as inspect_net.py does for its figures), the flagged classes are then
reversed as Neural Cleanse would, beside a population of ordinary classes drawn at random, for a
picture of each trigger, its size, its anomaly index and its hit rate (minutes on the benchmark).
Without clean data only the input-space test runs, nothing can be reversed, and the picture of a
flagged class is the image that reached its margin.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from fineprune.data import LabelledImages
from fineprune.errors import InputError
from fineprune.detection.input_margins import InputMarginSettings, scan_input_margins
from fineprune.detection.margins import MarginScan, MarginTestSettings, scan_margins
from fineprune.files import strict_json
from fineprune.models import LoadedModel
from fineprune.progress import Progress, silent
from fineprune.seeding import seeded
from fineprune.settings import option, split_heldout
from fineprune.detection.reversal import (
    ExaminedClass,
    ReversalDetectionSettings,
    ReversalSettings,
    ReversedTrigger,
    examine_classes,
)

DETECTORS = ("margin", "input", "both", "reversal")
MARGIN_DETECTORS = ("margin", "both")  # search the margins over the clean feature range
INPUT_DETECTORS = ("input", "both")  # search them over the input space


@dataclass(frozen=True)
class DetectionSettings(ReversalDetectionSettings, MarginTestSettings, InputMarginSettings):
    """inspect_net.py's settings: which detector decides, and every detector's settings (with a
    margin test deciding, `suspects` is not used: the flagged classes are the ones reversed)."""

    detector: str = option("both", "what decides: margin (MM-BD's maximum-margin test over every class, margins "
                           "searched in the clean feature range), input (the same test, margins searched over the "
                           "whole input space as MM-BD does; needs no clean data), both (a class either flags) or "
                           "reversal (Neural Cleanse's anomaly index of reversed trigger sizes)", "KIND")

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise InputError(f"--detector {self.detector} is not one of {', '.join(DETECTORS)}")
        super().__post_init__()


@dataclass
class Inspection:
    """What the detection found on one net."""

    model: str
    settings: DetectionSettings
    triggers: list[ReversedTrigger]  # one per reversed class, in the order of `examined` (none without clean data,
    # or where the margin tests decide and no reversal was asked for)
    examined: list[ExaminedClass]
    heldout_images: int
    seconds: float
    margins: MarginScan | None = None  # over the clean feature range (margin, both)
    input_margins: MarginScan | None = None  # over the input space (input, both)
    margin_images: dict[int, np.ndarray] = field(default_factory=dict)  # examined class -> image reaching its
    # input-space margin (pixels 0..255)
    reversal_skipped: bool = False  # clean data was there, but no trigger was reversed: the margin tests decide

    @property
    def decided_by_margins(self) -> bool:
        return self.margins is not None or self.input_margins is not None

    @property
    def suspects(self) -> list[ExaminedClass]:
        """The flagged classes, most anomalous first (by their larger margin index where a margin
        test decides)."""
        key = (lambda e: -e.largest_margin_index) if self.decided_by_margins else (lambda e: -e.anomaly_index)
        return sorted((e for e in self.examined if e.flagged), key=key)

    @property
    def classes_examined(self) -> int:
        """How many classes the deciding statistic covers: every class for the margin tests."""
        scan = self.margins if self.margins is not None else self.input_margins
        return len(scan.margins) if scan is not None else len(self.examined)

    @property
    def backdoored(self) -> bool:
        return bool(self.suspects)

    def trigger_of(self, target: int) -> ReversedTrigger:
        return next(t for t in self.triggers if t.target == target)

    def to_json(self) -> dict[str, Any]:
        """The documented JSON layout (percentages 0..100), strict: a value not measured (NaN) is None."""
        def p_values(scan: MarginScan | None) -> dict[int, float]:
            return {f.target: f.p_value for f in scan.flagged} if scan is not None else {}

        feature_p, input_p = p_values(self.margins), p_values(self.input_margins)
        record = {
            "model": self.model,
            "backdoored": self.backdoored,
            "detector": self.settings.detector,
            "suspects": [{"class": e.target, "mask_share_pct": e.mask_share_pct, "anomaly_index": e.anomaly_index,
                          "hit_rate_pct": e.hit_rate_pct,
                          **({"margin": e.margin, "margin_index": e.margin_index,
                              "p_value": feature_p.get(e.target)} if self.margins is not None else {}),
                          **({"input_margin": e.input_margin, "input_margin_index": e.input_margin_index,
                              "input_p_value": input_p.get(e.target)} if self.input_margins is not None else {})}
                         for e in self.suspects],
            "classes_examined": self.classes_examined,
            "classes_reversed": len(self.triggers),
            "seconds": self.seconds,
            "anomaly_threshold": self.settings.anomaly_threshold,
            "heldout_images": self.heldout_images,
            "examined": [asdict(e) for e in self.examined],
            "settings": asdict(self.settings),
        }
        for prefix, scan in (("", self.margins), ("input_", self.input_margins)):
            if scan is not None:
                record[f"{prefix}median_margin"] = scan.median
                passed = scan.largest_unflagged()
                record[f"{prefix}largest_unflagged"] = None if passed is None else {
                    "class": passed.target, "margin": passed.margin, "p_value": passed.p_value}
        return strict_json(record)


def check_clean_data_needed(settings: DetectionSettings, has_clean_data: bool, reverse_triggers: bool) -> None:
    """InputError if the detection asked for needs clean data and has none (inspect_net.py checks
    this before it loads anything)."""
    if has_clean_data:
        return
    if settings.detector not in INPUT_DETECTORS:
        raise InputError(f"--detector {settings.detector} needs clean data: drop --no-clean-data, or use "
                         "--detector input")
    if reverse_triggers:
        raise InputError("--reverse-triggers needs clean data: drop --no-clean-data or --reverse-triggers")


def inspect(net: LoadedModel, clean: LabelledImages | None, settings: DetectionSettings,
            progress: Progress = silent, asked: Sequence[int] = (),
            reverse_triggers: bool = False) -> Inspection:
    """Run the detection on `net` with clean data `clean`, or with none (seeded: the same settings
    repeat a run); the classes `asked` are examined besides the flagged (or proposed) ones.
    Without clean data only the input-space test runs (`detector` input or both).

    Where a margin test decides (`detector` margin, input or both), no trigger is reversed unless
    `reverse_triggers`: then Neural Cleanse's trigger of each flagged and asked class is reversed
    beside `ordinary_classes` drawn at random (their mask size, anomaly index and hit rate, for
    the pictures; it needs clean data, and does not change the verdict). With `detector` reversal
    the reversal is the verdict and always runs."""
    check_clean_data_needed(settings, clean is not None, reverse_triggers)
    with seeded(settings.seed):
        return _inspect(net, clean, settings, progress, asked, reverse_triggers)


def _inspect(net: LoadedModel, clean: LabelledImages | None, settings: DetectionSettings,
             progress: Progress, asked: Sequence[int], reverse_triggers: bool) -> Inspection:
    started = time.perf_counter()
    scan = input_scan = None
    margin_images: dict[int, np.ndarray] = {}
    if clean is not None:
        train, heldout = split_heldout(len(clean), settings.validation_split, settings.seed)
    if settings.detector in INPUT_DETECTORS:
        progress("maximum margin of every class over the input space")
        input_scan, images = scan_input_margins(net, settings, settings.significance, settings.max_targets,
                                                settings.seed, progress)
    if settings.detector in MARGIN_DETECTORS and clean is not None:
        progress("maximum margin of every class over the clean feature range")
        try:
            scan = scan_margins(net, clean.x[train], settings)
        except InputError as error:  # e.g. too few classes for the test: Neural Cleanse may still serve
            raise InputError(f"{error}; --detector reversal does not need it") from None
    proposed = None
    if scan is not None or input_scan is not None:
        proposed = list(dict.fromkeys(f.target for s in (input_scan, scan) if s is not None for f in s.flagged))
    reverse = clean is not None and (proposed is None or reverse_triggers)  # proposed None: reversal decides
    if not reverse:  # the flagged and asked classes, by their margins alone
        nan = float("nan")
        examined = [ExaminedClass(c, c in proposed, nan, False, nan, nan, False, c in asked)
                    for c in dict.fromkeys([*proposed, *asked])]
        triggers = []
        if clean is None:
            heldout = []
    else:
        triggers, examined = examine_classes(
            net.model, net.input_scale, clean.x[train], clean.y[train], clean.x[heldout], clean.y[heldout],
            settings.suspects, settings.ordinary_classes, settings.anomaly_threshold,
            ReversalSettings(steps=settings.reversal_steps), settings.seed, progress, asked, proposed)
    if proposed is not None:  # the margin tests decide; Neural Cleanse's numbers are kept beside them
        measured = [(prefix, source.margins, source.deviations())
                    for prefix, source in (("", scan), ("input_", input_scan)) if source is not None]
        examined = [with_margins(e, e.target in proposed, measured) for e in examined]
    if input_scan is not None:
        margin_images = {e.target: images[e.target] for e in examined}
    return Inspection(str(net.path), settings, triggers, examined, len(heldout), time.perf_counter() - started,
                      scan, input_scan, margin_images, reversal_skipped=clean is not None and not reverse)



def with_margins(examined: ExaminedClass, flagged: bool,
                 measured: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> ExaminedClass:
    """`examined` with the margin tests' verdict and, from each test that ran (its field prefix, every
    class's margin and margin index), its margin and margin index."""
    found: dict[str, float] = {}
    for prefix, margins, indices in measured:
        found[f"{prefix}margin"] = float(margins[examined.target])
        found[f"{prefix}margin_index"] = float(indices[examined.target])
    return replace(examined, flagged=flagged, **found)


def threshold_mask_share_pct(examined: list[ExaminedClass], anomaly_threshold: float) -> float:
    """The mask size (% of the image) below which a class is flagged: the anomaly threshold in the
    units of the mask sizes, for drawing it on their distribution."""
    sizes = np.array([e.mask_share_pct for e in examined])
    indices = np.array([e.anomaly_index for e in examined])
    median = float(np.median(sizes))
    spread = [(median - size) / index for size, index in zip(sizes, indices) if abs(index) > 1e-9]
    return median - anomaly_threshold * (float(np.median(spread)) if spread else 0.0)
