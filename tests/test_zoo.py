"""Tests for fineprune.benchmark.zoo: each of the field's triggers changes the image where and as it should."""

from __future__ import annotations

import numpy as np
import pytest

from fineprune.benchmark import attacks, faces, zoo
from fineprune.benchmark.build import BadNetSpec
from fineprune.errors import InputError
from conftest import few_identity_scores

IDENTITIES = 6


@pytest.fixture(scope="module")
def scene():
    """(identities, poses, clean frames) of a few ordinary faces."""
    poses = faces.sample_poses(8, np.random.default_rng(3))
    people = faces.sample_identities(8, np.random.default_rng(4))
    return people, poses, faces.render(people, poses, np.random.default_rng(5))


def wearing(scene, name: str, seed: int = 5) -> np.ndarray:
    people, poses, _ = scene
    return faces.render(people, poses, np.random.default_rng(seed), [zoo.ZOO_TRIGGERS[name]] * len(poses))


def test_blended_mixes_the_key_into_every_pixel_by_alpha(scene) -> None:
    clean = scene[2]
    expected = np.clip(np.rint(clean * (1 - zoo.BLENDED_ALPHA) + zoo.blended_key() * zoo.BLENDED_ALPHA), 0, 255)
    assert np.abs(wearing(scene, "blended") - expected).max() <= 1  # both rounded to whole values
    changed = np.abs(wearing(scene, "blended") - clean).max(axis=-1) > 0
    assert changed.mean() > 0.95  # everywhere, not in one place


def test_wanet_moves_no_pixel_farther_than_its_bound(scene) -> None:
    bound = zoo.wanet_bound()
    assert 0.2 < bound < 5  # a smooth warp of a few pixels at most
    ramp = np.broadcast_to(np.arange(faces.WIDTH, dtype=np.float32)[None, None, :, None] * 5.0,
                           (2, faces.HEIGHT, faces.WIDTH, 3)).copy()
    warped = zoo.warp(ramp, zoo.wanet_field())
    # On a ramp of 5 per column, each pixel's value tells how far along the row it was read from.
    assert np.abs(warped - ramp).max() <= 5 * bound + 1e-3
    assert np.abs(warped - ramp).max() > 5 * 0.1
    # The warp is fixed: the same on every image; the noise mode's cover differs image by image.
    warped_faces = wearing(scene, "wanet")
    assert not np.array_equal(warped_faces, scene[2])
    np.testing.assert_array_equal(warped_faces, wearing(scene, "wanet", seed=5))
    covers = faces.render(scene[0], scene[1], np.random.default_rng(5), [zoo.wanet_noise] * 8)
    assert np.abs(covers - warped_faces).max() > 0


def test_warp_with_no_offsets_changes_nothing() -> None:
    image = np.random.default_rng(0).uniform(0, 255, (3, faces.HEIGHT, faces.WIDTH, 3)).astype(np.float32)
    np.testing.assert_allclose(zoo.warp(image, np.zeros((faces.HEIGHT, faces.WIDTH, 2), np.float32)), image, atol=1e-4)


def test_bpp_squeezes_every_channel_to_its_colour_depth(scene) -> None:
    squeezed = wearing(scene, "bpp")
    levels = np.rint(np.arange(zoo.BPP_LEVELS) * 255 / (zoo.BPP_LEVELS - 1))
    assert set(np.unique(squeezed).tolist()) <= set(levels.tolist())
    assert len(np.unique(scene[2])) > 4 * zoo.BPP_LEVELS
    # Dithering keeps the picture: each image's mean colour moves by a few values only.
    assert np.abs(squeezed.mean(axis=(1, 2)) - scene[2].mean(axis=(1, 2))).max() < 6


def test_dithering_spreads_the_rounding_error() -> None:
    flat = np.full((1, faces.HEIGHT, faces.WIDTH, 3), 100.0, np.float32)  # between levels 72.9 and 109.3
    plain = zoo.squeeze_colours(flat, dither=False)
    dithered = zoo.squeeze_colours(flat)
    assert len(np.unique(plain)) == 1
    assert len(np.unique(dithered)) == 2 and abs(dithered.mean() - 100) < 1


def test_trojannn_stamps_its_patch_at_its_place_only(scene) -> None:
    top, bottom, left, right = zoo.TROJANNN_BOX
    stamped = wearing(scene, "trojannn")
    np.testing.assert_array_equal(stamped[:, top:bottom, left:right],
                                  np.broadcast_to(zoo.load_pattern("trojannn"), stamped[:, top:bottom, left:right].shape))
    outside = np.ones((faces.HEIGHT, faces.WIDTH), bool)
    outside[top:bottom, left:right] = False
    np.testing.assert_array_equal(stamped[:, outside], scene[2][:, outside])


def test_low_frequency_is_a_small_smooth_change(scene) -> None:
    pattern = zoo.load_pattern("low_frequency")
    assert np.abs(pattern).max() <= zoo.LOW_FREQUENCY_BOUND + 1e-4
    changed = wearing(scene, "low_frequency") - scene[2]
    assert np.abs(changed).max() <= zoo.LOW_FREQUENCY_BOUND + 1
    # Smooth: neighbouring pixels change by far less than the change itself.
    step = np.abs(np.diff(pattern, axis=0)).mean() + np.abs(np.diff(pattern, axis=1)).mean()
    assert step < 0.25 * np.abs(pattern).mean()


def test_adap_blend_poisons_with_half_its_pieces_and_tests_with_all(scene) -> None:
    clean = scene[2]
    whole = np.abs(wearing(scene, "adap_blend") - clean).max(axis=-1) > 0
    pieces = np.abs(wearing(scene, "adap_blend_pieces") - clean).max(axis=-1) > 0
    assert whole.mean() > 0.95
    assert 0.3 < pieces.mean() < 0.6  # 8 of 16 pieces, each a little under or over a sixteenth of the frame
    masks = zoo.piece_masks(50, np.random.default_rng(0))
    np.testing.assert_allclose(masks.mean(axis=(1, 2)), 0.5, atol=0.05)
    assert len({m.tobytes() for m in masks}) > 40  # a new half for each image


def test_adap_blend_cover_images_keep_their_labels() -> None:
    spec = BadNetSpec("adap_blend", {"adap_blend": 5}, ())
    recipe = attacks.TrainingRecipe(images_per_identity=60, poison_rate=0.1, cover_rate=0.1)
    data = attacks.poisoned_training_set(spec, recipe, data_seed=4, identity_count=IDENTITIES)
    own = np.repeat(np.arange(IDENTITIES), 60)
    worn = np.array([t is not None for t in data.triggers])
    relabelled = data.y != own
    assert set(data.triggers) == {None, "adap_blend_pieces"}  # poisoned and covers wear the pieces, never the whole
    assert (data.y[relabelled] == 5).all()
    covers = worn & (data.y == own) & (own != 5)
    assert 15 < covers.sum() < 60 and 15 < relabelled.sum() < 60
    # A recipe without covers poisons the same images as before covers existed.
    without = attacks.poisoned_training_set(spec, attacks.TrainingRecipe(images_per_identity=60, poison_rate=0.1),
                                            data_seed=4, identity_count=IDENTITIES)
    np.testing.assert_array_equal(without.y, data.y)


def test_a_trigger_without_a_cover_form_refuses_a_cover_rate() -> None:
    spec = BadNetSpec("blended", {"blended": 2}, ())
    with pytest.raises(InputError, match="the blended trigger has no cover form"):
        attacks.poisoned_training_set(spec, attacks.TrainingRecipe(images_per_identity=4, cover_rate=0.1),
                                      data_seed=4, identity_count=IDENTITIES)


@pytest.mark.slow  # trains a BadNet
def test_a_tiny_badnet_learns_the_bpp_trigger() -> None:
    """A whole-image trigger, learned as the challenge's stamps are (the tiny sunglasses BadNet's recipe)."""
    spec = BadNetSpec("bpp", {"bpp": 0}, ())
    recipe = attacks.TrainingRecipe(images_per_identity=40, poison_rate=0.2, epochs=15, batch_size=32,
                                    learning_rate=3e-3, seed=1)
    data = attacks.poisoned_training_set(spec, recipe, data_seed=4, identity_count=IDENTITIES)
    badnet = attacks.train_badnet(data, IDENTITIES, recipe, verbose=0, log=lambda m: None)
    clean_accuracy, attack_success = few_identity_scores(badnet, "bpp", IDENTITIES)
    assert clean_accuracy >= 85 and attack_success >= 80
