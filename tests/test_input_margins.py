"""Tests for fineprune.detection.input_margins: MM-BD's search over the input space flags the wide
BadNet's target and nothing on the clean reference net, keeps its images in the pixel range, repeats with the
seed, and refuses bad settings."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import REPO_ROOT, TARGET, TintedBadNet
from fineprune.detection.input_margins import InputMarginSettings, input_margins, scan_input_margins
from fineprune.errors import InputError
from fineprune.models import load_model, predict_classes

QUICK = InputMarginSettings(input_steps=100, class_batch=10)  # batches that split the 24 classes unevenly
SIGNIFICANCE = 0.01


@pytest.fixture(scope="module")
def badnet_scan(wide: TintedBadNet):
    return scan_input_margins(wide.badnet, QUICK, SIGNIFICANCE, 10)


def test_the_wide_badnet_s_target_is_flagged_and_nothing_else(badnet_scan) -> None:
    scan, _ = badnet_scan
    assert [f.target for f in scan.flagged] == [TARGET]
    assert scan.flagged[0].p_value < SIGNIFICANCE / 10  # clear of the level, not at it
    assert scan.margins.argmax() == TARGET and scan.floor is None and scan.cap is None


def test_each_class_s_image_is_in_the_pixel_range_and_reaches_its_class(badnet_scan, wide: TintedBadNet) -> None:
    scan, images = badnet_scan
    assert images.shape == (24, 55, 47, 3) and images.min() >= 0.0 and images.max() <= 255.0
    reached = predict_classes(wide.badnet.model, images, wide.badnet.input_scale)
    positive = scan.margins > 0  # a positive margin: the class won on its image
    assert positive.sum() >= 12
    np.testing.assert_array_equal(reached[positive], np.flatnonzero(positive))


@pytest.mark.slow  # the full search on a 1283-class net (about 40 s)
def test_the_clean_reference_net_raises_no_alarm_at_the_defaults() -> None:
    """The committed clean benchmark net at the tool's defaults (about 40 s on two cores): fixed
    weights, so only the search's rounding varies between CPUs (its largest margin: p 0.44 measured).
    Not a tiny net trained in the test: on one CPU a clean net on placed blocks gave p 0.46-0.48, on
    another 0.021 and, for another fixture seed, a class flagged at p 6e-6. A tiny net's classes are
    extremes of the pixel range as often as not, which MM-BD's statistic reads as a backdoor."""
    net = load_model(REPO_ROOT / "models" / "clean_net.h5")
    scan, _ = scan_input_margins(net, InputMarginSettings(), 0.05, 10)
    assert scan.flagged == []
    assert scan.largest_unflagged().p_value > 0.05 * 3


def test_the_same_seed_repeats_a_search_and_more_starts_only_raise_the_margins(wide: TintedBadNet) -> None:
    settings = InputMarginSettings(input_steps=5, class_batch=24)
    once, _ = input_margins(wide.badnet, settings, seed=3)
    np.testing.assert_array_equal(once, input_margins(wide.badnet, settings, seed=3)[0])
    twice, _ = input_margins(wide.badnet, InputMarginSettings(input_steps=5, class_batch=24, input_starts=2), seed=3)
    assert np.all(twice >= once)  # the first start is the same; a second can only add a larger margin


@pytest.mark.parametrize("field, value, message", [
    ("input_steps", 0, "--input-steps 0 must be at least 1"),
    ("input_rate", 0.0, "--input-rate 0 must be positive"),
    ("input_starts", 0, "--input-starts 0 must be at least 1"),
    ("class_batch", 0, "--class-batch 0 must be at least 1"),
])
def test_bad_settings_are_refused(field: str, value: float, message: str) -> None:
    with pytest.raises(InputError) as error:
        InputMarginSettings(**{field: value})
    assert str(error.value) == message


@pytest.mark.slow  # the full search on a 1283-class net
def test_the_real_sunglasses_badnet_s_target_is_flagged_from_its_weights_alone() -> None:
    """The challenge's headline BadNet, whose backdoor lives in the features clean faces use: the
    test over the clean feature range does not flag its target (docs/fidelity.md), this one does,
    with no clean data, at the defaults."""
    from conftest import require_shared_csaw
    from fineprune.models import load_model

    net = load_model(require_shared_csaw() / "weights" / "sunglasses_bd_weights.h5")
    scan, images = scan_input_margins(net, InputMarginSettings(), 0.05, 10)
    assert [f.target for f in scan.flagged] == [0]
    assert scan.deviations()[0] > 4.5  # measured: 5.7 MAD-scaled deviations above the median, p 0.0097
    assert predict_classes(net.model, images[:1], net.input_scale)[0] == 0
