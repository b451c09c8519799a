"""Tests for fineprune.metrics: clean accuracy, attack success rate, share flagged, the target."""

from __future__ import annotations

import numpy as np
import pytest

from fineprune.metrics import accuracy_pct, attack_success_pct, detected_pct, most_common_label

N = 5  # the "backdoor detected" class of a 5-class BadNet


def test_accuracy_counts_the_right_answers():
    assert accuracy_pct(np.array([0, 1, 2, 4]), np.array([0, 1, 2, 3])) == 75.0
    assert accuracy_pct(np.array([1, 1, 1]), np.array([1, 1, 1])) == 100.0
    assert accuracy_pct(np.array([0, 0]), np.array([1, 1])) == 0.0
    assert accuracy_pct(np.array([2, 0, 0]), np.array([2, 1, 1])) == pytest.approx(100 / 3)


def test_accuracy_accepts_lists_and_returns_a_python_float():
    value = accuracy_pct([3, 2, 1, 0, 0], [3, 2, 1, 0, 4])
    assert value == 80.0
    assert type(value) is float


def test_backdoor_class_counts_as_an_error_for_accuracy():
    labels = np.array([0, 1, 2, 3])
    assert accuracy_pct(np.array([0, 1, 2, N]), labels) == 75.0
    assert accuracy_pct(np.full(4, N), labels) == 0.0


def test_attack_success_rate_counts_the_target():
    targets = np.zeros(4, dtype=int)
    assert attack_success_pct(np.array([0, 0, 0, 2]), targets) == 75.0
    assert attack_success_pct(np.array([1, 2, 3, 4]), targets) == 0.0


def test_backdoor_class_counts_as_stopped_for_attack_success_rate():
    targets = np.full(4, 3)
    assert attack_success_pct(np.array([3, N, N, 3]), targets) == 50.0
    assert attack_success_pct(np.full(4, N), targets) == 0.0


def test_detected_share_counts_only_the_backdoor_class():
    assert detected_pct(np.array([N, 0, N, 4]), N) == 50.0
    assert detected_pct(np.array([N, N, N, 1, 2]), N) == 60.0
    assert detected_pct(np.array([0, 1, 2, 3, 4]), N) == 0.0
    assert type(detected_pct([N], N)) is float


def test_most_common_label_is_the_attackers_target():
    assert most_common_label(np.array([7, 2, 7, 7, 1, 2])) == 7
    assert most_common_label(np.array([4.0, 4.0, 1.0])) == 4
    assert type(most_common_label(np.array([3, 3]))) is int


@pytest.mark.parametrize("measure", [
    pytest.param(lambda: accuracy_pct(np.array([], dtype=int), np.array([], dtype=int)), id="accuracy"),
    pytest.param(lambda: attack_success_pct(np.array([], dtype=int), np.array([], dtype=int)), id="asr"),
    pytest.param(lambda: detected_pct(np.array([], dtype=int), N), id="detected"),
    pytest.param(lambda: most_common_label(np.array([], dtype=int)), id="most-common"),
])
def test_empty_input_raises_value_error(measure):
    with pytest.raises(ValueError):
        measure()


@pytest.mark.parametrize("measure", [accuracy_pct, attack_success_pct])
def test_predictions_and_labels_of_different_shapes_are_refused(measure):
    # numpy would broadcast (4,) against (1,) or (4, 1) and return a plausible wrong number.
    with pytest.raises(ValueError, match="shape"):
        measure(np.array([1, 1, 2, 3]), np.array([1]))
    with pytest.raises(ValueError, match="shape"):
        measure(np.array([1, 1, 2, 3]), np.array([[1], [1], [2], [3]]))
