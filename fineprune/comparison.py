"""Repair methods side by side (`make compare`), and the oracle analysis of where backdoors live.

`compare_methods` repairs one BadNet with every method; `compare_benchmark` does so for every
benchmark BadNet and adds each one's pruning curve, channel activations and figures. Every method
repairs the same BadNet from the same clean validation data with the same seed. The repaired net
and G are then measured on the clean test data and on each poisoned file, beside the BadNet
itself, with the repair's wall time. Poisoned data are used for these measurements only, never
by a repair.

The bar a repair is held to (a benchmark result, not a test): G lets at most 1% of poisoned inputs
through, G's clean accuracy is within 2 points of the BadNet's, and the repair takes at most two
minutes on a 2-core machine.

`oracle_pruning` asks why a repair falls short: it prunes the channels a trigger raises most
(reading poisoned data, so it is an analysis, not a defense) and fine-tunes, to see whether the
backdoor is in those channels and whether fine-tuning on clean data brings it back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from fineprune import plots
from fineprune.benchmark.build import BADNETS, BadNetSpec, check_same_data
from fineprune.data import LabelledImages, load_dataset
from fineprune.detector import RepairedDetector
from fineprune.evaluation import MISTAKES_PER_KIND, Evaluation, PoisonedFile, evaluate, poisoned_name
from fineprune.metrics import accuracy_pct, attack_success_pct
from fineprune.models import LoadedModel, load_model, predict_classes
from fineprune.defenses import RepairSettings, names, repair, settings_for
from fineprune.defenses.channels import mean_channel_activations, prune_channels, pruning_order
from fineprune.pruning_curve import SweepPoint, accuracy_drop_points, pruning_sweep

BAR_MAX_ASR_PCT = 1.0
BAR_MAX_ACCURACY_LOSS_POINTS = 2.0
BAR_MAX_REPAIR_SECONDS = 120.0
CURVE_LAYER = "conv_3"  # the pruning curves and channel figure show the layer Fine-Pruning prunes
GALLERY_METHOD = "activation"  # whose G the galleries of mistakes show


@dataclass(frozen=True)
class Method:
    """A repair as the comparison names it: a label and the settings prune.py would be given."""

    label: str
    settings: RepairSettings


def standard_methods(seed: int = 0) -> list[Method]:
    """Every registered method at its defaults, plus two variants that measure a choice: Fine-Pruning
    on the other branch's layer (conv_4), and `head`'s closed-form fit."""
    return [*(Method(name, settings_for(name, seed=seed)) for name in names()),
            Method("activation conv_4", settings_for("activation", layer="conv_4", seed=seed)),
            Method("head lda", settings_for("head", fit="lda", seed=seed))]


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


def compare_methods(
    badnet: LoadedModel,
    clean_validation: LabelledImages,
    clean_test: Path,
    poisoned_files: Sequence[PoisonedFile],
    methods: Sequence[Method],
    progress: Callable[[str], None] = lambda message: None,
    mistakes_per_kind: int = 0,
) -> list[MethodOutcome]:
    """Repair `badnet` with each method and evaluate the repaired net and G; `badnet` is unchanged."""
    outcomes = []
    for method in methods:
        progress(f"{method.label}: repairing on {len(clean_validation)} clean images")
        result = repair(badnet, clean_validation, method.settings, verbose=0)
        repaired = LoadedModel(Path(f"{badnet.path} [{method.label}]"), result.model, badnet.input_scale, "file")
        progress(f"{method.label}: repaired in {result.seconds:.0f} s; evaluating")
        evaluation = evaluate(RepairedDetector(badnet, repaired), poisoned_files, clean_test, [],
                              mistakes_per_kind=mistakes_per_kind)
        outcomes.append(MethodOutcome(method, result.summary(), result.removed, evaluation))
    return outcomes


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


def best_methods(rows: Sequence[ComparisonRow]) -> dict[str, ComparisonRow]:
    """Per BadNet, the method whose worst trigger scores lowest on G's ASR plus G's loss of clean
    accuracy (points against the BadNet's own "none" row): a repair is judged by what it lets
    through and what it costs together, so stopping everything by breaking the net does not win.
    Returned as that method's row for its worst trigger."""
    own = {row.badnet: row.accuracy_detector_pct for row in rows if row.method == "none"}

    def cost(row: ComparisonRow) -> float:
        return row.asr_detector_pct + max(0.0, own.get(row.badnet, 100.0) - row.accuracy_detector_pct)

    worst: dict[tuple[str, str], ComparisonRow] = {}
    for row in rows:
        if row.method == "none":
            continue
        key = (row.badnet, row.method)
        if key not in worst or row.asr_detector_pct > worst[key].asr_detector_pct:
            worst[key] = row
    best: dict[str, ComparisonRow] = {}
    for (badnet, _), row in worst.items():
        if badnet not in best or cost(row) < cost(best[badnet]):
            best[badnet] = row
    return best


def comparison_rows(badnet_name: str, outcomes: Sequence[MethodOutcome]) -> list[ComparisonRow]:
    """Per trigger: the BadNet itself (method "none"), then every method's repaired net and G."""
    if not outcomes:
        return []
    rows = []
    first = outcomes[0].evaluation
    assert first.clean is not None, "the comparison needs a clean-data evaluation"
    for index, poisoned in enumerate(first.poisoned):
        trigger = poisoned_name(poisoned.file)
        rows.append(ComparisonRow(
            badnet_name, trigger, "none", "nothing", None,
            first.clean.accuracy_original_pct, poisoned.asr_original_pct,
            first.clean.accuracy_original_pct, poisoned.asr_original_pct, 0.0, None,
        ))
        for outcome in outcomes:
            clean, result = outcome.evaluation.clean, outcome.evaluation.poisoned[index]
            assert clean is not None
            seconds = float(outcome.repair["seconds"])
            rows.append(ComparisonRow(
                badnet_name, trigger, outcome.method.label, outcome.removed, seconds,
                clean.accuracy_repaired_net_pct, result.asr_repaired_net_pct,
                clean.accuracy_detector_pct, result.asr_detector_pct, result.detected_pct,
                meets_bar(clean.accuracy_original_pct, clean.accuracy_detector_pct, result.asr_detector_pct, seconds),
            ))
    return rows


def meets_bar(accuracy_original_pct: float, accuracy_detector_pct: float, asr_detector_pct: float,
              repair_seconds: float) -> bool:
    """Whether a repair reaches the bar: G's ASR at most 1%, G's clean accuracy within 2 points of
    the BadNet's, and the repair done within 2 minutes."""
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
    """Everything `make compare` measures: the table's rows, each repair, each pruning curve."""

    rows: list[ComparisonRow]
    outcomes: dict[str, list[MethodOutcome]]  # per BadNet
    curves: dict[str, list[SweepPoint]]  # per BadNet, on CURVE_LAYER
    activations: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]  # per BadNet: clean, per trigger
    figures: list[Path]

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": [asdict(row) for row in self.rows],
            "repairs": {name: [outcome_json(o) for o in outcomes] for name, outcomes in self.outcomes.items()},
            "pruning_curves": {name: {"layer": CURVE_LAYER, "points": [asdict(p) for p in points]}
                               for name, points in self.curves.items()},
            "channel_activations": {
                name: {"layer": CURVE_LAYER, "clean": clean.tolist(),
                       "poisoned": {trigger: values.tolist() for trigger, values in poisoned.items()}}
                for name, (clean, poisoned) in self.activations.items()
            },
            "figures": [str(path) for path in self.figures],
        }


def compare_benchmark(
    data_dir: Path,
    models_dir: Path,
    specs: Sequence[BadNetSpec] | None,
    methods: Sequence[Method],
    figures_dir: Path,
    progress: Callable[[str], None] = lambda message: None,
    curves: bool = True,
) -> BenchmarkComparison:
    """Run every method on every benchmark BadNet (or those in `specs`), measure each BadNet's
    pruning curve and channel activations (unless `curves` is false), and draw the figures into
    `figures_dir`."""
    clean = load_dataset(data_dir / "clean_validation_data.h5")
    clean_test = data_dir / "clean_test_data.h5"
    result = BenchmarkComparison([], {}, {}, {}, [])
    for spec in specs or BADNETS:
        badnet = load_model(models_dir / spec.model_file)
        check_same_data(badnet.metadata, badnet.path, clean)
        poisoned_files = [PoisonedFile(data_dir / file, poisoned_name(file)) for file in spec.poisoned_files]
        poisoned = {name: load_dataset(path) for path, name in poisoned_files}
        for data in poisoned.values():
            check_same_data(badnet.metadata, badnet.path, data)

        def report(message: str, name: str = spec.name) -> None:
            progress(f"[{name}] {message}")

        if curves:
            measure_curve(result, spec.name, badnet, clean, poisoned, report)
        del poisoned
        outcomes = [annotate_targets(outcome, spec)
                    for outcome in compare_methods(badnet, clean, clean_test, poisoned_files, methods, report,
                                                   MISTAKES_PER_KIND)]
        result.outcomes[spec.name] = outcomes
        result.rows += comparison_rows(spec.name, outcomes)
        for outcome in outcomes:
            if outcome.method.label == GALLERY_METHOD:
                path = figures_dir / f"mistakes_{spec.name}.png"
                plots.draw_mistakes(outcome.evaluation, path,
                                    f"What G gets wrong: the {spec.name} BadNet repaired by {outcome.method.label}")
                result.figures.append(path)

    if result.curves:
        marks = {name: accuracy_drop_points(points, [4.0])[4.0] for name, points in result.curves.items()}
        curves_path, channels_path = figures_dir / "pruning_curves.png", figures_dir / "backdoor_channels.png"
        plots.draw_pruning_curves(result.curves, curves_path, CURVE_LAYER, marks)
        plots.draw_channel_activations(result.activations, channels_path, CURVE_LAYER)
        result.figures += [curves_path, channels_path]
    return result


def measure_curve(result: BenchmarkComparison, name: str, badnet: LoadedModel, clean: LabelledImages,
                  poisoned: dict[str, LabelledImages], report: Callable[[str], None]) -> None:
    """Add a BadNet's channel activations (clean and per trigger) and pruning curve to `result`."""
    clean_activations = mean_channel_activations(badnet.model, CURVE_LAYER, clean.x, badnet.input_scale)
    result.activations[name] = (
        clean_activations,
        {trigger: mean_channel_activations(badnet.model, CURVE_LAYER, data.x, badnet.input_scale)
         for trigger, data in poisoned.items()},
    )
    report(f"pruning curve: {CURVE_LAYER} channels one by one ({len(clean)} clean images)")
    result.curves[name] = pruning_sweep(badnet, CURVE_LAYER, clean, poisoned, clean_activations)


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
    fine_tuned = measure(repair(badnet, clean_validation, settings, verbose=0).model)
    return OracleResult(badnet_name, trigger, layer, channels, [int(places[c]) + 1 for c in channels], len(places),
                        *pruned, *fine_tuned)
