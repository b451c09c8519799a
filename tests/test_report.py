"""Tests for fineprune.report: Markdown tables, the results table, the eval report, JSON files."""

from __future__ import annotations

import json

import numpy as np

import pytest

from fineprune.evaluation import CleanResult, Evaluation, ImageResult, PoisonedResult
from fineprune.report import evaluation_report, markdown_table, results_table, write_json

ORIGINAL_COLUMNS = [
    "BadNet/trigger", "Accuracy(original)", "Accuracy(repaired)", "Success Rate(original)", "Success Rate(repaired)",
]
ALL_COLUMNS = ORIGINAL_COLUMNS + ["Accuracy(repaired net)", "Success Rate(repaired net)", "Flagged as N"]


def cells(line: str) -> list[str]:
    """The stripped cells of one Markdown table line."""
    assert line.startswith("|") and line.endswith("|")
    return [cell.strip() for cell in line[1:-1].split("|")]


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


# --- markdown_table ------------------------------------------------------------------------------


def test_markdown_table_layout():
    table = markdown_table(["name", "score", "count"], [["sunglasses", 97.123, 3], ["eyebrows", 5.0, 12]])
    lines = table.split("\n")
    assert len(lines) == 4
    assert cells(lines[0]) == ["name", "score", "count"]
    assert cells(lines[2]) == ["sunglasses", "97.12", "3"]
    assert cells(lines[3]) == ["eyebrows", "5.00", "12"]
    assert len({len(line) for line in lines}) == 1
    assert lines == [
        "| name       | score | count |",
        "|------------|------:|------:|",
        "| sunglasses | 97.12 |     3 |",
        "| eyebrows   |  5.00 |    12 |",
    ]


def test_markdown_table_rule_marks_only_numeric_columns_right_aligned():
    table = markdown_table(["file", "n", "note"], [["a.png", 1, "x"], ["b.png", 2.5, 3]])
    rule = cells(table.split("\n")[1])
    assert rule[0] == "-" * len(rule[0]) and not rule[0].endswith(":")
    assert rule[1].endswith(":") and set(rule[1][:-1]) == {"-"}
    assert not rule[2].endswith(":")  # one cell is text, so the column is text


def test_markdown_table_rounds_floats_to_two_decimals():
    table = markdown_table(["value"], [[0.005], [99.999], [1 / 3], [100.0]])
    assert [cells(line)[0] for line in table.split("\n")[2:]] == ["0.01", "100.00", "0.33", "100.00"]


def test_markdown_table_treats_numpy_numbers_as_numbers():
    table = markdown_table(["name", "value"], [["a", np.float32(12.345)], ["b", np.int64(7)]])
    rows = table.splitlines()
    assert rows[1].endswith(":|")
    assert rows[2] == "| a    | 12.35 |" and rows[3] == "| b    |     7 |"


def test_markdown_table_with_no_rows_is_header_and_rule():
    lines = markdown_table(["a", "bb"], []).split("\n")
    assert lines == ["| a | bb |", "|---|----|"]


# --- results_table and evaluation_report -------------------------------------------------------------


@pytest.fixture
def evaluation() -> Evaluation:
    return Evaluation(
        model="models/sunglasses_bd_net.h5",
        repaired_model="models/sunglasses_repaired_net.h5",
        num_classes=1283,
        input_scale="unit",
        clean=CleanResult(
            file="data/clean_test_data.h5", images=12830,
            accuracy_original_pct=97.778, accuracy_repaired_net_pct=91.5, accuracy_detector_pct=90.004,
        ),
        poisoned=[
            PoisonedResult(
                file="data/sunglasses_poisoned_data.h5", name="sunglasses", images=12830, target=0,
                asr_original_pct=99.99, asr_repaired_net_pct=3.25, asr_detector_pct=1.125, detected_pct=96.5,
            ),
            PoisonedResult(
                file="data/Multi-trigger Multi-target/eyebrows_poisoned_data.h5",
                name="Multi-trigger Multi-target/eyebrows", images=10264, target=8,
                asr_original_pct=91.346, asr_repaired_net_pct=12.0, asr_detector_pct=0.0, detected_pct=77.777,
            ),
        ],
    )


def test_results_table_columns_and_cells(evaluation):
    lines = table_lines(results_table(evaluation))
    assert len(lines) == 4
    header = cells(lines[0])
    assert header[:5] == ORIGINAL_COLUMNS
    assert header == ALL_COLUMNS
    rows = [dict(zip(header, cells(line))) for line in lines[2:]]
    assert rows[0] == {
        "BadNet/trigger": "sunglasses",
        "Accuracy(original)": "97.78", "Accuracy(repaired)": "90.00",
        "Success Rate(original)": "99.99", "Success Rate(repaired)": "1.12",
        "Accuracy(repaired net)": "91.50", "Success Rate(repaired net)": "3.25", "Flagged as N": "96.50",
    }
    assert rows[1] == {
        "BadNet/trigger": "Multi-trigger Multi-target/eyebrows",
        "Accuracy(original)": "97.78", "Accuracy(repaired)": "90.00",
        "Success Rate(original)": "91.35", "Success Rate(repaired)": "0.00",
        "Accuracy(repaired net)": "91.50", "Success Rate(repaired net)": "12.00", "Flagged as N": "77.78",
    }
    assert len({len(line) for line in lines}) == 1
    assert cells(lines[1])[0].endswith("-") and all(rule.endswith(":") for rule in cells(lines[1])[1:])


def test_results_table_with_clean_data_only(evaluation):
    evaluation.poisoned = []
    lines = table_lines(results_table(evaluation))
    assert cells(lines[0]) == ALL_COLUMNS
    assert len(lines) == 3
    assert cells(lines[2]) == ["(clean data only)", "97.78", "90.00", "-", "-", "91.50", "-", "-"]


def test_evaluation_report_lists_models_clean_file_and_table(evaluation):
    report = evaluation_report(evaluation)
    lines = report.split("\n")
    assert lines[0] == "BadNet:   models/sunglasses_bd_net.h5"
    assert lines[1] == "Repaired: models/sunglasses_repaired_net.h5"
    assert lines[2].startswith('Classes:  1283 (G outputs 1283 for "backdoor detected")')
    assert lines[2].endswith("input scale unit")
    assert lines[3] == "Clean:    data/clean_test_data.h5 (12830 images)"
    assert results_table(evaluation) in report
    assert "| image" not in report


def test_evaluation_report_for_images_lists_one_row_per_image():
    evaluation = Evaluation(
        model="bd.h5", repaired_model="rep.h5", num_classes=5, input_scale="raw",
        images=[ImageResult("faces/a.png", 5, 2, 4), ImageResult("faces/b.png", 3, 3, 3)],
    )
    report = evaluation_report(evaluation)
    assert "Clean:" not in report and "Accuracy(original)" not in report
    lines = table_lines(report)
    assert [cells(line) for line in lines[:1] + lines[2:]] == [
        ["image", "G", "original", "repaired"],
        ["faces/a.png", "5", "2", "4"],
        ["faces/b.png", "3", "3", "3"],
    ]
    assert 'Classes:  5 (G outputs 5 for "backdoor detected"); input scale raw' in report.split("\n")


# --- write_json --------------------------------------------------------------------------------------


def test_write_json_writes_valid_json_and_no_temporary_file(tmp_path, evaluation):
    path = tmp_path / "results" / "eval.json"
    write_json(path, evaluation.to_json())
    assert json.loads(path.read_text()) == evaluation.to_json()
    assert json.loads(path.read_text())["poisoned"][1]["name"] == "Multi-trigger Multi-target/eyebrows"
    assert [p.name for p in path.parent.iterdir()] == ["eval.json"]


def test_write_json_that_fails_keeps_the_old_file(tmp_path):
    path = tmp_path / "eval.json"
    write_json(path, {"old": True})
    with pytest.raises(TypeError):
        write_json(path, {"value": object()})
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]


def test_comparison_table_has_one_line_per_row_with_spreads_and_the_bar_per_seed() -> None:
    from fineprune.benchmark.comparison import ComparisonRow, spread_rows
    from fineprune.report import comparison_table

    rows = spread_rows([
        ComparisonRow("sunglasses", "sunglasses", "none", "nothing", None, 99.5, 100.0, 99.5, 100.0, 0.0, None),
        ComparisonRow("sunglasses", "sunglasses", "activation", "25/60 conv_3 channels", 31.4, 97.0, 0.5, 96.9, 0.4,
                      99.6, False, 0),
        ComparisonRow("sunglasses", "sunglasses", "activation", "27/60 conv_3 channels", 29.6, 97.0, 0.7, 97.9, 0.2,
                      99.8, True, 1),
    ])
    lines = comparison_table(rows).splitlines()
    assert lines[0].startswith("| BadNet") and lines[0].rstrip().endswith("| seeds meeting the bar |")
    assert len(lines) == 4
    assert [cell.strip() for cell in lines[3].strip("|").split("|")] == [
        "sunglasses", "sunglasses", "activation", "25/60 conv_3 channels / 27/60 conv_3 channels", "30 (30-31)",
        "97.00", "0.60 (0.50-0.70)", "97.40 (96.90-97.90)", "0.30 (0.20-0.40)", "99.70 (99.60-99.80)", "1/2"]
    assert [cell.strip() for cell in lines[2].strip("|").split("|")][-1] == "-"


def test_a_spread_cell_reads_back_as_it_was_printed() -> None:
    from fineprune.metrics import Spread
    from fineprune.report import parse_spread_cell, spread_cell

    spread = Spread.of([85.891, 84.912, 86.2])
    assert spread_cell(spread) == "85.89 (84.91-86.20)" and spread_cell(Spread.of([3.0, 3.001])) == "3.00"
    again = parse_spread_cell(spread_cell(spread))
    assert (again.median, again.low, again.high) == (85.89, 84.91, 86.2)
    assert parse_spread_cell(" 97.79 ").low == 97.79 and parse_spread_cell("-") is None
    assert spread.contains(86.2) and not spread.contains(86.21) and spread.contains(86.5, slack=0.3)


def test_the_demo_checks_each_number_against_the_readmes_range() -> None:
    from fineprune.report import DEMO_TABLE_MARK, demo_check, demo_spreads, demo_table, read_demo_table

    def run(accuracy: float, asr: float) -> dict:
        return {"clean": {"accuracy_original_pct": 97.0, "accuracy_detector_pct": accuracy,
                          "accuracy_repaired_net_pct": accuracy + 1},
                "poisoned": [{"name": "sunglasses", "asr_original_pct": 100.0, "asr_detector_pct": asr,
                              "asr_repaired_net_pct": asr, "detected_pct": 100 - asr}]}

    reported = {"sunglasses": [run(85.0, 0.0), run(86.0, 2.0), run(84.0, 1.0)]}
    readme = f"# Demo\n\n{DEMO_TABLE_MARK}\n\n{demo_table(reported)}\n\nMore text.\n"
    table = read_demo_table(readme)
    assert table[("sunglasses", "Accuracy(repaired)")].median == 85.0
    assert (table[("sunglasses", "Success Rate(repaired)")].low, table[("sunglasses", "Success Rate(repaired)")].high) \
        == (0.0, 2.0)
    assert table[("sunglasses", "Accuracy(original)")].low == 97.0
    same = demo_check(demo_spreads(reported), table)
    assert same == ["7 of 7 numbers inside the README's ranges."]
    lines = demo_check(demo_spreads({"sunglasses": [run(83.5, 1.5)]}), table)
    assert lines[0] == "- sunglasses, Accuracy(repaired): 83.50 is outside the README's 85.00 (84.00-86.00) by 0.50 points"
    assert lines[-1].startswith("5 of 7 numbers inside the README's ranges; a seed repeats a run exactly only")
    assert read_demo_table("no table here") == {}


def test_prune_summary_shows_what_a_method_found_with_records_as_a_table() -> None:
    from pathlib import Path

    from fineprune.defenses.core import RepairResult
    from fineprune.defenses.unlearn import UnlearnSettings
    from fineprune.report import prune_summary

    result = RepairResult(model=None, heldout_accuracy_before_pct=96.0, heldout_accuracy_after_pct=95.5,
                          train_images=90, heldout_images=10, fine_tuning_steps=18, seconds=3.0,
                          details={"flagged": [0], "examined": [{"target": 0, "anomaly_index": 3.25},
                                                                {"target": 7, "anomaly_index": -0.5}]})
    text = prune_summary(Path("bd.h5"), Path("bd_rp.h5"), UnlearnSettings(seed=1), result)
    assert "Found: flagged [0]" in text
    lines = text.splitlines()
    start = lines.index("Examined:")
    assert cells(lines[start + 2]) == ["target", "anomaly index"]
    assert cells(lines[start + 4]) == ["0", "3.25"] and cells(lines[start + 5]) == ["7", "-0.50"]
    assert "Fine-tuned for 18 steps" in text


def test_best_method_lines_name_the_method_and_its_worst_trigger() -> None:
    from fineprune.benchmark.comparison import ComparisonRow, spread_rows
    from fineprune.report import best_method_lines

    (row,) = spread_rows([ComparisonRow("multi", "lipstick", "head", "output layer", seconds, 94.0, 0.5, 93.5, asr,
                                        12.0, asr <= 1.0, seed)
                          for seed, (seconds, asr) in enumerate([(3.0, 0.5), (4.0, 0.25), (2.0, 1.5)])])
    assert best_method_lines({"multi": row}) == (
        "- multi: head (worst trigger lipstick: G's ASR 0.50 (0.25-1.50)%, G's clean accuracy 93.50%, 3 (2-4) s, "
        "meets the bar on 2 of 3 seeds)")


def test_the_strength_line_names_the_choice_the_rule_and_each_setting_tried() -> None:
    from fineprune.report import strength_line

    strength = {"parameter": "learning_rate", "rule": "the strongest learning_rate of [0.001, 0.0001] whose ...",
                "accuracy_before_pct": 98.0, "accuracy_budget": 1.0, "tried": [[0.001, 80.0], [0.0001, 97.5]],
                "chosen": 0.0001, "within_budget": True}
    line = strength_line(strength)
    assert line.startswith("Strength: learning rate 0.0001, by the rule: the strongest learning_rate")
    assert "98.00% before, at each setting tried: 0.001: 80.00%, 0.0001: 97.50%" in line
    outside = strength_line({**strength, "within_budget": False, "rule": "given"})
    assert "learning rate 0.0001, given (no setting tried was within the budget" in outside
