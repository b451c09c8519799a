"""Tests for fineprune.benchmark.comparison: every method side by side on the tiny benchmark, and the bar."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, TinyBenchmark
from fineprune.benchmark import comparison
from fineprune.benchmark.build import BadNetSpec
from fineprune.benchmark.code_version import code_version
from fineprune.benchmark.comparison import (
    CSV_COLUMNS,
    NO_TRIGGER,
    BenchmarkComparison,
    ComparisonRow,
    Method,
    MethodOutcome,
    annotate_targets,
    best_methods,
    compare_benchmark,
    comparison_rows,
    meets_bar,
    method_verdicts,
    spread_rows,
    standard_methods,
)
from fineprune.defenses import names, settings_for
from fineprune.report import comparison_table, verdict_table, write_csv
from fineprune.defenses.fine_pruning import ActivationPruningSettings

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY_SPEC = BadNetSpec("tiny", {"trigger": 0}, ("trigger_poisoned_data.h5",))


def quick_methods() -> list[Method]:
    """prune.py's methods, with fine-tuning short enough for a test."""
    quick = dict(epochs=1, batch_size=16, seed=0)
    return [
        Method("magnitude", settings_for("magnitude", pruning_frequency=1, **quick)),
        Method("finetune", settings_for("finetune", **quick)),
        Method("prune", settings_for("prune", seed=0)),
        Method("activation", settings_for("activation", prune_fraction=0.5, **quick)),
        Method("head", settings_for("head", seed=0)),
    ]


@pytest.fixture(scope="module")
def compared(tiny: TinyBenchmark, tmp_path_factory: pytest.TempPathFactory):
    figures, cells = tmp_path_factory.mktemp("figures"), tmp_path_factory.mktemp("cells")
    progress: list[str] = []
    result = compare_benchmark(tiny.root / "data", tiny.root / "models", [TINY_SPEC], quick_methods(), figures,
                               cells, progress=progress.append)
    return result, figures, progress


def test_every_method_gets_a_row_after_the_badnets_own(compared) -> None:
    result, _, _ = compared
    assert [(row.badnet, row.trigger, row.method, row.seed) for row in result.rows] == [
        ("tiny", "trigger", "none", None),
        *(("tiny", "trigger", method, 0) for method in ("magnitude", "finetune", "prune", "activation", "head"))]
    badnet_row = result.rows[0]
    assert badnet_row.asr_detector_pct == badnet_row.asr_repaired_net_pct == 100.0
    assert badnet_row.accuracy_detector_pct == 100.0
    assert (badnet_row.flagged_pct, badnet_row.repair_seconds, badnet_row.meets_bar) == (0.0, None, None)


def test_rows_carry_each_repairs_own_numbers(compared) -> None:
    result, _, _ = compared
    rows = {row.method: row for row in result.rows}
    for cell in result.cells["tiny"]:
        clean, (poisoned,) = cell["evaluation"]["clean"], cell["evaluation"]["poisoned"]
        row = rows[cell["method"]]
        assert row.accuracy_repaired_net_pct == clean["accuracy_repaired_net_pct"]
        assert row.accuracy_detector_pct == clean["accuracy_detector_pct"]
        assert (row.asr_detector_pct, row.flagged_pct) == (poisoned["asr_detector_pct"], poisoned["detected_pct"])
        assert row.repair_seconds == cell["repair"]["seconds"] > 0
        assert row.meets_bar == meets_bar(clean["accuracy_original_pct"], row.accuracy_detector_pct,
                                          row.asr_detector_pct, row.repair_seconds)
    assert rows["finetune"].removed == "nothing"
    assert rows["activation"].removed == "30/60 conv_3 channels"
    assert rows["magnitude"].removed.endswith("% of Dense weights")
    assert rows["head"].removed == "the output layer's weights (re-fitted: probe)"


def test_figures_are_written_and_not_empty(compared) -> None:
    result, figures, _ = compared
    names = sorted(path.name for path in result.figures)
    assert names == ["backdoor_channels.png", "mistakes_tiny.png", "pruning_curves.png"]
    for path in result.figures:
        assert path.parent == figures and path.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(path) as image:
            assert min(image.size) > 200
            assert len(set(image.convert("L").getdata())) > 10  # drawn, not blank


def test_the_pruning_curve_covers_every_channel(compared) -> None:
    result, _, _ = compared
    points = result.curves["tiny"]
    assert [p.channels_pruned for p in points] == list(range(61))
    assert points[0].attack_success_pct["trigger"] == 100.0


def test_without_curves_only_the_methods_run(tiny: TinyBenchmark, tmp_path: Path) -> None:
    figures = tmp_path / "figures"
    figures.mkdir()
    result = compare_benchmark(tiny.root / "data", tiny.root / "models", [TINY_SPEC], quick_methods()[-1:], figures,
                               tmp_path / "cells", curves=False)
    assert [row.method for row in result.rows] == ["none", "head"]
    assert (result.curves, result.activations, result.figures) == ({}, {}, [])
    assert list(figures.iterdir()) == []


def test_each_seed_is_a_cell_and_the_table_spreads_over_them(tiny: TinyBenchmark, tmp_path: Path) -> None:
    """Two seeds of a fine-tuning method: one row per seed, one spread row over both; the cells
    are kept, so a second run reads them back instead of repairing again."""
    data, models, cells = tiny.root / "data", tiny.root / "models", tmp_path / "cells"
    method = [quick_methods()[1]]  # finetune
    first = compare_benchmark(data, models, [TINY_SPEC], method, tmp_path, cells, seeds=[3, 4], curves=False)
    assert [(row.method, row.seed) for row in first.rows] == [("none", None), ("finetune", 3), ("finetune", 4)]
    (none, spread) = first.spread
    assert none.seeds == [] and none.seeds_meeting_bar is None
    accuracies = [row.accuracy_detector_pct for row in first.rows[1:]]
    assert spread.seeds == [3, 4] and spread.accuracy_detector_pct.count == 2
    assert (spread.accuracy_detector_pct.low, spread.accuracy_detector_pct.high) == (min(accuracies), max(accuracies))
    assert [cell["settings"]["seed"] for cell in first.cells["tiny"]] == [3, 4]
    assert sorted(p.name for p in (cells / "tiny" / "finetune").iterdir()) == ["seed_3.json", "seed_4.json"]
    progress: list[str] = []
    again = compare_benchmark(data, models, [TINY_SPEC], method, tmp_path, cells, seeds=[3, 4], curves=False,
                              progress=progress.append)
    assert again.rows == first.rows and "2 of 2 jobs already done" in progress[1]


def test_json_holds_rows_repairs_and_curves(compared) -> None:
    result, _, progress = compared
    content = json.loads(json.dumps(result.to_json()))
    assert len(content["rows"]) == len(content["rows_per_seed"]) == 6
    assert len(content["pruning_curves"]["tiny"]["points"]) == 61
    assert content["rows"][1]["accuracy_detector_pct"]["count"] == 1
    (activation,) = [r for r in content["repairs"]["tiny"] if r["method"] == "activation"]
    assert activation["settings"]["prune_fraction"] == 0.5 and len(activation["repair"]["pruned_channels"]["conv_3"]) == 30
    assert progress[0] == "6 jobs: 1 BadNets x 5 methods x 1 seeds + a pruning curve per BadNet; 1 at a time"
    assert progress[1].startswith("1/6 done (tiny/curve: ") and progress[-1].endswith(", 0 left")
    activations = content["channel_activations"]["tiny"]
    assert len(activations["clean"]) == 60 and list(activations["poisoned"]) == ["trigger"]


def test_rows_of_nothing_are_nothing() -> None:
    assert comparison_rows("tiny", []) == []


@pytest.mark.parametrize(
    "original, detector, asr, seconds, expected",
    [
        (99.5, 98.5, 1.0, 60.0, True),  # exactly at every limit
        (99.5, 98.4, 0.0, 10.0, False),  # 1.1 points lost
        (99.5, 99.5, 1.01, 10.0, False),
        (99.5, 99.5, 0.0, 60.5, False),
    ],
)
def test_the_bar(original: float, detector: float, asr: float, seconds: float, expected: bool) -> None:
    assert meets_bar(original, detector, asr, seconds) is expected


def test_standard_methods_are_every_registered_method_plus_three_variants() -> None:
    methods = standard_methods(seed=7)
    assert [m.label for m in methods] == [*names(), "activation conv_4", "head lda", "maxmargin bounds"]
    assert (methods[-3].settings.layer, methods[-2].settings.fit) == ("conv_4", "lda")
    assert methods[-1].settings.bound_layers == "conv_1,conv_2,conv_3"
    assert names()[:4] == ["magnitude", "finetune", "prune", "activation"]
    assert all(m.settings.seed == 7 for m in methods)
    assert methods[3].settings == ActivationPruningSettings(seed=7)


def test_the_oracle_prunes_the_triggers_most_raised_channels_then_fine_tunes(tiny: TinyBenchmark) -> None:
    from fineprune.benchmark.comparison import oracle_pruning
    from fineprune.data import load_dataset
    from fineprune.metrics import attack_success_pct
    from fineprune.models import load_model, predict_classes
    from fineprune.defenses.channels import mean_channel_activations, prune_channels

    badnet = load_model(tiny.badnet)
    clean, test, poisoned = (load_dataset(p) for p in (tiny.clean_validation, tiny.clean_test, tiny.poisoned))
    result = oracle_pruning(badnet, "tiny", clean, test, poisoned, "trigger", seed=0, count=5)
    assert (result.badnet, result.trigger, result.layer, result.layer_channels) == ("tiny", "trigger", "conv_3", 60)
    raised = (mean_channel_activations(badnet.model, "conv_3", poisoned.x, "unit")
              - mean_channel_activations(badnet.model, "conv_3", clean.x, "unit"))
    assert len(result.channels) == 5 and raised[result.channels[0]] == raised.max()
    assert all(raised[a] >= raised[b] for a, b in zip(result.channels, result.channels[1:]))
    assert all(1 <= place <= 60 for place in result.places_in_pruning_order)
    pruned = prune_channels(badnet.model, "conv_3", result.channels)
    assert result.asr_pruned_pct == attack_success_pct(predict_classes(pruned, poisoned.x, "unit"), poisoned.y)
    assert 0.0 <= result.asr_fine_tuned_pct <= 100.0 and 0.0 <= result.accuracy_fine_tuned_pct <= 100.0


def _row(badnet: str, trigger: str, method: str, asr: float, accuracy: float, seed: int = 0):
    """A spread row of one seed."""
    (row,) = spread_rows([ComparisonRow(badnet, trigger, method, "nothing", 1.0, accuracy, asr, accuracy, asr, 0.0,
                                        False, seed)])
    return row


def test_a_clean_net_is_judged_by_how_little_g_s_accuracy_moves() -> None:
    def cell(detector: float, seconds: float, seed: int) -> dict:
        return {"method": "m", "removed": "nothing", "repair": {"seconds": seconds}, "settings": {"seed": seed},
                "evaluation": {"clean": {"accuracy_original_pct": 98.0, "accuracy_repaired_net_pct": detector,
                                         "accuracy_detector_pct": detector}, "poisoned": []}}

    rows = comparison_rows("clean", [cell(97.5, 30.0, 0), cell(98.6, 30.0, 1), cell(98.0, 61.0, 2)])
    assert [row.trigger for row in rows] == [NO_TRIGGER] * 4
    assert [row.meets_bar for row in rows] == [None, True, False, False]  # 0.5 down; 0.6 up; too slow
    assert all(np.isnan(row.asr_detector_pct) for row in rows)
    spread = spread_rows(rows)
    assert spread[1].seeds_meeting_bar == 1
    table = [[cell.strip() for cell in line.split("|")[1:-1]] for line in comparison_table(spread).splitlines()[2:]]
    assert table[0] == ["clean", NO_TRIGGER, "none", "nothing", "-", "98.00", "-", "98.00", "-", "-", "-"]
    assert table[1][2:] == ["m", "nothing", "30 (30-61)", "98.00 (97.50-98.60)", "-", "98.00 (97.50-98.60)", "-", "-",
                            "1/3"]
    assert best_methods(spread) == {}  # nothing to remove: no best method


def test_the_best_method_is_judged_by_its_median_over_seeds() -> None:
    rows = [ComparisonRow("net", "a", "none", "nothing", None, 97.0, 100.0, 97.0, 100.0, 0.0, None)]
    for method, asrs in [("lucky", [0.0, 30.0, 40.0]), ("steady", [2.0, 3.0, 4.0])]:
        rows += [ComparisonRow("net", "a", method, "nothing", 1.0, 96.0, asr, 96.0, asr, 0.0, asr <= 1.0, seed)
                 for seed, asr in enumerate(asrs)]
    spread = spread_rows(rows)
    assert [row.seeds_meeting_bar for row in spread] == [None, 1, 0]
    assert (spread[1].asr_detector_pct.median, spread[1].asr_detector_pct.low) == (30.0, 0.0)
    assert best_methods(spread)["net"].method == "steady"


def test_the_best_method_is_judged_by_its_worst_trigger() -> None:
    rows = [_row("multi", "a", "none", 100.0, 96.0),
            _row("multi", "a", "x", 0.5, 90.0), _row("multi", "b", "x", 40.0, 90.0),
            _row("multi", "a", "y", 10.0, 92.0), _row("multi", "b", "y", 12.0, 92.0),
            _row("multi", "a", "z", 12.0, 94.0), _row("multi", "b", "z", 1.0, 94.0)]
    best = best_methods(rows)["multi"]
    assert (best.method, best.trigger) == ("z", "a")  # 12% through + 2 points lost: less than y's 12 + 4


def test_a_trigger_missed_on_one_seed_is_the_worst_when_medians_tie() -> None:
    rows = [ComparisonRow("multi", "a", "none", "nothing", None, 97.0, 100.0, 97.0, 100.0, 0.0, None)]
    for trigger, asrs in [("a", [0.0, 0.0, 0.0]), ("b", [0.0, 0.0, 100.0])]:
        rows += [ComparisonRow("multi", trigger, "x", "nothing", 1.0, 97.0, asr, 97.0, asr, 0.0, asr <= 1.0, seed)
                 for seed, asr in enumerate(asrs)]
    best = best_methods(spread_rows(rows))["multi"]
    assert (best.trigger, best.seeds_meeting_bar) == ("b", 2)  # not "a", which meets the bar on every seed


def test_stopping_every_trigger_by_breaking_the_net_is_not_the_best() -> None:
    rows = [_row("net", "a", "none", 100.0, 97.0), _row("net", "a", "broken", 0.0, 10.0),
            _row("net", "a", "probe", 0.8, 95.0)]
    assert best_methods(rows)["net"].method == "probe"


def _seeds(badnet: str, trigger: str, method: str, results: list[tuple[float, float]], seconds: float = 10.0,
           own: float = 97.0) -> list[ComparisonRow]:
    """A method's per-seed rows on one (net, trigger): (G's ASR, G's clean accuracy) per seed."""
    bar = (lambda asr, acc: abs(acc - own) <= 0.5) if trigger == NO_TRIGGER else (
        lambda asr, acc: meets_bar(own, acc, asr, seconds))
    return [ComparisonRow(badnet, trigger, method, "nothing", seconds, acc, asr, acc, asr, 0.0, bar(asr, acc), seed)
            for seed, (asr, acc) in enumerate(results)]


def test_a_method_s_verdict_names_its_worst_cases_and_counts_its_runs_meeting_the_bar() -> None:
    nan = float("nan")
    rows = [ComparisonRow("multi", "a", "none", "nothing", None, 97.0, 100.0, 97.0, 100.0, 0.0, None),
            *_seeds("multi", "a", "m", [(0.0, 96.8), (0.0, 96.6), (0.2, 96.7)], seconds=20.0),
            ComparisonRow("multi", "b", "none", "nothing", None, 97.0, 100.0, 97.0, 100.0, 0.0, None),
            *_seeds("multi", "b", "m", [(0.0, 96.8), (30.0, 96.6), (2.0, 96.7)], seconds=20.0),
            ComparisonRow("one", "c", "none", "nothing", None, 98.0, 99.0, 98.0, 99.0, 0.0, None),
            *_seeds("one", "c", "m", [(0.5, 95.5), (0.4, 96.0), (0.1, 96.5)], seconds=45.0, own=98.0),
            ComparisonRow("clean", NO_TRIGGER, "none", "nothing", None, 98.0, nan, 98.0, nan, nan, None),
            *_seeds("clean", NO_TRIGGER, "m", [(nan, 98.0), (nan, 97.3), (nan, 98.1)], own=98.0)]
    (verdict,) = method_verdicts(spread_rows(rows))
    assert (verdict.method, verdict.runs, verdict.runs_meeting_bar) == ("m", 12, 3 + 1 + 0 + 2)
    assert (verdict.worst_asr.badnet, verdict.worst_asr.trigger, verdict.worst_asr.asr_detector_pct.median) == (
        "multi", "b", 2.0)
    name, lost = verdict.worst_loss
    assert name == "one" and (lost.median, lost.low, lost.high) == pytest.approx((2.0, 1.5, 2.5))
    assert verdict.largest_clean_move == ("clean", pytest.approx(0.7)) and verdict.seconds == (10.0, 45.0)
    table = [[cell.strip() for cell in line.split("|")[1:-1]] for line in verdict_table([verdict]).splitlines()]
    assert table[2] == ["m", "6/12", "2.00 (0.00-30.00) (multi/b)", "2.00 (1.50-2.50) (one)", "0.70 (clean)", "10-45"]


def test_a_method_run_only_on_clean_nets_has_no_backdoor_worst_case() -> None:
    nan = float("nan")
    rows = [ComparisonRow("clean", NO_TRIGGER, "none", "nothing", None, 98.0, nan, 98.0, nan, nan, None),
            *_seeds("clean", NO_TRIGGER, "m", [(nan, 98.2)], own=98.0)]
    (verdict,) = method_verdicts(spread_rows(rows))
    assert (verdict.runs_meeting_bar, verdict.runs, verdict.worst_asr, verdict.worst_loss) == (1, 1, None, None)
    row = [cell.strip() for cell in verdict_table([verdict]).splitlines()[2].split("|")[1:-1]]
    assert row == ["m", "1/1", "-", "-", "0.20 (clean)", "10"]


def test_unlearn_rows_say_whether_the_true_targets_were_found() -> None:
    spec = BadNetSpec("multi", {"eyebrows": 1, "lipstick": 5, "sunglasses": 8}, ())
    outcome = MethodOutcome(Method("unlearn", settings_for("unlearn")), {"details": {"flagged": [5, 8, 77]}},
                            "reversed triggers of class 5, 8, 77 unlearned", evaluation=None)
    assert annotate_targets(outcome, spec).removed.endswith("; true targets found 2/3, 1 flagged wrongly")
    other = MethodOutcome(Method("head", settings_for("head")), {"details": {}}, "the output layer", evaluation=None)
    assert annotate_targets(other, spec) is other


def test_an_interrupted_comparison_resumes_where_it_stopped(tiny: TinyBenchmark, tmp_path: Path) -> None:
    """Stopped (as by Ctrl-C) once its first cell is kept, the next run repairs only the rest."""
    data, models, cells = tiny.root / "data", tiny.root / "models", tmp_path / "cells"
    methods = [quick_methods()[-1], quick_methods()[1]]  # head, finetune

    def stop_after_a_cell(message: str) -> None:
        if " done (" in message:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compare_benchmark(data, models, [TINY_SPEC], methods, tmp_path, cells, curves=False,
                          progress=stop_after_a_cell)
    assert [p.name for p in cells.rglob("*.json")] == ["seed_0.json"]
    progress: list[str] = []
    result = compare_benchmark(data, models, [TINY_SPEC], methods, tmp_path, cells, curves=False,
                               progress=progress.append)
    assert progress[1] == f"1 of 2 jobs already done in {cells}/; 1 to run"
    assert progress[2].startswith("1/1 done (tiny/finetune/seed_0: ")
    assert [row.method for row in result.rows] == ["none", "head", "finetune"]


def test_worker_processes_give_the_cells_a_single_process_gives(tiny: TinyBenchmark, tmp_path: Path) -> None:
    """`--jobs 2`: cells spawned in two workers, each with its own TensorFlow, repeat the numbers
    of the same cells run in this process (the same machine, the same seeds)."""
    data, models = tiny.root / "data", tiny.root / "models"
    method = [quick_methods()[-1]]  # head
    alone = compare_benchmark(data, models, [TINY_SPEC], method, tmp_path, tmp_path / "alone", seeds=[0, 1],
                              curves=False)
    side_by_side = compare_benchmark(data, models, [TINY_SPEC], method, tmp_path, tmp_path / "two", seeds=[0, 1],
                                     workers=2, curves=False)

    def numbers(rows: list[ComparisonRow]) -> list[tuple]:
        return [(r.method, r.seed, r.accuracy_detector_pct, r.asr_detector_pct, r.flagged_pct) for r in rows]

    assert numbers(side_by_side.rows) == numbers(alone.rows) and len(side_by_side.rows) == 3


def test_a_cell_computed_by_other_code_is_recomputed_and_the_others_kept(
        tiny: TinyBenchmark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each cell records the version of its code; after `head`'s module changes (a stand-in version
    here), a rerun recomputes head's cell, keeps prune's and says why. A cell whose settings changed
    is recomputed too, and said apart."""
    data, models, cells = tiny.root / "data", tiny.root / "models", tmp_path / "cells"
    head, prune = quick_methods()[-1], quick_methods()[2]
    first = compare_benchmark(data, models, [TINY_SPEC], [head, prune], tmp_path, cells, curves=False)
    own = "fineprune.benchmark.comparison"
    assert [cell["code"] for cell in first.cells["tiny"]] == [
        code_version("fineprune.defenses.head", own), code_version("fineprune.defenses.fine_pruning", own)]

    real = comparison.code_version
    monkeypatch.setattr(comparison, "code_version",
                        lambda *modules: real(*modules) + ("-edited" if "fineprune.defenses.head" in modules else ""))
    progress: list[str] = []
    edited = compare_benchmark(data, models, [TINY_SPEC], [head, prune], tmp_path, cells, curves=False,
                               progress=progress.append)
    assert progress[1] == "1 stored cell was computed by other code (head): recomputing them"
    assert [line.split(":")[0] for line in progress if " done (" in line] == ["1/1 done (tiny/head/seed_0"]
    assert edited.cells["tiny"][1] == first.cells["tiny"][1]  # prune's cell read back, its time and all
    assert edited.cells["tiny"][0]["code"].endswith("-edited")

    monkeypatch.undo()  # head's code as it was, prune's settings changed
    progress.clear()
    stricter = Method("prune", replace(prune.settings, accuracy_budget=8.0))
    compare_benchmark(data, models, [TINY_SPEC], [head, stricter], tmp_path, cells, curves=False,
                      progress=progress.append)
    assert progress[1:3] == ["1 stored cell was computed by other code (head): recomputing them",
                             "1 stored cell was computed from other inputs (settings): recomputing them"]


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def test_the_csv_has_a_row_per_cell_with_the_json_s_values(compared, tmp_path: Path) -> None:
    result, _, _ = compared
    write_csv(tmp_path / "comparison.csv", CSV_COLUMNS, result.csv_rows())
    header, rows = read_csv(tmp_path / "comparison.csv")
    cells = json.loads(json.dumps(result.to_json()))["repairs"]["tiny"]
    assert header == list(CSV_COLUMNS) and len(rows) == len(cells) == 5
    for row, cell in zip(rows, cells):
        clean, (poisoned,) = cell["evaluation"]["clean"], cell["evaluation"]["poisoned"]
        assert (row["net"], row["trigger"], row["method"], int(row["seed"])) == ("tiny", "trigger", cell["method"], 0)
        assert json.loads(row["settings"]) == cell["settings"] and row["code_version"] == cell["code"]
        numbers = {"original_accuracy_pct": clean["accuracy_original_pct"],
                   "original_asr_pct": poisoned["asr_original_pct"],
                   "g_accuracy_pct": clean["accuracy_detector_pct"], "g_asr_pct": poisoned["asr_detector_pct"],
                   "repaired_net_accuracy_pct": clean["accuracy_repaired_net_pct"],
                   "repaired_net_asr_pct": poisoned["asr_repaired_net_pct"], "flagged_pct": poisoned["detected_pct"],
                   "repair_seconds": cell["repair"]["seconds"]}
        assert {name: float(row[name]) for name in numbers} == numbers


def test_a_clean_net_s_csv_row_leaves_the_asr_columns_empty_and_each_trigger_has_its_own(tmp_path: Path) -> None:
    def cell(poisoned: list[dict]) -> dict:
        return {"method": "head", "settings": {"method": "head", "seed": 2}, "removed": "nothing", "code": "0+ab",
                "repair": {"seconds": 3.5}, "evaluation": {"clean": {
                    "accuracy_original_pct": 98.0, "accuracy_repaired_net_pct": 97.0, "accuracy_detector_pct": 96.5},
                    "poisoned": poisoned}}

    def trigger(name: str, asr: float) -> dict:
        return {"file": f"{name}_poisoned_data.h5", "asr_original_pct": 100.0, "asr_repaired_net_pct": asr,
                "asr_detector_pct": asr, "detected_pct": 100.0 - asr}

    result = BenchmarkComparison([], [], {"clean": [cell([])], "multi": [cell([trigger("a", 1.0), trigger("b", 2.5)])]},
                                 {}, {}, [])
    write_csv(tmp_path / "comparison.csv", CSV_COLUMNS, result.csv_rows())
    _, rows = read_csv(tmp_path / "comparison.csv")
    assert [(row["net"], row["trigger"], row["g_asr_pct"]) for row in rows] == [
        ("clean", NO_TRIGGER, ""), ("multi", "a", "1.0"), ("multi", "b", "2.5")]
    asr_columns = ("original_asr_pct", "g_asr_pct", "repaired_net_asr_pct", "flagged_pct")
    assert [rows[0][name] for name in asr_columns] == ["", "", "", ""]
    assert (rows[0]["g_accuracy_pct"], rows[0]["repair_seconds"], rows[0]["seed"]) == ("96.5", "3.5", "2")


def test_the_csv_s_header_is_documented() -> None:
    assert f"`{','.join(CSV_COLUMNS)}`" in (REPO_ROOT / "docs" / "comparison.md").read_text()
