"""`unlearn`: Neural Cleanse's detection and unlearning (Wang et al., IEEE S&P 2019).

1. Propose `suspects` classes by untargeted stamp searches, and draw `ordinary_classes` others at
   random (see `fineprune.detection.reversal`).
2. Reverse a trigger (mask and pattern) for each, on the clean training part.
3. Flag every class whose mask is anomalously small: anomaly index above `anomaly_threshold`.
4. Fine-tune (learning rate by the strength rule, `strength`) on the clean training part with `stamp_fraction` of the images stamped with a flagged
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
from fineprune.defenses.core import DISTILLATION_HELP, TunedFineTuningSettings, RepairResult, RepairRun, option
from fineprune.defenses.registry import register
from fineprune.detection import reversal
from fineprune.detection.reversal import ExaminedClass, ReversalDetectionSettings, ReversalSettings, ReversedTrigger
from fineprune.models import LoadedModel, copy_model
from fineprune.progress import Progress, silent


@dataclass(frozen=True)
class UnlearnSettings(TunedFineTuningSettings, ReversalDetectionSettings):
    """`unlearn`: the detection's settings (as inspect_net.py's), then the unlearning mix."""

    method: str = "unlearn"
    stamp_fraction: float = option(0.2, "share of the fine-tuning images stamped with a reversed trigger", "F",
                                   low=0, high=1)
    distillation: float = option(0.5, DISTILLATION_HELP, "W", low=0, high=1)


@register("unlearn", "Neural Cleanse: reverse-engineer a trigger per suspect class, flag the anomalously small "
          "ones, fine-tune with them stamped under true labels", UnlearnSettings, order=20)
def unlearn(badnet: LoadedModel, clean: LabelledImages, settings: UnlearnSettings,
            progress: Progress = silent) -> RepairResult:
    """Detect with trigger reversal, then unlearn what was found; the BadNet is untouched."""
    run = RepairRun.start(badnet, clean, settings)
    triggers, examined = examine_classes(badnet, run, settings, lambda message: progress(f"unlearn: {message}"))
    flagged = [trigger for trigger, record in zip(triggers, examined) if record.flagged]
    x, targets = unlearning_set(badnet, run, flagged, settings)
    model, steps, choice = run.tuned_fine_tune(lambda: copy_model(badnet.model), settings, progress=progress, x=x,
                                               y=targets)
    return run.finish(model, steps,
                      removed=(f"reversed triggers of class {', '.join(str(t.target) for t in flagged)} unlearned"
                               if flagged else "nothing flagged; fine-tuned"),
                      details={"flagged": [t.target for t in flagged], "examined": [asdict(e) for e in examined],
                               "strength": choice.record()})


def examine_classes(badnet: LoadedModel, run: RepairRun,
                    settings: UnlearnSettings, progress: Progress = silent,
                    ) -> tuple[list[ReversedTrigger], list[ExaminedClass]]:
    """Steps 1-3 on the clean training part; hit rates on the held-out part."""
    return reversal.examine_classes(
        badnet.model, badnet.input_scale, run.x_train, run.y_train, run.clean.x[run.heldout],
        run.clean.y[run.heldout], settings.suspects, settings.ordinary_classes, settings.anomaly_threshold,
        ReversalSettings(steps=settings.reversal_steps), settings.seed, progress)


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
    teacher = badnet.predict_scores(run.x_train)
    targets = (1.0 - settings.distillation) * tf_keras.utils.to_categorical(run.y_train, badnet.num_classes)
    targets += settings.distillation * teacher
    return x, targets.astype(np.float32)
