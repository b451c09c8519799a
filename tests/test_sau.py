"""Tests for fineprune.defenses.sau: shared adversarial unlearning weakens the tiny feature-collision
BadNet's backdoor, keeps a clean net, keeps the epoch its strength rule chose; settings are checked."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from conftest import TintedBadNet
from fineprune.defenses.sau import SharedUnlearningSettings, jensen_shannon, shared_adversarial_unlearning
from fineprune.errors import InputError
from fineprune.metrics import accuracy_pct, attack_success_pct
from fineprune.models import LoadedModel, predict_classes

QUICK = dict(epochs=6, unlearning_batch_size=32, seed=0)


def test_jensen_shannon_is_zero_for_equal_rows_and_at_most_log_2() -> None:
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], np.float32)
    q = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], np.float32)
    divergence = jensen_shannon(p, q).numpy()
    assert divergence[0] == pytest.approx(0.0, abs=1e-6)
    assert divergence[1] == pytest.approx(np.log(2.0), rel=1e-3)


@pytest.fixture(scope="module")
def unlearned_colliding(colliding: TintedBadNet):
    settings = SharedUnlearningSettings(**QUICK, accuracy_budget=100.0)  # the full run, whatever it costs
    return shared_adversarial_unlearning(colliding.badnet, colliding.clean, settings)


def test_the_feature_collision_backdoor_weakens(unlearned_colliding, colliding: TintedBadNet) -> None:
    before = attack_success_pct(colliding.badnet.predict_classes(colliding.poisoned.x), colliding.poisoned.y)
    after = attack_success_pct(predict_classes(unlearned_colliding.model, colliding.poisoned.x, "unit"),
                               colliding.poisoned.y)
    assert before >= 90.0
    assert after <= before - 30.0
    assert accuracy_pct(predict_classes(unlearned_colliding.model, colliding.test.x, "unit"), colliding.test.y) >= 70.0


def test_the_rule_keeps_a_clean_net_within_its_budget(wide_clean_net: LoadedModel, wide: TintedBadNet) -> None:
    result = shared_adversarial_unlearning(wide_clean_net, wide.clean, SharedUnlearningSettings(**QUICK))
    strength = result.details["strength"]
    assert strength["parameter"] == "epochs" and strength["tried"][0][0] == 0
    assert result.heldout_accuracy_after_pct >= result.heldout_accuracy_before_pct - 1.0
    kept = dict(strength["tried"])[strength["chosen"]]
    assert kept == pytest.approx(result.heldout_accuracy_after_pct)


def test_settings_round_trip_and_are_checked() -> None:
    settings = SharedUnlearningSettings(**QUICK)
    assert SharedUnlearningSettings(**asdict(settings)) == settings
    for bad, message in [(dict(pgd_bound=0.0), "--pgd-bound 0 is outside (0, 1]"),
                         (dict(pgd_steps=0), "--pgd-steps 0 must be at least 1"),
                         (dict(accuracy_budget=-1.0), "--accuracy-budget -1 must be at least 0")]:
        with pytest.raises(InputError) as error:
            SharedUnlearningSettings(**bad)
        assert str(error.value) == message
