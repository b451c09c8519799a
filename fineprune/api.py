"""The Python API: the commands' work as plain functions, for a notebook or a script of one's own.

    import fineprune

    badnet = fineprune.load_model("models/sunglasses_bd_net.h5")
    repaired = fineprune.repair(badnet, "data/clean_validation_data.h5", method="maxmargin", seed=0)
    repaired.save("models/sunglasses_bd_net_rp.h5")
    numbers = fineprune.evaluate(badnet, repaired, clean="data/clean_test_data.h5",
                                 poisoned=["data/sunglasses_poisoned_data.h5"])

Each function takes a model or data set already loaded, or the path of one, makes the same checks
as the commands (a data file must be what a benchmark BadNet was trained on, settings within their
bounds) and raises the same one-line `InputError`; each returns a plain result object.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import tf_keras

from fineprune import defenses
from fineprune.data import LabelledImages, check_same_data, load_dataset
from fineprune.defenses import RepairResult, RepairSettings
from fineprune.defenses.core import MAX_ACCURACY_DROP, check_accuracy_kept
from fineprune.detector import RepairedDetector
from fineprune.errors import InputError
from fineprune.evaluation import Evaluation, collect_inputs
from fineprune.evaluation import evaluate as evaluate_files
from fineprune.inspection import DetectionSettings, Inspection
from fineprune.inspection import inspect as inspect_net
from fineprune.models import LoadedModel, load_model, save_model
from fineprune.progress import Progress, silent

PathLike = str | os.PathLike
__all__ = ["Evaluation", "InputError", "Inspection", "LabelledImages", "LoadedModel", "RepairedNet", "evaluate",
           "inspect", "load_dataset", "load_model", "repair"]


@dataclass(frozen=True)
class RepairedNet:
    """A repair's outcome: the repaired net (`model`, fed like the BadNet), what the repair measured
    (`result`), and how it was made (`badnet`, `settings`, `clean_data`)."""

    badnet: LoadedModel
    settings: RepairSettings
    result: RepairResult
    clean_data: str

    @property
    def model(self) -> tf_keras.Model:
        return self.result.model

    def loaded(self) -> LoadedModel:
        """The repaired net as a loaded model, on the BadNet's input scale."""
        return LoadedModel(Path(f"{self.badnet.path} [{self.settings.method}]"), self.model, self.badnet.input_scale,
                           "file", self.record())

    def record(self) -> dict[str, Any]:
        """What the saved file records of how the net was made (as prune.py writes it)."""
        return defenses.repair_record(self.badnet, self.clean_data, self.settings, self.result)

    def save(self, path: PathLike, max_accuracy_drop: float = MAX_ACCURACY_DROP) -> Path:
        """Write the repaired net as prune.py does (.h5, or .keras for tf-keras's archive); never over
        the BadNet's own file, and not at all (InputError) if the repair cost more than
        `max_accuracy_drop` points of held-out accuracy."""
        path = Path(path)
        check_accuracy_kept(self.result, self.settings.method, max_accuracy_drop)
        if path.exists() and path.resolve() == self.badnet.path.resolve():
            raise InputError(f"{path}: saving the repaired net there would overwrite the BadNet")
        save_model(self.model, path, self.record())
        return path


def repair(badnet: LoadedModel | PathLike, clean: LabelledImages | PathLike, method: str = "magnitude",
           seed: int = 0, progress: Progress | None = None, **settings: Any) -> RepairedNet:
    """Repair `badnet` with clean data by `method` (one of `defenses.names()`; default the original
    recipe), its settings' defaults overridden by `settings` (the names of prune.py's options, with
    underscores; one that does not apply to the method is refused). `progress`, if given, is called with a
    line now and then (e.g. `print`). `badnet` itself is left untouched."""
    badnet = _model(badnet)
    clean_data = str(getattr(clean, "path", clean))
    clean = _clean_data(clean, badnet)
    chosen = defenses.settings_for(method, seed=seed, **settings)
    return RepairedNet(badnet, chosen, defenses.repair(badnet, clean, chosen, progress or silent), clean_data)


def evaluate(badnet: LoadedModel | PathLike, repaired: RepairedNet | LoadedModel | PathLike,
             clean: PathLike | None = None, poisoned: Sequence[PathLike] = ()) -> Evaluation:
    """What eval.py reports for the detector G made of `badnet` and `repaired`: clean accuracy on the
    `clean` file and attack success on each `poisoned` file (or folder of them, or face images)."""
    badnet = _model(badnet)
    if isinstance(repaired, RepairedNet):
        repaired = repaired.loaded()
    elif not isinstance(repaired, LoadedModel):
        repaired = load_model(repaired, fallback_scale=badnet.input_scale)
    h5_files, images = collect_inputs(list(poisoned)) if poisoned else ([], [])
    return evaluate_files(RepairedDetector(badnet, repaired), h5_files, None if clean is None else Path(clean), images)


def inspect(net: LoadedModel | PathLike, clean: LabelledImages | PathLike | None, seed: int = 0,
            reverse_triggers: bool = False, **settings: Any) -> Inspection:
    """Is `net` backdoored, which classes are its targets, what do the triggers look like: what
    inspect_net.py finds from clean data (or, with `clean` None, from the net alone), its settings'
    defaults overridden by `settings`. Where a margin test decides (the default), no trigger is
    reversed unless `reverse_triggers` (it needs clean data, takes minutes on the benchmark and does
    not change the verdict): then `.triggers` holds Neural Cleanse's reversed trigger of each
    flagged class beside `ordinary_classes` drawn at random, and `.examined` their mask sizes,
    anomaly indices and hit rates, as inspect_net.py --reverse-triggers. With
    `detector="reversal"` the reversal is the verdict and always runs."""
    net = _model(net)
    known = {field.name for field in dataclasses.fields(DetectionSettings)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise InputError(f"inspect has no setting {unknown[0]} (its settings: {', '.join(sorted(known - {'seed'}))})")
    return inspect_net(net, None if clean is None else _clean_data(clean, net),
                       DetectionSettings(**settings, seed=seed), reverse_triggers=reverse_triggers)


def _model(model: LoadedModel | PathLike) -> LoadedModel:
    return model if isinstance(model, LoadedModel) else load_model(model)


def _clean_data(clean: LabelledImages | PathLike, model: LoadedModel) -> LabelledImages:
    """Clean data for `model`, loaded if a path, checked to be what a benchmark BadNet was made for."""
    if not isinstance(clean, LabelledImages):
        clean = load_dataset(clean, image_shape=model.image_shape, num_classes=model.num_classes)
    check_same_data(model.metadata, model.path, clean)
    return clean
