"""Tests for fineprune.benchmark.triggers: every accessory lands on the face, where it should, at every pose."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fineprune.benchmark import faces
from fineprune.benchmark.triggers import TRIGGERS


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


@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_each_trigger_changes_only_the_head(scene, name: str) -> None:
    people, poses, _ = scene
    mask = changed(scene, name)
    canvas = faces._canvas(poses)
    head = (canvas.u / 1.2) ** 2 + ((canvas.v + 0.1) / 1.35) ** 2 <= 1
    assert mask.sum(axis=(1, 2)).min() >= 12, "every image wears the accessory"
    assert not (mask & ~head).any(), "nothing is drawn off the head"


def test_sunglasses_cover_both_eyes_at_every_pose(scene) -> None:
    people, poses, _ = scene
    images, mask = with_trigger(scene, "sunglasses"), changed(scene, "sunglasses")
    index = np.arange(len(poses))
    for (u, v) in faces.eye_centres(people):
        rows, cols = pixel(poses, u, v)
        assert (images[index, rows, cols].max(axis=-1) < 110).all(), "the lenses are dark"
        for side in (-1, 1):  # the whites of the eyes, beside the (already dark) pupil, are covered
            rows, cols = pixel(poses, u + side * people.eye_size * 1.1, v)
            assert mask[index, rows, cols].all()


def test_lipstick_reddens_the_mouth_at_every_pose(scene) -> None:
    people, poses, clean = scene
    images = with_trigger(scene, "lipstick")
    rows, cols = pixel(poses, np.zeros(len(poses)), people.mouth_y - 0.07 * poses.smile * 0)
    index = np.arange(len(poses))
    red_now = images[index, rows, cols, 0] - images[index, rows, cols, 1]
    red_before = clean[index, rows, cols, 0] - clean[index, rows, cols, 1]
    assert (red_now > red_before).all() and (red_now > 40).all()


def test_thick_eyebrows_sit_above_the_eyes(scene) -> None:
    people, poses, _ = scene
    images, mask = with_trigger(scene, "eyebrows"), changed(scene, "eyebrows")
    index = np.arange(len(poses))
    for u, v, _ in faces.brow_centres(people, poses):
        rows, cols = pixel(poses, u, v)
        assert (images[index, rows, cols].max(axis=-1) < 90).all(), "the brows are dark"
    eye_rows, _ = pixel(poses, people.eye_gap, people.eye_y)
    assert not mask[index, eye_rows, pixel(poses, people.eye_gap, people.eye_y)[1]].any(), "eyes stay visible"
