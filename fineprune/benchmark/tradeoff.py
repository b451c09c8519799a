"""The trade-off each repair method makes: G's attack success against the clean accuracy G loses
as the method's strength varies, with the point its clean-data rule picks.

Each method runs once on each net at its defaults, watched (`defenses.strength.observing`): every
net its strength rule measures (each rung of a ladder, each round or epoch) is judged here as G
beside the BadNet, on the clean test data and each trigger's poisoned file. That judging reads
poisoned data; the rule itself never does. A method without a strength rule gives one point.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import tf_keras

from fineprune.benchmark.build import BadNetSpec
from fineprune.benchmark.code_version import code_version, method_module
from fineprune.benchmark.comparison import Method, load_benchmark_badnet
from fineprune.data import open_dataset
from fineprune.defenses import repair
from fineprune.defenses.strength import observing
from fineprune.detector import RepairedDetector
from fineprune.evaluation import evaluate
from fineprune.files import file_digest
from fineprune.jobs import Job, run_jobs
from fineprune.models import LoadedModel
from fineprune.progress import Progress, silent


@dataclass(frozen=True)
class TradeoffPoint:
    """G with one net a method made: the setting, clean accuracy lost and the worst trigger's ASR."""

    parameter: str  # the strength's name, e.g. "learning_rate"; "defaults" for a method without a rule
    value: float | None
    g_accuracy_lost_points: float  # the BadNet's clean test accuracy minus G's
    g_asr_pct: float  # the highest over the net's triggers
    chosen: bool  # the net the method returns at its defaults (the rule's point)


def judge(badnet: LoadedModel, model: tf_keras.Model, clean_test: Path, poisoned_files: Sequence[Any],
          parameter: str, value: float | None, chosen: bool) -> TradeoffPoint:
    """G made of `badnet` and `model`, measured on the clean test file and the poisoned files."""
    repaired = LoadedModel(Path(f"{badnet.path} [{parameter} {value}]"), model, badnet.input_scale, "file")
    evaluation = evaluate(RepairedDetector(badnet, repaired), poisoned_files, clean_test, [])
    lost = evaluation.clean.accuracy_original_pct - evaluation.clean.accuracy_detector_pct
    asr = max(row.asr_detector_pct for row in evaluation.poisoned)
    return TradeoffPoint(parameter, value, lost, asr, chosen)


def tradeoff_cell(spec: BadNetSpec, data_dir: Path, models_dir: Path, method: Method) -> dict[str, Any]:
    """One method on one net, watched: every net its rule measured, and the one it returned."""
    badnet, clean, poisoned_files = load_benchmark_badnet(spec, data_dir, models_dir)
    clean_test = data_dir / "clean_test_data.h5"
    points: list[TradeoffPoint] = []

    def watch(parameter: str, value: Any, model: tf_keras.Model) -> None:
        points.append(judge(badnet, model, clean_test, poisoned_files, parameter, float(value), False))

    with observing(watch):
        result = repair(badnet, clean, method.settings)
    strength = result.details.get("strength")
    if strength is None:
        points.append(judge(badnet, result.model, clean_test, poisoned_files, "defaults", None, True))
    else:
        chosen = float(strength["chosen"])
        points = [replace(p, chosen=p.parameter == strength["parameter"] and p.value == chosen) for p in points]
    return {"points": [asdict(point) for point in points], "strength": strength,
            "repair_seconds": result.seconds}


def cell_key(spec: BadNetSpec, method: Method) -> str:
    """Where a (net, method) cell is kept, under the cells' folder."""
    return f"{spec.name}/{method.label.replace(' ', '_')}"


def tradeoff_benchmark(data_dir: Path, models_dir: Path, specs: Sequence[BadNetSpec], methods: Sequence[Method],
                       cells_dir: Path, workers: int = 1, fresh: bool = False, progress: Progress = silent,
                       scheduler: str | None = None) -> dict[str, dict[str, list[TradeoffPoint]]]:
    """Every method's trade-off on every net in `specs`: per net, per method label, its points. Each
    (net, method) is a job kept in `cells_dir`, so an interrupted run resumes."""
    clean_provenance = open_dataset(data_dir / "clean_validation_data.h5").provenance
    jobs = [Job(cell_key(spec, method), tradeoff_cell, (spec, data_dir, models_dir, method),
                {"badnet": file_digest(models_dir / spec.model_file), "clean_data": clean_provenance,
                 "poisoned": list(spec.poisoned_files), "settings": asdict(method.settings),
                 "code": code_version(method_module(method.settings.method), __name__)})
            for spec in specs for method in methods]
    progress(f"{len(jobs)} jobs: {len(specs)} nets x {len(methods)} methods; {workers} at a time")
    done = run_jobs(jobs, cells_dir, workers, fresh, progress, scheduler)
    curves: dict[str, dict[str, list[TradeoffPoint]]] = {spec.name: {} for spec in specs}
    for spec in specs:
        for method in methods:
            cell = done[cell_key(spec, method)]
            curves[spec.name][method.label] = [TradeoffPoint(**point) for point in cell["points"]]
    return curves
