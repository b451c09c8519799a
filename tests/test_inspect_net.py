"""End-to-end tests of inspect_net.py on the tinted BadNet written to files: the verdict on the
terminal, the JSON, the figures, no trigger reversed unless the figures or --reverse-triggers ask,
--quiet, and bad input refused in one line with nothing changed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import WIDE_CLASSES, TintedBadNet, assert_bad_input, file_digests
from fineprune.data import save_dataset
from fineprune.models import save_model

# The verdict's correctness is test_inspection's; here only what the command does with it, so the
# search is kept brief.
BRIEF = ["--significance", 0.01, "--ordinary-classes", 2, "--reversal-steps", 40]


@pytest.fixture(scope="module")
def files(wide: TintedBadNet, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("inspect")
    model, clean = folder / "wide_bd_net.h5", folder / "clean.h5"
    save_model(wide.badnet.model, model, {"input_scale": "unit"})
    save_dataset(clean, wide.clean.x, wide.clean.y)
    return model, clean


def test_prints_the_verdict_and_writes_json_and_figures(run_cli, files, tmp_path: Path) -> None:
    from PIL import Image

    model, clean = files
    result = run_cli("inspect_net", model, "--clean-data", clean, *BRIEF, "--class", 0, "--json",
                     tmp_path / "found.json", "--plots", tmp_path / "figures")

    assert result.code == 0, result.err
    assert "Verdict: " in result.out and "| class | verdict |" in result.out
    assert "maximum margin of every class over the input space" in result.err
    assert "maximum margin of every class over the clean feature range" in result.err
    assert "reversing a trigger for class" in result.err
    record = json.loads((tmp_path / "found.json").read_text())
    assert {"model", "backdoored", "suspects", "classes_examined", "seconds"} <= set(record)
    proposed = [e["target"] for e in record["examined"] if e["proposed"]]
    assert record["classes_examined"] == WIDE_CLASSES and record["model"] == str(model)
    assert record["classes_reversed"] == len(proposed) + (0 not in proposed) + 2
    assert [e["target"] for e in record["examined"] if e["asked"]] == [0]
    assert record["backdoored"] == bool(record["suspects"])
    shown = [s["class"] for s in record["suspects"]] or [max(record["examined"], key=lambda e: e["anomaly_index"])["target"]]
    figures = sorted((tmp_path / "figures").glob("*.png"))
    assert [f.name for f in figures] == [f"margins_{model.stem}.png", f"margins_{model.stem}_input.png",
                                         f"mask_sizes_{model.stem}.png",
                                         *(f"trigger_{model.stem}_class_{k}.png" for k in sorted({*shown, 0}))]
    for figure in figures:
        pixels = np.asarray(Image.open(figure).convert("L"), dtype=np.float32)
        assert pixels.std() > 10  # drawn, not blank


def test_without_plots_no_trigger_is_reversed_and_the_verdict_is_the_same(run_cli, files, tmp_path: Path) -> None:
    model, clean = files
    plain = run_cli("inspect_net", model, "--clean-data", clean, *BRIEF, "--class", 3, "--json",
                    tmp_path / "plain.json")
    assert plain.code == 0, plain.err
    assert ("the maximum-margin tests decide (and examine class 3 as asked); trigger reversal skipped (--plots DIR"
            in plain.err)
    assert "reversing a trigger" not in plain.err and "mask (% of image)" not in plain.out
    assert "Trigger reversal skipped: the maximum-margin tests decide the verdict. --plots DIR draws" in plain.out
    record = json.loads((tmp_path / "plain.json").read_text(),  # strict JSON: a value not measured is null
                        parse_constant=lambda constant: pytest.fail(f"{constant} in the JSON"))
    assert record["classes_reversed"] == 0 and record["suspects"][0]["mask_share_pct"] is None and record["classes_examined"] == WIDE_CLASSES
    assert ([(e["target"], e["asked"]) for e in record["examined"]]
            == [(s["class"], False) for s in record["suspects"]] + [(3, True)])

    asked = run_cli("inspect_net", model, "--clean-data", clean, *BRIEF, "--class", 3, "--reverse-triggers", "--json",
                    tmp_path / "reversed.json")
    assert asked.code == 0, asked.err
    assert "reversing a trigger for class" in asked.err and "mask (% of image)" in asked.out
    reversed_ = json.loads((tmp_path / "reversed.json").read_text())
    assert reversed_["classes_reversed"] == len(record["suspects"]) + 1 + 2  # flagged, asked, 2 ordinary
    assert plain.out.splitlines()[0] == asked.out.splitlines()[0]  # the verdict
    for key in ("backdoored", "median_margin", "largest_unflagged", "input_median_margin", "input_largest_unflagged"):
        assert record[key] == reversed_[key], key
    assert ([{k: v for k, v in s.items() if "margin" in k or "p_value" in k} for s in record["suspects"]]
            == [{k: v for k, v in s.items() if "margin" in k or "p_value" in k} for s in reversed_["suspects"]])


def test_quiet_prints_no_progress_but_the_report_and_errors(run_cli, files) -> None:
    model, clean = files
    result = run_cli("inspect_net", model, "--clean-data", clean, *BRIEF, "--quiet")
    assert result.code == 0 and result.err == "" and result.out.startswith("Verdict: ")
    assert_bad_input(run_cli("inspect_net", model, "--no-clean-data", "--reverse-triggers", "--quiet"),
                     "inspect_net.py", "--reverse-triggers needs clean data")


def test_without_clean_data_the_input_space_test_decides_and_its_images_are_drawn(run_cli, files,
                                                                                 tmp_path: Path) -> None:
    model, _ = files
    result = run_cli("inspect_net", model, "--no-clean-data", "--input-steps", 100, "--significance", 0.01,
                     "--class", 3, "--json", tmp_path / "found.json", "--plots", tmp_path / "figures")
    assert result.code == 0, result.err
    assert "no clean data: the input-space margin test only" in result.err
    assert "Verdict: BACKDOORED. Suspected target class(es): 0" in result.out
    assert "No clean data: the test over the clean feature range was skipped." in result.out
    record = json.loads((tmp_path / "found.json").read_text())
    assert record["classes_reversed"] == 0 and [s["class"] for s in record["suspects"]] == [0]
    assert record["suspects"][0]["input_p_value"] < 0.01 and "margin" not in record["suspects"][0]
    assert [e["target"] for e in record["examined"]] == [0, 3]
    assert sorted(f.name for f in (tmp_path / "figures").glob("*.png")) == [
        f"margin_images_{model.stem}.png", f"margins_{model.stem}_input.png"]


def test_bad_input_is_one_line_and_changes_nothing(run_cli, files, tmp_path: Path) -> None:
    model, clean = files
    before = file_digests(model.parent)
    assert_bad_input(run_cli("inspect_net", tmp_path / "missing.h5", "--clean-data", clean), "inspect_net.py",
                     "missing.h5: no such file")
    assert_bad_input(run_cli("inspect_net", model, "--clean-data", clean, "--json", model), "inspect_net.py",
                     "--json would overwrite the input")
    (tmp_path / "a_file").write_text("")
    assert_bad_input(run_cli("inspect_net", model, "--clean-data", clean, "--plots", tmp_path / "a_file"),
                     "inspect_net.py", "--plots names a file, not a folder")
    assert_bad_input(run_cli("inspect_net", model, "--clean-data", clean, "--reversal-steps", 0), "inspect_net.py",
                     "--reversal-steps 0 must be at least 1")
    assert_bad_input(run_cli("inspect_net", model, "--clean-data", model), "inspect_net.py", "no 'data' data set")
    assert_bad_input(run_cli("inspect_net", model, "--clean-data", clean, "--class", WIDE_CLASSES), "inspect_net.py",
                     f"--class {WIDE_CLASSES} is outside [0, {WIDE_CLASSES - 1}]")
    assert_bad_input(run_cli("inspect_net", model, "--no-clean-data", "--detector", "margin"), "inspect_net.py",
                     "--detector margin needs clean data: drop --no-clean-data, or use --detector input")
    assert_bad_input(run_cli("inspect_net", model, "--input-steps", 0), "inspect_net.py",
                     "--input-steps 0 must be at least 1")
    assert file_digests(model.parent) == before


def test_help_lists_the_detection_settings(run_cli) -> None:
    result = run_cli("inspect_net", "--help")
    assert result.code == 0
    for option in ("--detector", "--margin-steps", "--input-steps", "--input-rate", "--input-starts", "--class-batch",
                   "--no-clean-data", "--significance", "--max-targets", "--suspects",
                   "--ordinary-classes", "--reversal-steps", "--anomaly-threshold", "--seed", "--plots", "--json",
                   "--reverse-triggers", "--quiet"):
        assert option in result.out
