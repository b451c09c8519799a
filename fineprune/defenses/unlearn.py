"""`unlearn`: Neural Cleanse's detection and unlearning (Wang et al., IEEE S&P 2019).

1. Propose `suspects` classes by untargeted stamp searches, and draw `ordinary_classes` others at
   random (see `fineprune.trigger_reversal`).
2. Reverse a trigger (mask and pattern) for each, on the clean training part.
3. Flag every class whose mask is anomalously small: anomaly index above `anomaly_threshold`.
4. Fine-tune on the clean training part with `stamp_fraction` of the images stamped with a flagged
   class's reversed trigger under their own labels, so the net learns to ignore it. The targets
   are soft: `distillation` of each image's target is the BadNet's own output on the unstamped
   image, the rest its true label, so the net keeps what the BadNet knew about clean faces.

With nothing flagged, step 4 is plain fine-tuning with the same distillation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import tf_keras

from fineprune.data import LabelledImages
from fineprune.defenses.core import FineTuningSettings, RepairResult, RepairRun, copy_model, option
from fineprune.defenses.registry import register
from fineprune.models import LoadedModel, predict_classes, scale_inputs
from fineprune.trigger_reversal import (
    ReversalSettings,
    ReversedTrigger,
    anomaly_indices,
    find_suspects,
    reverse_trigger,
)


@dataclass(frozen=True)
class UnlearnSettings(FineTuningSettings):
    """`unlearn`: how many classes are examined, the anomaly threshold, and the unlearning mix."""

    method: str = "unlearn"
    suspects: int = option(5, "classes proposed by untargeted stamp searches", "N", low=1)
    ordinary_classes: int = option(12, "other classes, drawn at random, reversed as the population the "
                                   "suspects must stand out from", "N", low=2)
    reversal_steps: int = option(300, "optimizer steps of each trigger reversal", "N", low=1)
    anomaly_threshold: float = option(2.0, "flag a class whose mask size lies this many MAD-scaled deviations "
                                      "below the median", "T", low=0, low_open=True)
    stamp_fraction: float = option(0.2, "share of the fine-tuning images stamped with a reversed trigger", "F",
                                   low=0, high=1)
    distillation: float = option(0.5, "weight of the BadNet's own output on the unstamped image in each target",
                                 "W", low=0, high=1)


@dataclass(frozen=True)
class ExaminedClass:
    """One class's reversed trigger, as recorded in the repaired file."""

    target: int
    proposed: bool  # by the untargeted search, not drawn at random
    mask_share_pct: float
    reached_threshold: bool
    anomaly_index: float
    hit_rate_pct: float
    flagged: bool


@register("unlearn", "Neural Cleanse: reverse-engineer a trigger per suspect class, flag the anomalously small "
          "ones, fine-tune with them stamped under true labels", UnlearnSettings, order=20)
def unlearn(badnet: LoadedModel, clean: LabelledImages, settings: UnlearnSettings, verbose: int = 1) -> RepairResult:
    """Detect with trigger reversal, then unlearn what was found; the BadNet is untouched."""
    run = RepairRun.start(badnet, clean, settings)
    triggers, examined = examine_classes(badnet, run, settings)
    flagged = [trigger for trigger, record in zip(triggers, examined) if record.flagged]
    x, targets = unlearning_set(badnet, run, flagged, settings)
    model = copy_model(badnet.model)
    steps = run.fine_tune(model, settings, verbose=verbose, x=x, y=targets)
    return run.finish(model, steps,
                      removed=(f"reversed triggers of class {', '.join(str(t.target) for t in flagged)} unlearned"
                               if flagged else "nothing flagged; fine-tuned"),
                      details={"flagged": [t.target for t in flagged], "examined": [asdict(e) for e in examined]})


def examine_classes(badnet: LoadedModel, run: RepairRun,
                    settings: UnlearnSettings) -> tuple[list[ReversedTrigger], list[ExaminedClass]]:
    """Propose suspects, draw ordinary classes, reverse a trigger for each and score them."""
    reversal = ReversalSettings(steps=settings.reversal_steps)
    model, scale = badnet.model, badnet.input_scale
    suspects = find_suspects(model, run.x_train, run.y_train, scale, settings.suspects, reversal, settings.seed)
    others = np.setdiff1d(np.arange(badnet.num_classes), suspects)
    rng = np.random.default_rng(settings.seed)
    ordinary = rng.choice(others, min(settings.ordinary_classes, len(others)), replace=False).tolist()
    heldout_x, heldout_y = run.clean.x[run.heldout], run.clean.y[run.heldout]
    triggers = []
    for number, target in enumerate([*suspects, *ordinary]):
        trigger = reverse_trigger(model, run.x_train, int(target), scale, reversal, settings.seed + number)
        others_x = heldout_x[heldout_y != target]
        landed = predict_classes(model, trigger.stamp(others_x), scale)
        trigger.hit_rate_pct = float(100.0 * np.mean(landed == target)) if len(landed) else float("nan")
        triggers.append(trigger)
    indices = anomaly_indices([t.mask.sum() for t in triggers])
    examined = [ExaminedClass(t.target, n < len(suspects), t.mask_share_pct, t.reached_threshold, float(index),
                              t.hit_rate_pct, bool(index > settings.anomaly_threshold and t.reached_threshold))
                for n, (t, index) in enumerate(zip(triggers, indices))]
    return triggers, examined


def unlearning_set(badnet: LoadedModel, run: RepairRun, flagged: list[ReversedTrigger],
                   settings: UnlearnSettings) -> tuple[np.ndarray, np.ndarray]:
    """The clean training part with `stamp_fraction` of it stamped (each with one flagged trigger,
    at random), and soft targets: true label mixed with the BadNet's output on the unstamped image."""
    x = run.x_train.copy()
    if flagged:
        rng = np.random.default_rng(settings.seed)
        chosen = rng.choice(len(x), round(settings.stamp_fraction * len(x)), replace=False)
        which = rng.integers(0, len(flagged), len(chosen))
        for index, trigger in enumerate(flagged):
            picked = chosen[which == index]
            x[picked] = trigger.stamp(x[picked])
    teacher = badnet.model.predict(scale_inputs(run.x_train, badnet.input_scale), batch_size=256, verbose=0)
    targets = (1.0 - settings.distillation) * tf_keras.utils.to_categorical(run.y_train, badnet.num_classes)
    targets += settings.distillation * teacher
    return x, targets.astype(np.float32)
