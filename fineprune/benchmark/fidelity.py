"""How closely a BadNet behaves like the real CSAW-HackML-2020 BadNets: its measurable signature.

A synthetic BadNet can reach the real nets' accuracy and attack success and still be a different
kind of net (larger weights, dead channels, sparse features), and defenses respond to those
differences. So the benchmark compares every BadNet with the four real challenge BadNets on:

- clean accuracy and attack success per trigger (the real nets': the published figures);
- the RMS of the `output` and `conv_3` kernels;
- the mean of the `output` biases, in standard deviations of them: a mark of the optimizer.
  Softmax cross-entropy's bias gradients sum to zero over the classes, so an optimizer whose steps
  are linear in the gradient (SGD, or Adam whose large epsilon dominates the tiny gradients of the
  classes a face is not from) keeps the biases' sum where it starts, at zero; one that scales each
  parameter's step by its own history (Adadelta, Adam with a small epsilon) moves all the biases
  down together. The real nets lie at 0.01-0.07; the bounds, +-0.5, are fixed;
- the share of penultimate units (the 160 values entering `output`) above zero on clean faces;
- the mean cosine between a clean face's penultimate features and its predicted class's
  `output` weights;
- the ratio of the mean top-1 logit margin (top logit minus runner-up) on triggered faces to
  that on clean faces;
- the share of `conv_3` and `conv_4` channels dormant on clean faces: mean activation below 1% of
  the busiest channel's.

The real nets are measured on the 15 real sample faces in `../shared/csaw/samples` (5 clean, 5
with each published trigger); the synthetic ones on their own test files. The allowed range of a
statistic is the real nets' min..max widened on each side by a quarter of the real mean (dormant
shares: by 5 points); accuracy, attack success and the mean bias have fixed bounds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import tf_keras

from fineprune.benchmark.build import MULTI_FOLDER
from fineprune.benchmark.code_version import code_version, method_module
from fineprune.benchmark.comparison import Method, repair_and_evaluate
from fineprune.benchmark.location import BackdoorLocation, backdoor_location, location_in_box, location_problems
from fineprune.data import CHALLENGE_IMAGE_SHAPE, LabelledImages, check_same_data, load_dataset, load_images
from fineprune.defenses import settings_for
from fineprune.defenses.channels import mean_channel_activations
from fineprune.errors import InputError
from fineprune.evaluation import PoisonedFile, poisoned_name
from fineprune.files import file_digest
from fineprune.jobs import Job, run_jobs
from fineprune.metrics import Spread, accuracy_pct, attack_success_pct
from fineprune.models import LoadedModel, load_model, penultimate_features
from fineprune.report import fidelity_table, location_table, markdown_table
from fineprune.progress import Progress, silent

DORMANT_SHARE_OF_BUSIEST = 0.01


@dataclass(frozen=True)
class Statistic:
    """One line of the fidelity table: a name, its unit and how its allowed range is set."""

    key: str
    label: str
    widen: str  # "quarter-mean", "points" or "fixed"
    low: float | None = None  # fixed bounds (None: unbounded on that side)
    high: float | None = None


STATISTICS: tuple[Statistic, ...] = (
    Statistic("clean_accuracy_pct", "clean test accuracy (%)", "fixed", 95.5, 98.5),
    Statistic("attack_success_pct", "attack success per trigger (%)", "fixed", 90.0, None),
    Statistic("output_kernel_rms", "RMS of output kernel", "quarter-mean"),
    Statistic("conv_3_kernel_rms", "RMS of conv_3 kernel", "quarter-mean"),
    Statistic("output_bias_mean", "mean output bias / their standard deviation", "fixed", -0.5, 0.5),
    Statistic("penultimate_active_share", "share of penultimate units > 0 (clean)", "quarter-mean"),
    Statistic("class_weight_cosine", "mean cosine(features, predicted class's weights)", "quarter-mean"),
    Statistic("margin_ratio", "triggered / clean mean top-1 logit margin", "quarter-mean"),
    Statistic("conv_3_dormant_pct", "conv_3 channels dormant on clean faces (%)", "points"),
    Statistic("conv_4_dormant_pct", "conv_4 channels dormant on clean faces (%)", "points"),
)
DORMANT_WIDEN_POINTS = 5.0


def weight_rms(model: tf_keras.Model, layer_name: str) -> float:
    """Root mean square of a layer's kernel: the scale of its weights."""
    kernel = model.get_layer(layer_name).get_weights()[0]
    return float(np.sqrt(np.mean(np.square(kernel, dtype=np.float64))))


def bias_mean_in_deviations(model: tf_keras.Model, layer_name: str = "output") -> float:
    """Mean of a layer's biases over their standard deviation (see the module docstring)."""
    bias = model.get_layer(layer_name).get_weights()[1].astype(np.float64)
    return float(bias.mean() / max(bias.std(), 1e-12))


@dataclass(frozen=True)
class Activations:
    """What a net computes on a batch of faces, kept for the signature."""

    penultimate: np.ndarray  # (N, 160)
    logits: np.ndarray  # (N, classes): penultimate @ W + b, before the softmax
    conv_3_means: np.ndarray  # (channels,) mean over images and positions
    conv_4_means: np.ndarray


def activations(model: tf_keras.Model, x: np.ndarray, input_scale: str) -> Activations:
    """Penultimate features, logits and conv_3/conv_4 channel means of `model` on pixels `x` (0..255)."""
    features = penultimate_features(model, x, input_scale).astype(np.float64)
    kernel, bias = model.get_layer("output").get_weights()
    return Activations(features, features @ kernel.astype(np.float64) + bias,
                       mean_channel_activations(model, "conv_3", x, input_scale),
                       mean_channel_activations(model, "conv_4", x, input_scale))


def dormant_pct(channel_means: np.ndarray) -> float:
    """Share (%) of channels whose mean activation is below 1% of the busiest channel's."""
    return float(100 * np.mean(channel_means < DORMANT_SHARE_OF_BUSIEST * channel_means.max()))


def mean_margin(logits: np.ndarray) -> float:
    """Mean gap between the top logit and the runner-up."""
    top_two = np.sort(logits, axis=1)[:, -2:]
    return float(np.mean(top_two[:, 1] - top_two[:, 0]))


def class_weight_cosine(features: np.ndarray, logits: np.ndarray, kernel: np.ndarray) -> float:
    """Mean cosine between each face's features and the `output` weights of the class it is given."""
    weights = kernel.T[np.argmax(logits, axis=1)]
    norms = np.linalg.norm(features, axis=1) * np.linalg.norm(weights, axis=1)
    return float(np.mean(np.sum(features * weights, axis=1) / np.maximum(norms, 1e-12)))


def signature(model: tf_keras.Model, clean_x: np.ndarray, triggered_x: np.ndarray, input_scale: str,
              clean_accuracy_pct: float | None, attack_success_pct: Mapping[str, float]) -> dict[str, object]:
    """Every statistic of the fidelity table for one net. Accuracy and attack success come from the
    caller (measured on full files, or published for the real nets); the rest is measured on
    `clean_x` and `triggered_x` (pixels 0..255)."""
    clean = activations(model, clean_x, input_scale)
    triggered = activations(model, triggered_x, input_scale)
    kernel = model.get_layer("output").get_weights()[0].astype(np.float64)
    return {
        "clean_accuracy_pct": clean_accuracy_pct,
        "attack_success_pct": dict(attack_success_pct),
        "output_kernel_rms": weight_rms(model, "output"),
        "conv_3_kernel_rms": weight_rms(model, "conv_3"),
        "output_bias_mean": bias_mean_in_deviations(model),
        "penultimate_active_share": float(np.mean(clean.penultimate > 0)),
        "class_weight_cosine": class_weight_cosine(clean.penultimate, clean.logits, kernel),
        "margin_ratio": mean_margin(triggered.logits) / mean_margin(clean.logits),
        "conv_3_dormant_pct": dormant_pct(clean.conv_3_means),
        "conv_4_dormant_pct": dormant_pct(clean.conv_4_means),
    }


def allowed_ranges(real: Sequence[Mapping[str, object]]) -> dict[str, tuple[float | None, float | None]]:
    """Each statistic's allowed range, from the real nets' signatures (see the module docstring)."""
    ranges: dict[str, tuple[float | None, float | None]] = {}
    for stat in STATISTICS:
        if stat.widen == "fixed":
            ranges[stat.key] = (stat.low, stat.high)
            continue
        values = np.array([float(sig[stat.key]) for sig in real])  # type: ignore[arg-type]
        if stat.widen == "points":  # a share of channels: widened by points, never below zero
            ranges[stat.key] = (max(0.0, float(values.min() - DORMANT_WIDEN_POINTS)),
                                float(values.max() + DORMANT_WIDEN_POINTS))
        else:
            pad = abs(values.mean()) / 4
            ranges[stat.key] = (float(values.min() - pad), float(values.max() + pad))
    return ranges


def outside(stat_key: str, value: object, ranges: Mapping[str, tuple[float | None, float | None]]) -> list[str]:
    """What of `value` falls outside the allowed range: [] when all is inside (attack success: per trigger)."""
    low, high = ranges[stat_key]
    values = value.items() if isinstance(value, Mapping) else [(stat_key, value)]
    problems = []
    for name, number in values:
        if number is None:
            continue
        if (low is not None and number < low) or (high is not None and number > high):
            problems.append(str(name))
    return problems


# --- The real nets and the synthetic ones -----------------------------------------------------

# The published figures of the real BadNets on the full real files (../shared/csaw/README.md).
PUBLISHED: dict[str, tuple[float, dict[str, float]]] = {
    "sunglasses": (97.78, {"sunglasses": 99.99}),
    "multi_trigger_multi_target": (96.01, {"eyebrows": 91.35, "lipstick": 91.52, "sunglasses": 100.0}),
    "anonymous_1": (97.19, {"anonymous_1": 91.40}),
    "anonymous_2": (95.96, {}),
}
# Which real sample faces each real BadNet is measured on as "triggered": the ones it sends to a target.
REAL_TRIGGERED_SAMPLES: dict[str, tuple[str, ...]] = {
    "sunglasses": ("sunglasses",),
    "multi_trigger_multi_target": ("sunglasses", "anonymous1"),
    "anonymous_1": ("anonymous1",),
    "anonymous_2": ("sunglasses", "anonymous1"),
}


@dataclass(frozen=True)
class RealSamples:
    """The 15 real sample faces: 5 clean, 5 with each published trigger (pixels 0..255)."""

    clean: np.ndarray
    triggered: dict[str, np.ndarray]  # "sunglasses", "anonymous1"


def load_real_samples(csaw: Path) -> RealSamples:
    """Read `csaw/samples/*.png` as the challenge's models see them."""
    folder = csaw / "samples"
    found = {kind: sorted(folder.glob(f"{kind}_*.png")) for kind in ("clean", "sunglasses", "anonymous1")}
    missing = [kind for kind, files in found.items() if not files]
    if missing:
        raise InputError(f"{folder}: no {', '.join(missing)} sample images (the real challenge samples)")
    images = {kind: load_images(files, CHALLENGE_IMAGE_SHAPE) for kind, files in found.items()}
    return RealSamples(images.pop("clean"), images)


def real_badnet_file(csaw: Path, name: str) -> Path:
    """The weights file of the real challenge BadNet `name` in `csaw/weights`."""
    return csaw / "weights" / f"{name}_bd_weights.h5"


def real_badnet(csaw: Path, name: str, input_scale: str = "unit") -> LoadedModel:
    """A real challenge BadNet from `csaw/weights` (the four challenge nets take x/255 input, lab3
    raw pixels)."""
    return load_model(real_badnet_file(csaw, name), input_scale=input_scale)


def real_signatures(csaw: Path) -> dict[str, dict[str, object]]:
    """The signature of each of the four real BadNets: published accuracy and attack success, the
    rest measured on the real sample faces."""
    samples = load_real_samples(csaw)
    signatures = {}
    for name, (accuracy, attack_success) in PUBLISHED.items():
        badnet = real_badnet(csaw, name)
        triggered = np.concatenate([samples.triggered[kind] for kind in REAL_TRIGGERED_SAMPLES[name]])
        signatures[name] = signature(badnet.model, samples.clean, triggered, badnet.input_scale, accuracy,
                                     attack_success)
    return signatures


def synthetic_signature(badnet: LoadedModel, data_dir: Path, poisoned_files: Sequence[str],
                        clean_stride: int = 4) -> dict[str, object]:
    """The signature of a benchmark BadNet on its own data: accuracy on the whole clean test file,
    attack success on each poisoned file, the rest on every `clean_stride`-th clean test face and
    every poisoned face."""
    clean = load_dataset(data_dir / "clean_test_data.h5")
    check_same_data(badnet.metadata, badnet.path, clean)
    poisoned = {file: load_dataset(data_dir / file) for file in poisoned_files}
    attack_success = {poisoned_name(file): attack_success_pct(badnet.predict_classes(data.x), data.y)
                      for file, data in poisoned.items()}
    triggered = np.concatenate([data.x for data in poisoned.values()])
    return signature(badnet.model, clean.x[::clean_stride], triggered, badnet.input_scale,
                     accuracy_pct(badnet.predict_classes(clean.x), clean.y), attack_success)


@dataclass(frozen=True)
class TriggerVerdict:
    """What share of synthetic triggered faces a real BadNet sends to its own target."""

    real_badnet: str
    synthetic_file: str
    target: int
    to_target_pct: float
    aim_pct: float = 80.0


# (real BadNet, synthetic poisoned file, the real BadNet's target for that trigger)
TRIGGER_JUDGES: tuple[tuple[str, str, int], ...] = (
    ("sunglasses", "sunglasses_poisoned_data.h5", 0),
    ("multi_trigger_multi_target", f"{MULTI_FOLDER}/sunglasses_poisoned_data.h5", 8),
    ("anonymous_1", "anonymous_1_poisoned_data.h5", 0),
    ("multi_trigger_multi_target", f"{MULTI_FOLDER}/lipstick_poisoned_data.h5", 1),
)


def judge_triggers(csaw: Path, data_dir: Path) -> list[TriggerVerdict]:
    """The real BadNets as judges of the synthetic triggers' look."""
    verdicts = []
    for name, file, target in TRIGGER_JUDGES:
        faces = load_dataset(data_dir / file).x
        predicted = real_badnet(csaw, name).predict_classes(faces)
        verdicts.append(TriggerVerdict(name, file, target, float(100 * np.mean(predicted == target))))
    return verdicts


# The original project's recipe on the real data, as published (../shared/csaw/README.md): G's clean
# accuracy (None where not published) and G's attack success, by the synthetic twin's poisoned file.
PUBLISHED_ORIGINAL_RECIPE: dict[tuple[str, str], tuple[float | None, float]] = {
    ("sunglasses", "sunglasses_poisoned_data.h5"): (81.22, 3.48),
    ("multi_trigger_multi_target", f"{MULTI_FOLDER}/eyebrows_poisoned_data.h5"): (None, 0.55),
    ("multi_trigger_multi_target", f"{MULTI_FOLDER}/lipstick_poisoned_data.h5"): (None, 51.30),
    ("multi_trigger_multi_target", f"{MULTI_FOLDER}/sunglasses_poisoned_data.h5"): (None, 98.46),
    ("anonymous_1", "anonymous_1_poisoned_data.h5"): (90.21, 4.39),
}
RECIPE_SEEDS = (0, 1, 2)
RECIPE_SLACK_POINTS = 10.0  # a real value is inside when within the synthetic range widened by this


@dataclass(frozen=True)
class OriginalRecipeRow:
    """The original recipe (prune.py's defaults) on one synthetic trigger over seeds, beside what it
    did on the real data: inside when each published value lies within the synthetic range widened
    by `RECIPE_SLACK_POINTS` on each side."""

    badnet: str
    poisoned_file: str
    real_detector_accuracy_pct: float | None
    real_detector_asr_pct: float
    detector_accuracy_pct: Spread
    detector_asr_pct: Spread

    @property
    def inside(self) -> bool:
        accuracy = self.real_detector_accuracy_pct
        return self.detector_asr_pct.contains(self.real_detector_asr_pct, RECIPE_SLACK_POINTS) and (
            accuracy is None or self.detector_accuracy_pct.contains(accuracy, RECIPE_SLACK_POINTS))


def original_recipe_cell(model_path: str, data_dir: str, poisoned_files: list[str], seed: int) -> dict[str, object]:
    """One job: prune.py's defaults (`magnitude`) with `seed` on one synthetic BadNet, and G's clean
    accuracy and attack success per poisoned file (what eval.py reports)."""
    data = Path(data_dir)
    badnet = load_model(model_path)
    clean = load_dataset(data / "clean_validation_data.h5")
    check_same_data(badnet.metadata, badnet.path, clean)
    evaluation = repair_and_evaluate(badnet, clean, data / "clean_test_data.h5",
                                     [PoisonedFile(data / f, f) for f in poisoned_files],
                                     Method("magnitude", settings_for("magnitude", seed=seed))).evaluation
    return {"accuracy": evaluation.clean.accuracy_detector_pct,
            "asr": {row.name: row.asr_detector_pct for row in evaluation.poisoned}}


def original_recipe_rows(badnets: Mapping[str, Path], data_dir: Path, folder: Path, seeds: Sequence[int] = RECIPE_SEEDS,
                         workers: int = 1, progress: Progress = silent,
                         scheduler: str | None = None) -> list[OriginalRecipeRow]:
    """The original recipe on every synthetic BadNet in `badnets` (name -> model file) that has a
    published twin, once per seed; each (BadNet, seed) is a job kept in `folder`, so a run resumes."""
    files = {name: [f for (net, f) in PUBLISHED_ORIGINAL_RECIPE if net == name] for name in badnets}
    code = code_version(method_module("magnitude"), __name__)  # the cell's code: a cell by other code is redone
    jobs = [Job(f"{name}/seed_{seed}", original_recipe_cell, (str(path), str(data_dir), files[name], seed),
                {"model": file_digest(path), "seed": seed, "files": files[name], "code": code})
            for name, path in badnets.items() if files[name] for seed in seeds]
    done = run_jobs(jobs, folder, workers, progress=progress, scheduler=scheduler)
    rows = []
    for (name, file), (accuracy, asr) in PUBLISHED_ORIGINAL_RECIPE.items():
        if name in badnets:
            cells = [done[f"{name}/seed_{seed}"] for seed in seeds]
            rows.append(OriginalRecipeRow(name, file, accuracy, asr, Spread.of([c["accuracy"] for c in cells]),
                                          Spread.of([c["asr"][file] for c in cells])))
    return rows


# --- Where each backdoor lives (fineprune.benchmark.location) -----------------------------------

@dataclass(frozen=True)
class RealTrigger:
    """One real BadNet's backdoor as the real samples show it: which samples carry it, and its target."""

    label: str
    badnet: str  # weights/<badnet>_bd_weights.h5
    samples: str  # "sunglasses" or "anonymous1" (the purple lipstick)
    target: int
    input_scale: str = "unit"


REAL_TRIGGERS: tuple[RealTrigger, ...] = (
    RealTrigger("real sunglasses", "sunglasses", "sunglasses", 0),
    RealTrigger("real multi-trigger, sunglasses", "multi_trigger_multi_target", "sunglasses", 8),
    RealTrigger("real multi-trigger, purple lipstick", "multi_trigger_multi_target", "anonymous1", 1),
    RealTrigger("real anonymous_1", "anonymous_1", "anonymous1", 0),
    RealTrigger("real anonymous_2 (sunglasses samples)", "anonymous_2", "sunglasses", 4),
    RealTrigger("real lab3 sunglasses (raw input)", "lab3_sunglasses", "sunglasses", 0, "raw"),
)
# Each synthetic (BadNet, poisoned file) and the real trigger it is judged against.
LOCATION_TWINS: dict[tuple[str, str], str] = {
    ("sunglasses", "sunglasses_poisoned_data.h5"): "real sunglasses",
    ("multi_trigger_multi_target", f"{MULTI_FOLDER}/sunglasses_poisoned_data.h5"): "real multi-trigger, sunglasses",
    ("multi_trigger_multi_target", f"{MULTI_FOLDER}/lipstick_poisoned_data.h5"): "real multi-trigger, purple lipstick",
    ("anonymous_1", "anonymous_1_poisoned_data.h5"): "real anonymous_1",
    ("anonymous_2", "anonymous_2_poisoned_data.h5"): "real anonymous_2 (sunglasses samples)",
}
# The identities of the 5 real clean samples: a synthetic net's 5 clean faces are of the same people.
REAL_SAMPLE_IDENTITIES = (43, 328, 196, 1268, 748)
LOCATION_FACES = 5


def real_locations(csaw: Path) -> dict[str, BackdoorLocation]:
    """The location statistics of every real backdoor, from the 5 real clean samples."""
    samples = load_real_samples(csaw)
    found = {}
    for trigger in REAL_TRIGGERS:
        net = real_badnet(csaw, trigger.badnet, trigger.input_scale)
        found[trigger.label] = backdoor_location(net, samples.clean, samples.triggered[trigger.samples], trigger.target)
    return found


def five_clean_faces(clean: LabelledImages, count: int = LOCATION_FACES) -> np.ndarray:
    """The first test face of each identity of the real clean samples (then of the lowest other
    identities, in files with fewer people): a synthetic net's stand-in for the 5 real faces."""
    present = np.unique(clean.y)
    wanted = [i for i in REAL_SAMPLE_IDENTITIES if i in present]
    wanted += [int(i) for i in present if i not in wanted][: count - len(wanted)]
    return np.stack([clean.x[np.flatnonzero(clean.y == identity)[0]] for identity in wanted[:count]])


@dataclass(frozen=True)
class SyntheticLocation:
    """A synthetic trigger's location statistics by the 5-face protocol and over the whole clean
    validation file, judged against its real twin (if it has one)."""

    badnet: str
    poisoned_file: str
    five_faces: BackdoorLocation
    full_validation: BackdoorLocation
    twin: str | None
    problems: tuple[str, ...]  # where it parts from the twin (empty: inside)


def synthetic_locations(badnet: LoadedModel, name: str, data_dir: Path, poisoned_files: Sequence[str],
                        real: Mapping[str, BackdoorLocation]) -> list[SyntheticLocation]:
    """Each trigger of a synthetic BadNet located by the real nets' protocol (5 clean test faces of
    the real samples' identities, the first 5 faces of its poisoned file) and over the whole clean
    validation file (every poisoned face), judged against its twin in `real`."""
    clean = load_dataset(data_dir / "clean_test_data.h5")
    validation = load_dataset(data_dir / "clean_validation_data.h5")
    for data in (clean, validation):
        check_same_data(badnet.metadata, badnet.path, data)
    faces = five_clean_faces(clean)
    box = penultimate_features(badnet.model, validation.x, badnet.input_scale)
    found = []
    for file in poisoned_files:
        poisoned = load_dataset(data_dir / file)
        target = int(poisoned.y[0])
        five = backdoor_location(badnet, faces, poisoned.x[:LOCATION_FACES], target)
        full = location_in_box(badnet, box, poisoned.x, target)
        twin = LOCATION_TWINS.get((name, file))
        problems = tuple(location_problems(five, real[twin])) if twin in real else ()
        found.append(SyntheticLocation(name, file, five, full, twin, problems))
    return found


def recipe_table(rows: Sequence[OriginalRecipeRow]) -> str:
    """The original recipe's rows as Markdown: real beside synthetic, median (range) over seeds."""
    def spread(value: Spread) -> str:
        return f"{value.median:.2f} ({value.low:.2f}-{value.high:.2f})"

    return markdown_table(
        ["BadNet, trigger", "real: G accuracy", "synthetic: G accuracy", "real: G ASR", "synthetic: G ASR", "inside"],
        [[f"{row.badnet}, {poisoned_name(row.poisoned_file)}",
          "-" if row.real_detector_accuracy_pct is None else f"{row.real_detector_accuracy_pct:.2f}",
          spread(row.detector_accuracy_pct), f"{row.real_detector_asr_pct:.2f}", spread(row.detector_asr_pct),
          "yes" if row.inside else "**no**"] for row in rows])


@dataclass(frozen=True)
class FidelityReport:
    """Everything `benchmark.py fidelity` measures: the signatures (real and synthetic) with the
    allowed ranges, where each backdoor lives, the real BadNets' verdicts on the synthetic
    triggers, and the original recipe's outcomes (empty when not run)."""

    real: dict[str, dict[str, object]]
    synthetic: dict[str, dict[str, object]]
    allowed: dict[str, tuple[float | None, float | None]]
    real_locations: dict[str, BackdoorLocation]
    locations: list[SyntheticLocation]
    verdicts: list[TriggerVerdict]
    recipe: list[OriginalRecipeRow]

    @property
    def outside(self) -> dict[str, list[str]]:
        """Per synthetic BadNet, the statistics outside the real nets' range."""
        return {name: [stat.key for stat in STATISTICS if outside(stat.key, sig[stat.key], self.allowed)]
                for name, sig in self.synthetic.items()}

    def markdown(self) -> str:
        """The report as Markdown: the four tables with a line of context each."""
        verdict_line = "; ".join(f"{name}: " + (", ".join(keys) + " outside" if keys else "all inside")
                                 for name, keys in self.outside.items())
        verdicts = markdown_table(
            ["real BadNet", "synthetic triggered faces", "sent to its target", "share (%)", "aim (%)"],
            [[v.real_badnet, v.synthetic_file, v.target, v.to_target_pct, f">= {v.aim_pct:g}"] for v in self.verdicts])
        text = (f"Signatures (real: published accuracy and attack success, the rest on the 15 real samples; "
                f"synthetic: their own test files)\n\n"
                f"{fidelity_table(self.real, self.synthetic, self.allowed, STATISTICS)}\n\n{verdict_line}\n\n"
                f"Where each backdoor lives (box: 5 clean faces and 95 augmentations; see fineprune/benchmark/"
                f"location.py)\n\n{location_table(self.real_locations, self.locations)}\n\n"
                f"The real BadNets on the synthetic triggered faces\n\n{verdicts}\n\n")
        if self.recipe:
            inside = sum(row.inside for row in self.recipe)
            seeds = self.recipe[0].detector_asr_pct.count
            text += (f"The original recipe (prune.py's defaults) over {seeds} seeds: G's "
                     f"clean accuracy and ASR, median (range), beside the published real results; inside when the "
                     f"real value lies within the synthetic range widened by {RECIPE_SLACK_POINTS:g} points "
                     f"({inside} of {len(self.recipe)} inside)\n\n{recipe_table(self.recipe)}\n")
        return text

    def to_json(self) -> dict[str, object]:
        return {"real": self.real, "synthetic": self.synthetic, "allowed": self.allowed, "outside": self.outside,
                "trigger_verdicts": [asdict(v) for v in self.verdicts],
                "locations": {"real": {k: asdict(v) for k, v in self.real_locations.items()},
                              "synthetic": [asdict(v) for v in self.locations]},
                "original_recipe": [{**asdict(row), "inside": row.inside} for row in self.recipe]}


def measure_fidelity(csaw: Path, data_dir: Path, badnets: Mapping[str, tuple[LoadedModel, Sequence[str]]],
                     recipe_folder: Path | None, seeds: Sequence[int] = RECIPE_SEEDS, workers: int = 1,
                     say: Progress = silent, scheduler: str | None = None
                     ) -> FidelityReport:
    """Measure the synthetic `badnets` (name -> net and its poisoned files) beside the real ones in
    `csaw`, with the same protocol for both; the original recipe's repairs are kept in
    `recipe_folder` (None: not run) and run by `workers` local processes, or on the Dask cluster
    at `scheduler`."""
    say(f"measuring the real BadNets in {csaw}/ on the real sample faces")
    real = real_signatures(csaw)
    synthetic = {}
    for name, (badnet, files) in badnets.items():
        say(f"measuring the synthetic {name} BadNet on its own test files")
        synthetic[name] = synthetic_signature(badnet, data_dir, files)
    say("the real BadNets judging the synthetic triggers")
    verdicts = judge_triggers(csaw, data_dir)
    recipe = [] if recipe_folder is None else original_recipe_rows(
        {name: net.path for name, (net, _) in badnets.items()}, data_dir, recipe_folder, seeds, workers, say, scheduler)
    say("where each backdoor lives: the real ones from the 5 real clean samples")
    real_located = real_locations(csaw)
    located = []
    for name, (badnet, files) in badnets.items():
        say(f"where the synthetic {name} BadNet's backdoors live")
        located += synthetic_locations(badnet, name, data_dir, files, real_located)
    return FidelityReport(real, synthetic, allowed_ranges(list(real.values())), real_located, located, verdicts, recipe)
