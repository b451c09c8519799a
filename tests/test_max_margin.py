"""Tests for fineprune.max_margin: the search finds the maxima a linear layer allows in a box, the
test flags outliers largest first and nothing else, and a scan of the tiny BadNet flags its target."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TARGET, TinyBenchmark
from fineprune.data import load_dataset
from fineprune.max_margin import flag_classes, max_margins, scan_margins
from fineprune.models import load_model, penultimate_features


def test_the_search_reaches_each_class_s_largest_margin_in_the_box() -> None:
    """Features in [0, 1]^2; class 0 reads the first, class 1 the second, class 2 nothing, class 3
    the first at half weight plus a bias: the maxima are at corners and can be worked out by hand."""
    kernel = np.array([[1.0, 0.0, 0.0, 0.5], [0.0, 1.0, 0.0, 0.0]], np.float32)
    bias = np.array([0.0, 0.0, 0.0, 0.2], np.float32)
    margins = max_margins(kernel, bias, np.zeros(2, np.float32), np.ones(2, np.float32), steps=300)
    # class 0 at (1, 0): 1 - max(0, 0, 0.7) = 0.3; class 1 at (0, 1): 1 - max(0, 0, 0.2) = 0.8;
    # class 2 at (0, 0): 0 - 0.2; class 3 at (1, 0) would give 0.7 - 1, at (0, 0): 0.2 - 0 = 0.2
    np.testing.assert_allclose(margins, [0.3, 0.8, -0.2, 0.2], atol=0.02)


@pytest.fixture
def ordinary_margins() -> np.ndarray:
    return np.random.default_rng(0).gamma(shape=20.0, scale=5.0, size=200)


def test_the_test_flags_outliers_largest_first_and_nothing_else(ordinary_margins: np.ndarray) -> None:
    assert flag_classes(ordinary_margins, 0.05, 10) == []
    margins = ordinary_margins.copy()
    margins[[7, 42]] = [400.0, 300.0]
    flagged = flag_classes(margins, 0.05, 10)
    assert [f.target for f in flagged] == [7, 42]
    assert all(f.p_value < 0.05 for f in flagged) and flagged[0].margin == 400.0
    assert [f.target for f in flag_classes(margins, 0.05, 1)] == [7]


def test_a_scan_of_the_tiny_badnet_flags_its_target_within_the_clean_box(tiny: TinyBenchmark) -> None:
    badnet, clean = load_model(tiny.badnet), load_dataset(tiny.clean_validation)
    scan = scan_margins(badnet, clean.x, steps=300, significance=0.05, max_targets=10)
    features = penultimate_features(badnet.model, clean.x, "unit")
    np.testing.assert_array_equal(scan.cap, features.max(axis=0))
    np.testing.assert_array_equal(scan.floor, features.min(axis=0))
    assert [f.target for f in scan.flagged] == [TARGET]
    assert scan.margins.argmax() == TARGET and scan.deviations()[TARGET] == scan.deviations().max() > 0
