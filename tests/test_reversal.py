"""Tests for fineprune.detection.reversal: on a BadNet whose clean classes no small stamp can reach,
the reversed trigger of the target is small and lies on the planted patch, the suspects include
the target, and the anomaly index singles it out."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TARGET, TintedBadNet
from fineprune.errors import InputError
from fineprune.detection.reversal import ReversalSettings, anomaly_indices, find_suspects, reverse_trigger

QUICK = ReversalSettings(steps=150)
PATCH_CENTRE = (47.5, 39.5)  # row and column of the planted trigger's centre (conftest.add_trigger: 45:51, 37:43)


@pytest.fixture(scope="module")
def reversed_triggers(tinted: TintedBadNet):
    badnet, clean = tinted.badnet, tinted.clean
    return {target: reverse_trigger(badnet.model, clean.x, target, "unit", QUICK, seed=target) for target in range(4)}


def test_the_targets_trigger_is_small_and_on_the_planted_patch(reversed_triggers, tinted: TintedBadNet) -> None:
    trigger = reversed_triggers[TARGET]
    assert trigger.reached_threshold
    assert trigger.mask_share_pct < 3.0  # the planted patch is 36 of 2585 pixels, 1.4%
    # Near the patch, not necessarily on it: three poolings let a shifted copy fire the same units.
    rows, cols = np.indices(trigger.mask.shape)
    centre = np.array([(rows * trigger.mask).sum(), (cols * trigger.mask).sum()]) / trigger.mask.sum()
    assert np.hypot(*(centre - PATCH_CENTRE)) < 12.0
    stamped = tinted.badnet.predict_classes(trigger.stamp(tinted.test.x[tinted.test.y != TARGET]))
    assert np.mean(stamped == TARGET) > 0.9


def test_the_target_stands_out_by_the_anomaly_index(reversed_triggers) -> None:
    sizes = [reversed_triggers[t].mask.sum() for t in range(4)]
    indices = anomaly_indices(sizes)
    # With four classes the median absolute deviation is coarse, so only the ranking is asserted.
    assert int(np.argmax(indices)) == TARGET and indices[TARGET] > 1.0
    assert min(sizes[1:]) > 3 * sizes[TARGET]


def test_the_untargeted_search_proposes_the_target_among_distinct_suspects(tinted: TintedBadNet) -> None:
    # Not necessarily first: the smallest stamp that moves half the faces may shift their tint instead.
    suspects = find_suspects(tinted.badnet.model, tinted.clean.x, tinted.clean.y, "unit", 2, QUICK, seed=0)
    assert TARGET in suspects and len(set(suspects)) == len(suspects) == 2


def test_anomaly_index_is_mad_scaled_distance_below_the_median() -> None:
    sizes = [10.0, 50.0, 52.0, 48.0, 50.0]  # median 50, MAD 2
    indices = anomaly_indices(sizes)
    assert indices[0] == pytest.approx(40 / (1.4826 * 2))
    assert indices[1] == pytest.approx(0.0) and indices[2] < 0


def test_the_median_and_spread_are_the_populations_not_the_suspects() -> None:
    """Suspects chosen for looking suspicious would pull the median toward themselves: with three
    small suspects among seven, the median over all is 48, the MAD 4, and the first index a quarter."""
    sizes = [10.0, 12.0, 11.0, 50.0, 52.0, 48.0, 50.0]
    population = [False, False, False, True, True, True, True]
    over_all, over_population = anomaly_indices(sizes), anomaly_indices(sizes, population)
    assert over_population[0] == pytest.approx(40 / (1.4826 * 1.0))  # median 50, MAD 1
    assert over_all[0] == pytest.approx(38 / (1.4826 * 4.0)) and over_population[0] > 4 * over_all[0]


def test_a_stamp_replaces_exactly_the_masked_pixels(reversed_triggers, tinted: TintedBadNet) -> None:
    trigger = reversed_triggers[TARGET]
    x = tinted.test.x[:3]
    stamped = trigger.stamp(x)
    mask = trigger.mask[..., None]
    np.testing.assert_allclose(stamped, (1 - mask) * x + mask * trigger.pattern, rtol=1e-5, atol=1e-3)
    assert ((trigger.mask >= 0) & (trigger.mask <= 1)).all()
    assert ((trigger.pattern >= 0) & (trigger.pattern <= 255)).all()


def test_reversal_settings_are_checked() -> None:
    with pytest.raises(InputError, match="--reversal-steps 0 must be at least 1"):
        ReversalSettings(steps=0)
