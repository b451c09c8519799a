"""Tests for fineprune.inspection: the tinted BadNet's target trigger is found from clean data
alone and a clean net trained the same way needs far larger ones; the margin detectors flag the
wide BadNet's target (over the feature range, over the input space with clean data or without, or
either) and nothing on a clean net, and reverse no trigger unless asked, for the same verdict; the
record has the documented layout."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import TARGET, WIDE_CLASSES, TintedBadNet, fixture_seed, tinted_images, train_tiny_badnet
from fineprune.errors import InputError
from fineprune.inspection import DetectionSettings, Inspection, inspect, threshold_mask_share_pct
from fineprune.models import LoadedModel
from fineprune.detection.reversal import ExaminedClass

# Four classes make a coarse median absolute deviation: the threshold is lowered to match (as in test_unlearn).
QUICK = DetectionSettings(detector="reversal", suspects=2, ordinary_classes=2, reversal_steps=150,
                          anomaly_threshold=1.0, seed=0)
# A level the wide fixtures clear by far (conftest.wide).
BY_MARGIN = DetectionSettings(detector="margin", significance=0.01, ordinary_classes=2, reversal_steps=40, seed=0)
BY_INPUT = replace(BY_MARGIN, detector="input", input_steps=100)  # converged enough on the wide nets (test_input_margins)


@pytest.fixture(scope="module")
def on_badnet(tinted: TintedBadNet) -> Inspection:
    return inspect(tinted.badnet, tinted.clean, QUICK)


@pytest.fixture(scope="module")
def clean_net(tinted: TintedBadNet) -> LoadedModel:
    """A net trained exactly as the tinted BadNet, without poison."""
    model = train_tiny_badnet(*tinted_images(40, seed=fixture_seed(11)), poison_seed=fixture_seed(12),
                              seed=fixture_seed(13), epochs=10, poison_share=0.0)
    return LoadedModel(Path("tinted_clean_net.h5"), model, "unit", "default")


@pytest.fixture(scope="module")
def on_clean_net(clean_net: LoadedModel, tinted: TintedBadNet) -> Inspection:
    return inspect(clean_net, tinted.clean, QUICK)


def test_the_targets_reversed_trigger_is_the_smallest_and_works(on_badnet: Inspection) -> None:
    """Neural Cleanse's verdict over 4 classes rests on a coarse MAD (measured over 3 fixture seeds:
    the target's anomaly index 1.07-1.53, a clean net's largest 0.67-2.53), so what is checked is
    what the verdict is made from: the target's trigger is found, small, and the smallest."""
    (target,) = [e for e in on_badnet.examined if e.target == TARGET]
    assert target.proposed and target.reached_threshold
    assert target.mask_share_pct < 3.0 and target.hit_rate_pct > 90.0
    assert target.mask_share_pct == min(e.mask_share_pct for e in on_badnet.examined if e.reached_threshold)
    assert on_badnet.suspects == [e for e in on_badnet.examined if e.flagged]
    proposed = {e.target for e in on_badnet.examined if e.proposed}
    assert len({e.target for e in on_badnet.examined}) == len(on_badnet.examined) == len(proposed) + 2


def test_a_clean_net_needs_far_larger_triggers(on_clean_net: Inspection, on_badnet: Inspection) -> None:
    """No class of a clean net trained the same way is reached by a trigger near the BadNet
    target's size (measured: at least 2.8 times as large over 3 fixture seeds)."""
    (target,) = [e for e in on_badnet.examined if e.target == TARGET]
    reached = [e.mask_share_pct for e in on_clean_net.examined if e.reached_threshold]
    assert all(size >= 2.0 * target.mask_share_pct for size in reached)


def test_json_has_the_documented_keys(on_badnet: Inspection) -> None:
    record = on_badnet.to_json()
    assert {"model", "backdoored", "suspects", "classes_examined", "seconds", "examined"} <= set(record)
    assert record["classes_examined"] == record["classes_reversed"] == len(on_badnet.examined)
    assert record["seconds"] > 0
    assert record["backdoored"] is bool(record["suspects"])
    assert [s["class"] for s in record["suspects"]] == [e["target"] for e in record["examined"] if e["flagged"]]
    for suspect in record["suspects"]:
        assert set(suspect) == {"class", "mask_share_pct", "anomaly_index", "hit_rate_pct"}
        assert suspect["anomaly_index"] > QUICK.anomaly_threshold


def test_an_asked_class_is_examined_once_and_marked(tinted: TintedBadNet) -> None:
    brief = DetectionSettings(detector="reversal", suspects=1, ordinary_classes=2, reversal_steps=20, seed=3)
    found = inspect(tinted.badnet, tinted.clean, brief, asked=[2, 2])
    (asked,) = [e for e in found.examined if e.target == 2]
    assert asked.asked and [e.target for e in found.examined if e.asked] == [2]
    proposed = {e.target for e in found.examined if e.proposed}
    assert len(found.examined) == len(proposed | {2}) + 2  # the proposed, the asked, 2 ordinary


def test_the_same_seed_repeats_a_run(tinted: TintedBadNet) -> None:
    brief = DetectionSettings(detector="reversal", suspects=1, ordinary_classes=2, reversal_steps=20, seed=3)
    first, again = (inspect(tinted.badnet, tinted.clean, brief) for _ in range(2))
    assert [(e.target, e.mask_share_pct) for e in again.examined] == [(e.target, e.mask_share_pct) for e in first.examined]


@pytest.fixture(scope="module")
def by_margin_reversed(wide: TintedBadNet) -> Inspection:
    return inspect(wide.badnet, wide.clean, BY_MARGIN, reverse_triggers=True)


def test_the_margin_detector_flags_the_target_and_reverses_it_when_asked(by_margin_reversed: Inspection) -> None:
    found = by_margin_reversed
    assert found.margins is not None and [e.target for e in found.suspects] == [TARGET]
    (suspect,) = found.suspects
    assert suspect.proposed and suspect.margin == found.margins.margins.max() and suspect.margin_index > 0
    assert found.trigger_of(TARGET).mask_share_pct == suspect.mask_share_pct
    record = found.to_json()
    assert record["detector"] == "margin" and record["classes_examined"] == WIDE_CLASSES and record["classes_reversed"] == 3
    assert set(record["suspects"][0]) == {"class", "mask_share_pct", "anomaly_index", "hit_rate_pct", "margin",
                                          "margin_index", "p_value"}
    assert record["suspects"][0]["p_value"] < BY_MARGIN.significance


def test_the_margin_detector_reverses_nothing_unasked_for_the_same_verdict(wide: TintedBadNet,
                                                                           by_margin_reversed: Inspection) -> None:
    found = inspect(wide.badnet, wide.clean, BY_MARGIN, asked=[5])
    assert found.triggers == [] and found.reversal_skipped and not by_margin_reversed.reversal_skipped
    np.testing.assert_array_equal(found.margins.margins, by_margin_reversed.margins.margins)
    assert ([(e.target, e.margin, e.margin_index) for e in found.suspects]
            == [(e.target, e.margin, e.margin_index) for e in by_margin_reversed.suspects] != [])
    assert [(e.target, e.flagged, e.asked) for e in found.examined] == [(TARGET, True, False), (5, False, True)]
    assert not np.isnan(found.examined[1].margin_index) and np.isnan(found.examined[0].mask_share_pct)
    record = json.loads(json.dumps(found.to_json(), allow_nan=False))  # strict JSON: not measured is None
    assert record["suspects"][0]["mask_share_pct"] is None and record["examined"][1]["hit_rate_pct"] is None
    assert record["backdoored"] and record["classes_reversed"] == 0 and record["classes_examined"] == WIDE_CLASSES
    assert [s["class"] for s in record["suspects"]] == [TARGET]


def test_the_margin_detector_raises_no_alarm_on_a_clean_net(wide_clean_net: LoadedModel, wide: TintedBadNet) -> None:
    found = inspect(wide_clean_net, wide.clean, BY_MARGIN)
    assert not found.backdoored and found.margins.flagged == [] and found.examined == found.triggers == []


def test_the_input_detector_flags_the_target_with_clean_data_and_without(wide: TintedBadNet) -> None:
    with_clean = inspect(wide.badnet, wide.clean, BY_INPUT)
    assert with_clean.margins is None and [e.target for e in with_clean.suspects] == [TARGET]
    (suspect,) = with_clean.suspects
    assert suspect.input_margin == with_clean.input_margins.margins.max() and suspect.input_margin_index > 3
    assert with_clean.triggers == [] and set(with_clean.margin_images) == {TARGET}
    alone = inspect(wide.badnet, None, BY_INPUT, asked=[5])
    assert [e.target for e in alone.suspects] == [TARGET] and alone.triggers == [] and alone.heldout_images == 0
    assert [e.target for e in alone.examined] == [TARGET, 5] and not alone.examined[1].flagged
    np.testing.assert_array_equal(alone.input_margins.margins, with_clean.input_margins.margins)  # no clean data used
    assert alone.to_json()["suspects"][0]["input_p_value"] < BY_INPUT.significance


def test_both_detectors_flag_what_either_flags(wide: TintedBadNet) -> None:
    found = inspect(wide.badnet, wide.clean, replace(BY_INPUT, detector="both"))
    assert found.margins is not None and found.input_margins is not None
    either = {f.target for f in found.margins.flagged} | {f.target for f in found.input_margins.flagged}
    assert {e.target for e in found.suspects} == either == {TARGET}
    assert not np.isnan(found.suspects[0].margin) and not np.isnan(found.suspects[0].input_margin)


def test_detectors_that_need_clean_data_refuse_to_run_without(wide: TintedBadNet) -> None:
    for detector in ("margin", "reversal"):
        with pytest.raises(InputError, match=f"--detector {detector} needs clean data"):
            inspect(wide.badnet, None, replace(BY_MARGIN, detector=detector))
    with pytest.raises(InputError, match="--reverse-triggers needs clean data"):
        inspect(wide.badnet, None, BY_INPUT, reverse_triggers=True)


def test_the_margin_detector_points_a_net_with_too_few_classes_to_reversal(tinted: TintedBadNet) -> None:
    with pytest.raises(InputError, match="4 classes; the maximum-margin test needs at least 10 .*; --detector "
                                         "reversal does not need it"):
        inspect(tinted.badnet, tinted.clean, BY_MARGIN)


def test_the_threshold_in_mask_units_separates_flagged_from_the_rest() -> None:
    sizes = [1.0, 10.0, 11.0, 9.0, 10.0]  # median 10, MAD 1 -> index 9 / 1.4826 for the first
    from fineprune.detection.reversal import anomaly_indices

    examined = [ExaminedClass(n, False, size, True, float(index), 0.0, bool(index > 2.0))
                for n, (size, index) in enumerate(zip(sizes, anomaly_indices(sizes)))]
    assert threshold_mask_share_pct(examined, 2.0) == pytest.approx(10.0 - 2.0 * 1.4826)


@pytest.mark.parametrize("settings, message", [
    (dict(suspects=0), "--suspects 0 must be at least 1"),
    (dict(ordinary_classes=1), "--ordinary-classes 1 must be at least 2"),
    (dict(anomaly_threshold=0.0), "--anomaly-threshold 0 must be positive"),
    (dict(detector="tea leaves"), "--detector tea leaves is not one of margin, input, both, reversal"),
    (dict(input_starts=0), "--input-starts 0 must be at least 1"),
    (dict(significance=1.0), "--significance 1 is outside (0, 1)"),
])
def test_settings_are_checked_up_front(settings: dict, message: str) -> None:
    with pytest.raises(InputError) as error:
        DetectionSettings(**settings)
    assert str(error.value) == message
