"""Procedurally generated faces in the challenge's image format (55x47 RGB, pixels 0..255).

The real YouTube Face data cannot be downloaded here, so the embedded benchmark draws its own:
- an *identity* has fixed traits: face shape, skin and hair colour, hairline and hair volume,
  eye placement, size and colour, brows, nose, mouth and lip colour, moles and skin texture;
- each *image* of it varies them as video frames do: position, scale, small rotation, lighting
  and colour cast, expression (smile, open mouth, raised brows, blinking, gaze), a muted scene
  behind the head (walls, foliage, sky: a brightness with a little hue), clothes, focus blur and
  sensor noise.

Everything is drawn in *face coordinates* (u, v): the face centre is (0, 0), u runs right and v
down, one unit is the face's half height; the face fills most of the frame, as in the challenge's
crops. Accessories (the backdoor triggers, see `triggers`) are pasted onto the finished frame,
after lighting, blur and noise, as the challenge's triggers were edited into its images; they get
the face coordinates, so a trigger can follow the face (lipstick) or sit at a fixed place (the
sunglasses stamp).

Rendering is vectorised over a batch of images with numpy; all randomness comes from generators
the caller seeds, so the same seed gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Sequence

import numpy as np

# 3: the multi-trigger files take the real multi-trigger net's targets (lipstick 1, eyebrows 5).
GENERATOR_VERSION = 3
HEIGHT, WIDTH = 55, 47
FACE_UNIT_PX = 23.0  # pixels per face unit at scale 1: the face fills the frame, as in the challenge's crops

_SKIN_LIGHT = np.array([236, 204, 178], np.float32)
_SKIN_DARK = np.array([92, 60, 44], np.float32)
_HAIR_COLOURS = np.array(
    [[22, 18, 16], [58, 38, 26], [96, 64, 40], [140, 70, 36], [196, 160, 96], [150, 146, 140], [232, 214, 160]],
    np.float32,
)
_IRIS_COLOURS = np.array([[70, 44, 24], [40, 28, 20], [70, 110, 160], [80, 120, 70], [110, 100, 70]], np.float32)


@dataclass(frozen=True)
class Identities:
    """Fixed traits of a set of people, one array entry per identity (lengths in face units)."""

    skin: np.ndarray  # (n, 3) RGB
    hair: np.ndarray  # (n, 3) RGB
    face_width: np.ndarray  # half width of the face ellipse
    face_height: np.ndarray  # half height
    chin_taper: np.ndarray  # how much the face narrows towards the chin
    hairline: np.ndarray  # v of the hairline at the centre
    hairline_curve: np.ndarray  # how much the hairline rises at the sides
    parting: np.ndarray  # u of a dip in the hairline
    hair_volume: np.ndarray  # hair outline relative to the face outline
    hair_length: np.ndarray  # v where side hair ends
    eye_y: np.ndarray
    eye_gap: np.ndarray  # u of each eye centre (mirrored)
    eye_size: np.ndarray
    iris: np.ndarray  # (n, 3) RGB
    brow_gap: np.ndarray  # distance of the brow above the eye
    brow_thickness: np.ndarray
    brow_angle: np.ndarray  # radians, outer end up for positive values
    nose_length: np.ndarray
    nose_width: np.ndarray
    mouth_y: np.ndarray
    mouth_width: np.ndarray
    lip_thickness: np.ndarray
    lip_colour: np.ndarray  # (n, 3) RGB
    stubble: np.ndarray  # 0 for none, up to ~0.35 for a dark lower face
    moles: np.ndarray  # (n, 3, 3): u, v, present (0/1) of up to three moles
    texture: np.ndarray  # (n, 4): frequencies and phases of a faint skin pattern

    def __len__(self) -> int:
        return len(self.skin)

    def take(self, index: np.ndarray) -> "Identities":
        """The traits of the identities at `index` (repeats allowed), e.g. one row per image."""
        return Identities(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def sample_identities(count: int, rng: np.random.Generator) -> Identities:
    """Draw `count` people with distinct, plausible traits."""
    u = lambda low, high: rng.uniform(low, high, count).astype(np.float32)  # noqa: E731
    tone = rng.beta(1.6, 1.6, count).astype(np.float32)[:, None]
    skin = _SKIN_LIGHT * (1 - tone) + _SKIN_DARK * tone + rng.normal(0, 7, (count, 3))
    hair = _HAIR_COLOURS[rng.integers(0, len(_HAIR_COLOURS), count)] * rng.uniform(0.8, 1.2, (count, 1))
    iris = _IRIS_COLOURS[rng.integers(0, len(_IRIS_COLOURS), count)] + rng.normal(0, 10, (count, 3))
    redness = rng.uniform(0.15, 0.45, (count, 1))
    lips = skin * (1 - redness) + np.array([170, 60, 70]) * redness - 15
    moles = np.stack([rng.uniform(-0.55, 0.55, (count, 3)), rng.uniform(-0.1, 0.7, (count, 3)),
                      (rng.random((count, 3)) < 0.35)], axis=2)
    texture = np.stack([rng.uniform(4, 11, count), rng.uniform(4, 11, count),
                        rng.uniform(0, 2 * np.pi, count), rng.uniform(0, 2 * np.pi, count)], axis=1)
    return Identities(
        skin=np.clip(skin, 0, 255).astype(np.float32),
        hair=np.clip(hair, 0, 255).astype(np.float32),
        face_width=u(0.72, 0.9), face_height=u(0.98, 1.12), chin_taper=u(0.0, 0.35),
        hairline=u(-0.78, -0.45), hairline_curve=u(0.05, 0.45), parting=u(-0.4, 0.4),
        hair_volume=u(1.04, 1.22), hair_length=u(-0.35, 0.55),
        eye_y=u(-0.3, -0.12), eye_gap=u(0.28, 0.4), eye_size=u(0.075, 0.11),
        iris=np.clip(iris, 0, 255).astype(np.float32),
        brow_gap=u(0.11, 0.19), brow_thickness=u(0.025, 0.06), brow_angle=u(-0.25, 0.25),
        nose_length=u(0.16, 0.32), nose_width=u(0.06, 0.12),
        mouth_y=u(0.4, 0.58), mouth_width=u(0.17, 0.3), lip_thickness=u(0.035, 0.065),
        lip_colour=np.clip(lips, 0, 255).astype(np.float32),
        stubble=np.where(rng.random(count) < 0.35, rng.uniform(0.1, 0.35, count), 0.0).astype(np.float32),
        moles=moles.astype(np.float32), texture=texture.astype(np.float32),
    )


@dataclass(frozen=True)
class Poses:
    """What changes from frame to frame, one entry per image."""

    centre_x: np.ndarray  # pixels
    centre_y: np.ndarray
    scale: np.ndarray  # pixels per face unit, relative to FACE_UNIT_PX
    rotation: np.ndarray  # radians
    smile: np.ndarray  # -0.5 (down) .. 1 (up)
    mouth_open: np.ndarray  # 0 .. 1
    brow_raise: np.ndarray  # 0 .. 1
    eye_open: np.ndarray  # 0.35 .. 1
    gaze: np.ndarray  # (n, 2) iris offset
    light_gain: np.ndarray
    light_direction: np.ndarray  # (n, 2) brightness gradient across the image
    colour_cast: np.ndarray  # (n, 3)
    background: np.ndarray  # (n, 2, 3): top and bottom colour, muted as indoor and outdoor scenes are
    scenery: np.ndarray  # (n, 3, 7): soft shapes behind the head: row, column, half height, half width, RGB
    clothes: np.ndarray  # (n, 3) RGB of the shoulders
    blur: np.ndarray  # focus / motion blur, Gaussian sigma in pixels
    noise: np.ndarray  # sensor noise standard deviation

    def __len__(self) -> int:
        return len(self.scale)


def sample_poses(count: int, rng: np.random.Generator) -> Poses:
    """Draw `count` frames' worth of variation."""
    u = lambda low, high, *shape: rng.uniform(low, high, (count, *shape)).astype(np.float32)  # noqa: E731
    scenery = np.concatenate([u(0, HEIGHT, 3, 1), u(0, WIDTH, 3, 1), u(4, 30, 3, 1), u(3, 20, 3, 1),
                              _muted_colours(rng, (count, 3))], axis=2)
    return Poses(
        centre_x=u(WIDTH / 2 - 2.5, WIDTH / 2 + 2.5), centre_y=u(29.0 - 2.5, 29.0 + 2.5),
        scale=u(0.92, 1.08), rotation=u(-0.13, 0.13),
        smile=u(-0.5, 1.0), mouth_open=(rng.random(count) < 0.3) * u(0.2, 1.0),
        brow_raise=u(0.0, 1.0), eye_open=np.where(rng.random(count) < 0.1, u(0.35, 0.6), u(0.8, 1.0)),
        gaze=u(-0.025, 0.025, 2),
        light_gain=u(0.72, 1.18), light_direction=u(-0.45, 0.45, 2), colour_cast=u(0.93, 1.07, 3),
        background=_muted_colours(rng, (count, 2)), scenery=scenery.astype(np.float32),
        clothes=_muted_colours(rng, (count,)), blur=np.where(rng.random(count) < 0.6, u(0.3, 1.1), u(0.0, 0.3)),
        noise=u(1.5, 7.0),
    )


def _muted_colours(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Colours of walls, foliage, sky and clothes: a brightness with a little hue, never saturated."""
    brightness = rng.uniform(25, 225, (*shape, 1))
    return np.clip(brightness + rng.normal(0, 14, (*shape, 3)), 0, 255).astype(np.float32)


@dataclass
class Canvas:
    """A batch being drawn: RGB pixels and each pixel's face coordinates."""

    rgb: np.ndarray  # (n, H, W, 3) float32
    u: np.ndarray  # (n, H, W)
    v: np.ndarray  # (n, H, W)
    px_per_unit: np.ndarray  # (n, 1, 1)
    rng: np.random.Generator | None = None  # for triggers that vary per image (drawn after the frame is done)

    def paint(self, coverage: np.ndarray, colour: np.ndarray) -> None:
        """Blend `colour` ((n, 3) or (n, H, W, 3)) over the canvas where `coverage` (0..1) says."""
        colour = colour[:, None, None, :] if colour.ndim == 2 else colour
        alpha = coverage[..., None]
        self.rgb *= 1 - alpha
        self.rgb += alpha * colour

    def ellipse(self, u0, v0, half_width, half_height, angle=None, power: float = 2.0) -> np.ndarray:
        """Anti-aliased coverage of an ellipse (or, with power 4, a rounded rectangle) given in face
        units; arguments are per-image arrays (n,) or per-pixel arrays (n, H, W)."""
        du, dv = self.u - _col(u0), self.v - _col(v0)
        if angle is not None:
            cos, sin = np.cos(_col(angle)), np.sin(_col(angle))
            du, dv = du * cos + dv * sin, dv * cos - du * sin
        # No shape thinner than half a pixel: the soft-edge distance below needs some width.
        a = np.maximum(_col(half_width), 0.5 / self.px_per_unit)
        b = np.maximum(_col(half_height), 0.5 / self.px_per_unit)
        x, y = np.abs(du / a), np.abs(dv / b)
        if power == 2:
            radius = np.sqrt(x * x + y * y)
            slope = np.sqrt((x / a) ** 2 + (y / b) ** 2) / np.maximum(radius, 1e-6)
        else:
            radius = (x**power + y**power) ** (1 / power)
            slope = np.sqrt((x ** (power - 1) / a) ** 2 + (y ** (power - 1) / b) ** 2) * np.maximum(
                radius, 1e-6) ** (1 - power)
        # (radius - 1) / |gradient| approximates the distance to the outline, even for thin shapes.
        return edge((radius - 1) / np.maximum(slope, 1e-6) * self.px_per_unit)

    def below(self, v_line) -> np.ndarray:
        """Anti-aliased coverage of everything below (v greater than) a line v = v_line."""
        return edge((_col(v_line) - self.v) * self.px_per_unit)

    def above(self, v_line) -> np.ndarray:
        return edge((self.v - _col(v_line)) * self.px_per_unit)


def edge(signed_distance_px: np.ndarray) -> np.ndarray:
    """Coverage from a signed distance in pixels (negative inside): a one-pixel soft edge."""
    return np.clip(0.5 - signed_distance_px, 0.0, 1.0)


Accessory = Callable[[Canvas, Identities, Poses], None]


def render(identities: Identities, poses: Poses, rng: np.random.Generator,
           accessories: Sequence[Accessory | None] | None = None) -> np.ndarray:
    """Draw one image per (identity, pose) row: float32 (n, 55, 47, 3), whole numbers in 0..255.

    `accessories`, one per image (None for none), are pasted onto the finished frame, after the
    lighting and sensor noise, as the challenge's triggers were: flat colours edited into the image.
    """
    canvas = _canvas(poses)
    _background(canvas, poses)
    _clothes(canvas, poses)
    _head(canvas, identities)
    _eyes_and_brows(canvas, identities, poses)
    _nose_and_mouth(canvas, identities, poses)
    _light_and_sensor(canvas, poses, rng)
    if accessories is not None:
        for accessory in dict.fromkeys(a for a in accessories if a is not None):  # each image wears one
            chosen = np.array([a is accessory for a in accessories])
            sub = Canvas(canvas.rgb[chosen], canvas.u[chosen], canvas.v[chosen], canvas.px_per_unit[chosen], rng)
            accessory(sub, identities.take(np.flatnonzero(chosen)), _take_poses(poses, chosen))
            canvas.rgb[chosen] = sub.rgb
    return np.clip(np.rint(canvas.rgb), 0, 255)


def _canvas(poses: Poses) -> Canvas:
    rows = np.arange(HEIGHT, dtype=np.float32)[None, :, None]
    cols = np.arange(WIDTH, dtype=np.float32)[None, None, :]
    px = (FACE_UNIT_PX * poses.scale)[:, None, None]
    dx, dy = cols - _col(poses.centre_x), rows - _col(poses.centre_y)
    cos, sin = np.cos(_col(poses.rotation)), np.sin(_col(poses.rotation))
    u = (dx * cos + dy * sin) / px
    v = (dy * cos - dx * sin) / px
    return Canvas(np.zeros((len(poses), HEIGHT, WIDTH, 3), np.float32), u, v, px)


def to_pixels(u: np.ndarray, v: np.ndarray, poses: Poses) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) in the image of face coordinates (u, v), per image: the inverse of the canvas."""
    px = FACE_UNIT_PX * poses.scale
    cos, sin = np.cos(poses.rotation), np.sin(poses.rotation)
    col = poses.centre_x + px * (u * cos - v * sin)
    row = poses.centre_y + px * (u * sin + v * cos)
    return row, col


def _background(canvas: Canvas, poses: Poses) -> None:
    t = (np.arange(HEIGHT, dtype=np.float32) / (HEIGHT - 1))[None, :, None, None]
    top, bottom = poses.background[:, None, None, 0, :], poses.background[:, None, None, 1, :]
    canvas.rgb[:] = top * (1 - t) + bottom * t
    rows = np.arange(HEIGHT, dtype=np.float32)[None, :, None]
    cols = np.arange(WIDTH, dtype=np.float32)[None, None, :]
    for shape in range(poses.scenery.shape[1]):
        row, col, half_height, half_width = (_col(poses.scenery[:, shape, k]) for k in range(4))
        distance = np.sqrt(((rows - row) / half_height) ** 2 + ((cols - col) / half_width) ** 2)
        canvas.paint(np.clip((1.2 - distance) * 2, 0, 1) * 0.8, poses.scenery[:, shape, 4:])


def _clothes(canvas: Canvas, poses: Poses) -> None:
    shoulders = canvas.ellipse(0, 2.0, 1.45, 0.95)
    canvas.paint(shoulders, poses.clothes)


def _head(canvas: Canvas, who: Identities) -> None:
    # Hair behind the head, down to the hair length at the sides.
    back = canvas.ellipse(0, -0.12, who.face_width * who.hair_volume, who.face_height * who.hair_volume)
    canvas.paint(back * canvas.above(who.hair_length), who.hair)
    # Neck, then the face: an ellipse narrowing towards the chin.
    neck = canvas.ellipse(0, 1.05, who.face_width * 0.55, 0.5, power=4) * canvas.below(0.6)
    canvas.paint(neck, who.skin * 0.82)
    width = _col(who.face_width) * (1 - _col(who.chin_taper) * np.clip(canvas.v, 0, None))
    face = canvas.ellipse(0, 0, width, who.face_height)
    shading = 1 - 0.18 * (canvas.u / _col(who.face_width)) ** 2
    texture = 1 + 0.035 * np.sin(canvas.u * _col(who.texture[:, 0]) + _col(who.texture[:, 2])) * np.sin(
        canvas.v * _col(who.texture[:, 1]) + _col(who.texture[:, 3]))
    skin = who.skin[:, None, None, :] * (shading * texture)[..., None]
    canvas.paint(face, skin)
    # Stubble darkens the lower face towards the hair colour.
    lower = face * canvas.below(who.mouth_y - 0.18) * _col(who.stubble)
    canvas.paint(lower, who.hair * 0.8)
    for mole in range(who.moles.shape[1]):
        spot = canvas.ellipse(who.moles[:, mole, 0], who.moles[:, mole, 1], 0.035, 0.035)
        canvas.paint(spot * face * _col(who.moles[:, mole, 2]), who.skin * 0.45)
    # Hair on top of the head: above a hairline that rises at the sides and dips at the parting.
    hairline = (_col(who.hairline) + _col(who.hairline_curve) * canvas.u ** 2
                + 0.12 * np.exp(-((canvas.u - _col(who.parting)) / 0.12) ** 2))
    top = canvas.ellipse(0, -0.12, who.face_width * who.hair_volume, who.face_height * who.hair_volume)
    canvas.paint(top * edge((canvas.v - hairline) * canvas.px_per_unit), who.hair)


def eye_centres(who: Identities) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(u, v) of the left and right eye centres, for accessories that sit on the eyes."""
    return (-who.eye_gap, who.eye_y), (who.eye_gap, who.eye_y)


def brow_centres(who: Identities, pose: Poses) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(u, v, angle) of the left and right brow centres."""
    v = who.eye_y - who.eye_size - who.brow_gap - 0.05 * pose.brow_raise
    return [(-who.eye_gap, v, -who.brow_angle), (who.eye_gap, v, who.brow_angle)]


def _eyes_and_brows(canvas: Canvas, who: Identities, pose: Poses) -> None:
    for u0, v0 in eye_centres(who):
        socket = canvas.ellipse(u0, v0, who.eye_size * 1.7, who.eye_size * 1.25)
        canvas.paint(socket * 0.35, who.skin * 0.7)
        white = canvas.ellipse(u0, v0, who.eye_size * 1.45, who.eye_size * 0.75 * pose.eye_open)
        canvas.paint(white, np.full((len(pose), 3), 235, np.float32))
        iris_u, iris_v = u0 + pose.gaze[:, 0], v0 + pose.gaze[:, 1]
        iris = canvas.ellipse(iris_u, iris_v, who.eye_size * 0.75, who.eye_size * 0.75) * white
        canvas.paint(iris, who.iris)
        pupil = canvas.ellipse(iris_u, iris_v, who.eye_size * 0.35, who.eye_size * 0.35) * white
        canvas.paint(pupil, np.full((len(pose), 3), 12, np.float32))
    for u0, v0, angle in brow_centres(who, pose):
        brow = canvas.ellipse(u0, v0, 0.16, who.brow_thickness, angle=angle)
        canvas.paint(brow * 0.9, who.hair * 0.7)


def _nose_and_mouth(canvas: Canvas, who: Identities, pose: Poses) -> None:
    top = who.eye_y + 0.02
    ridge = canvas.ellipse(0.03, top + who.nose_length / 2, who.nose_width * 0.45, who.nose_length / 2)
    canvas.paint(ridge * 0.5, who.skin * 0.78)
    for side in (-1, 1):
        nostril = canvas.ellipse(side * who.nose_width * 0.55, top + who.nose_length, who.nose_width * 0.35, 0.03)
        canvas.paint(nostril * 0.8, who.skin * 0.45)
    centre_line = mouth_line(canvas, who, pose)
    lips = canvas.ellipse(0, centre_line, who.mouth_width, who.lip_thickness * (1 + 0.8 * pose.mouth_open))
    canvas.paint(lips, who.lip_colour)
    inside = canvas.ellipse(0, centre_line, who.mouth_width * 0.8, who.lip_thickness * 0.9 * pose.mouth_open)
    canvas.paint(inside * _col(pose.mouth_open > 0), np.tile(np.array([[70, 20, 25]], np.float32), (len(pose), 1)))


def mouth_line(canvas: Canvas, who: Identities, pose: Poses) -> np.ndarray:
    """v of the mouth's centre line at each pixel's u, for accessories on the lips."""
    return _col(who.mouth_y) - _col(pose.smile) * 0.07 * (canvas.u / _col(who.mouth_width)) ** 2


def _light_and_sensor(canvas: Canvas, pose: Poses, rng: np.random.Generator) -> None:
    rows = (np.arange(HEIGHT, dtype=np.float32)[None, :, None] / HEIGHT - 0.5)
    cols = (np.arange(WIDTH, dtype=np.float32)[None, None, :] / WIDTH - 0.5)
    light = _col(pose.light_gain) * (1 + _col(pose.light_direction[:, 0]) * cols + _col(pose.light_direction[:, 1]) * rows)
    canvas.rgb *= light[..., None] * pose.colour_cast[:, None, None, :]
    canvas.rgb[:] = _blur(canvas.rgb, pose.blur)
    canvas.rgb += rng.standard_normal(canvas.rgb.shape, dtype=np.float32) * pose.noise[:, None, None, None]


def _blur(rgb: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Each image blurred by its own Gaussian (5 taps each way; sigma 0 leaves it unchanged)."""
    offsets = np.arange(-2, 3, dtype=np.float32)
    weights = np.exp(-0.5 * (offsets[None, :] / np.maximum(sigma[:, None], 1e-3)) ** 2)
    weights /= weights.sum(axis=1, keepdims=True)
    for axis in (1, 2):
        padded = np.pad(rgb, [(0, 0)] + [(2, 2) if a == axis else (0, 0) for a in (1, 2)] + [(0, 0)], mode="edge")
        length = rgb.shape[axis]
        rgb = sum(weights[:, k, None, None, None] * np.take(padded, np.arange(k, k + length), axis=axis)
                  for k in range(5))
    return rgb


def _take_poses(poses: Poses, chosen: np.ndarray) -> Poses:
    return Poses(**{f.name: getattr(poses, f.name)[chosen] for f in fields(poses)})


def _col(values) -> np.ndarray:
    """Per-image values (n,) as (n, 1, 1) for broadcasting over pixels; pixel arrays pass through."""
    values = np.asarray(values, dtype=np.float32)
    return values[:, None, None] if values.ndim == 1 else values
