"""Tests for fineprune.detection.input_margins: MM-BD's search over the input space flags the wide
BadNet's target and nothing on a clean net, keeps its images in the pixel range, repeats with the
seed, and refuses bad settings."""

from __future__ import annotations

import numpy as np
import pytest

from pathlib import Path

from conftest import IMAGE_SHAPE, TARGET, WIDE_CLASSES, TintedBadNet, fixture_seed, train_tiny_badnet
from fineprune.detection.input_margins import InputMarginSettings, input_margins, scan_input_margins
from fineprune.errors import InputError
from fineprune.models import LoadedModel, predict_classes

QUICK = InputMarginSettings(input_steps=100, class_batch=10)  # batches that split the 24 classes unevenly
SIGNIFICANCE = 0.01


def placed_images(count_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """WIDE_CLASSES classes told apart by where a light block lies on a noisy background (a 5 x 5
    grid of places, the one under the wide BadNet's trigger left out)."""
    places = [(1 + 10 * row, 1 + 9 * column) for row in range(5) for column in range(5) if (row, column) != (4, 4)]
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(WIDE_CLASSES), count_per_class)
    images = rng.normal(110, 20, (len(labels), *IMAGE_SHAPE))
    for image, label in zip(images, labels):
        row, column = (p + int(rng.integers(-1, 2)) for p in places[label])
        image[max(row, 0) : row + 8, max(column, 0) : column + 8] = 190 + rng.normal(0, 8)
    return np.clip(images, 0, 255).astype(np.float32), labels


@pytest.fixture(scope="module")
def placed_clean_net() -> LoadedModel:
    """A clean net on `placed_images` (about 25 seconds on two cores). Not the wide clean net: its
    classes are tints, and the input-space search lifts the bluest one far beyond any training
    image by saturating the blue channel (class 1 at p 3e-8 after 100 steps): MM-BD's statistic
    reads that as a backdoor, as it would any class an extreme of the pixel range defines. Measured
    over the 30- and 100-step searches, this net's largest margin has p 0.46-0.48."""
    model = train_tiny_badnet(*placed_images(15, fixture_seed(11)), poison_seed=fixture_seed(12),
                              seed=fixture_seed(13), epochs=10, poison_share=0.0, num_classes=WIDE_CLASSES)
    return LoadedModel(Path("placed_clean_net.h5"), model, "unit", "default")


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


def test_a_clean_net_has_nothing_flagged(placed_clean_net: LoadedModel) -> None:
    scan, _ = scan_input_margins(placed_clean_net, QUICK, SIGNIFICANCE, 10)
    assert scan.flagged == []
    assert scan.largest_unflagged().p_value > SIGNIFICANCE * 3


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
