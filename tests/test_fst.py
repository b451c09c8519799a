"""Tests for fineprune.defenses.fst: the output layer is re-initialised and pushed away from the
old one at the old norm, the net still classifies, the backdoor is weakened; settings are checked."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from conftest import TintedBadNet
from fineprune.defenses.fst import ALPHAS, FeatureShiftSettings, feature_shift_tuning
from fineprune.errors import InputError
from fineprune.metrics import accuracy_pct, attack_success_pct
from fineprune.models import predict_classes

QUICK = dict(epochs=30, batch_size=16, seed=0)
PUSHED = dict(QUICK, alpha=0.2, learning_rate=1e-3)  # a given alpha: the penalty at work


@pytest.fixture(scope="module")
def shifted(tinted: TintedBadNet):
    before = [w.copy() for w in tinted.badnet.model.get_weights()]
    return before, feature_shift_tuning(tinted.badnet, tinted.clean, FeatureShiftSettings(**PUSHED))


def test_the_new_output_weights_point_away_from_the_old_at_the_same_norm(shifted, tinted: TintedBadNet) -> None:
    before, result = shifted
    old = tinted.badnet.model.layers[-1].get_weights()[0]
    new = result.model.layers[-1].get_weights()[0]
    assert np.linalg.norm(new) == pytest.approx(np.linalg.norm(old), rel=1e-4)
    assert np.sum(new * old) < 0
    assert result.model.losses == []  # the penalty was for training only


def test_the_shifted_net_classifies_and_the_backdoor_weakens(shifted, tinted: TintedBadNet) -> None:
    _, result = shifted
    test, poisoned = tinted.test, tinted.poisoned
    assert accuracy_pct(predict_classes(result.model, test.x, "unit"), test.y) >= 90.0
    assert attack_success_pct(predict_classes(result.model, poisoned.x, "unit"), poisoned.y) < 100.0


def test_a_given_alpha_is_recorded_as_given(shifted) -> None:
    _, result = shifted
    assert result.details["strength"]["rule"] == "given" and result.details["strength"]["chosen"] == 0.2


def test_the_rule_keeps_a_clean_net_near_its_accuracy(wide_clean_net, wide: TintedBadNet) -> None:
    """The new output layer is fitted on the frozen features before fine-tuning, so that a clean
    net is not wrecked by a random one (the reference's random start alone took it to chance)."""
    result = feature_shift_tuning(wide_clean_net, wide.clean, FeatureShiftSettings(**QUICK, validation_split=0.5))
    strength = result.details["strength"]
    assert strength["parameter"] == "alpha" and strength["chosen"] in ALPHAS
    assert result.heldout_accuracy_after_pct >= result.heldout_accuracy_before_pct - 5.0


def test_settings_round_trip_and_are_checked() -> None:
    settings = FeatureShiftSettings(alpha=0.5, seed=2)
    assert FeatureShiftSettings(**asdict(settings)) == settings
    with pytest.raises(InputError, match="--alpha -1 must be at least 0"):
        FeatureShiftSettings(alpha=-1.0)
