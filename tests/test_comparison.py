"""Tests for fineprune.comparison: every method side by side on the tiny benchmark, and the bar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from conftest import TinyBenchmark
from fineprune.benchmark.build import BadNetSpec
from fineprune.comparison import (
    ComparisonRow,
    Method,
    MethodOutcome,
    annotate_targets,
    best_methods,
    compare_benchmark,
    comparison_rows,
    meets_bar,
    standard_methods,
)
from fineprune.defenses import names, settings_for
from fineprune.defenses.fine_pruning import ActivationPruningSettings

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY_SPEC = BadNetSpec("tiny", {"trigger": 0}, ("trigger_poisoned_data.h5",))


def quick_methods() -> list[Method]:
    """prune.py's methods, with fine-tuning short enough for a test."""
    quick = dict(epochs=1, batch_size=16, seed=0)
    return [
        Method("magnitude", settings_for("magnitude", pruning_frequency=1, **quick)),
        Method("finetune", settings_for("finetune", **quick)),
        Method("prune", settings_for("prune", **quick)),
        Method("activation", settings_for("activation", prune_fraction=0.5, **quick)),
        Method("head", settings_for("head", seed=0)),
    ]


@pytest.fixture(scope="module")
def compared(tiny: TinyBenchmark, tmp_path_factory: pytest.TempPathFactory):
    figures = tmp_path_factory.mktemp("figures")
    progress: list[str] = []
    result = compare_benchmark(tiny.root / "data", tiny.root / "models", [TINY_SPEC], quick_methods(), figures,
                               progress.append)
    return result, figures, progress


def test_every_method_gets_a_row_after_the_badnets_own(compared) -> None:
    result, _, _ = compared
    assert [(row.badnet, row.trigger, row.method) for row in result.rows] == [
        ("tiny", "trigger", method) for method in ("none", "magnitude", "finetune", "prune", "activation", "head")
    ]
    badnet_row = result.rows[0]
    assert badnet_row.asr_detector_pct == badnet_row.asr_repaired_net_pct == 100.0
    assert badnet_row.accuracy_detector_pct == 100.0
    assert (badnet_row.flagged_pct, badnet_row.repair_seconds, badnet_row.meets_bar) == (0.0, None, None)


def test_rows_carry_each_repairs_own_numbers(compared) -> None:
    result, _, _ = compared
    rows = {row.method: row for row in result.rows}
    outcomes = {outcome.method.label: outcome for outcome in result.outcomes["tiny"]}
    for label, outcome in outcomes.items():
        clean, (poisoned,) = outcome.evaluation.clean, outcome.evaluation.poisoned
        row = rows[label]
        assert row.accuracy_repaired_net_pct == clean.accuracy_repaired_net_pct
        assert row.accuracy_detector_pct == clean.accuracy_detector_pct
        assert (row.asr_detector_pct, row.flagged_pct) == (poisoned.asr_detector_pct, poisoned.detected_pct)
        assert row.repair_seconds == outcome.repair["seconds"] > 0
        assert row.meets_bar == meets_bar(clean.accuracy_original_pct, row.accuracy_detector_pct,
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
    result = compare_benchmark(tiny.root / "data", tiny.root / "models", [TINY_SPEC], quick_methods()[-1:], tmp_path,
                               curves=False)
    assert [row.method for row in result.rows] == ["none", "head"]
    assert (result.curves, result.activations, result.figures) == ({}, {}, [])
    assert list(tmp_path.iterdir()) == []


def test_json_holds_rows_repairs_and_curves(compared) -> None:
    result, _, progress = compared
    content = json.loads(json.dumps(result.to_json()))
    assert len(content["rows"]) == 6 and len(content["pruning_curves"]["tiny"]["points"]) == 61
    (activation,) = [r for r in content["repairs"]["tiny"] if r["method"] == "activation"]
    assert activation["settings"]["prune_fraction"] == 0.5 and len(activation["repair"]["pruned_channels"]["conv_3"]) == 30
    assert progress[0].startswith("[tiny] pruning curve: conv_3")
    activations = content["channel_activations"]["tiny"]
    assert len(activations["clean"]) == 60 and list(activations["poisoned"]) == ["trigger"]


def test_rows_of_nothing_are_nothing() -> None:
    assert comparison_rows("tiny", []) == []


@pytest.mark.parametrize(
    "original, detector, asr, seconds, expected",
    [
        (99.5, 97.5, 1.0, 120.0, True),  # exactly at every limit
        (99.5, 97.4, 0.0, 10.0, False),  # 2.1 points lost
        (99.5, 99.5, 1.01, 10.0, False),
        (99.5, 99.5, 0.0, 120.5, False),
    ],
)
def test_the_bar(original: float, detector: float, asr: float, seconds: float, expected: bool) -> None:
    assert meets_bar(original, detector, asr, seconds) is expected


def test_standard_methods_are_every_registered_method_plus_two_variants() -> None:
    methods = standard_methods(seed=7)
    assert [m.label for m in methods] == [*names(), "activation conv_4", "head lda"]
    assert (methods[-2].settings.layer, methods[-1].settings.fit) == ("conv_4", "lda")
    assert names()[:4] == ["magnitude", "finetune", "prune", "activation"]
    assert all(m.settings.seed == 7 for m in methods)
    assert methods[3].settings == ActivationPruningSettings(seed=7)


def test_the_oracle_prunes_the_triggers_most_raised_channels_then_fine_tunes(tiny: TinyBenchmark) -> None:
    from fineprune.comparison import oracle_pruning
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


def _row(badnet: str, trigger: str, method: str, asr: float, accuracy: float) -> ComparisonRow:
    return ComparisonRow(badnet, trigger, method, "nothing", 1.0, accuracy, asr, accuracy, asr, 0.0, False)


def test_the_best_method_is_judged_by_its_worst_trigger() -> None:
    rows = [_row("multi", "a", "none", 100.0, 96.0),
            _row("multi", "a", "x", 0.5, 90.0), _row("multi", "b", "x", 40.0, 90.0),
            _row("multi", "a", "y", 10.0, 92.0), _row("multi", "b", "y", 12.0, 92.0),
            _row("multi", "a", "z", 12.0, 94.0), _row("multi", "b", "z", 1.0, 94.0)]
    best = best_methods(rows)["multi"]
    assert (best.method, best.trigger) == ("z", "a")  # 12% through + 2 points lost: less than y's 12 + 4


def test_stopping_every_trigger_by_breaking_the_net_is_not_the_best() -> None:
    rows = [_row("net", "a", "none", 100.0, 97.0), _row("net", "a", "broken", 0.0, 10.0),
            _row("net", "a", "probe", 0.8, 95.0)]
    assert best_methods(rows)["net"].method == "probe"


def test_unlearn_rows_say_whether_the_true_targets_were_found() -> None:
    spec = BadNetSpec("multi", {"eyebrows": 1, "lipstick": 5, "sunglasses": 8}, ())
    outcome = MethodOutcome(Method("unlearn", settings_for("unlearn")), {"details": {"flagged": [5, 8, 77]}},
                            "reversed triggers of class 5, 8, 77 unlearned", evaluation=None)
    assert annotate_targets(outcome, spec).removed.endswith("; true targets found 2/3, 1 flagged wrongly")
    other = MethodOutcome(Method("head", settings_for("head")), {"details": {}}, "the output layer", evaluation=None)
    assert annotate_targets(other, spec) is other
