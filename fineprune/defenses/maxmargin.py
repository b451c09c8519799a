"""`maxmargin`: MM-BD's maximum-margin detection (Wang, Xiang, Miller, Kesidis, IEEE S&P 2024),
computed on the features the output layer reads (`fineprune.detection.margins`), then a repair of only
what it flags.

1. Every class's maximum margin within the box the clean training part's penultimate features
   span; classes flagged by MM-BD's gamma test, repeated down the classes (see `fineprune.detection.margins`).
2. Repair, in the spirit of MM-BD's mitigation (MM-BM), which bounds activations at what clean
   data needs: every penultimate unit is capped at its clean maximum (the net gains two layers
   computing min(feature, cap)), so that no input can drive a unit further than clean faces do;
   and each flagged class's output weights are discarded and fitted again from zero on the clean
   features (softmax regression, every other class's weights kept), so that no reading of the
   features the clean data does not ask for survives.

A flagged class no clean training image belongs to is fitted like the others, and only pushed
down; with nothing flagged only the caps change the net. The repaired file records every flagged
class with its margin and test probability, and its margin after the repair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tf_keras

from fineprune.data import LabelledImages
from fineprune.defenses.caps import features_layer_name, with_caps
from fineprune.defenses.core import RepairResult, RepairRun, RepairSettings, option
from fineprune.defenses.output_fit import WEIGHT_DECAY_HELP, fit_output_weights
from fineprune.defenses.registry import register
from fineprune.detection.margins import FlaggedClass, MarginTestSettings, check_enough_classes, max_margins, scan_margins
from fineprune.models import LoadedModel, output_layer, penultimate_features

@dataclass(frozen=True)
class MaxMarginSettings(RepairSettings, MarginTestSettings):
    """`maxmargin`: the margin search and test, then the re-fit of the flagged classes."""

    method: str = "maxmargin"
    refit_steps: int = option(400, "full-batch Adam steps re-fitting the flagged classes' output weights", "N",
                              low=1)
    refit_learning_rate: float = option(0.01, "Adam rate of that re-fit", "LR", low=0, low_open=True)
    weight_decay: float = option(1e-4, WEIGHT_DECAY_HELP, "L2", low=0)


@register("maxmargin", "MM-BD: find the classes with an abnormally large maximum margin over the clean feature "
          "range, cap the features at that range and re-fit those classes' output weights", MaxMarginSettings,
          order=15)
def max_margin_repair(badnet: LoadedModel, clean: LabelledImages, settings: MaxMarginSettings,
                      verbose: int = 1) -> RepairResult:
    """Detect by maximum margin, cap the features, re-fit the flagged classes; the BadNet is untouched."""
    kernel, bias = check_enough_classes(badnet).get_weights()  # before any work
    run = RepairRun.start(badnet, clean, settings)
    features = penultimate_features(badnet.model, run.x_train, badnet.input_scale)
    scan = scan_margins(badnet, run.x_train, settings, features)
    flagged, median = scan.flagged, scan.median
    if verbose:
        found = ", ".join(f"{f.target} (margin {f.margin:.1f}, p {f.p_value:.2g})" for f in flagged) or "none"
        print(f"maxmargin: median maximum margin {median:.1f}; flagged: {found}", flush=True)
    columns = np.array([f.target for f in flagged], dtype=np.int64)
    if len(columns):
        start_kernel, start_bias = kernel.copy(), bias.copy()
        start_kernel[:, columns], start_bias[columns] = 0.0, np.median(bias)
        kernel, bias = fit_output_weights(features, run.y_train, start_kernel, start_bias,  # all within the caps
                                          settings.refit_steps, settings.refit_learning_rate,
                                          settings.weight_decay, columns=columns, progress="maxmargin: re-fit",
                                          verbose=verbose)
        after = max_margins(kernel, bias, scan.floor, scan.cap, settings.margin_steps)
        flagged = [FlaggedClass(f.target, f.margin, f.p_value, float(after[f.target])) for f in flagged]
    model = with_feature_cap(badnet.model, scan.cap)
    output_layer(model).set_weights([kernel, bias])
    removed = (f"output weights of class {', '.join(str(c) for c in columns)} re-fitted; features capped"
               if len(columns) else "nothing flagged; features capped")
    return run.finish(model, settings.refit_steps if len(columns) else 0, removed=removed, details={
        "flagged": [f.target for f in flagged],
        "flagged_classes": [{"class": f.target, "margin": round(f.margin, 2), "p_value": float(f"{f.p_value:.3g}"),
                             "margin_after": round(f.margin_after, 2)} for f in flagged],
        "median_margin": round(median, 2),
        "units_capped_at_zero": int((scan.cap <= 0).sum()),
    })


def with_feature_cap(model: tf_keras.Model, cap: np.ndarray) -> tf_keras.Model:
    """A copy of `model` with the features entering its output layer capped at `cap`, unit by unit
    (`fineprune.defenses.caps`)."""
    return with_caps(model, {features_layer_name(model): cap})
