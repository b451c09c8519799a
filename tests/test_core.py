"""Tests for fineprune.defenses.core: the shared settings are checked up front, the held-out split
is seeded, and a repair run records what it measured."""

from __future__ import annotations

import numpy as np
import pytest

from fineprune.defenses.core import FineTuningSettings, RepairSettings, image_batches, split_heldout
from fineprune.errors import InputError


@pytest.mark.parametrize(
    "kind, settings, message",
    [
        (RepairSettings, dict(validation_split=0.0), "--validation-split 0 is outside (0, 1)"),
        (RepairSettings, dict(validation_split=1.0), "--validation-split 1 is outside (0, 1)"),
        (FineTuningSettings, dict(epochs=0), "--epochs 0 must be at least 1"),
        (FineTuningSettings, dict(batch_size=0), "--batch-size 0 must be at least 1"),
        (FineTuningSettings, dict(learning_rate=0.0), "--learning-rate 0 must be positive"),
        (FineTuningSettings, dict(validation_split=-0.5), "--validation-split -0.5 is outside (0, 1)"),
    ],
)
def test_settings_are_checked_up_front(kind: type, settings: dict, message: str) -> None:
    with pytest.raises(InputError) as error:
        kind(**settings)
    assert str(error.value) == message


def test_heldout_split_is_seeded_disjoint_and_complete() -> None:
    train, heldout = split_heldout(100, 0.1, seed=3)
    assert len(heldout) == 10 and len(train) == 90
    assert sorted(np.concatenate([train, heldout]).tolist()) == list(range(100))
    again = split_heldout(100, 0.1, seed=3)
    np.testing.assert_array_equal(heldout, again[1])
    assert not np.array_equal(heldout, split_heldout(100, 0.1, seed=4)[1])
    # Not simply the last 10%: challenge files are ordered by identity.
    assert heldout.max() - heldout.min() > 10


def test_heldout_split_needs_two_images() -> None:
    with pytest.raises(InputError, match="at least 2 clean images"):
        split_heldout(1, 0.1, seed=0)


@pytest.mark.parametrize("bounds, value, message", [
    ((1, None, False, False), 0, "--steps 0 must be at least 1"),
    ((0, None, True, False), 0.0, "--steps 0 must be positive"),
    ((0.5, None, True, False), 0.5, "--steps 0.5 must be greater than 0.5"),
    ((0, 1, False, True), 1.0, "--steps 1 is outside [0, 1)"),
    ((0, 1, True, False), float("nan"), "--steps nan is outside (0, 1]"),
])
def test_bounds_name_the_option_and_the_range(bounds, value, message: str) -> None:
    from fineprune.defenses.core import check_bounds

    with pytest.raises(InputError) as error:
        check_bounds("steps", value, bounds)
    assert str(error.value) == message
    check_bounds("steps", None, bounds)  # not given: nothing to check


def _passes(batches, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`count` passes (epochs) over a dataset, each as (images, targets) joined."""
    iterator = batches.repeat(count).as_numpy_iterator()
    per_pass = len(batches)
    out = []
    for _ in range(count):
        parts = [next(iterator) for _ in range(per_pass)]
        out.append((np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])))
    return out


def test_image_batches_gather_the_chosen_images_scaled_with_their_targets() -> None:
    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1) * np.ones((1, 2, 2, 3), np.float32) * 25.5
    indices = np.array([7, 1, 4, 9, 2])
    y = np.array([70, 10, 40, 90, 20])

    (images, targets), = _passes(image_batches(x, indices, y, batch_size=2, input_scale="unit"), 1)

    np.testing.assert_array_equal(targets, y)  # in order without a seed
    np.testing.assert_allclose(images[:, 0, 0, 0], indices / 10, rtol=1e-6)  # x/255, the chosen rows
    assert len(image_batches(x, indices, y, batch_size=2, input_scale="unit")) == 3


def test_image_batches_reshuffle_every_pass_and_repeat_from_the_seed() -> None:
    x = np.arange(40, dtype=np.float32).reshape(40, 1, 1, 1) * np.ones((1, 1, 1, 3), np.float32)
    indices = np.arange(40)

    first, second = _passes(image_batches(x, indices, indices, 8, "raw", shuffle_seed=5), 2)
    again, _ = _passes(image_batches(x, indices, indices, 8, "raw", shuffle_seed=5), 2)

    for images, targets in (first, second):
        assert sorted(targets.tolist()) == list(range(40))  # every image once per pass
        np.testing.assert_array_equal(images[:, 0, 0, 0], targets)  # each with its own target
    assert not np.array_equal(first[1], second[1]) and not np.array_equal(first[1], np.arange(40))
    np.testing.assert_array_equal(first[1], again[1])
