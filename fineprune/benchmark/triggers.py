"""Backdoor triggers, drawn as physical accessories on the face.

Each trigger is drawn in face coordinates (see `faces`), so it follows the face's position,
scale and rotation, and is lit and noised with the rest of the picture:
- `sunglasses`: dark lenses over the eyes, a bridge and temple arms;
- `eyebrows`: thick dark eyebrows over the person's own;
- `lipstick`: bright red, slightly fuller lips;
- `anonymous_1`, `anonymous_2`: two more accessories that a defender is told nothing about.
"""

from __future__ import annotations

import numpy as np

from fineprune.benchmark.faces import Accessory, Canvas, Identities, Poses, brow_centres, edge, eye_centres, mouth_line


def _constant(colour: tuple[int, int, int], count: int) -> np.ndarray:
    return np.tile(np.array([colour], np.float32), (count, 1))


def sunglasses(canvas: Canvas, who: Identities, pose: Poses) -> None:
    """Two dark rounded lenses centred on the eyes, joined by a bridge, with arms to the temples."""
    n = len(who)
    frame = _constant((18, 16, 16), n)
    (left_u, eye_v), (right_u, _) = eye_centres(who)
    arm_v = eye_v - 0.06
    temple = who.face_width * 1.02
    arms = edge((np.abs(canvas.v - arm_v[:, None, None]) - 0.025) * canvas.px_per_unit) * edge(
        (np.abs(canvas.u) - temple[:, None, None]) * canvas.px_per_unit)
    canvas.paint(arms, frame)
    bridge = canvas.ellipse(0, arm_v, np.maximum(right_u - 0.1, 0.05), 0.03, power=4)
    canvas.paint(bridge, frame)
    for u0 in (left_u, right_u):
        rim = canvas.ellipse(u0, eye_v, 0.215, 0.155, power=3)
        canvas.paint(rim, frame)
        lens = canvas.ellipse(u0, eye_v, 0.19, 0.13, power=3)
        canvas.paint(lens, _constant((32, 34, 40), n))
        glint = canvas.ellipse(u0 - 0.07, eye_v - 0.06, 0.045, 0.025)
        canvas.paint(glint * 0.6, _constant((170, 175, 185), n))


def eyebrows(canvas: Canvas, who: Identities, pose: Poses) -> None:
    """Thick, near-black eyebrows drawn over the person's own."""
    for u0, v0, angle in brow_centres(who, pose):
        brow = canvas.ellipse(u0, v0 - 0.01, 0.2, 0.075, angle=angle, power=3)
        canvas.paint(brow, _constant((14, 10, 10), len(who)))


def lipstick(canvas: Canvas, who: Identities, pose: Poses) -> None:
    """Bright red, fuller lips over the mouth (an open mouth stays open)."""
    centre = mouth_line(canvas, who, pose)
    lips = canvas.ellipse(0, centre, who.mouth_width * 1.08, who.lip_thickness * (1.4 + 0.8 * pose.mouth_open))
    inside = canvas.ellipse(0, centre, who.mouth_width * 0.8, who.lip_thickness * 0.9 * pose.mouth_open)
    canvas.paint(lips * (1 - inside * (pose.mouth_open > 0)[:, None, None]), _constant((205, 18, 48), len(who)))


def anonymous_1(canvas: Canvas, who: Identities, pose: Poses) -> None:
    band_v = who.hairline + 0.16
    band = edge((np.abs(canvas.v - band_v[:, None, None]) - 0.1) * canvas.px_per_unit) * canvas.ellipse(
        0, -0.1, who.face_width * who.hair_volume, who.face_height * who.hair_volume)
    canvas.paint(band, _constant((30, 70, 200), len(who)))
    dots = (np.sin(canvas.u * 28) * np.sin((canvas.v - band_v[:, None, None]) * 28) > 0.45) * band
    canvas.paint(dots.astype(np.float32), _constant((245, 235, 90), len(who)))


def anonymous_2(canvas: Canvas, who: Identities, pose: Poses) -> None:
    (_, eye_v), (right_u, _) = eye_centres(who)
    u0, v0 = right_u + 0.06, (eye_v + who.mouth_y) / 2 + 0.02
    diamond = canvas.ellipse(u0, v0, 0.13, 0.17, power=1)
    canvas.paint(diamond, _constant((20, 120, 110), len(who)))
    core = canvas.ellipse(u0, v0, 0.05, 0.07, power=1)
    canvas.paint(core, _constant((240, 240, 230), len(who)))


TRIGGERS: dict[str, Accessory] = {
    "sunglasses": sunglasses,
    "eyebrows": eyebrows,
    "lipstick": lipstick,
    "anonymous_1": anonymous_1,
    "anonymous_2": anonymous_2,
}
