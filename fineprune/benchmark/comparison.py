"""Repair methods side by side (`make compare`), and the oracle analysis of where backdoors live.

`repair_and_evaluate` repairs one BadNet with one method and measures it; `compare_benchmark` does
so for every method on every benchmark BadNet, once per seed, and adds each one's pruning curve, channel activations and
figures. Every method repairs the same BadNet from the same clean validation data with the same
seeds. The repaired net and G are then measured on the clean test data and on each poisoned file,
beside the BadNet itself, with the repair's wall time. Poisoned data are used for these
measurements only, never by a repair. Each (BadNet, method, seed) is a cell of its own, kept as
it finishes (`fineprune.jobs`): a long comparison resumes after an interruption and can run its
cells side by side. The table gives each number's median and range over the seeds.

The bar a repair is held to (a benchmark result, not a test): G lets at most 1% of poisoned inputs
through, G's clean accuracy is within 1 point of the BadNet's, and the repair takes at most a minute
on a 2-core machine; on a clean net (no trigger, asked for by name) the repair may move G's clean
accuracy by at most half a point, within the same minute.

`oracle_pruning` asks why a repair falls short: it prunes the channels a trigger raises most
(reading poisoned data, so it is an analysis, not a defense) and fine-tunes, to see whether the
backdoor is in those channels and whether fine-tuning on clean data brings it back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fineprune import plots
from fineprune.benchmark.build import BADNETS, BadNetSpec
from fineprune.benchmark.code_version import code_version, method_module
from fineprune.data import LabelledImages, check_same_data, load_dataset, open_dataset
from fineprune.defenses import RepairSettings, names, repair, settings_for
from fineprune.defenses.channels import mean_channel_activations, prune_channels, pruning_order
from fineprune.detector import RepairedDetector
from fineprune.errors import InputError
from fineprune.evaluation import MISTAKES_PER_KIND, Evaluation, PoisonedFile, evaluate, poisoned_name
from fineprune.files import file_digest
from fineprune.jobs import Job, run_jobs, stored_record
from fineprune.metrics import Spread, accuracy_pct, attack_success_pct
from fineprune.models import LoadedModel, load_model, predict_classes
from fineprune.pruning_curve import SweepPoint, accuracy_drop_points, pruning_sweep
from fineprune.progress import Progress, silent

BAR_MAX_ASR_PCT = 1.0
BAR_MAX_ACCURACY_LOSS_POINTS = 1.0
BAR_MAX_CLEAN_NET_CHANGE_POINTS = 0.5  # a clean net: how far G's clean accuracy may move either way
BAR_MAX_REPAIR_SECONDS = 60.0
NO_TRIGGER = "(clean net)"  # the trigger column of a clean net's row
CURVE_LAYER = "conv_3"  # the pruning curves and channel figure show the layer Fine-Pruning prunes
GALLERY_METHOD = "activation"  # whose G the galleries of mistakes show


@dataclass(frozen=True)
class Method:
    """A repair as the comparison names it: a label and the settings prune.py would be given."""

    label: str
    settings: RepairSettings


def standard_methods(seed: int = 0) -> list[Method]:
    """Every registered method at its defaults, plus three variants that measure a choice: Fine-Pruning
    on the other branch's layer (conv_4), `head`'s closed-form fit, and `maxmargin` after MM-BD's
    activation bounds (those of `bounds`, on conv_1..conv_3)."""
    return [*(Method(name, settings_for(name, seed=seed)) for name in names()),
            Method("activation conv_4", settings_for("activation", layer="conv_4", seed=seed)),
            Method("head lda", settings_for("head", fit="lda", seed=seed)),
            Method("maxmargin bounds", settings_for("maxmargin", bound_layers=settings_for("bounds").layers,
                                                    seed=seed))]


@dataclass(frozen=True)
class MethodOutcome:
    """One method's repair of one BadNet: what the repair reported, and the evaluation of G."""

    method: Method
    repair: dict[str, Any]  # RepairResult.summary()
    removed: str  # what the repair took out, in words
    evaluation: Evaluation


@dataclass(frozen=True)
class ComparisonRow:
    """One line of the comparison: a BadNet, one of its triggers, a method (or "none")."""

    badnet: str
    trigger: str
    method: str
    removed: str
    repair_seconds: float | None
    accuracy_repaired_net_pct: float
    asr_repaired_net_pct: float
    accuracy_detector_pct: float
    asr_detector_pct: float
    flagged_pct: float
    meets_bar: bool | None  # None for the BadNet itself
    seed: int | None = None  # the repair's seed; None for the BadNet itself


def repair_and_evaluate(
    badnet: LoadedModel,
    clean_validation: LabelledImages,
    clean_test: Path,
    poisoned_files: Sequence[PoisonedFile],
    method: Method,
    mistakes_per_kind: int = 0,
) -> MethodOutcome:
    """Repair `badnet` with `method` and evaluate the repaired net and G; `badnet` is unchanged."""
    result = repair(badnet, clean_validation, method.settings)
    repaired = LoadedModel(Path(f"{badnet.path} [{method.label}]"), result.model, badnet.input_scale, "file")
    evaluation = evaluate(RepairedDetector(badnet, repaired), poisoned_files, clean_test, [],
                          mistakes_per_kind=mistakes_per_kind)
    return MethodOutcome(method, result.summary(), result.removed, evaluation)


def annotate_targets(outcome: MethodOutcome, spec: BadNetSpec) -> MethodOutcome:
    """A repair that names suspected targets (`unlearn`) gets, in its "removed" text, how many of
    the BadNet's true targets it found and how many classes it flagged wrongly."""
    flagged = outcome.repair.get("details", {}).get("flagged")
    if flagged is None:
        return outcome
    targets = set(spec.triggers.values())
    found, wrong = len(targets & set(flagged)), len(set(flagged) - targets)
    note = f"; true targets found {found}/{len(targets)}" + (f", {wrong} flagged wrongly" if wrong else "")
    return replace(outcome, removed=outcome.removed + note)


def comparison_rows(badnet_name: str, cells: Sequence[dict[str, Any]]) -> list[ComparisonRow]:
    """Per trigger: the BadNet itself (method "none", measured once: it has no seed), then every
    cell's repaired net and G. `cells` are `outcome_json` records of one BadNet."""
    if not cells:
        return []
    rows = []
    first = cells[0]["evaluation"]
    assert first["clean"] is not None, "the comparison needs a clean-data evaluation"
    if not first["poisoned"]:
        return clean_net_rows(badnet_name, cells)
    for index, poisoned in enumerate(first["poisoned"]):
        trigger = poisoned_name(poisoned["file"])
        rows.append(ComparisonRow(
            badnet_name, trigger, "none", "nothing", None,
            first["clean"]["accuracy_original_pct"], poisoned["asr_original_pct"],
            first["clean"]["accuracy_original_pct"], poisoned["asr_original_pct"], 0.0, None,
        ))
        for cell in cells:
            clean, result = cell["evaluation"]["clean"], cell["evaluation"]["poisoned"][index]
            seconds = float(cell["repair"]["seconds"])
            rows.append(ComparisonRow(
                badnet_name, trigger, cell["method"], cell["removed"], seconds,
                clean["accuracy_repaired_net_pct"], result["asr_repaired_net_pct"],
                clean["accuracy_detector_pct"], result["asr_detector_pct"], result["detected_pct"],
                meets_bar(clean["accuracy_original_pct"], clean["accuracy_detector_pct"], result["asr_detector_pct"],
                          seconds),
                cell["settings"]["seed"],
            ))
    return rows


def clean_net_rows(net_name: str, cells: Sequence[dict[str, Any]]) -> list[ComparisonRow]:
    """A clean net's rows: clean accuracy only (its ASR cells not a number), the bar being how
    little the repair moves G's clean accuracy."""
    nan = float("nan")
    own = cells[0]["evaluation"]["clean"]["accuracy_original_pct"]
    rows = [ComparisonRow(net_name, NO_TRIGGER, "none", "nothing", None, own, nan, own, nan, nan, None)]
    for cell in cells:
        clean, seconds = cell["evaluation"]["clean"], float(cell["repair"]["seconds"])
        rows.append(ComparisonRow(
            net_name, NO_TRIGGER, cell["method"], cell["removed"], seconds, clean["accuracy_repaired_net_pct"], nan,
            clean["accuracy_detector_pct"], nan, nan,
            abs(clean["accuracy_detector_pct"] - own) <= BAR_MAX_CLEAN_NET_CHANGE_POINTS
            and seconds <= BAR_MAX_REPAIR_SECONDS,
            cell["settings"]["seed"]))
    return rows


@dataclass(frozen=True)
class SpreadRow:
    """One line of the comparison over seeds: a BadNet, a trigger, a method, each number as its
    median and range over the seeds (one value for the BadNet itself)."""

    badnet: str
    trigger: str
    method: str
    removed: str  # what each seed's repair took out, the distinct texts joined
    seeds: list[int]
    repair_seconds: Spread | None
    accuracy_repaired_net_pct: Spread
    asr_repaired_net_pct: Spread
    accuracy_detector_pct: Spread
    asr_detector_pct: Spread
    flagged_pct: Spread
    seeds_meeting_bar: int | None  # None for the BadNet itself


NUMBERS = ("accuracy_repaired_net_pct", "asr_repaired_net_pct", "accuracy_detector_pct", "asr_detector_pct",
           "flagged_pct")


def spread_rows(rows: Sequence[ComparisonRow]) -> list[SpreadRow]:
    """The per-seed rows gathered by (BadNet, trigger, method), in the order they first appear."""
    groups: dict[tuple[str, str, str], list[ComparisonRow]] = {}
    for row in rows:
        groups.setdefault((row.badnet, row.trigger, row.method), []).append(row)
    spread = []
    for (badnet, trigger, method), group in groups.items():
        removed = list(dict.fromkeys(row.removed for row in group))
        seconds = [row.repair_seconds for row in group if row.repair_seconds is not None]
        spread.append(SpreadRow(
            badnet, trigger, method, " / ".join(removed), [row.seed for row in group if row.seed is not None],
            Spread.of(seconds) if seconds else None,
            *(Spread.of([getattr(row, name) for row in group]) for name in NUMBERS),
            None if method == "none" else sum(bool(row.meets_bar) for row in group),
        ))
    return spread


def _own_accuracies(rows: Sequence[SpreadRow]) -> dict[str, float]:
    """Each net's own clean accuracy through G (its "none" row), against which a repair's cost counts."""
    return {row.badnet: row.accuracy_detector_pct.median for row in rows if row.method == "none"}


def _asr_rank(row: SpreadRow) -> tuple[float, float]:
    """How badly a row's G lets its trigger through: the median over seeds, then the worst seed."""
    return row.asr_detector_pct.median, row.asr_detector_pct.high


def best_methods(rows: Sequence[SpreadRow]) -> dict[str, SpreadRow]:
    """Per BadNet, the method whose worst trigger scores lowest on G's median ASR plus G's median
    loss of clean accuracy (points against the BadNet's own "none" row): a repair is judged by what
    it lets through and what it costs together, so stopping everything by breaking the net does not
    win. Returned as that method's row for its worst trigger: the highest median G ASR, ties going
    to the trigger that gets through most on some seed (a backdoor missed on one seed of three has
    median 0.00 too)."""
    own = _own_accuracies(rows)

    def cost(row: SpreadRow) -> float:
        return row.asr_detector_pct.median + max(0.0, own.get(row.badnet, 100.0) - row.accuracy_detector_pct.median)

    worst: dict[tuple[str, str], SpreadRow] = {}
    for row in rows:
        if row.method == "none" or row.trigger == NO_TRIGGER:
            continue
        key = (row.badnet, row.method)
        if key not in worst or _asr_rank(row) > _asr_rank(worst[key]):
            worst[key] = row
    best: dict[str, SpreadRow] = {}
    for (badnet, _), row in worst.items():
        if badnet not in best or cost(row) < cost(best[badnet]):
            best[badnet] = row
    return best


@dataclass(frozen=True)
class MethodVerdict:
    """One method against the bar over every net it repaired: where it does worst, and on how many
    runs (one per net, trigger and seed) it meets the bar. "Worst" is by the median over seeds, ties
    going to the worst seed."""

    method: str
    runs_meeting_bar: int
    runs: int
    worst_asr: SpreadRow | None  # the backdoored (BadNet, trigger) whose G lets most through
    worst_loss: tuple[str, Spread] | None  # the BadNet whose G loses most clean accuracy, in points
    largest_clean_move: tuple[str, float] | None  # the clean net whose G's accuracy moves most on a seed, in points
    seconds: tuple[float, float] | None  # the quickest and the slowest repair


def method_verdicts(rows: Sequence[SpreadRow]) -> list[MethodVerdict]:
    """Every method's verdict against the bar, in the order the methods first appear in `rows`
    (the comparison's rows over seeds, the BadNets' own "none" rows among them)."""
    own = _own_accuracies(rows)
    by_method: dict[str, list[SpreadRow]] = {}
    for row in rows:
        if row.method != "none":
            by_method.setdefault(row.method, []).append(row)
    verdicts = []
    for method, group in by_method.items():
        backdoored = [row for row in group if row.trigger != NO_TRIGGER]
        clean = [row for row in group if row.trigger == NO_TRIGGER]
        losses = {row.badnet: _points_lost(own[row.badnet], row.accuracy_detector_pct) for row in backdoored}
        moves = [(row.badnet, max(abs(row.accuracy_detector_pct.low - own[row.badnet]),
                                  abs(row.accuracy_detector_pct.high - own[row.badnet]))) for row in clean]
        timed = [row.repair_seconds for row in group if row.repair_seconds is not None]
        verdicts.append(MethodVerdict(
            method,
            sum(row.seeds_meeting_bar or 0 for row in group),
            sum(len(row.seeds) for row in group),
            max(backdoored, key=_asr_rank, default=None),
            max(losses.items(), key=lambda item: item[1].median, default=None),
            max(moves, key=lambda item: item[1], default=None),
            (min(t.low for t in timed), max(t.high for t in timed)) if timed else None,
        ))
    return verdicts


def _points_lost(own_accuracy_pct: float, accuracy: Spread) -> Spread:
    """How many points of clean accuracy G lost against the BadNet's own, over the seeds."""
    return Spread(own_accuracy_pct - accuracy.median, own_accuracy_pct - accuracy.high,
                  own_accuracy_pct - accuracy.low, accuracy.count)


def meets_bar(accuracy_original_pct: float, accuracy_detector_pct: float, asr_detector_pct: float,
              repair_seconds: float) -> bool:
    """Whether a repair reaches the bar on one trigger: G's ASR at most 1%, G's clean accuracy within
    1 point of the BadNet's, and the repair done within a minute."""
    return (asr_detector_pct <= BAR_MAX_ASR_PCT
            and accuracy_original_pct - accuracy_detector_pct <= BAR_MAX_ACCURACY_LOSS_POINTS
            and repair_seconds <= BAR_MAX_REPAIR_SECONDS)


def outcome_json(outcome: MethodOutcome) -> dict[str, Any]:
    """A method outcome as JSON: its settings, the repair's record and eval.py's numbers."""
    return {
        "method": outcome.method.label,
        "settings": asdict(outcome.method.settings),
        "removed": outcome.removed,
        "repair": outcome.repair,
        "evaluation": outcome.evaluation.to_json(),
    }


@dataclass
class BenchmarkComparison:
    """Everything `make compare` measures: the rows per seed and over seeds, each cell's record,
    each pruning curve and channel activations, the figures."""

    rows: list[ComparisonRow]
    spread: list[SpreadRow]
    cells: dict[str, list[dict[str, Any]]]  # per BadNet: outcome_json of every (method, seed), and its "code"
    curves: dict[str, list[SweepPoint]]  # per BadNet, on CURVE_LAYER
    activations: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]  # per BadNet: clean, per trigger
    figures: list[Path]

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": [asdict(row) for row in self.spread],
            "rows_per_seed": [asdict(row) for row in self.rows],
            "repairs": self.cells,
            "pruning_curves": {name: {"layer": CURVE_LAYER, "points": [asdict(p) for p in points]}
                               for name, points in self.curves.items()},
            "channel_activations": {
                name: {"layer": CURVE_LAYER, "clean": clean.tolist(),
                       "poisoned": {trigger: values.tolist() for trigger, values in poisoned.items()}}
                for name, (clean, poisoned) in self.activations.items()
            },
            "figures": [str(path) for path in self.figures],
        }

    def csv_rows(self) -> list[dict[str, Any]]:
        """The rows of results/comparison.csv (columns CSV_COLUMNS): one per cell and trigger, a
        clean net's cell in one row with the ASR columns empty (None)."""
        rows = []
        for net, cells in self.cells.items():
            for cell in cells:
                clean = cell["evaluation"]["clean"]
                for poisoned in cell["evaluation"]["poisoned"] or [{}]:  # a clean net: no trigger, no ASR
                    rows.append({
                        "net": net, "trigger": poisoned_name(poisoned["file"]) if poisoned else NO_TRIGGER,
                        "method": cell["method"], "seed": cell["settings"]["seed"],
                        "settings": json.dumps(cell["settings"]),
                        "original_accuracy_pct": clean["accuracy_original_pct"],
                        "original_asr_pct": poisoned.get("asr_original_pct"),
                        "g_accuracy_pct": clean["accuracy_detector_pct"],
                        "g_asr_pct": poisoned.get("asr_detector_pct"),
                        "repaired_net_accuracy_pct": clean["accuracy_repaired_net_pct"],
                        "repaired_net_asr_pct": poisoned.get("asr_repaired_net_pct"),
                        "flagged_pct": poisoned.get("detected_pct"),
                        "repair_seconds": cell["repair"]["seconds"], "code_version": cell.get("code"),
                    })
        return rows


CSV_COLUMNS = ("net", "trigger", "method", "seed", "settings", "original_accuracy_pct", "original_asr_pct",
               "g_accuracy_pct", "g_asr_pct", "repaired_net_accuracy_pct", "repaired_net_asr_pct", "flagged_pct",
               "repair_seconds", "code_version")  # documented in docs/comparison.md: keep them stable


def compare_benchmark(
    data_dir: Path,
    models_dir: Path,
    specs: Sequence[BadNetSpec] | None,
    methods: Sequence[Method],
    figures_dir: Path,
    cells_dir: Path,
    seeds: Sequence[int] = (0,),
    workers: int = 1,
    fresh: bool = False,
    progress: Progress = silent,
    curves: bool = True,
    scheduler: str | None = None,
) -> BenchmarkComparison:
    """Run every method with every seed on every benchmark BadNet (or those in `specs`), and
    measure each BadNet's pruning curve and channel activations (unless `curves` is false); draw
    the figures into `figures_dir`. Each (BadNet, method, seed) cell and each curve is a job whose
    result is kept in `cells_dir` as it finishes: a run that was interrupted resumes there (unless
    `fresh`); `workers` local processes run cells side by side, or the Dask cluster at `scheduler`.
    A cell's fingerprint holds the version of the code that computed it (`code_version`): a kept
    cell computed by other code is recomputed."""
    if not seeds:
        raise InputError("no seeds to run")
    specs = list(specs or BADNETS)
    clean_provenance = open_dataset(data_dir / "clean_validation_data.h5").provenance
    jobs: list[Job] = []
    method_keys: dict[str, list[str]] = {spec.name: [] for spec in specs}  # each BadNet's method cells, in order
    for spec in specs:
        badnet_digest = file_digest(models_dir / spec.model_file)
        common = {"badnet": badnet_digest, "clean_data": clean_provenance, "poisoned": list(spec.poisoned_files)}
        if curves and spec.triggers:  # a clean net has no trigger to draw a curve of
            jobs.append(Job(f"{spec.name}/curve", curve_cell, (spec, data_dir, models_dir),
                            {**common, "code": code_version(__name__)}))
        for seed in seeds:
            for method in methods:
                seeded = Method(method.label, replace(method.settings, seed=seed))
                gallery = figures_dir / f"mistakes_{spec.name}.png" if (
                    method.label == GALLERY_METHOD and seed == seeds[0]) else None
                key = f"{spec.name}/{method.label.replace(' ', '_')}/seed_{seed}"
                method_keys[spec.name].append(key)
                code = code_version(method_module(method.settings.method), __name__)
                jobs.append(Job(key, method_cell, (spec, data_dir, models_dir, seeded, gallery),
                                {**common, "settings": asdict(seeded.settings), "gallery": str(gallery),
                                 "code": code}))
    progress(f"{len(jobs)} jobs: {len(specs)} BadNets x {len(methods)} methods x {len(seeds)} seeds"
             + (" + a pruning curve per BadNet" if curves else "") + f"; {workers} at a time")
    for line in [] if fresh else stale_cells(jobs, cells_dir):
        progress(line)
    done = run_jobs(jobs, cells_dir, workers, fresh, progress, scheduler)

    codes = {job.key: job.fingerprint["code"] for job in jobs}
    result = BenchmarkComparison([], [], {}, {}, {}, [])
    for spec in specs:
        cells = [{**done[key], "code": codes[key]} for key in method_keys[spec.name]]
        result.cells[spec.name] = cells
        result.rows += comparison_rows(spec.name, cells)
        result.figures += [Path(cell["figure"]) for cell in cells if cell.get("figure")]
        if curves and spec.triggers:
            curve = done[f"{spec.name}/curve"]
            result.curves[spec.name] = [SweepPoint(**point) for point in curve["points"]]
            result.activations[spec.name] = (np.array(curve["clean"]),
                                             {name: np.array(values) for name, values in curve["poisoned"].items()})
    result.spread = spread_rows(result.rows)
    if result.curves:
        marks = {name: accuracy_drop_points(points, [4.0])[4.0] for name, points in result.curves.items()}
        curves_path, channels_path = figures_dir / "pruning_curves.png", figures_dir / "backdoor_channels.png"
        plots.draw_pruning_curves(result.curves, curves_path, CURVE_LAYER, marks)
        plots.draw_channel_activations(result.activations, channels_path, CURVE_LAYER)
        result.figures += [curves_path, channels_path]
    return result


def stale_cells(jobs: Sequence[Job], cells_dir: Path) -> list[str]:
    """Why kept cells in `cells_dir` will be recomputed, a line per reason: those computed by other
    code (naming the methods, or the pruning curve), and those computed from other inputs (naming
    the fingerprint's entries that changed). A missing or unreadable cell is simply computed."""
    other_code: list[str] = []
    other_inputs: set[str] = set()
    stale = 0
    for job in jobs:
        kept = (stored_record(cells_dir, job) or {}).get("fingerprint")
        wanted = json.loads(json.dumps(job.fingerprint))
        if not isinstance(kept, dict) or kept == wanted:
            continue
        changed = {name for name in (kept.keys() | wanted.keys()) - {"code"} if kept.get(name) != wanted.get(name)}
        if changed:
            other_inputs |= changed
            stale += 1
        else:
            other_code.append(wanted.get("settings", {}).get("method", "pruning curve"))
    lines = []
    if other_code:
        lines.append(f"{_stored_cells(len(other_code))} computed by other code "
                     f"({', '.join(dict.fromkeys(other_code))}): recomputing them")
    if stale:
        lines.append(f"{_stored_cells(stale)} computed from other inputs ({', '.join(sorted(other_inputs))}): "
                     "recomputing them")
    return lines


def _stored_cells(count: int) -> str:
    return f"{count} stored cell was" if count == 1 else f"{count} stored cells were"


def load_benchmark_badnet(spec: BadNetSpec, data_dir: Path, models_dir: Path
                          ) -> tuple[LoadedModel, LabelledImages, list[PoisonedFile]]:
    """A benchmark BadNet, the clean validation data and its poisoned files, checked to be built
    from the same data."""
    clean = load_dataset(data_dir / "clean_validation_data.h5")
    badnet = load_model(models_dir / spec.model_file)
    check_same_data(badnet.metadata, badnet.path, clean)
    return badnet, clean, [PoisonedFile(data_dir / file, poisoned_name(file)) for file in spec.poisoned_files]


def method_cell(spec: BadNetSpec, data_dir: Path, models_dir: Path, method: Method,
                gallery: Path | None) -> dict[str, Any]:
    """One cell of the comparison: `method` repairs the BadNet, the repaired net and G are
    measured; with `gallery`, G's mistakes are drawn there. Returns the `outcome_json` record."""
    badnet, clean, poisoned_files = load_benchmark_badnet(spec, data_dir, models_dir)
    outcome = annotate_targets(repair_and_evaluate(badnet, clean, data_dir / "clean_test_data.h5", poisoned_files,
                                                   method, MISTAKES_PER_KIND if gallery else 0), spec)
    record = outcome_json(outcome)
    if gallery is not None:
        plots.draw_mistakes(outcome.evaluation, gallery,
                            f"What G gets wrong: the {spec.name} BadNet repaired by {method.label}")
        record["figure"] = str(gallery)
    return record


def curve_cell(spec: BadNetSpec, data_dir: Path, models_dir: Path) -> dict[str, Any]:
    """A BadNet's channel activations (clean and per trigger) and pruning curve on CURVE_LAYER."""
    badnet, clean, poisoned_files = load_benchmark_badnet(spec, data_dir, models_dir)
    poisoned = {name: load_dataset(path) for path, name in poisoned_files}
    for data in poisoned.values():
        check_same_data(badnet.metadata, badnet.path, data)
    clean_activations = mean_channel_activations(badnet.model, CURVE_LAYER, clean.x, badnet.input_scale)
    points = pruning_sweep(badnet, CURVE_LAYER, clean, poisoned, clean_activations)
    return {
        "points": [asdict(point) for point in points],
        "clean": clean_activations.tolist(),
        "poisoned": {trigger: mean_channel_activations(badnet.model, CURVE_LAYER, data.x, badnet.input_scale).tolist()
                     for trigger, data in poisoned.items()},
    }


ORACLE_CHANNELS = 10  # how many of the trigger's most raised channels the oracle prunes


@dataclass(frozen=True)
class OracleResult:
    """Fine-Pruning told where the backdoor is: the `layer` channels a trigger raises most (mean
    activation on poisoned minus clean data) are pruned, then the net is fine-tuned exactly as the
    `activation` method does. It reads poisoned data, so it is an analysis of where a backdoor
    lives and whether fine-tuning brings it back, not a defense."""

    badnet: str
    trigger: str
    layer: str
    channels: list[int]  # most raised first
    places_in_pruning_order: list[int]  # where Fine-Pruning's order puts each (1 = pruned first)
    layer_channels: int
    accuracy_pruned_pct: float
    asr_pruned_pct: float
    accuracy_fine_tuned_pct: float
    asr_fine_tuned_pct: float


def oracle_pruning(badnet: LoadedModel, badnet_name: str, clean_validation: LabelledImages,
                   clean_test: LabelledImages, poisoned: LabelledImages, trigger: str, seed: int = 0,
                   count: int = ORACLE_CHANNELS, layer: str = CURVE_LAYER) -> OracleResult:
    """Prune the `count` channels `trigger` raises most, measure, fine-tune like `activation`, measure
    again (clean accuracy on `clean_test`, attack success on `poisoned`)."""
    clean_activations = mean_channel_activations(badnet.model, layer, clean_validation.x, badnet.input_scale)
    poisoned_activations = mean_channel_activations(badnet.model, layer, poisoned.x, badnet.input_scale)
    channels = [int(c) for c in np.argsort(poisoned_activations - clean_activations, kind="stable")[::-1][:count]]
    places = np.argsort(pruning_order(clean_activations), kind="stable")

    def measure(model: Any) -> tuple[float, float]:
        return (accuracy_pct(predict_classes(model, clean_test.x, badnet.input_scale), clean_test.y),
                attack_success_pct(predict_classes(model, poisoned.x, badnet.input_scale), poisoned.y))

    pruned = measure(prune_channels(badnet.model, layer, channels))
    settings = settings_for("activation", layer=layer, channels=tuple(channels), seed=seed)
    fine_tuned = measure(repair(badnet, clean_validation, settings).model)
    return OracleResult(badnet_name, trigger, layer, channels, [int(places[c]) + 1 for c in channels], len(places),
                        *pruned, *fine_tuned)


def oracle_benchmark(data_dir: Path, models_dir: Path, specs: Sequence[BadNetSpec], count: int, seed: int,
                     say: Progress = silent) -> list[OracleResult]:
    """`oracle_pruning` on every trigger of every BadNet in `specs`: how far pruning could go if
    the defender knew which channels the trigger uses (`benchmark.py oracle`)."""
    clean = load_dataset(data_dir / "clean_validation_data.h5")
    test = load_dataset(data_dir / "clean_test_data.h5")
    found = []
    for spec in specs:
        badnet = load_model(models_dir / spec.model_file)
        check_same_data(badnet.metadata, badnet.path, clean)
        for file in spec.poisoned_files:
            trigger = poisoned_name(file)
            say(f"[{spec.name}] pruning the {count} {CURVE_LAYER} channels {trigger} raises most, then fine-tuning")
            found.append(oracle_pruning(badnet, spec.name, clean, test, load_dataset(data_dir / file), trigger,
                                        seed, count))
    return found
