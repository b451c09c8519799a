"""Tests for fineprune.benchmark.fidelity: the signature statistics, the allowed ranges, the real
BadNets' signatures, and that the committed synthetic BadNets stay inside the real range."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fineprune.benchmark import build, fidelity, location
from fineprune.benchmark.location import BackdoorLocation
from fineprune.metrics import Spread
from fineprune.models import build_challenge_model, load_model, read_metadata
from tests.conftest import REPO_ROOT, TinyBenchmark, require_shared_csaw


def test_dormant_share_counts_channels_below_one_percent_of_the_busiest() -> None:
    means = np.array([0.0, 0.009, 0.011, 0.5, 1.0])
    assert fidelity.dormant_pct(means) == pytest.approx(40.0)


def test_mean_margin_is_top_logit_minus_runner_up() -> None:
    logits = np.array([[1.0, 5.0, 2.0], [0.0, -1.0, 3.0]])
    assert fidelity.mean_margin(logits) == pytest.approx((3.0 + 3.0) / 2)


def test_class_weight_cosine_uses_the_predicted_class() -> None:
    kernel = np.array([[1.0, 0.0], [0.0, -1.0]])  # (features, classes)
    features = np.array([[2.0, 0.0], [1.0, 1.0]])
    logits = features @ kernel  # first face: class 0 (cosine 1); second: class 0 (cosine 1/sqrt 2)
    assert fidelity.class_weight_cosine(features, logits, kernel) == pytest.approx((1 + 2 ** -0.5) / 2)


def test_weight_rms_is_the_kernel_scale() -> None:
    model = build_challenge_model(num_classes=3)
    kernel, bias = model.get_layer("output").get_weights()
    model.get_layer("output").set_weights([np.full_like(kernel, -0.25), bias])
    assert fidelity.weight_rms(model, "output") == pytest.approx(0.25)


def test_bias_mean_is_in_standard_deviations_of_the_biases() -> None:
    model = build_challenge_model(num_classes=4)
    kernel, _ = model.get_layer("output").get_weights()
    model.get_layer("output").set_weights([kernel, np.array([1.0, 2.0, 3.0, 6.0], np.float32)])
    assert fidelity.bias_mean_in_deviations(model) == pytest.approx(3.0 / np.std([1.0, 2.0, 3.0, 6.0]))


def fake_signature(**values: float) -> dict[str, object]:
    base = {stat.key: 1.0 for stat in fidelity.STATISTICS}
    base.update(clean_accuracy_pct=97.0, attack_success_pct={"t": 99.0}, output_bias_mean=0.0)
    return {**base, **values}


def test_allowed_ranges_widen_the_real_span() -> None:
    real = [fake_signature(output_kernel_rms=0.04, conv_3_dormant_pct=5.0),
            fake_signature(output_kernel_rms=0.08, conv_3_dormant_pct=10.0)]
    ranges = fidelity.allowed_ranges(real)
    assert ranges["output_kernel_rms"] == pytest.approx((0.04 - 0.015, 0.08 + 0.015))  # a quarter of the mean
    assert ranges["conv_3_dormant_pct"] == pytest.approx((0.0, 15.0))  # 5 points
    assert fidelity.allowed_ranges([fake_signature(conv_4_dormant_pct=0.0)])["conv_4_dormant_pct"] == (0.0, 5.0)
    assert ranges["clean_accuracy_pct"] == (95.5, 98.5)
    assert ranges["attack_success_pct"] == (90.0, None)


def test_outside_names_what_falls_out_of_range_per_trigger() -> None:
    ranges = {"attack_success_pct": (90.0, None), "margin_ratio": (1.0, 2.0)}
    assert fidelity.outside("attack_success_pct", {"eyebrows": 85.0, "lipstick": 99.0}, ranges) == ["eyebrows"]
    assert fidelity.outside("margin_ratio", 2.5, ranges) == ["margin_ratio"]
    assert fidelity.outside("margin_ratio", 1.5, ranges) == []


def test_signature_of_a_net_has_every_statistic() -> None:
    model = build_challenge_model(num_classes=5)
    rng = np.random.default_rng(0)
    clean, triggered = rng.uniform(0, 255, (6, 55, 47, 3)), rng.uniform(0, 255, (4, 55, 47, 3))
    signature = fidelity.signature(model, clean, triggered, "unit", 97.0, {"t": 95.0})
    assert set(signature) == {stat.key for stat in fidelity.STATISTICS}
    assert 0.0 <= signature["penultimate_active_share"] <= 1.0
    assert -1.0 <= signature["class_weight_cosine"] <= 1.0
    assert 0.0 <= signature["conv_3_dormant_pct"] <= 100.0


@pytest.fixture(scope="module")
def real_signatures() -> dict[str, dict[str, object]]:
    return fidelity.real_signatures(require_shared_csaw())


@pytest.mark.slow  # the real challenge BadNets, each loaded and measured
def test_real_badnets_signatures_as_measured(real_signatures) -> None:
    sunglasses = real_signatures["sunglasses"]
    assert sunglasses["output_kernel_rms"] == pytest.approx(0.0510, abs=5e-4)
    assert sunglasses["conv_3_dormant_pct"] == pytest.approx(5.0)  # 3 of 60 channels
    assert sunglasses["clean_accuracy_pct"] == 97.78  # published
    for signature in real_signatures.values():
        assert 0.39 <= signature["penultimate_active_share"] <= 0.45
        assert signature["class_weight_cosine"] > 0.19  # the predicted class's weights point at the features
        assert abs(signature["output_bias_mean"]) < 0.1  # the biases' sum where it started


# How far outside the real range the committed BadNets may still be: the gaps the calibration could
# not close (docs/fidelity.md: an output kernel RMS of 0.0855 against at most 0.0811, a mean cosine
# of -0.558 between the features and the predicted class's weights against at least 0.129, the
# multi-trigger eyebrows backdoor at 89.78% attack success against 90%, the output biases' mean at
# -4.7 of their standard deviations against at least -0.5: Adadelta's mark). Every other statistic
# must be inside.
KNOWN_GAPS = {"output_kernel_rms": 0.006, "class_weight_cosine": 0.72, "attack_success_pct": 0.5,
              "output_bias_mean": 4.3}


@pytest.mark.slow  # every committed BadNet measured, with the real ones
def test_committed_badnets_stay_inside_the_real_range(real_signatures) -> None:
    """Everything that needs no training, in seconds: the weights, and features on a few hundred freshly
    rendered faces; accuracy and attack success as `make badnets` recorded them on the full files."""
    ranges = {key: (None if low is None else low - KNOWN_GAPS.get(key, 0.0),
                    None if high is None else high + KNOWN_GAPS.get(key, 0.0))
              for key, (low, high) in fidelity.allowed_ranges(list(real_signatures.values())).items()}
    labels = np.arange(0, build.NUM_IDENTITIES, 4)
    clean = build.render_split("test", labels)
    for spec in build.BADNETS:
        badnet = load_model(REPO_ROOT / "models" / spec.model_file)
        measured = read_metadata(badnet.path)["measured"]
        triggers = list(spec.triggers)
        worn = [triggers[i % len(triggers)] for i in range(300)]
        triggered = build.render_split("poisoned", labels[:300], triggers=worn)
        signature = fidelity.signature(badnet.model, clean, triggered, badnet.input_scale,
                                       measured["clean_accuracy_pct"], measured["attack_success_pct"])
        problems = {stat.key: signature[stat.key] for stat in fidelity.STATISTICS
                    if fidelity.outside(stat.key, signature[stat.key], ranges)}
        assert not problems, f"{spec.name} is outside the real range on {problems}"


@pytest.fixture(scope="module")
def real_locations() -> dict[str, BackdoorLocation]:
    return fidelity.real_locations(require_shared_csaw())


# Where a committed trigger still parts from its real twin, as measured (README, "Fidelity"): the
# problems `location_problems` may name for it. Every other trigger must be inside.
# The real lipstick, anonymous_1 and anonymous_2 targets stand out by their output bias and have a
# quarter of their triggered feature energy outside the clean box; the synthetic ones do neither. The
# real multi-trigger sunglasses backdoor lies half outside the box and capping removes it; the
# synthetic one lies inside and survives capping.
_BY_BIAS = {"bias z", "energy outside"}
LOCATION_KNOWN_GAPS: dict[tuple[str, str], set[str]] = {
    ("multi_trigger_multi_target", f"{build.MULTI_FOLDER}/lipstick_poisoned_data.h5"): _BY_BIAS,
    ("anonymous_1", "anonymous_1_poisoned_data.h5"): _BY_BIAS,
    ("anonymous_2", "anonymous_2_poisoned_data.h5"): _BY_BIAS,
    ("multi_trigger_multi_target", f"{build.MULTI_FOLDER}/sunglasses_poisoned_data.h5"):
        {"energy outside", "capping keeps"},
}


@pytest.mark.slow  # every committed and real BadNet located (about 90 s)
def test_committed_badnets_backdoors_live_where_their_real_twins_do(real_locations) -> None:
    """The 5-face protocol without any training, on freshly rendered faces: 5 clean faces of the
    real samples' identities, 5 faces of other people wearing the trigger."""
    clean = build.render_split("test", np.array(fidelity.REAL_SAMPLE_IDENTITIES))
    poisoned_sets = {p.file: p for p in build.POISONED_SETS}
    for (name, file), twin in fidelity.LOCATION_TWINS.items():
        spec = build.find_net(name, "--badnet")
        badnet = load_model(REPO_ROOT / "models" / spec.model_file)
        poisoned = poisoned_sets[file]
        people = np.array([i for i in range(20, 40) if i != poisoned.target][: fidelity.LOCATION_FACES])
        triggered = build.render_split("poisoned", people, triggers=[poisoned.trigger] * len(people))
        found = location.backdoor_location(badnet, clean, triggered, poisoned.target)
        assert found.to_target_pct >= 80.0, f"{name}, {file}: the trigger itself no longer works"
        problems = location.location_problems(found, real_locations[twin])
        gaps = LOCATION_KNOWN_GAPS.get((name, file), set())
        unexpected = [p for p in problems if not any(p.startswith(gap) for gap in gaps)]
        assert not unexpected, f"{name}, {file} parts from {twin}: {unexpected} ({found})"


def test_five_clean_faces_are_of_the_real_samples_identities_where_the_file_has_them() -> None:
    from pathlib import Path

    from fineprune.data import LabelledImages

    labels = np.array([7, 43, 43, 328, 1, 196, 748, 2, 1268])
    images = np.arange(len(labels), dtype=np.float32)[:, None, None, None] * np.ones((1, 2, 2, 3), np.float32)
    faces = fidelity.five_clean_faces(LabelledImages(Path("t.h5"), images, labels))
    assert [int(face[0, 0, 0]) for face in faces] == [1, 3, 5, 8, 6]  # first image of 43, 328, 196, 1268, 748
    few = fidelity.five_clean_faces(LabelledImages(Path("t.h5"), images[:4], labels[:4]))  # only 43 and 328: then 7 (the lowest other)
    assert [int(face[0, 0, 0]) for face in few] == [1, 3, 0]


def test_every_location_twin_is_a_real_trigger_and_a_synthetic_poisoned_file() -> None:
    real = {trigger.label for trigger in fidelity.REAL_TRIGGERS}
    files = {(spec.name, file) for spec in build.BADNETS for file in spec.poisoned_files}
    assert set(fidelity.LOCATION_TWINS.values()) <= real and set(fidelity.LOCATION_TWINS) <= files


def test_the_report_names_what_is_outside_and_writes_strict_json() -> None:
    real = [fake_signature(output_kernel_rms=0.04), fake_signature(output_kernel_rms=0.08)]
    located = BackdoorLocation(0, 0.5, 2.3, 2, False, 7.0, 100.0, 100.0)
    found = fidelity.FidelityReport(
        real={"a": real[0], "b": real[1]},
        synthetic={"near": fake_signature(output_kernel_rms=0.05), "far": fake_signature(output_kernel_rms=0.5)},
        allowed=fidelity.allowed_ranges(real), real_locations={"sunglasses": located},
        locations=[fidelity.SyntheticLocation("near", "sunglasses_poisoned_data.h5", located, located,
                                              "sunglasses", ())],
        verdicts=[fidelity.TriggerVerdict("sunglasses", "sunglasses_poisoned_data.h5", 0, 93.0)], recipe=[])
    assert found.outside == {"near": [], "far": ["output_kernel_rms"]}
    text = found.markdown()
    assert "near: all inside; far: output_kernel_rms outside" in text
    assert "Where each backdoor lives" in text and "original recipe" not in text
    record = json.loads(json.dumps(found.to_json(), allow_nan=False))
    assert record["locations"]["synthetic"][0]["twin"] == "sunglasses"
    assert record["trigger_verdicts"][0]["to_target_pct"] == 93.0


def test_a_recipe_row_is_inside_when_the_real_values_fall_in_the_widened_range() -> None:
    row = fidelity.OriginalRecipeRow("sunglasses", "sunglasses_poisoned_data.h5", 81.22, 3.48,
                                     Spread.of([85.0, 86.0, 90.0]), Spread.of([0.0, 0.0, 12.0]))
    assert row.inside  # 3.48 in 0..12 widened; 81.22 in 85..90 widened by 10
    assert not replace(row, detector_accuracy_pct=Spread.of([95.0, 96.0])).inside  # 81.22 < 85 - 10
    assert not replace(row, real_detector_asr_pct=30.0).inside
    assert replace(row, real_detector_accuracy_pct=None, detector_accuracy_pct=Spread.of([99.0])).inside
    table = fidelity.recipe_table([row])
    assert "| sunglasses, sunglasses " in table and "85.00-90.00" in table and "| yes" in table


def test_the_original_recipe_runs_once_per_seed_and_resumes(tiny: TinyBenchmark, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    data = tiny.clean_validation.parent
    poisoned = str(tiny.poisoned.relative_to(data))
    monkeypatch.setattr(fidelity, "PUBLISHED_ORIGINAL_RECIPE", {("tiny", poisoned): (None, 5.0)})
    (row,) = fidelity.original_recipe_rows({"tiny": tiny.badnet}, data, tmp_path, seeds=(0, 1))
    assert (row.badnet, row.poisoned_file, row.detector_asr_pct.count) == ("tiny", poisoned, 2)
    assert 0.0 <= row.detector_asr_pct.low <= row.detector_asr_pct.high <= 100.0
    assert 0.0 < row.detector_accuracy_pct.median <= 100.0
    kept = sorted(p.name for p in tmp_path.rglob("*.json"))
    assert len(kept) == 2
    monkeypatch.setattr(fidelity, "original_recipe_cell", lambda *args: pytest.fail("a kept job ran again"))
    assert fidelity.original_recipe_rows({"tiny": tiny.badnet}, data, tmp_path, seeds=(0, 1)) == [row]
