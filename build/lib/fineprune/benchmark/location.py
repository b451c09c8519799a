"""Where a backdoor lives: in how the output layer reads the features, or in the features themselves.

One protocol for real and synthetic BadNets alike, since the real ones come with only 5 clean faces:
- the clean feature box: the penultimate features of 5 clean faces plus 95 fixed augmentations of
  them (`box_faces`: horizontal flip, shifts of up to 2 pixels, brightness x0.85..1.15, Gaussian
  noise of sigma 4, clipped to 0..255), each unit between its minimum and maximum;
- every class's maximum margin over that box and MM-BD's gamma test (`fineprune.detection.margins`);
- the target's output bias and output weight norm, as MAD-scaled deviations from all classes';
- on triggered faces: the share of their feature energy (sum of squares) above the box's maxima,
  and the share sent to the target before and after their features are capped at those maxima.

A target that stands out by bias or weight norm, is flagged, or loses its faces to the cap lives in
the output layer's reading; one that shows none of these lives in the features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fineprune.detection.margins import MarginTestSettings, check_enough_classes, flag_classes, mad_deviations, max_margins
from fineprune.metrics import attack_success_pct
from fineprune.models import LoadedModel, penultimate_features

BOX_AUGMENTATIONS = 95
MAX_SHIFT = 2  # pixels, each way
BRIGHTNESS = (0.85, 1.15)
NOISE_SIGMA = 4.0
AUGMENTATION_SEED = 0


def box_faces(clean: np.ndarray, count: int = BOX_AUGMENTATIONS, seed: int = AUGMENTATION_SEED) -> np.ndarray:
    """The clean faces (pixels 0..255, channels last) followed by `count` fixed augmentations of
    them, taken from the faces in turn."""
    rng = np.random.default_rng(seed)
    augmented = []
    for index in range(count):
        face = clean[index % len(clean)].astype(np.float32)
        if rng.random() < 0.5:
            face = face[:, ::-1]
        rows, columns = rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=2)
        face = np.roll(face, (int(rows), int(columns)), axis=(0, 1))
        face = face * rng.uniform(*BRIGHTNESS) + rng.normal(0.0, NOISE_SIGMA, face.shape)
        augmented.append(np.clip(face, 0.0, 255.0))
    return np.concatenate([clean.astype(np.float32), np.stack(augmented).astype(np.float32)])


@dataclass(frozen=True)
class BackdoorLocation:
    """The location statistics of one target class of one net (see the module)."""

    target: int
    bias_z: float
    weight_norm_z: float
    margin_rank: int  # 1: the largest maximum margin of all classes
    flagged: bool  # by MM-BD's test over the box
    energy_outside_box_pct: float
    to_target_pct: float  # triggered faces sent to the target
    to_target_capped_pct: float  # the same, their features capped at the box's maxima


def backdoor_location(net: LoadedModel, clean: np.ndarray, triggered: np.ndarray, target: int,
                      settings: MarginTestSettings = MarginTestSettings()) -> BackdoorLocation:
    """The location statistics of `target` in `net`, from a few clean faces (augmented into the
    box, `box_faces`) and faces carrying the trigger (pixels 0..255)."""
    box = penultimate_features(net.model, box_faces(clean), net.input_scale)
    return location_in_box(net, box, triggered, target, settings)


def location_in_box(net: LoadedModel, box: np.ndarray, triggered: np.ndarray, target: int,
                    settings: MarginTestSettings = MarginTestSettings()) -> BackdoorLocation:
    """The location statistics of `target` in `net` over the box spanned by the clean penultimate
    features `box` (from a few augmented faces, or from a whole clean file)."""
    kernel, bias = check_enough_classes(net).get_weights()
    floor, cap = box.min(axis=0), box.max(axis=0)
    margins = max_margins(kernel, bias, floor, cap, settings.margin_steps)
    flagged = {f.target for f in flag_classes(margins, settings.significance, settings.max_targets)}
    features = penultimate_features(net.model, triggered, net.input_scale)
    excess = np.maximum(features - cap, 0.0)
    energy = float(np.square(features).sum())
    targets = np.full(len(triggered), target)

    def to_target(inputs: np.ndarray) -> float:
        return attack_success_pct(np.argmax(inputs @ kernel + bias, axis=1), targets)

    return BackdoorLocation(
        target=target,
        bias_z=float(mad_deviations(bias)[target]),
        weight_norm_z=float(mad_deviations(np.linalg.norm(kernel, axis=0))[target]),
        margin_rank=int(1 + np.count_nonzero(margins > margins[target])),
        flagged=target in flagged,
        energy_outside_box_pct=100.0 * float(np.square(excess).sum()) / energy if energy > 0 else 0.0,
        to_target_pct=to_target(features),
        to_target_capped_pct=to_target(np.minimum(features, cap)),
    )


# --- Judging a synthetic trigger against its real twin -------------------------------------------

STANDS_OUT_Z = 4.0  # a real target "stands out" by its output bias from here
ORDINARY_Z = 3.0  # a synthetic target is ordinary by a statistic within [-3, 3]
ENERGY_POINTS = 15.0  # the energy outside the box within this many points of the twin's
KEPT_BY_CAPPING_PCT = 50.0  # capping "keeps" a backdoor that still sends this share to the target


def capping_keeps(location: BackdoorLocation) -> bool:
    """Whether the backdoor survives capping the features at the clean box's maxima."""
    return location.to_target_capped_pct >= KEPT_BY_CAPPING_PCT


def location_problems(synthetic: BackdoorLocation, real: BackdoorLocation) -> list[str]:
    """Where a synthetic trigger's location statistics part from its real twin's ([] when inside):
    the same verdict of the 5-face test; a bias that stands out where the real one does (and no
    weight norm that does), or nothing that stands out where nothing does in the real net; the
    energy outside the box within 15 points; capping keeping or removing the backdoor alike."""
    problems = []
    if synthetic.flagged != real.flagged:
        problems.append("flagged" if synthetic.flagged else "not flagged")
    if real.bias_z >= STANDS_OUT_Z:
        if synthetic.bias_z < STANDS_OUT_Z:
            problems.append(f"bias z {synthetic.bias_z:.1f} < {STANDS_OUT_Z:g}")
        if abs(synthetic.weight_norm_z) > ORDINARY_Z:
            problems.append(f"weight-norm z {synthetic.weight_norm_z:.1f}")
    elif abs(real.weight_norm_z) <= ORDINARY_Z:  # the real target stands out by nothing
        for name, z in (("bias", synthetic.bias_z), ("weight-norm", synthetic.weight_norm_z)):
            if abs(z) > ORDINARY_Z:
                problems.append(f"{name} z {z:.1f}")
    if abs(synthetic.energy_outside_box_pct - real.energy_outside_box_pct) > ENERGY_POINTS:
        problems.append(f"energy outside {synthetic.energy_outside_box_pct:.0f}% "
                        f"(twin {real.energy_outside_box_pct:.0f}%)")
    if capping_keeps(synthetic) != capping_keeps(real):
        problems.append("capping " + ("keeps" if capping_keeps(synthetic) else "removes") + " it")
    return problems
