"""Tests for fineprune.benchmark.tradeoff: every strength a rule measures becomes a point of G, the
rule's pick is marked, a method without a rule gives one point; the figure and table are drawn."""

from __future__ import annotations

import pytest

from conftest import TinyBenchmark
from fineprune import plots
from fineprune.benchmark.build import BadNetSpec
from fineprune.benchmark.comparison import Method
from fineprune.benchmark.tradeoff import TradeoffPoint, tradeoff_benchmark
from fineprune.defenses import settings_for
from fineprune.defenses.core import LEARNING_RATES
from fineprune.report import tradeoff_table

TINY_SPEC = BadNetSpec("tiny", {"trigger": 0}, ("trigger_poisoned_data.h5",))
METHODS = [Method("finetune", settings_for("finetune", epochs=1, batch_size=16)), Method("head", settings_for("head"))]


@pytest.fixture(scope="module")
def curves(tiny: TinyBenchmark, tmp_path_factory: pytest.TempPathFactory):
    cells = tmp_path_factory.mktemp("tradeoff")
    return tradeoff_benchmark(tiny.root / "data", tiny.root / "models", [TINY_SPEC], METHODS, cells), cells


def test_a_ladder_gives_a_point_per_rung_and_marks_one(curves) -> None:
    result, _ = curves
    points = result["tiny"]["finetune"]
    assert [p.value for p in points] == list(LEARNING_RATES)
    assert sum(p.chosen for p in points) == 1 and {p.parameter for p in points} == {"learning_rate"}
    for point in points:
        assert 0.0 <= point.g_asr_pct <= 100.0 and -100.0 <= point.g_accuracy_lost_points <= 100.0


def test_a_method_without_a_rule_gives_one_chosen_point(curves) -> None:
    result, _ = curves
    (point,) = result["tiny"]["head"]
    assert point.chosen and point.parameter == "defaults" and point.value is None


def test_the_cells_are_kept_and_read_back(curves, tiny: TinyBenchmark) -> None:
    result, cells = curves
    assert (cells / "tiny" / "finetune.json").exists()
    again = tradeoff_benchmark(tiny.root / "data", tiny.root / "models", [TINY_SPEC], METHODS, cells)
    assert again == result


def test_the_figure_and_table_are_drawn(curves, tmp_path) -> None:
    result, _ = curves
    plots.draw_tradeoff(result, tmp_path / "tradeoff.png", 1.0)
    assert (tmp_path / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = tradeoff_table(result)
    assert table.count("*") == 2 and "learning rate" in table and "defaults" in table


def test_points_round_trip() -> None:
    point = TradeoffPoint("alpha", 0.1, 2.5, 40.0, True)
    assert TradeoffPoint(**vars(point)) == point
