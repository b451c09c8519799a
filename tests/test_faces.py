"""Tests for fineprune.benchmark.faces: identities, poses and the renderer."""

from __future__ import annotations

import numpy as np
import pytest

from fineprune.benchmark import faces


@pytest.fixture
def people() -> faces.Identities:
    return faces.sample_identities(6, np.random.default_rng(1))


def render(people: faces.Identities, index, poses: faces.Poses, seed: int = 0) -> np.ndarray:
    return faces.render(people.take(np.asarray(index)), poses, np.random.default_rng(seed))


def test_images_are_challenge_sized_whole_pixel_values(people: faces.Identities) -> None:
    images = render(people, np.arange(6), faces.sample_poses(6, np.random.default_rng(2)))
    assert images.shape == (6, 55, 47, 3) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 255
    np.testing.assert_array_equal(images, np.rint(images))
    assert images.std() > 20  # a picture, not a flat colour


def test_the_same_seeds_draw_the_same_images(people: faces.Identities) -> None:
    again = faces.sample_identities(6, np.random.default_rng(1))
    np.testing.assert_array_equal(again.skin, people.skin)
    first = render(people, [0, 1], faces.sample_poses(2, np.random.default_rng(3)))
    second = render(again, [0, 1], faces.sample_poses(2, np.random.default_rng(3)))
    np.testing.assert_array_equal(first, second)


def test_identity_and_pose_both_change_the_picture(people: faces.Identities) -> None:
    pose = faces.sample_poses(1, np.random.default_rng(4))
    two_poses = faces.sample_poses(2, np.random.default_rng(5))
    same_pose_other_person = np.abs(render(people, [0], pose) - render(people, [1], pose)).mean()
    same_person_other_pose = np.abs(render(people, [0], two_poses)[0] - render(people, [0], two_poses)[1]).mean()
    assert same_pose_other_person > 5 and same_person_other_pose > 5


def test_face_coordinates_map_back_to_the_pixels_they_came_from() -> None:
    poses = faces.sample_poses(20, np.random.default_rng(6))
    canvas = faces._canvas(poses)
    rows, cols = np.meshgrid(np.arange(55), np.arange(47), indexing="ij")
    for i in range(20):
        back_rows, back_cols = faces.to_pixels(canvas.u[i], canvas.v[i], faces.Poses(
            **{name: np.broadcast_to(value[i], (55, 47) + value.shape[1:]) for name, value in vars(poses).items()}))
        np.testing.assert_allclose(back_rows, rows, atol=1e-3)
        np.testing.assert_allclose(back_cols, cols, atol=1e-3)


def test_take_selects_identities_with_repeats(people: faces.Identities) -> None:
    chosen = people.take(np.array([2, 2, 5]))
    assert len(chosen) == 3
    np.testing.assert_array_equal(chosen.hair[0], people.hair[2])
    np.testing.assert_array_equal(chosen.eye_gap[2], people.eye_gap[5])


def test_backgrounds_and_clothes_are_muted_not_saturated() -> None:
    poses = faces.sample_poses(500, np.random.default_rng(7))
    for colours in (poses.background.reshape(-1, 3), poses.clothes, poses.scenery[..., 4:].reshape(-1, 3)):
        spread = colours.max(axis=-1) - colours.min(axis=-1)
        assert np.percentile(spread, 99) < 80, "a brightness with a little hue, like walls and foliage"


def test_blur_of_zero_leaves_the_image_and_blur_softens_it() -> None:
    rgb = np.random.default_rng(8).uniform(0, 255, (2, 55, 47, 3)).astype(np.float32)
    blurred = faces._blur(rgb, np.array([0.0, 1.0], np.float32))
    np.testing.assert_allclose(blurred[0], rgb[0], atol=1e-3)
    assert blurred[1].std() < 0.6 * rgb[1].std()
