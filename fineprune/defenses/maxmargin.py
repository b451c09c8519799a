"""`maxmargin`: MM-BD's maximum-margin detection (Wang, Xiang, Miller, Kesidis, IEEE S&P 2024), then a
repair of only what it flags.

1. Detection, by MM-BD's gamma test (repeated down the classes) on two searches of every class's
   maximum margin: within the box the clean training part's penultimate features span
   (`fineprune.detection.margins`: how the output layer reads the features), and over the whole
   input space from random images (`fineprune.detection.input_margins`: MM-BD's own form, which
   also sees a backdoor carried by the features). `detector` both (the default) flags a class
   either test flags.
2. Repair, in the spirit of MM-BD's mitigation (MM-BM), which bounds activations at what clean
   data needs: every penultimate unit is capped at its clean maximum (the net gains two layers
   computing min(feature, cap)), so that no input can drive a unit further than clean faces do;
   and each flagged class's output weights are discarded and fitted again from zero on the clean
   features (softmax regression, every other class's weights kept), so that no reading of the
   features the clean data does not ask for survives.

With `bound_layers`, MM-BD's mitigation itself comes first (the `bounds` method at its defaults on
those layers: per-channel upper bounds learned on clean faces), and steps 1 and 2 run on the bounded
net: the bounds reach a backdoor the features carry, which no re-fit of the output layer can remove.

A flagged class no clean training image belongs to is fitted like the others, and only pushed
down; with nothing flagged only the caps (and bounds) change the net. The repaired file records
every flagged class with the test that flagged it, its margins and test probabilities, and its
feature-range margin after the repair.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import tf_keras

from fineprune.data import LabelledImages
from fineprune.defenses.bounds import ActivationBoundSettings, activation_bounds, check_layers
from fineprune.defenses.caps import features_layer_name, with_caps
from fineprune.defenses.core import RepairResult, RepairRun, RepairSettings, option
from fineprune.defenses.output_fit import WEIGHT_DECAY_HELP, fit_output_weights
from fineprune.defenses.registry import register
from fineprune.detection.input_margins import InputMarginSettings, scan_input_margins
from fineprune.detection.margins import MarginScan, MarginTestSettings, check_enough_classes, max_margins, scan_margins
from fineprune.errors import InputError
from fineprune.models import LoadedModel, output_layer, penultimate_features
from fineprune.progress import Progress, silent

DETECTORS = ("margin", "input", "both")


@dataclass(frozen=True)
class MaxMarginSettings(RepairSettings, MarginTestSettings, InputMarginSettings):
    """`maxmargin`: which margin searches decide, their settings and the test's, then the re-fit of
    the flagged classes."""

    method: str = "maxmargin"
    detector: str = option("both", "which maximum-margin search flags classes: margin (over the clean feature "
                           "range), input (over the whole input space, as MM-BD does) or both (a class either "
                           "flags)", "KIND")
    refit_steps: int = option(400, "full-batch Adam steps re-fitting the flagged classes' output weights", "N",
                              low=1)
    refit_learning_rate: float = option(0.01, "Adam rate of that re-fit", "LR", low=0, low_open=True)
    weight_decay: float = option(1e-4, WEIGHT_DECAY_HELP, "L2", low=0)
    bound_layers: str = option("none", "first learn MM-BD's per-channel activation bounds on these comma-separated "
                               "layers (as --method bounds does at its defaults), then detect and re-fit on the "
                               "bounded net (none: no bounds)", "NAMES")

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise InputError(f"--detector {self.detector} is not one of {', '.join(DETECTORS)}")
        super().__post_init__()
        self.bounds_settings()  # refuses --bound-layers that names no layer

    def bounds_settings(self) -> ActivationBoundSettings | None:
        """The `bounds` settings of the first step, or None without `bound_layers` (empty or "none")."""
        if self.bound_layers.strip().lower() in ("", "none"):
            return None
        settings = ActivationBoundSettings(layers=self.bound_layers, seed=self.seed,
                                           validation_split=self.validation_split)
        settings.layer_names("--bound-layers")
        return settings


@register("maxmargin", "MM-BD: find the classes with an abnormally large maximum margin (over the clean feature "
          "range and over the input space), cap the features at their clean range and re-fit those classes' "
          "output weights", MaxMarginSettings, order=15)
def max_margin_repair(badnet: LoadedModel, clean: LabelledImages, settings: MaxMarginSettings,
                      progress: Progress = silent) -> RepairResult:
    """(Bound the activations,) detect by maximum margin, cap the features, re-fit the flagged
    classes; the BadNet is untouched."""
    kernel, bias = check_enough_classes(badnet).get_weights()  # before any work
    bounds_settings = settings.bounds_settings()
    if bounds_settings is not None:
        check_layers(badnet.model, bounds_settings.layer_names(), "--bound-layers")
    run = RepairRun.start(badnet, clean, settings)
    bounds_details = {}
    if bounds_settings is not None:
        bounded = activation_bounds(badnet, clean, bounds_settings, progress)
        badnet, bounds_details = replace(badnet, model=bounded.model), {"bounds": bounded.details}
    features = penultimate_features(badnet.model, run.x_train, badnet.input_scale)
    scan = scan_margins(badnet, run.x_train, settings, features)  # its box is the caps, whichever test decides
    input_scan = None
    if settings.detector != "margin":
        input_scan, _ = scan_input_margins(badnet, settings, settings.significance, settings.max_targets,
                                           settings.seed, lambda message: progress(f"maxmargin: {message}"))
    flagged = flagged_classes(scan if settings.detector != "input" else None, input_scan)
    found = ", ".join(f"{f['class']} ({f['test']})" for f in flagged) or "none"
    progress(f"maxmargin: median maximum margin {scan.median:.1f}; flagged: {found}")
    columns = np.array([f["class"] for f in flagged], dtype=np.int64)
    if len(columns):
        start_kernel, start_bias = kernel.copy(), bias.copy()
        start_kernel[:, columns], start_bias[columns] = 0.0, np.median(bias)
        kernel, bias = fit_output_weights(features, run.y_train, start_kernel, start_bias,  # all within the caps
                                          settings.refit_steps, settings.refit_learning_rate,
                                          settings.weight_decay, columns=columns, label="maxmargin: re-fit",
                                          progress=progress)
        after = max_margins(kernel, bias, scan.floor, scan.cap, settings.margin_steps)
        for record in flagged:
            record["margin_after"] = round(float(after[record["class"]]), 2)
    model = with_feature_cap(badnet.model, scan.cap)
    output_layer(model).set_weights([kernel, bias])
    removed = (f"output weights of class {', '.join(str(c) for c in columns)} re-fitted; features capped"
               if len(columns) else "nothing flagged; features capped")
    if bounds_settings is not None:
        removed = f"activations of {', '.join(bounds_settings.layer_names())} bounded; {removed}"
    return run.finish(model, settings.refit_steps if len(columns) else 0, removed=removed, details={
        "flagged": [int(c) for c in columns],
        "flagged_classes": flagged,
        "median_margin": round(scan.median, 2),
        **({"input_median_margin": round(input_scan.median, 2)} if input_scan is not None else {}),
        "units_capped_at_zero": int((scan.cap <= 0).sum()),
        **bounds_details,
    })


def flagged_classes(scan: MarginScan | None, input_scan: MarginScan | None) -> list[dict[str, Any]]:
    """Every class either scan flagged (the feature range's first), with the test that flagged it
    ("feature range", "input space" or "both") and each test's margin and probability."""
    found: dict[int, dict[str, Any]] = {}
    for name, key, flags in (("feature range", "", scan), ("input space", "input_", input_scan)):
        for flag in flags.flagged if flags is not None else []:
            record = found.setdefault(flag.target, {"class": flag.target, "test": name})
            if record["test"] != name:
                record["test"] = "both"
            record[f"{key}margin"] = round(flag.margin, 2)
            record[f"{key}p_value"] = float(f"{flag.p_value:.3g}")
    return list(found.values())


def with_feature_cap(model: tf_keras.Model, cap: np.ndarray) -> tf_keras.Model:
    """A copy of `model` with the features entering its output layer capped at `cap`, unit by unit
    (`fineprune.defenses.caps`)."""
    return with_caps(model, {features_layer_name(model): cap})
