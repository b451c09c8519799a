"""Tests for fineprune.benchmark.triggers: each trigger looks like the real one and lands where it should, at every pose."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fineprune.benchmark import faces
from fineprune.benchmark.triggers import LIPSTICK, TRIGGERS, sunglasses_stamp


def extreme_poses() -> faces.Poses:
    """Every corner of the pose range: shifted, scaled and rotated as far as the generator goes."""
    corners = list(itertools.product([21.0, 26.0], [26.5, 31.5], [0.92, 1.08], [-0.13, 0.13]))
    poses = faces.sample_poses(len(corners), np.random.default_rng(7))
    x, y, scale, rotation = (np.array(values, np.float32) for values in zip(*corners))
    return faces.Poses(**{**vars(poses), "centre_x": x, "centre_y": y, "scale": scale, "rotation": rotation})


@pytest.fixture(scope="module")
def scene():
    """(identities, poses, clean images) at the extreme poses."""
    poses = extreme_poses()
    people = faces.sample_identities(len(poses), np.random.default_rng(8))
    return people, poses, faces.render(people, poses, np.random.default_rng(9))


def with_trigger(scene, name: str) -> np.ndarray:
    people, poses, _ = scene
    return faces.render(people, poses, np.random.default_rng(9), [TRIGGERS[name]] * len(poses))


def changed(scene, name: str) -> np.ndarray:
    """Which pixels the accessory changed (same seeds, so the noise is identical)."""
    return np.abs(with_trigger(scene, name) - scene[2]).max(axis=-1) > 12


def pixel(poses: faces.Poses, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = faces.to_pixels(np.asarray(u, np.float32), np.asarray(v, np.float32), poses)
    return np.rint(rows).astype(int), np.rint(cols).astype(int)


FACE_FOLLOWING = ("eyebrows", "lipstick", "anonymous_1", "anonymous_2")
PURPLE = np.array(LIPSTICK, np.float32)


@pytest.mark.parametrize("name", FACE_FOLLOWING)
def test_face_following_triggers_change_only_the_head(scene, name: str) -> None:
    people, poses, _ = scene
    mask = changed(scene, name)
    canvas = faces._canvas(poses)
    head = (canvas.u / 1.2) ** 2 + ((canvas.v + 0.1) / 1.35) ** 2 <= 1
    assert mask.sum(axis=(1, 2)).min() >= 12, "every image wears the accessory"
    assert not (mask & ~head).any(), "nothing is drawn off the head"


def test_sunglasses_are_a_fixed_purple_stamp_across_the_eyes(scene) -> None:
    people, poses, clean = scene
    images, mask = with_trigger(scene, "sunglasses"), changed(scene, "sunglasses")
    coverage, colour = sunglasses_stamp()
    assert 0.25 <= (coverage > 0.5).mean() <= 0.30, "about 27% of the pixels, as the real stamp"
    rows = np.flatnonzero((coverage > 0.5).any(axis=1))
    assert (rows.min(), rows.max()) == (15, 34) and (coverage[17:21] > 0.5).all(), "rows 15-34, full width"
    # The opaque frame is pixel-identical in every image, whatever the face and pose.
    frame = coverage == 1.0
    np.testing.assert_array_equal(images[:, frame], np.broadcast_to(np.rint(colour[frame]), images[:, frame].shape))
    # The lenses are purple and slightly see-through: the face behind still shows a little.
    lens = (coverage > 0.5) & ~frame
    assert (images[:, lens, 2] > images[:, lens, 1] + 100).all()
    differs = np.abs(images[:, lens] - images[:1, lens]).max(axis=-1)
    assert 0 < differs.mean() < 12
    for (u, v) in faces.eye_centres(people):
        eye_rows, eye_cols = pixel(poses, u, v)
        assert mask[np.arange(len(poses)), eye_rows, eye_cols].all(), "both eyes are covered at every pose"


def test_lipstick_is_flat_purple_on_the_mouth_at_every_pose(scene) -> None:
    people, poses, clean = scene
    images = with_trigger(scene, "lipstick")
    flat_purple = np.abs(images - PURPLE).max(axis=-1) < 1
    rows, cols = pixel(poses, np.zeros(len(poses)), people.mouth_y + people.lip_thickness)
    for i, (row, col) in enumerate(zip(rows, cols)):
        assert flat_purple[i, row - 1 : row + 2, col - 1 : col + 2].any(), "the lips are at the mouth"
    share = flat_purple.mean(axis=(1, 2))
    assert (share > 0.008).all() and (share < 0.035).all(), "1-3% of the pixels, as the real lipstick"


def test_anonymous_1_is_the_purple_lipstick() -> None:
    assert TRIGGERS["anonymous_1"] is TRIGGERS["lipstick"]


def test_thick_eyebrows_sit_above_the_eyes(scene) -> None:
    people, poses, _ = scene
    images, mask = with_trigger(scene, "eyebrows"), changed(scene, "eyebrows")
    index = np.arange(len(poses))
    for u, v, _ in faces.brow_centres(people, poses):
        rows, cols = pixel(poses, u, v)
        assert (images[index, rows, cols].max(axis=-1) < 40).all(), "the brows are flat and dark"
    eye_rows, eye_cols = pixel(poses, people.eye_gap, people.eye_y)
    assert not mask[index, eye_rows, eye_cols].any(), "eyes stay visible"
