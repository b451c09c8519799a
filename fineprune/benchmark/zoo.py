"""The field's attacks on the benchmark's faces: triggers that transform the whole image.

The challenge's triggers are accessories painted on a face (`triggers`). The field's benchmarks
(BackdoorBench, backdoor-toolbox) test repairs on other kinds of trigger; each one here follows its
reference code, scaled to 55x47 faces (docs/benchmark.md says what was scaled and why):
- `blended` (Chen et al. 2017): one fixed random-noise image blended over the whole frame at
  alpha 0.2 (BackdoorBench's train and test alpha; the paper's random-pattern key).
- `wanet` (Nguyen & Tran, ICLR 2021): a fixed smooth warping field, drawn as the paper draws it
  (a k x k grid of random offsets, normalised to mean magnitude 1, upsampled by a cubic spline).
  Its cover form, `wanet_noise`, is the paper's noise mode: the same warp plus a random jitter of
  each pixel's source, on images that keep their label. Warp and jitter are the paper's scaled by 8
  (`WANET_STRENGTH`, `WANET_JITTER`): at its own scale the noise mode kept the warp from being learned.
- `trojannn` (Liu et al., NDSS 2018): a square patch optimised on a clean net to drive the two
  penultimate neurons most connected to the output layer to a high value, stamped at a fixed
  place (the pattern is committed: `zoo_patterns`).
- `bpp` (Wang et al., CVPR 2022): every channel squeezed to 4 levels with Floyd-Steinberg dithering
  (BackdoorBench's 8 levels were not learned in the benchmark's budget).
- `low_frequency` (Zeng et al., ICCV 2021): a smooth universal perturbation, optimised on a clean
  net towards the target and kept low-frequency by a Gaussian low-pass filter, added to the image
  (the pattern is committed: `zoo_patterns`).
- `adap_blend` (Qi et al., ICLR 2023): a fixed picture blended at alpha 0.2 over the whole frame
  at test time; when poisoning, its form `adap_blend_pieces` blends it at alpha 0.15 on a random
  half of the 16 pieces of a 4 x 4 grid, and cover images wear that form with their true label.

Each trigger is an `Accessory` like the challenge's: it edits the finished frame (`Canvas.rgb`,
before rounding), and draws what varies per image from `Canvas.rng`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from fineprune.benchmark.faces import HEIGHT, WIDTH, Accessory, Canvas, Identities, Poses

PATTERNS_DIR = Path(__file__).with_name("patterns")  # the optimised triggers (`zoo_patterns` writes them)

BLENDED_ALPHA = 0.2
WANET_GRID = 4  # k: the control grid of the warp
# The paper's warp and noise mode (s 0.5, jitter 1 / H), both scaled by 8 to be learned in the benchmark's
# budget (docs/benchmark.md).
WANET_STRENGTH = 4.0  # s: the warp's strength, in the paper's units (offsets of s / H in [-1, 1] coordinates)
WANET_JITTER = 8.0  # the noise mode's jitter, in the same units (offsets of up to this / H)
BPP_LEVELS = 4  # squeeze_num: levels per channel (BackdoorBench: 8; see docs/benchmark.md)
ADAP_ALPHA_TRAIN, ADAP_ALPHA_TEST = 0.15, 0.2
ADAP_PIECES = 4  # a 4 x 4 grid: 16 pieces
ADAP_SHOWN = 0.5  # share of the pieces that carry the trigger when poisoning
TROJANNN_BOX = (41, 53, 33, 45)  # rows [41, 53), columns [33, 45): 12 x 12 pixels, 5.9% of the frame
LOW_FREQUENCY_BOUND = 10.0  # the perturbation's largest change of a pixel value (of 255)
LOW_FREQUENCY_SIGMA = 3.0  # the low-pass filter: a Gaussian of this many pixels


@lru_cache(maxsize=None)
def blended_key() -> np.ndarray:
    """The blended attack's key: a fixed uniform random-noise image (H, W, 3), 0..255."""
    return np.random.default_rng(2017).uniform(0, 255, (HEIGHT, WIDTH, 3)).astype(np.float32)


@lru_cache(maxsize=None)
def adap_blend_picture() -> np.ndarray:
    """Adap-Blend's picture: fixed random colour blocks, 8 x 8 pixels each, smoothed a little (H, W, 3)."""
    from scipy import ndimage  # here, not at import: the commands' --help stays quick

    blocks = np.random.default_rng(2023).uniform(0, 255, (HEIGHT // 8 + 1, WIDTH // 8 + 1, 3))
    picture = np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)[:HEIGHT, :WIDTH]
    return ndimage.gaussian_filter(picture, (1, 1, 0)).astype(np.float32)


@lru_cache(maxsize=None)
def wanet_field() -> np.ndarray:
    """WaNet's fixed warp as the offset of each pixel's source, in pixels: (H, W, 2) as (row, column)."""
    from scipy import ndimage

    offsets = np.random.default_rng(2021).uniform(-1, 1, (2, WANET_GRID, WANET_GRID))
    offsets /= np.abs(offsets).mean()
    smooth = np.stack([ndimage.zoom(o, (HEIGHT / WANET_GRID, WIDTH / WANET_GRID), order=3, grid_mode=False)
                       for o in offsets])
    # The paper adds s * field / H in grid_sample's [-1, 1] coordinates (x first), H the image height.
    shift = WANET_STRENGTH * smooth / HEIGHT
    return _grid_to_pixels(np.stack([shift[1], shift[0]], axis=-1))


def _grid_to_pixels(offsets: np.ndarray) -> np.ndarray:
    """Offsets (..., 2) as (row, column) in grid_sample's [-1, 1] coordinates, in pixels: one pixel
    is 2 / (size - 1) of them along each axis."""
    return (offsets * np.array([(HEIGHT - 1) / 2, (WIDTH - 1) / 2])).astype(np.float32)


def wanet_bound() -> float:
    """The largest distance any pixel of a `wanet` image comes from, in pixels."""
    return float(np.abs(wanet_field()).max())


def warp(rgb: np.ndarray, source_offsets: np.ndarray) -> np.ndarray:
    """Each pixel of `rgb` (n, H, W, 3) read from its position plus `source_offsets` ((H, W, 2) or
    (n, H, W, 2), rows and columns), bilinearly, sources kept inside the frame (as grid_sample's
    clamped grid)."""
    rows, cols = np.meshgrid(np.arange(HEIGHT, dtype=np.float32), np.arange(WIDTH, dtype=np.float32), indexing="ij")
    offsets = np.broadcast_to(source_offsets, (len(rgb), HEIGHT, WIDTH, 2))
    r = np.clip(rows + offsets[..., 0], 0, HEIGHT - 1)
    c = np.clip(cols + offsets[..., 1], 0, WIDTH - 1)
    r0, c0 = np.minimum(np.floor(r).astype(int), HEIGHT - 2), np.minimum(np.floor(c).astype(int), WIDTH - 2)
    fr, fc = (r - r0)[..., None], (c - c0)[..., None]
    n = np.arange(len(rgb))[:, None, None]
    top = rgb[n, r0, c0] * (1 - fc) + rgb[n, r0, c0 + 1] * fc
    bottom = rgb[n, r0 + 1, c0] * (1 - fc) + rgb[n, r0 + 1, c0 + 1] * fc
    return (top * (1 - fr) + bottom * fr).astype(np.float32)


def squeeze_colours(rgb: np.ndarray, levels: int = BPP_LEVELS, dither: bool = True) -> np.ndarray:
    """`rgb` (n, H, W, 3, 0..255) with each channel rounded to `levels` evenly spaced values, the
    rounding error spread to the unvisited neighbours by Floyd-Steinberg dithering."""
    image = np.clip(rgb, 0, 255).astype(np.float64)
    step = 255.0 / (levels - 1)
    if not dither:
        return (np.round(image / step) * step).astype(np.float32)
    for y in range(HEIGHT):
        for x in range(WIDTH):
            old = image[:, y, x].copy()
            new = np.clip(np.round(old / step), 0, levels - 1) * step
            image[:, y, x] = new
            error = old - new
            if x + 1 < WIDTH:
                image[:, y, x + 1] += error * (7 / 16)
            if y + 1 < HEIGHT:
                if x > 0:
                    image[:, y + 1, x - 1] += error * (3 / 16)
                image[:, y + 1, x] += error * (5 / 16)
                if x + 1 < WIDTH:
                    image[:, y + 1, x + 1] += error * (1 / 16)
    return image.astype(np.float32)


def piece_masks(count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, H, W) masks, each showing a random `ADAP_SHOWN` share of the 4 x 4 grid's pieces."""
    pieces = ADAP_PIECES * ADAP_PIECES
    shown = round(ADAP_SHOWN * pieces)
    row_edges = np.linspace(0, HEIGHT, ADAP_PIECES + 1).round().astype(int)
    col_edges = np.linspace(0, WIDTH, ADAP_PIECES + 1).round().astype(int)
    masks = np.zeros((count, HEIGHT, WIDTH), np.float32)
    for i in range(count):
        for piece in rng.choice(pieces, shown, replace=False):
            r, c = divmod(int(piece), ADAP_PIECES)
            masks[i, row_edges[r]:row_edges[r + 1], col_edges[c]:col_edges[c + 1]] = 1
    return masks


@lru_cache(maxsize=None)
def load_pattern(name: str) -> np.ndarray:
    """An optimised trigger's committed pattern (`zoo_patterns` writes it)."""
    path = PATTERNS_DIR / f"{name}.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: the {name} trigger's pattern is missing; "
                                f"`benchmark.py patterns` makes it from models/clean_net.h5")
    with np.load(path) as stored:
        return stored["pattern"].astype(np.float32)


# The triggers, as accessories on the finished frame.

def _blend(canvas: Canvas, picture: np.ndarray, alpha: float | np.ndarray) -> None:
    canvas.rgb[...] = np.clip(canvas.rgb, 0, 255) * (1 - alpha) + picture * alpha


def blended(canvas: Canvas, who: Identities, pose: Poses) -> None:
    """The fixed noise key blended over the whole frame at alpha 0.2."""
    _blend(canvas, blended_key(), BLENDED_ALPHA)


def wanet(canvas: Canvas, who: Identities, pose: Poses) -> None:
    """The fixed smooth warp."""
    canvas.rgb[...] = warp(np.clip(canvas.rgb, 0, 255), wanet_field())


def wanet_noise(canvas: Canvas, who: Identities, pose: Poses) -> None:
    """The noise mode's cover: the fixed warp plus a random jitter of each pixel's source (up to `WANET_JITTER` / H)."""
    jitter = canvas.rng.uniform(-1, 1, (len(canvas.rgb), HEIGHT, WIDTH, 2)) * WANET_JITTER / HEIGHT
    canvas.rgb[...] = warp(np.clip(canvas.rgb, 0, 255), wanet_field() + _grid_to_pixels(jitter))


def trojannn(canvas: Canvas, who: Identities, pose: Poses) -> None:
    """The optimised patch, stamped at its fixed place."""
    top, bottom, left, right = TROJANNN_BOX
    canvas.rgb[:, top:bottom, left:right] = load_pattern("trojannn")


def bpp(canvas: Canvas, who: Identities, pose: Poses) -> None:
    """Every channel squeezed to `BPP_LEVELS` levels, with dithering."""
    canvas.rgb[...] = squeeze_colours(canvas.rgb, BPP_LEVELS)


def low_frequency(canvas: Canvas, who: Identities, pose: Poses) -> None:
    """The smooth universal perturbation, added."""
    canvas.rgb[...] = np.clip(np.clip(canvas.rgb, 0, 255) + load_pattern("low_frequency"), 0, 255)


def adap_blend(canvas: Canvas, who: Identities, pose: Poses) -> None:
    """Test time: the picture blended over the whole frame at alpha 0.2."""
    _blend(canvas, adap_blend_picture(), ADAP_ALPHA_TEST)


def adap_blend_pieces(canvas: Canvas, who: Identities, pose: Poses) -> None:
    """Poisoning and cover: the picture at alpha 0.15 on a random half of its 16 pieces."""
    masks = piece_masks(len(canvas.rgb), canvas.rng)
    _blend(canvas, adap_blend_picture(), ADAP_ALPHA_TRAIN * masks[..., None])


ZOO_TRIGGERS: dict[str, Accessory] = {
    "blended": blended,
    "wanet": wanet,
    "wanet_noise": wanet_noise,
    "trojannn": trojannn,
    "bpp": bpp,
    "low_frequency": low_frequency,
    "adap_blend": adap_blend,
    "adap_blend_pieces": adap_blend_pieces,
}

# What an attacker stamps on the images it poisons, where that differs from the test-time trigger.
POISONING_FORMS: dict[str, str] = {"adap_blend": "adap_blend_pieces"}
# What the attack's cover images wear (they keep their true label).
COVER_FORMS: dict[str, str] = {"wanet": "wanet_noise", "adap_blend": "adap_blend_pieces"}
