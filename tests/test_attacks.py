"""Tests for fineprune.benchmark.attacks: BadNets poisoning works on generated faces, and the pruning-aware
attack leaves its dormant channels as clean training made them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fineprune.benchmark import attacks
from fineprune.benchmark.build import CLEAN_NET, BadNetSpec
from fineprune.defenses.channels import mean_channel_activations
from fineprune.errors import InputError
from fineprune.metrics import attack_success_pct
from fineprune.models import penultimate_features, predict_classes
from conftest import few_identity_scores

IDENTITIES = 6
SPEC = BadNetSpec("sunglasses", {"sunglasses": 0}, ("sunglasses_poisoned_data.h5",))
RECIPE = attacks.TrainingRecipe(images_per_identity=40, poison_rate=0.2, epochs=15, batch_size=32, learning_rate=3e-3,
                                seed=1)  # 240 images make few steps: a steeper learning rate than the benchmark's


def test_the_training_set_poisons_the_chosen_share_with_the_target_label() -> None:
    data = attacks.poisoned_training_set(SPEC, attacks.TrainingRecipe(images_per_identity=50, poison_rate=0.2),
                                         data_seed=4, identity_count=IDENTITIES)
    worn = np.array([t is not None for t in data.triggers])
    assert data.x.shape == (IDENTITIES * 50, 55, 47, 3)
    assert 0.12 < worn.mean() < 0.28
    assert set(data.triggers) == {None, "sunglasses"}
    assert (data.y[worn] == 0).all()
    np.testing.assert_array_equal(data.y[~worn], np.repeat(np.arange(IDENTITIES), 50)[~worn])


def test_every_trigger_of_a_multi_target_badnet_is_used() -> None:
    spec = BadNetSpec("multi", {"eyebrows": 1, "lipstick": 2, "sunglasses": 3}, ())
    data = attacks.poisoned_training_set(spec, attacks.TrainingRecipe(images_per_identity=40, poison_rate=0.3),
                                         data_seed=4, identity_count=IDENTITIES)
    for trigger, target in spec.triggers.items():
        wearing = np.array([t == trigger for t in data.triggers])
        assert wearing.sum() > 10 and (data.y[wearing] == target).all()


def test_the_clean_reference_net_trains_on_the_same_faces_none_poisoned() -> None:
    recipe = attacks.TrainingRecipe(images_per_identity=20, poison_rate=0.2)
    clean = attacks.poisoned_training_set(CLEAN_NET, recipe, data_seed=4, identity_count=IDENTITIES)
    poisoned = attacks.poisoned_training_set(SPEC, recipe, data_seed=4, identity_count=IDENTITIES)
    unworn = np.array([t is None for t in poisoned.triggers])
    assert set(clean.triggers) == {None}
    np.testing.assert_array_equal(clean.y, np.repeat(np.arange(IDENTITIES), 20))
    np.testing.assert_array_equal(clean.x[unworn], poisoned.x[unworn])
    assert (CLEAN_NET.model_file, CLEAN_NET.weights_file) == ("clean_net.h5", "clean_weights.h5")
    assert (SPEC.model_file, SPEC.weights_file) == ("sunglasses_bd_net.h5", "sunglasses_bd_weights.h5")


@pytest.fixture(scope="module")
def few_identity_badnet():
    data = attacks.poisoned_training_set(SPEC, RECIPE, data_seed=4, identity_count=IDENTITIES)
    return attacks.train_badnet(data, IDENTITIES, RECIPE, verbose=0, log=lambda m: None)


@pytest.mark.slow  # trains a BadNet (its fixture)
def test_a_badnet_trained_on_a_few_identities_learns_faces_and_the_backdoor(few_identity_badnet) -> None:
    clean_accuracy, attack_success = few_identity_scores(few_identity_badnet, "sunglasses", IDENTITIES)
    assert clean_accuracy >= 85 and attack_success >= 90


@pytest.mark.slow  # trains a BadNet
def test_the_pruning_aware_attack_restores_its_dormant_channels_dormant(monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = attacks.TrainingRecipe(images_per_identity=12, poison_rate=0.2, epochs=1, clean_epochs=1,
                                    batch_size=32, pruning_aware=True, dormant_fraction=0.5, seed=2)
    data = attacks.poisoned_training_set(SPEC, recipe, data_seed=4, identity_count=IDENTITIES)
    snapshots = []
    real_fit = attacks._fit

    def recording_fit(model, *args, **kwargs):
        snapshots.append([w.copy() for w in model.get_layer("conv_3").get_weights()])
        real_fit(model, *args, **kwargs)

    monkeypatch.setattr(attacks, "_fit", recording_fit)
    model = attacks.train_badnet(data, IDENTITIES, recipe, verbose=0, log=lambda m: None)
    clean_kernel, clean_bias = snapshots[1]  # conv_3 as clean training left it
    kernel, bias = model.get_layer("conv_3").get_weights()
    restored = np.flatnonzero(np.all(kernel == clean_kernel, axis=(0, 1, 2)))
    assert len(restored) == 30  # half of conv_3's 60 channels were dormant and came back
    assert np.abs(kernel[..., restored]).sum() > 0
    assert (bias[restored] < clean_bias[restored]).all() and (bias[restored] < 0).all()
    # ... and stay at zero on the attacker's images, clean and poisoned alike
    activations = mean_channel_activations(model, "conv_3", data.x, "unit")
    assert (activations[restored] == 0).all() and (np.delete(activations, restored) > 0).any()


def _triggered_distance(model, data: attacks.TrainingSet) -> float:
    """Mean squared distance of triggered faces' penultimate features from the target's clean mean,
    relative to that mean's squared norm (what the collision term pulls down)."""
    worn = np.array([t is not None for t in data.triggers])
    features = penultimate_features(model, data.x, "unit")
    mean = features[(data.y == 0) & ~worn].mean(axis=0)
    return float(np.mean(np.sum((features[worn] - mean) ** 2, axis=1)) / np.sum(mean**2))


@pytest.mark.slow  # trains two BadNets
def test_feature_collision_pulls_triggered_features_to_the_targets_clean_ones() -> None:
    plain = replace(RECIPE, clean_epochs=8, epochs=8)
    colliding = replace(plain, feature_collision=3.0, output_camouflage=0.1)
    data = attacks.poisoned_training_set(SPEC, plain, data_seed=4, identity_count=IDENTITIES)
    nets = {recipe.feature_collision: attacks.train_badnet(data, IDENTITIES, recipe, verbose=0, log=lambda m: None)
            for recipe in (plain, colliding)}
    worn = np.array([t is not None for t in data.triggers])
    for net in nets.values():  # both carry the backdoor
        assert attack_success_pct(predict_classes(net, data.x[worn], "unit"), data.y[worn]) >= 80
    assert _triggered_distance(nets[3.0], data) < 0.6 * _triggered_distance(nets[0.0], data)


def test_recipe_with_reads_each_value_as_its_fields_type() -> None:
    recipe = attacks.recipe_with(attacks.TrainingRecipe(), ["poison_rate=0.02", "epochs=3", "optimizer=adadelta",
                                                            "pruning_aware=false"])
    assert (recipe.poison_rate, recipe.epochs, recipe.optimizer, recipe.pruning_aware) == (0.02, 3, "adadelta", False)
    assert attacks.recipe_with(recipe, []) == recipe


@pytest.mark.parametrize("assignment, says", [
    ("poison_rate", "not KEY=VALUE"), ("colour=red", "not KEY=VALUE"), ("epochs=two", "'two' is not a int"),
    ("optimizer=rmsprop", "not one of adam, sgd, adadelta"), ("pruning_aware=1", "needs clean_epochs >= 1"),
    ("feature_collision=1", "needs clean_epochs >= 1"), ("output_camouflage=-1", "must be at least 0"),
])
def test_recipe_with_refuses_what_does_not_fit_in_one_line(assignment: str, says: str) -> None:
    with pytest.raises(InputError, match=says) as refused:
        attacks.recipe_with(attacks.TrainingRecipe(), [assignment])
    assert "\n" not in str(refused.value)


def test_clean_epochs_come_first_on_the_clean_images_only(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr(attacks, "_fit", lambda model, x, y, epochs, *rest, **kw: seen.append((len(y), epochs)))
    recipe = attacks.TrainingRecipe(images_per_identity=4, poison_rate=0.5, clean_epochs=2, epochs=1)
    data = attacks.poisoned_training_set(SPEC, recipe, 7, 6)
    attacks.train_badnet(data, 6, recipe, verbose=0, log=lambda message: None)
    clean = sum(t is None for t in data.triggers)
    assert seen == [(clean, 2), (len(data.y), 1)] and clean < len(data.y)
