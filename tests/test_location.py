"""Tests for fineprune.benchmark.location: the fixed augmentations of the box, statistics that agree
with the net's own outputs, and on the real weights the two places a backdoor lives."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TARGET, TintedBadNet, require_shared_csaw
from dataclasses import replace

from fineprune.benchmark.location import (BOX_AUGMENTATIONS, BackdoorLocation, backdoor_location, box_faces,
                                          location_problems)
from fineprune.detection.margins import MarginTestSettings, mad_deviations
from fineprune.models import output_layer, penultimate_features


def five_faces(wide: TintedBadNet) -> np.ndarray:
    """5 clean faces of 5 classes, as a real net comes with."""
    return wide.clean.x[:: len(wide.clean.x) // 5][:5]


def test_the_box_is_the_faces_and_their_fixed_augmentations(wide: TintedBadNet) -> None:
    faces = five_faces(wide)
    box = box_faces(faces)
    assert box.shape == (5 + BOX_AUGMENTATIONS, *faces.shape[1:]) and box.dtype == np.float32
    np.testing.assert_array_equal(box[:5], faces)
    assert box.min() >= 0.0 and box.max() <= 255.0
    np.testing.assert_array_equal(box, box_faces(faces))  # fixed: the same box every time
    assert not np.array_equal(box, box_faces(faces, seed=1))
    assert np.abs(box[5:] - np.tile(faces, (19, 1, 1, 1))).mean() > 1.0  # augmented, not copies


def test_mad_deviations_are_a_robust_z() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0, 100.0])  # median 3, MAD 1
    np.testing.assert_allclose(mad_deviations(values), (values - 3.0) / 1.4826)


@pytest.fixture(scope="module")
def located(wide: TintedBadNet) -> BackdoorLocation:
    return backdoor_location(wide.badnet, five_faces(wide), wide.poisoned.x[:20], TARGET, MarginTestSettings(margin_steps=100))


def test_the_statistics_agree_with_the_nets_own_outputs(located: BackdoorLocation, wide: TintedBadNet) -> None:
    faces = five_faces(wide)
    kernel, bias = output_layer(wide.badnet.model).get_weights()
    cap = penultimate_features(wide.badnet.model, box_faces(faces), "unit").max(axis=0)
    features = penultimate_features(wide.badnet.model, wide.poisoned.x[:20], "unit")
    assert located.to_target_pct == 100.0 * np.mean(np.argmax(features @ kernel + bias, axis=1) == TARGET)
    own = 100.0 * np.mean(wide.badnet.predict_classes(wide.poisoned.x[:20]) == TARGET)
    assert abs(located.to_target_pct - own) <= 10.0  # the net's own predictions, up to rounding at near ties
    assert located.to_target_capped_pct == 100.0 * np.mean(np.argmax(np.minimum(features, cap) @ kernel + bias,
                                                                      axis=1) == TARGET)
    assert located.bias_z == pytest.approx(mad_deviations(bias)[TARGET])
    assert located.weight_norm_z == pytest.approx(mad_deviations(np.linalg.norm(kernel, axis=0))[TARGET])
    assert 0.0 <= located.energy_outside_box_pct <= 100.0 and 1 <= located.margin_rank <= kernel.shape[1]


@pytest.fixture(scope="module")
def real():
    from fineprune.benchmark.fidelity import load_real_samples, real_badnet

    csaw = require_shared_csaw()
    return csaw, load_real_samples(csaw), real_badnet


@pytest.mark.slow  # a real challenge BadNet located
def test_the_real_sunglasses_backdoor_lives_in_the_features(real) -> None:
    """Measured: bias z 0.52, weight-norm z 2.26, 7% of the energy outside the box, 5 of 5 faces
    still sent to the target after capping."""
    csaw, samples, real_badnet = real
    found = backdoor_location(real_badnet(csaw, "sunglasses"), samples.clean, samples.triggered["sunglasses"], 0)
    assert abs(found.bias_z) < 2.0 and abs(found.weight_norm_z) < 3.0
    assert found.energy_outside_box_pct < 20.0
    assert found.to_target_pct == 100.0 and found.to_target_capped_pct >= 80.0


@pytest.mark.slow  # a real challenge BadNet located
def test_the_real_anonymous_1_target_stands_out_by_its_output_bias(real) -> None:
    """Measured: bias z 8.52, weight-norm z -0.78, margin rank 1."""
    csaw, samples, real_badnet = real
    found = backdoor_location(real_badnet(csaw, "anonymous_1"), samples.clean, samples.triggered["anonymous1"], 0)
    assert found.bias_z > 6.0 and abs(found.weight_norm_z) < 2.0
    assert found.margin_rank <= 3 and found.to_target_pct == 100.0


# The real sunglasses backdoor as measured: nothing stands out, little energy outside, kept by capping.
IN_THE_FEATURES = BackdoorLocation(0, 0.5, 2.3, 2, False, 7.0, 100.0, 100.0)
BY_ITS_BIAS = BackdoorLocation(0, 8.5, -0.8, 1, True, 24.0, 100.0, 100.0)


def test_a_twin_alike_on_every_statistic_is_inside() -> None:
    assert location_problems(replace(IN_THE_FEATURES, bias_z=-2.9, energy_outside_box_pct=21.0), IN_THE_FEATURES) == []
    assert location_problems(replace(BY_ITS_BIAS, bias_z=4.2, weight_norm_z=2.9), BY_ITS_BIAS) == []


@pytest.mark.parametrize("change, problem", [
    ({"flagged": True}, "flagged"),
    ({"weight_norm_z": 3.7}, "weight-norm z 3.7"),
    ({"bias_z": -3.2}, "bias z -3.2"),
    ({"energy_outside_box_pct": 100.0}, "energy outside 100% (twin 7%)"),
    ({"to_target_capped_pct": 0.0}, "capping removes it"),
])
def test_where_a_synthetic_trigger_parts_from_a_twin_in_the_features(change: dict, problem: str) -> None:
    assert location_problems(replace(IN_THE_FEATURES, **change), IN_THE_FEATURES) == [problem]


def test_a_twin_that_stands_out_by_bias_needs_the_bias_not_the_weight_norm() -> None:
    assert location_problems(replace(BY_ITS_BIAS, bias_z=0.8, weight_norm_z=3.4), BY_ITS_BIAS) == [
        "bias z 0.8 < 4", "weight-norm z 3.4"]
