"""Tests for fineprune.defenses.core: the shared settings are checked up front, the held-out split
is seeded, and a repair run records what it measured."""

from __future__ import annotations

import numpy as np
import pytest

from fineprune.defenses.core import FineTuningSettings, RepairSettings, split_heldout
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
