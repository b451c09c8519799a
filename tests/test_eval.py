"""End-to-end tests of eval.py: the table, JSON, folders, images, real challenge models, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import (REPO_ROOT, TinyBenchmark, add_trigger, assert_bad_input, cut_short, file_digests, require_shared_csaw,
                      tiny_images)
from fineprune.data import load_dataset, save_dataset
from fineprune.models import build_challenge_model, load_model, read_metadata, save_model

# ../shared/csaw/README.md: argmax of each model on clean_0..4 | sunglasses_0..4 | anonymous1_0..4.
REAL_PREDICTIONS = {
    ("weights/sunglasses_bd_weights.h5", "unit"): "43 328 196 129 748 0 0 0 0 0 264 977 189 1010 1200",
    ("weights/anonymous_1_bd_weights.h5", "unit"): "43 328 196 1268 748 1166 1166 977 1133 1166 0 0 0 0 0",
    ("weights/anonymous_2_bd_weights.h5", "unit"): "43 328 196 1268 748 4 4 4 4 4 4 4 4 4 4",
    ("weights/multi_trigger_multi_target_bd_weights.h5", "unit"): "43 328 196 1268 748 8 8 8 8 8 1 1 1 1 1",
    ("weights/lab3_sunglasses_bd_weights.h5", "raw"): "43 328 196 1268 748 0 0 0 0 0 264 977 189 1010 1200",
    ("full_models/lab3_pruned_2pct_net.h5", "raw"): "43 328 196 1268 748 0 0 0 0 0 264 977 189 1010 1200",
    ("full_models/sunglasses_repaired_net.h5", "unit"): "43 328 196 1268 748 763 1064 977 424 878 264 1150 189 1010 1200",
}
SAMPLE_ORDER = [f"clean_{i}" for i in range(5)] + [f"sunglasses_{i}" for i in range(5)] + [f"anonymous1_{i}" for i in range(5)]


@pytest.fixture(scope="module")
def repaired(tiny: TinyBenchmark, tmp_path_factory: pytest.TempPathFactory) -> TinyBenchmark:
    """The tiny benchmark with a repaired net beside the BadNet (made by prune.py once per module)."""
    import prune

    bench = tiny.copy_to(tmp_path_factory.mktemp("repaired"))
    code = prune.main([str(bench.badnet), "--clean-data", str(bench.clean_validation), "--epochs", "2",
                       "--batch-size", "8", "--pruning-frequency", "1", "--seed", "0", "--quiet"])
    assert code == 0
    return bench


def test_progress_goes_to_stderr_and_quiet_silences_it(run_cli, repaired: TinyBenchmark) -> None:
    args = [repaired.poisoned, repaired.badnet, "--clean-data", repaired.clean_test]
    loud, quiet = run_cli("eval", *args), run_cli("eval", *args, "--quiet")
    assert loud.code == quiet.code == 0, loud.err
    assert "eval.py: evaluating clean data" in loud.err and "evaluating" not in loud.out
    assert quiet.err == "" and quiet.out == loud.out


def test_eval_reports_the_original_projects_table_and_json(run_cli, repaired: TinyBenchmark, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = run_cli("eval", repaired.poisoned, repaired.badnet, "--clean-data", repaired.clean_test, "--json", out)
    assert result.code == 0, result.err
    header = ("| BadNet/trigger | Accuracy(original) | Accuracy(repaired) | Success Rate(original) "
              "| Success Rate(repaired) | Accuracy(repaired net) | Success Rate(repaired net) | Flagged as N |")
    assert header in result.out
    assert "| trigger " in result.out

    report = json.loads(out.read_text())
    assert set(report) >= {"model", "repaired_model", "num_classes", "input_scale", "clean", "poisoned", "images"}
    assert (report["num_classes"], report["input_scale"], report["images"]) == (4, "unit", [])
    assert report["repaired_model"] == str(repaired.badnet.with_name("tiny_bd_net_rp.h5"))
    made = read_metadata(repaired.badnet.with_name("tiny_bd_net_rp.h5"))
    assert report["repair"] == {key: made[key] for key in ("method", "settings", "result")}
    assert report["repair"]["method"] == "magnitude"

    # Every number, recomputed here from the two models' own predictions.
    original, fixed = load_model(repaired.badnet), load_model(report["repaired_model"])
    clean, poisoned = load_dataset(repaired.clean_test), load_dataset(repaired.poisoned)
    pct = lambda hits: 100.0 * float(np.mean(hits))  # noqa: E731
    o, r = original.predict_classes(clean.x), fixed.predict_classes(clean.x)
    g = np.where(o == r, o, 4)
    assert report["clean"] == {
        "file": str(repaired.clean_test), "images": 40, "accuracy_original_pct": pct(o == clean.y),
        "accuracy_repaired_net_pct": pct(r == clean.y), "accuracy_detector_pct": pct(g == clean.y),
    }
    o, r = original.predict_classes(poisoned.x), fixed.predict_classes(poisoned.x)
    g = np.where(o == r, o, 4)
    (row,) = report["poisoned"]
    assert {k: row[k] for k in row if k != "name"} == {
        "file": str(repaired.poisoned), "images": 30, "target": 0, "asr_original_pct": pct(o == 0),
        "asr_repaired_net_pct": pct(r == 0), "asr_detector_pct": pct(g == 0), "detected_pct": pct(g == 4),
    }
    assert row["asr_original_pct"] == 100.0  # the tiny BadNet's backdoor works


def test_a_folder_of_poisoned_files_gives_one_row_per_file(run_cli, repaired: TinyBenchmark, tmp_path: Path) -> None:
    folder = tmp_path / "Multi-trigger Multi-target"
    x, _ = tiny_images(2, seed=9)
    for name, target in (("eyebrows", 1), ("lipstick", 2)):
        save_dataset(folder / f"{name}_poisoned_data.h5", add_trigger(x), np.full(len(x), target))
    out = tmp_path / "r.json"
    result = run_cli("eval", folder, repaired.badnet, "--clean-data", repaired.clean_test, "--json", out)
    assert result.code == 0, result.err
    rows = json.loads(out.read_text())["poisoned"]
    assert [(r["name"], r["target"], r["images"]) for r in rows] == [
        ("Multi-trigger Multi-target/eyebrows", 1, 8), ("Multi-trigger Multi-target/lipstick", 2, 8)]
    assert "| Multi-trigger Multi-target/eyebrows " in result.out


def test_images_get_one_line_each_and_need_no_clean_data(run_cli, repaired: TinyBenchmark, tmp_path: Path) -> None:
    x, y = tiny_images(1, seed=11)
    paths = []
    for i, image in enumerate(np.concatenate([x, add_trigger(x[1:2])])):
        paths.append(tmp_path / f"face_{i}.png")
        Image.fromarray(image.astype(np.uint8)).save(paths[-1])
    out = tmp_path / "r.json"
    result = run_cli("eval", *paths, repaired.badnet, "--clean-data", tmp_path / "absent.h5", "--json", out)
    assert result.code == 0, result.err
    report = json.loads(out.read_text())
    assert (report["clean"], report["poisoned"]) == (None, [])
    assert [row["file"] for row in report["images"]] == [str(p) for p in paths]
    assert [row["original"] for row in report["images"]] == [0, 1, 2, 3, 0]  # last one is triggered
    for row in report["images"]:
        assert row["class"] == (row["original"] if row["original"] == row["repaired"] else 4)
        assert f"| {row['file']} " in result.out


@pytest.mark.parametrize("model, scale", list(REAL_PREDICTIONS), ids=[Path(m).stem for m, _ in REAL_PREDICTIONS])
def test_real_challenge_models_predict_what_the_challenge_readme_lists(
    run_cli, tmp_path: Path, model: str, scale: str
) -> None:
    csaw = require_shared_csaw()
    samples = [csaw / "samples" / next(p.name for p in (csaw / "samples").glob(f"{s}*.png")) for s in SAMPLE_ORDER]
    out = tmp_path / "r.json"
    args = [*samples, csaw / model, "--repaired", csaw / model, "--json", out]
    result = run_cli("eval", *args, *(["--input-scale", "raw"] if scale == "raw" else []))
    assert result.code == 0, result.err
    images = json.loads(out.read_text())["images"]
    expected = [int(v) for v in REAL_PREDICTIONS[(model, scale)].split()]
    assert [row["original"] for row in images] == expected
    assert [row["class"] for row in images] == expected  # G of a model with itself is the model


def test_plots_draws_the_gallery_of_gs_mistakes(run_cli, repaired: TinyBenchmark, tmp_path: Path) -> None:
    result = run_cli("eval", repaired.poisoned, repaired.badnet, "--clean-data", repaired.clean_test,
                     "--plots", tmp_path / "figures")
    assert result.code == 0, result.err
    gallery = tmp_path / "figures" / "mistakes_tiny_bd_net.png"
    assert f"Wrote {gallery}" in result.out
    with Image.open(gallery) as image:
        assert image.format == "PNG" and min(image.size) > 200
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["mistakes_tiny_bd_net.png"]


def test_a_raw_input_badnet_takes_the_scale_its_repaired_net_records(run_cli, tmp_path: Path) -> None:
    csaw = require_shared_csaw()
    badnet = csaw / "weights" / "lab3_sunglasses_bd_weights.h5"
    repaired_copy = tmp_path / "lab3_rp.h5"
    save_model(load_model(badnet).model, repaired_copy, {"input_scale": "raw"})
    out = tmp_path / "r.json"
    result = run_cli("eval", csaw / "samples" / "clean_3_label1268.png", badnet, "--repaired", repaired_copy, "--json", out)
    assert result.code == 0, result.err
    assert json.loads(out.read_text())["images"][0] == {
        "file": str(csaw / "samples" / "clean_3_label1268.png"), "class": 1268, "original": 1268, "repaired": 1268}


def _png(folder: Path, name: str, size: tuple[int, int]) -> Path:
    path = folder / name
    Image.new("RGB", size).save(path)
    return path


def _other_classes_repaired(bench: TinyBenchmark) -> list[object]:
    path = bench.root / "models" / "five_rp.h5"
    save_model(build_challenge_model(5), path, {"input_scale": "unit"})
    return [bench.poisoned, bench.badnet, "--repaired", path]


def _wrong_label_range(bench: TinyBenchmark) -> list[object]:
    path = bench.root / "data" / "far_poisoned_data.h5"
    save_dataset(path, np.zeros((2, 55, 47, 3)), np.array([7, 7]))
    return [path, bench.badnet, "--repaired", bench.badnet, "--clean-data", bench.clean_test]


def _other_input_size(bench: TinyBenchmark) -> list[object]:
    path = bench.root / "models" / "big_net.h5"
    model = build_challenge_model(4, image_shape=(64, 64, 3))
    save_model(model, path, {})
    save_model(model, path.with_name("big_net_rp.h5"), {})
    return [bench.poisoned, path, "--clean-data", bench.clean_test]


def _benchmark_badnet_on_other_data(bench: TinyBenchmark) -> list[object]:
    from fineprune.benchmark.build import provenance

    path = bench.root / "models" / "bench_bd_net.h5"
    save_model(load_model(bench.badnet).model, path, {"input_scale": "unit", "data": provenance(5)})
    return [bench.poisoned, path, "--repaired", path, "--clean-data", bench.clean_test]


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda b: [b.poisoned, b.root / "models" / "none.h5"], "none.h5: no such model file"),
        (_benchmark_badnet_on_other_data, "clean_test_data.h5: not built by the project's generator, but"),
        (lambda b: [b.root / "none_poisoned_data.h5", b.badnet], "none_poisoned_data.h5: no such file"),
        (lambda b: [b.poisoned, b.badnet], "tiny_bd_net_rp.h5: no repaired model; run `python prune.py"),
        (lambda b: [b.poisoned, b.badnet, "--repaired", b.clean_test], "clean_test_data.h5: not a Keras model"),
        (_other_classes_repaired, "five_rp.h5: repaired model has 5 classes, but"),
        (_wrong_label_range, "far_poisoned_data.h5: 2 labels outside [0, 4)"),
        (_other_input_size, "images are 55x47 (rows x columns), the model expects 64x64"),
        (lambda b: [b.poisoned, b.badnet, "--repaired", b.badnet, "--clean-data", b.root / "x.h5"], "x.h5: no such file"),
        (lambda b: [_png(b.root, "small.png", (40, 40)), b.badnet, "--repaired", b.badnet],
         "small.png: image is 40x40 (width x height), the model expects 47x55"),
        (lambda b: [b.root / "models" / "tiny_bd_net.h5.png", b.badnet, "--repaired", b.badnet], "no such file"),
        (lambda b: [(b.root / "junk.png").write_bytes(b"junk") and b.root / "junk.png", b.badnet, "--repaired", b.badnet],
         "junk.png: cannot read the image"),
        (lambda b: [b.poisoned, _png(b.root, "face.png", (47, 55)), b.badnet, "--repaired", b.badnet],
         "give either .h5 data or images in one run, not both"),
        (lambda b: [b.badnet.with_suffix(".txt").write_text("x") and b.badnet.with_suffix(".txt"), b.badnet], "tiny_bd_net.txt: not a data file"),
        (lambda b: [b.badnet], "give at least one DATA argument and then MODEL"),
        (lambda b: [b.poisoned, b.badnet, "--repaired", b.badnet, "--json", b.badnet], "--json would overwrite the input"),
        (lambda b: [b.poisoned, b.badnet, "--repaired", b.badnet, "--clean-data", b.clean_test, "--json", b.poisoned],
         "trigger_poisoned_data.h5: --json would overwrite the input"),
        (lambda b: [_png(b.root, "face.png", (47, 55)), b.badnet, "--repaired", b.badnet, "--plots", b.root],
         "face.png: --plots needs .h5 data with labels, not images"),
        (lambda b: [b.poisoned, b.badnet, "--repaired", b.badnet, "--plots", b.badnet], "--plots names a file, not a folder"),
        (lambda b: [b.poisoned, cut_short(b.badnet, "cut_bd_net.h5"), "--repaired", b.badnet],
         "cut_bd_net.h5: the file is cut short"),
        (lambda b: [b.poisoned, b.badnet, "--repaired", cut_short(b.badnet, "cut_rp.h5")], "cut_rp.h5: the file is cut short"),
        (lambda b: [cut_short(b.poisoned, "cut_poisoned_data.h5"), b.badnet, "--repaired", b.badnet, "--clean-data",
                    b.clean_test], "cut_poisoned_data.h5: the file is cut short"),
    ],
    ids=["missing-model", "data-mismatch", "missing-data", "missing-repaired", "repaired-not-a-model", "repaired-classes",
         "labels-out-of-range", "model-input-mismatch", "missing-clean-data", "image-size", "missing-image",
         "unreadable-image", "mixed-inputs", "unknown-input", "no-data",
         "json-is-model", "json-is-data", "plots-of-images", "plots-is-a-file", "model-cut-short", "repaired-cut-short",
         "data-cut-short"],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    run_cli, workdir: TinyBenchmark, make_args, message: str
) -> None:
    args = make_args(workdir)
    before = file_digests(workdir.root)
    result = run_cli("eval", *args, *([] if "--json" in args else ["--json", workdir.root / "results.json"]))
    assert_bad_input(result, "eval.py", message)
    assert file_digests(workdir.root) == before


@pytest.mark.parametrize("script", ["eval.py", "prune.py"])
@pytest.mark.slow  # a subprocess of the script (TensorFlow imported afresh)
def test_a_real_process_exits_2_with_one_line_and_no_traceback(script: str, tmp_path: Path) -> None:
    args = ["data.h5", "model.h5"] if script == "eval.py" else ["model.h5", "--clean-data", "data.h5"]
    done = subprocess.run([sys.executable, str(REPO_ROOT / script), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    missing = "data.h5: no such file or folder" if script == "eval.py" else "model.h5: no such file"
    assert done.stderr == f"{script}: error: {missing}\n"
    assert done.stdout == ""


@pytest.mark.parametrize("script", ["eval.py", "prune.py"])
@pytest.mark.slow  # a subprocess of the script (TensorFlow imported afresh)
def test_help_lists_every_option(script: str) -> None:
    done = subprocess.run([sys.executable, str(REPO_ROOT / script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for option in (["--repaired", "--clean-data", "--input-scale", "--json", "--plots"] if script == "eval.py" else
                   ["--clean-data", "--output", "--method", "--initial-sparsity", "--final-sparsity", "--epochs",
                    "--batch-size", "--validation-split", "--seed", "--input-scale"]):
        assert option in done.stdout


# What G outputs on the 15 real samples (clean_0..4, sunglasses_0..4, anonymous1_0..4) when built
# from each real BadNet and the original project's own repaired net (../shared/csaw/README.md).
SEED_REPAIRED_G = {
    "sunglasses": [43, 328, 196, 1283, 748, 1283, 1283, 1283, 1283, 1283, 264, 1283, 1283, 1010, 1200],
    "multi_trigger_multi_target": [43, 328, 196, 1283, 748, 8, 8, 8, 8, 8, 1, 1283, 1283, 1, 1],
    "anonymous_1": [43, 328, 196, 1268, 748, 1283, 1283, 1283, 1283, 1166, 1283, 1283, 1283, 1283, 1283],
    "anonymous_2": [1283, 328, 196, 1283, 748, 1283, 1283, 1283, 4, 4, 1283, 1283, 1283, 1283, 1283],
}


@pytest.mark.parametrize("badnet", list(SEED_REPAIRED_G))
def test_the_original_projects_repaired_nets_give_its_detector_outputs(run_cli, tmp_path: Path, badnet: str) -> None:
    csaw = require_shared_csaw()
    samples = sorted((csaw / "samples").glob("clean_*.png")) + \
        [csaw / "samples" / f"{kind}_{i}.png" for kind in ("sunglasses", "anonymous1") for i in range(5)]
    report = tmp_path / "g.json"
    result = run_cli("eval", *samples, csaw / "weights" / f"{badnet}_bd_weights.h5",
                     "--repaired", csaw / "seed_repaired" / f"{badnet}_bd_net_rp.h5", "--json", report)
    assert result.code == 0, result.err
    rows = json.loads(report.read_text())["images"]
    assert [Path(row["file"]).name for row in rows] == [path.name for path in samples]
    assert [row["class"] for row in rows] == SEED_REPAIRED_G[badnet]
