"""Tests for fineprune.detection.margins: the search finds the maxima a linear layer allows in a box, the
test flags outliers largest first and nothing else, a scan flags a BadNet's target and nothing on a
clean net, and a net with too few classes for the test is refused."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TARGET, TintedBadNet, TinyBenchmark
from fineprune.data import load_dataset
from fineprune.errors import InputError
from fineprune.detection.margins import MarginTestSettings, flag_classes, gamma_test, max_margins, scan_margins
from fineprune.models import LoadedModel, load_model, penultimate_features

SETTINGS = MarginTestSettings(significance=0.01)  # a level the wide fixtures clear by far (conftest.wide)


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
    passed = gamma_test(margins, 2)  # the largest ordinary margin: tested, and passes
    assert passed.target == np.argsort(-margins)[2] not in (7, 42) and passed.p_value >= 0.05


def test_a_scan_of_the_wide_badnet_flags_its_target_within_the_clean_box(wide: TintedBadNet) -> None:
    scan = scan_margins(wide.badnet, wide.clean.x, SETTINGS)
    features = penultimate_features(wide.badnet.model, wide.clean.x, "unit")
    np.testing.assert_array_equal(scan.cap, features.max(axis=0))
    np.testing.assert_array_equal(scan.floor, features.min(axis=0))
    assert [f.target for f in scan.flagged] == [TARGET]
    assert scan.margins.argmax() == TARGET and scan.deviations()[TARGET] == scan.deviations().max() > 0


def test_a_scan_of_a_clean_net_flags_nothing(wide_clean_net: LoadedModel, wide: TintedBadNet) -> None:
    scan = scan_margins(wide_clean_net, wide.clean.x, SETTINGS)
    assert scan.flagged == [] and scan.largest_unflagged().target == scan.margins.argmax()
    assert scan.largest_unflagged().p_value >= SETTINGS.significance


def test_too_few_classes_for_the_test_are_refused(tiny: TinyBenchmark) -> None:
    badnet, clean = load_model(tiny.badnet), load_dataset(tiny.clean_validation)
    with pytest.raises(InputError) as error:
        scan_margins(badnet, clean.x, MarginTestSettings())
    assert str(error.value) == (f"{tiny.badnet}: 4 classes; the maximum-margin test needs at least 10 (it fits a "
                                "gamma distribution to the other classes' margins)")
