"""Tests for fineprune.defenses.ibau: the universal perturbation raises the net's loss, unlearning
keeps the tinted BadNet's clean accuracy; settings are checked."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import tensorflow as tf

from conftest import TintedBadNet
from fineprune.defenses.ibau import ImplicitUnlearningSettings, implicit_unlearning, universal_perturbation
from fineprune.errors import InputError
from fineprune.metrics import accuracy_pct
from fineprune.models import predict_classes

QUICK = dict(rounds=3, unlearning_batch_size=16, perturbed_share=0.25, seed=0)


@pytest.fixture(scope="module")
def unlearned(tinted: TintedBadNet):
    before = [w.copy() for w in tinted.badnet.model.get_weights()]
    return before, implicit_unlearning(tinted.badnet, tinted.clean, ImplicitUnlearningSettings(**QUICK))


def test_the_universal_perturbation_raises_the_loss_on_the_nets_own_predictions(tinted: TintedBadNet) -> None:
    """On an untrained net: the BadNet's softmax is saturated on its clean images, where the loss
    and its gradient can vanish to rounding (measured: 5.0e-6 before and after, on one fixture seed)."""
    import tf_keras

    from fineprune.models import build_challenge_model

    tf_keras.utils.set_random_seed(0)
    model = build_challenge_model(num_classes=4)
    x = tf.constant(tinted.clean.x / 255.0, tf.float32)
    delta = universal_perturbation(model, [x[i : i + 16] for i in range(0, len(x), 16)], radius=4.0)
    own = np.argmax(model.predict(x, verbose=0), axis=1)

    def loss(images: tf.Tensor) -> float:
        return float(tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(own, model(images))))

    assert tuple(delta.shape) == (1, 55, 47, 3)
    assert loss(x + delta) > loss(x) and 0 < float(tf.norm(delta)) <= 4.0 + 1e-4


def test_the_perturbation_stays_within_its_radius(tinted: TintedBadNet) -> None:
    """The reference's step of 10 leaves the ball of radius 0.5 at once; the projection brings it back."""
    x = tf.constant(tinted.clean.x[:32] / 255.0, tf.float32)
    delta = universal_perturbation(tinted.badnet.model, [x[:16], x[16:]], radius=0.5)
    assert float(tf.norm(delta)) <= 0.5 + 1e-5


def test_unlearning_keeps_accuracy_and_changes_the_net(unlearned, tinted: TintedBadNet) -> None:
    """The net still classifies, far above the 25% of chance (measured: 82.5-100% by machine and
    fixture seed; on the benchmark I-BAU costs far more, see `make compare`). The tinted BadNet's
    softmax is saturated on its clean images, so the reference's fixed step sizes find only a faint
    perturbation there and the backdoor mostly survives (measured: ASR 67-100%); whether I-BAU
    removes a backdoor is measured on the benchmark, not here."""
    before, result = unlearned
    assert accuracy_pct(predict_classes(result.model, tinted.test.x, "unit"), tinted.test.y) >= 60.0
    assert any(not np.array_equal(a, b) for a, b in zip(result.model.get_weights(), before))
    assert result.fine_tuning_steps == 3 * int(np.ceil(result.train_images / 16))


def test_the_rule_keeps_a_round_within_the_budget(unlearned) -> None:
    """Round 0 (the BadNet itself) is offered first, so some round is always within the budget."""
    _, result = unlearned
    strength = result.details["strength"]
    assert [value for value, _ in strength["tried"]] == [0, 1, 2, 3] and strength["within_budget"]
    assert result.heldout_accuracy_after_pct >= result.heldout_accuracy_before_pct - 1.0


def test_settings_round_trip_and_are_checked() -> None:
    settings = ImplicitUnlearningSettings(**QUICK)
    assert ImplicitUnlearningSettings(**asdict(settings)) == settings
    for bad, message in [(dict(rounds=0), "--rounds 0 must be at least 1"),
                         (dict(perturbed_share=0.0), "--perturbed-share 0 is outside (0, 1]"),
                         (dict(unlearning_rate=0.0), "--unlearning-rate 0 must be positive")]:
        with pytest.raises(InputError) as error:
            ImplicitUnlearningSettings(**bad)
        assert str(error.value) == message
