"""Tests for fineprune.defenses.head: the output layer is re-fitted in closed form on clean
features, nothing else changes, and the fit is the linear discriminant it claims to be."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TinyBenchmark
from fineprune.data import LabelledImages, load_dataset
from fineprune.defenses.core import split_heldout
from fineprune.defenses.head import HeadSettings, refit_head
from fineprune.errors import InputError
from fineprune.metrics import accuracy_pct, attack_success_pct
from fineprune.models import load_model, penultimate_features, predict_classes


@pytest.fixture(scope="module")
def refitted(tiny: TinyBenchmark):
    badnet, clean = load_model(tiny.badnet), load_dataset(tiny.clean_validation)
    before = [w.copy() for w in badnet.model.get_weights()]
    return badnet, clean, before, refit_head(badnet, clean, HeadSettings(seed=0), verbose=0)


def test_only_the_output_layer_changes(refitted) -> None:
    badnet, _, before, result = refitted
    for layer in result.model.layers[:-1]:
        for now, original in zip(layer.get_weights(), badnet.model.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(now, original)
    assert not np.array_equal(result.model.layers[-1].get_weights()[0], before[-2])
    for original, now in zip(before, badnet.model.get_weights()):  # the BadNet is untouched
        np.testing.assert_array_equal(original, now)
    assert result.fine_tuning_steps == 0 and result.details == {"classes_fitted": 4, "feature_dimension": 160}


def test_the_refitted_net_classifies_clean_faces_and_drops_the_backdoor(refitted, tiny: TinyBenchmark) -> None:
    badnet, _, _, result = refitted
    test, poisoned = load_dataset(tiny.clean_test), load_dataset(tiny.poisoned)
    assert accuracy_pct(predict_classes(result.model, test.x, "unit"), test.y) >= 95.0
    before = attack_success_pct(badnet.predict_classes(poisoned.x), poisoned.y)
    after = attack_success_pct(predict_classes(result.model, poisoned.x, "unit"), poisoned.y)
    assert before == 100.0 and after < before


def test_full_shrinkage_is_the_nearest_class_mean(tiny: TinyBenchmark) -> None:
    """With the covariance shrunk all the way to a scaled identity, LDA picks the class whose mean
    feature vector is nearest, which can be computed by hand."""
    badnet, clean = load_model(tiny.badnet), load_dataset(tiny.clean_validation)
    result = refit_head(badnet, clean, HeadSettings(shrinkage=1.0, seed=0), verbose=0)
    train, _ = split_heldout(len(clean), 0.1, seed=0)
    features = penultimate_features(badnet.model, clean.x[train], "unit").astype(np.float64)
    means = np.stack([features[clean.y[train] == c].mean(axis=0) for c in range(4)])
    test = load_dataset(tiny.clean_test)
    test_features = penultimate_features(badnet.model, test.x, "unit").astype(np.float64)
    nearest = np.argmin(((test_features[:, None, :] - means[None]) ** 2).sum(axis=2), axis=1)
    np.testing.assert_array_equal(predict_classes(result.model, test.x, "unit"), nearest)


def test_a_class_without_clean_images_is_never_predicted(tiny: TinyBenchmark) -> None:
    badnet, clean = load_model(tiny.badnet), load_dataset(tiny.clean_validation)
    keep = clean.y != 3
    result = refit_head(badnet, LabelledImages(clean.path, clean.x[keep], clean.y[keep]), HeadSettings(seed=0), verbose=0)
    test = load_dataset(tiny.clean_test)
    assert 3 not in predict_classes(result.model, test.x, "unit")
    assert result.details["classes_fitted"] == 3


def test_shrinkage_outside_zero_one_is_refused() -> None:
    with pytest.raises(InputError) as error:
        HeadSettings(shrinkage=1.5)
    assert str(error.value) == "--shrinkage 1.5 is outside [0, 1]"
