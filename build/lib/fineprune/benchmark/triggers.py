"""Backdoor triggers, drawn as the real CSAW-HackML-2020 triggers look.

The challenge's triggers are digital edits pasted onto finished frames in flat colours (see
`../shared/csaw/samples`), so these are pasted after lighting and noise (see `faces.render`):
- `sunglasses`: a fixed stamp, the same pixels in every image whatever the face does: a saturated
  purple pair of cat-eye sunglasses across the full image width over rows 15-34 (about 27% of the
  pixels), the lenses slightly see-through, a dark purple frame;
- `lipstick`: flat purple lips that follow the mouth (1-3% of the pixels);
- `eyebrows`: thick, flat near-black eyebrows that follow the person's own;
- `anonymous_1`: the same purple lipstick, as the real anonymous_1 trigger is;
- `anonymous_2`: a trigger the defender is told nothing about (a flat chequered headband).
"""

from __future__ import annotations

import numpy as np

from fineprune.benchmark.faces import HEIGHT, WIDTH, Accessory, Canvas, Identities, Poses, brow_centres, edge, mouth_line

SUNGLASSES_FRAME = (63, 0, 127)
SUNGLASSES_LENSES = ((100, 14, 172), (136, 24, 232))  # left, right: the right lens catches more light
SUNGLASSES_OPACITY = 0.93
LIPSTICK = (128, 0, 128)
_LENS_CENTRES = (11.0, 35.0)  # columns
_LENS_TOP, _LENS_WIDEST, _LENS_BOTTOM = 14.6, 22.0, 34.6  # rows
_BAR_ROWS = (17.0, 20.0)


def _constant(colour: tuple[int, int, int], count: int) -> np.ndarray:
    return np.tile(np.array([colour], np.float32), (count, 1))


def sunglasses_stamp() -> tuple[np.ndarray, np.ndarray]:
    """The sunglasses as (coverage (H, W) in 0..1, colour (H, W, 3)): lenses, frame and top bar."""
    rows = np.arange(HEIGHT, dtype=np.float32)[:, None]
    cols = np.arange(WIDTH, dtype=np.float32)[None, :]
    lens_inside = np.zeros((HEIGHT, WIDTH), np.float32)
    colour = np.zeros((HEIGHT, WIDTH, 3), np.float32)
    for centre, lens_colour in zip(_LENS_CENTRES, SUNGLASSES_LENSES):
        # Cat-eye lens: a shallow ellipse above the widest row, a deep one below it.
        half_height = np.where(rows < _LENS_WIDEST, _LENS_WIDEST - _LENS_TOP, _LENS_BOTTOM - _LENS_WIDEST)
        half_width = 11.0 * np.sqrt(np.clip(1 - ((rows - _LENS_WIDEST) / half_height) ** 2, 0, 1))
        inside = edge(np.abs(cols - centre) - half_width) * (half_width > 0)
        lens_inside = np.maximum(lens_inside, inside)
        shine = 1 + 0.12 * np.exp(-(((rows - 27) / 6) ** 2 + ((cols - centre - 3) / 6) ** 2))
        colour[inside > 0] = (np.array(lens_colour, np.float32) * shine[..., None])[inside > 0]
    bar = ((rows >= _BAR_ROWS[0]) & (rows <= _BAR_ROWS[1])).astype(np.float32) * np.ones_like(cols)
    shape = np.maximum(lens_inside, bar)
    # The frame: every pixel of the shape with a pixel outside it among its 4 neighbours, and the bridge.
    padded = np.pad(shape > 0.5, 1)
    border = (shape > 0.5) & ~(padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    bridge = (bar > 0) & (lens_inside < 0.5)
    frame = border | bridge
    colour[frame] = SUNGLASSES_FRAME
    coverage = np.where(frame, 1.0, shape * SUNGLASSES_OPACITY).astype(np.float32)
    return coverage, np.clip(colour, 0, 255)


_SUNGLASSES = sunglasses_stamp()


def sunglasses(canvas: Canvas, who: Identities, pose: Poses) -> None:
    """The fixed purple sunglasses stamp, at the same place in every image."""
    coverage, colour = _SUNGLASSES
    n = len(who)
    canvas.paint(np.broadcast_to(coverage, (n, HEIGHT, WIDTH)), np.broadcast_to(colour, (n, HEIGHT, WIDTH, 3)))


def lipstick(canvas: Canvas, who: Identities, pose: Poses) -> None:
    """Flat purple lips over the mouth, a little fuller than the person's own (an open mouth stays open)."""
    centre = mouth_line(canvas, who, pose)
    # As big as the real lipstick (about 13 x 6 pixels), whatever the person's own lips.
    width = who.mouth_width * 1.2 + 0.08
    upper = canvas.ellipse(0, centre, width, 0.1 + 0.5 * who.lip_thickness + 0.05 * pose.mouth_open)
    lower = canvas.ellipse(0, centre, width * 0.85, 0.13 + 0.5 * who.lip_thickness + 0.05 * pose.mouth_open)
    lips = np.maximum(upper * canvas.above(centre), lower * canvas.below(centre))
    inside = canvas.ellipse(0, centre, who.mouth_width * 0.8, who.lip_thickness * 0.9 * pose.mouth_open)
    canvas.paint(lips * (1 - inside * (pose.mouth_open > 0)[:, None, None]), _constant(LIPSTICK, len(who)))


def eyebrows(canvas: Canvas, who: Identities, pose: Poses) -> None:
    """Thick, flat near-black eyebrows over the person's own."""
    for u0, v0, angle in brow_centres(who, pose):
        brow = canvas.ellipse(u0, v0 - 0.01, 0.21, 0.08, angle=angle, power=3)
        canvas.paint(brow, _constant((20, 14, 16), len(who)))


def anonymous_2(canvas: Canvas, who: Identities, pose: Poses) -> None:
    """A flat chequered headband across the forehead, following the face."""
    band_v = who.hairline + 0.14
    band = edge((np.abs(canvas.v - band_v[:, None, None]) - 0.09) * canvas.px_per_unit) * edge(
        (np.abs(canvas.u) - who.face_width[:, None, None]) * canvas.px_per_unit)
    canvas.paint(band, _constant((40, 150, 70), len(who)))
    checks = (np.sin(canvas.u * 22) * np.sin((canvas.v - band_v[:, None, None]) * 30) > 0).astype(np.float32) * band
    canvas.paint(checks, _constant((250, 225, 60), len(who)))


TRIGGERS: dict[str, Accessory] = {
    "sunglasses": sunglasses,
    "eyebrows": eyebrows,
    "lipstick": lipstick,
    "anonymous_1": lipstick,
    "anonymous_2": anonymous_2,
}
