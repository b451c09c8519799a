"""Tests for fineprune.benchmark.detection_check: the verdicts and target ranks from given margins,
the table and summary they make, and the margins kept so that a run resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import TARGET, TintedBadNet
from fineprune.benchmark.detection_check import (NetToJudge, check_detection, detection_summary, detection_table,
                                                 judge, net_margins)
from fineprune.detection.input_margins import InputMarginSettings
from fineprune.detection.margins import MarginTestSettings
from fineprune.models import save_model


@pytest.fixture
def ordinary() -> np.ndarray:
    return np.random.default_rng(0).gamma(shape=20.0, scale=5.0, size=200)


def as_net(name: str, kind: str, targets: tuple[int, ...]) -> NetToJudge:
    return NetToJudge(name, kind, Path("unused.h5"), None, targets, np.zeros((5, 55, 47, 3), np.float32))  # margins given


def test_judging_counts_each_test_s_flags_and_ranks_the_targets(ordinary: np.ndarray) -> None:
    by_input, by_features = ordinary.copy(), ordinary.copy()
    by_input[[3, 9]] = [500.0, 420.0]  # target 3 and another class, by the input-space test
    by_features[7] = 480.0  # target 7, by the feature-range test only
    row = judge(as_net("bd", "real", (3, 7)), {"input": by_input, "features": by_features}, MarginTestSettings())
    assert row.flagged == {"input": [3, 9], "features": [7], "both": [3, 9, 7]}
    assert row.targets_flagged("both") == [3, 7] and row.others_flagged("both") == [9]
    input_3, input_7 = row.found["input"]
    assert (input_3.rank, input_3.flagged) == (1, True) and input_3.p_value < 1e-6
    assert not input_7.flagged and input_7.rank > 2 and input_7.p_value > 0.05
    assert row.found["features"][1].rank == 1 and row.found["features"][1].flagged


def test_the_table_and_summary_say_what_was_flagged(ordinary: np.ndarray) -> None:
    spiked = ordinary.copy()
    spiked[3] = 500.0
    rows = [judge(as_net("bd", "real", (3,)), {"input": spiked, "features": ordinary}, MarginTestSettings()),
            judge(as_net("calm", "clean", ()), {"input": ordinary, "features": spiked}, MarginTestSettings())]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in detection_table(rows).splitlines()[2:]]
    assert cells[0][0] == "real bd" and cells[0][1].startswith("**3: rank 1, p ") and cells[0][2] == "none"
    assert cells[0][5:] == ["1 of 1", "none"]
    assert cells[1] == ["clean calm", "-", "none", "-", "3", "0 of 0", "3"]
    summary = detection_summary(rows)
    assert "- input: real targets flagged 1 of 1, other classes flagged on those nets 0; clean nets with a false " \
           "alarm 0 of 1" in summary
    assert "- features: real targets flagged 0 of 1, other classes flagged on those nets 0; clean nets with a " \
           "false alarm 1 of 1" in summary


def test_margins_are_kept_and_a_run_resumes_from_them(wide: TintedBadNet, tmp_path: Path) -> None:
    model = tmp_path / "wide_bd_net.h5"
    save_model(wide.badnet.model, model, {"input_scale": "unit"})
    net = NetToJudge("wide", "synthetic", model, None, (TARGET,), wide.clean.x[:5])
    quick, brief = MarginTestSettings(margin_steps=50, significance=0.01), InputMarginSettings(input_steps=100)
    said: list[str] = []
    (first,) = check_detection([net], tmp_path / "kept", quick, brief, said.append)
    kept = tmp_path / "kept" / "synthetic_wide.json"
    assert first.targets_flagged("both") == [TARGET] and said[-1].startswith("1/1 done")
    stored = json.loads(kept.read_text())
    np.testing.assert_allclose(stored["result"]["input"], net_margins(net, quick, brief)["input"], rtol=1e-6)
    said.clear()
    (again,) = check_detection([net], tmp_path / "kept", quick, brief, said.append)  # read back, not measured
    assert again == first and said == [f"1 of 1 jobs already done in {tmp_path / 'kept'}/; 0 to run"]
    check_detection([net], tmp_path / "kept", quick, InputMarginSettings(input_steps=5), said.append)
    assert said[-1].startswith("1/1 done")  # other settings: measured again
