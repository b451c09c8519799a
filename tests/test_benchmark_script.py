"""Tests of benchmark.py's commands that run in seconds (the full build, training and demo are the
benchmark itself, run by `make data`, `make badnets` and `make demo`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import assert_bad_input, file_digests
from fineprune.data import load_dataset


def test_data_builds_a_miniature_benchmark(run_cli, tmp_path: Path) -> None:
    result = run_cli("benchmark", "data", "--data-dir", tmp_path / "data", "--identities", 10, "--seed", 3)
    assert result.code == 0, result.err
    assert "Built the benchmark data in" in result.out and "(seed 3)" in result.out
    clean = load_dataset(tmp_path / "data" / "clean_validation_data.h5")
    np.testing.assert_array_equal(np.bincount(clean.y), np.full(10, 9))
    assert clean.provenance["seed"] == 3
    assert len(list((tmp_path / "data").rglob("*.h5"))) == 14  # 8 of the challenge's kind, 6 of the attack zoo


def test_bad_options_are_one_line_errors(run_cli, tmp_path: Path) -> None:
    assert_bad_input(run_cli("benchmark", "data", "--identities", 3), "benchmark.py", "--identities 3 is outside [9, 1283]")
    assert_bad_input(run_cli("benchmark", "sweep", "--badnet", "nobody"), "benchmark.py", "--badnet nobody: no such net")
    assert_bad_input(run_cli("benchmark", "badnets", "--only", "nobody"), "benchmark.py", "--only nobody: no such net")
    assert_bad_input(run_cli("benchmark", "compare", "--badnet", "nobody"), "benchmark.py", "--badnet nobody: no such net")
    assert_bad_input(run_cli("benchmark", "compare", "--method", "voodoo"), "benchmark.py",
                     "--method voodoo is not one of magnitude,")
    assert_bad_input(run_cli("benchmark", "compare", "--jobs", 0), "benchmark.py", "--jobs 0 must be at least 1")
    assert_bad_input(run_cli("benchmark", "demo", "--seeds", 1, 2, 1), "benchmark.py",
                     "--seeds 1 2 1: a seed is given twice")
    assert_bad_input(run_cli("benchmark", "fidelity", "--badnet", "nobody"), "benchmark.py",
                     "--badnet nobody: no such net")
    assert_bad_input(run_cli("benchmark", "fidelity", "--csaw-dir", tmp_path), "benchmark.py",
                     f"{tmp_path}: no weights/ folder of real challenge BadNets here")
    assert_bad_input(run_cli("benchmark", "detection", "--csaw-dir", tmp_path), "benchmark.py",
                     f"{tmp_path}: no weights/ folder of real challenge BadNets here")
    assert_bad_input(run_cli("benchmark", "speed", "--images", 10), "benchmark.py", "--images 10 must be at least 64")
    assert_bad_input(run_cli("benchmark", "speed", "--badnet", "nobody"), "benchmark.py", "--badnet nobody: no such net")
    missing = run_cli("benchmark", "sweep", "--models-dir", tmp_path)
    assert_bad_input(missing, "benchmark.py", "sunglasses_bd_net.h5: no such file")
    assert_bad_input(run_cli("benchmark", "patterns", "--models-dir", tmp_path), "benchmark.py",
                     "clean_net.h5: no such file")


def test_badnets_only_zoo_trains_each_net_of_the_attack_zoo(run_cli, monkeypatch) -> None:
    from fineprune.benchmark import attacks, build

    trained = []

    def pretend(spec, data_dir, models_dir, recipe, log=print):
        trained.append((spec.name, recipe))
        return attacks.BadNetResult(99.0, {file: 95.0 for file in spec.poisoned_files})

    monkeypatch.setattr(attacks, "make_badnet", pretend)
    result = run_cli("benchmark", "badnets", "--only", "zoo", "--only", "clean")
    assert result.code == 0, result.err
    assert [name for name, _ in trained] == [*(spec.name for spec in build.ZOO_BADNETS), "clean"]
    assert dict(trained)["wanet"] == attacks.recipe_for("wanet")
    assert "| bpp " in result.out and "| adap_blend " in result.out


def test_help_names_every_command(run_cli) -> None:
    result = run_cli("benchmark", "--help")
    assert result.code == 0
    for command in ("data", "badnets", "patterns", "fidelity", "detection", "sweep", "gallery", "demo", "compare",
                    "oracle", "speed"):
        assert command in result.out
    for command, seeds in (("demo", "[0]"), ("compare", "[0, 1, 2]")):
        usage = " ".join(run_cli("benchmark", command, "--help").out.split())  # as argparse wraps it here
        assert "--seeds N [N ...]" in usage and f"(default: {seeds})" in usage and "--jobs N" in usage


def test_the_demo_runs_seed_0_by_default_and_every_other_command_seeds_0_1_2() -> None:
    from fineprune.commands.benchmark import build_parser

    parser = build_parser()
    assert parser.parse_args(["demo"]).seeds == [0]  # the quick check; --seeds 0 1 2 the README's table
    assert parser.parse_args(["demo", "--seeds", "0", "1", "2"]).seeds == [0, 1, 2]
    assert parser.parse_args(["compare"]).seeds == parser.parse_args(["fidelity"]).seeds == [0, 1, 2]


def test_gallery_draws_the_published_triggers_and_the_attack_zoo(run_cli, tmp_path: Path) -> None:
    result = run_cli("benchmark", "gallery", tmp_path / "faces.png", "--zoo-output", tmp_path / "zoo.png")
    assert result.code == 0, result.err
    from PIL import Image

    for name in ("faces.png", "zoo.png"):
        picture = np.asarray(Image.open(tmp_path / name).convert("RGB"), dtype=np.float32)
        assert picture.std() > 20  # a real figure, not a blank page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces.png", "zoo.png"]


def test_the_demo_runs_every_seed_and_checks_itself_against_the_readme(run_cli, workdir, tmp_path: Path,
                                                                       monkeypatch) -> None:
    """`make demo` on the tiny benchmark: with two seeds a table of spreads, then the default run
    (seed 0) checked against a README that reports the two; every repaired net under results/,
    nothing written or changed in the models folder."""
    from fineprune.benchmark import build
    from fineprune.report import DEMO_TABLE_MARK

    monkeypatch.setattr(build, "BADNETS", [build.BadNetSpec("tiny", {"trigger": 0}, ("trigger_poisoned_data.h5",))])
    monkeypatch.setattr(build, "ensure_data", lambda data, progress=None: None)
    folders = ["--data-dir", workdir.root / "data", "--models-dir", workdir.root / "models",
               "--results-dir", tmp_path / "results"]
    models = file_digests(workdir.root / "models")
    first = run_cli("benchmark", "demo", *folders, "--seeds", 0, 1, "--readme", tmp_path / "missing.md")
    assert first.code == 0, first.err
    assert "median (and range) over prune.py's seeds 0, 1" in first.out
    assert f"{tmp_path / 'missing.md'} holds no demo table" in first.out
    assert file_digests(workdir.root / "models") == models  # no MODEL_rp.h5 beside the BadNet, nothing else
    for seed in (0, 1):
        assert (tmp_path / "results" / "demo" / "tiny" / f"tiny_bd_net_rp_seed_{seed}.h5").is_file()
    table = first.out[first.out.rindex("| BadNet/trigger"):].split("\n\n")[0]  # after eval.py's own
    row = [cell.strip() for cell in table.splitlines()[2].strip("|").split("|")]
    assert row[0] == "tiny/trigger" and row[1] == "100.00"  # the BadNet's own accuracy: no seed, one value
    readme = tmp_path / "README.md"
    readme.write_text(f"# Results\n\nThe median and range over\nseeds 0 and 1:\n\n{DEMO_TABLE_MARK}\n\n{table}\n")
    again = run_cli("benchmark", "demo", *folders, "--readme", readme)  # the default: seed 0 alone
    assert again.code == 0, again.err
    assert "One run, prune.py's seed 0." in again.out
    assert f"This run (seed 0) against the range of the demo table in {readme}, number by number:" in again.out
    assert "7 of 7 numbers inside the README's ranges." in again.out  # seed 0 on the same machine
    assert file_digests(workdir.root / "models") == models


def fake_evaluation(accuracy: float, asr: float) -> dict:
    """eval.py's JSON, as much of it as the demo's table reads: one BadNet, one trigger."""
    clean = {"accuracy_original_pct": 98.0, "accuracy_detector_pct": accuracy, "accuracy_repaired_net_pct": accuracy}
    poisoned = {"name": "trigger", "asr_original_pct": 99.0, "asr_detector_pct": asr,
                "asr_repaired_net_pct": asr, "detected_pct": 100.0 - asr}
    return {"clean": clean, "poisoned": [poisoned]}


def test_the_demo_names_each_number_outside_the_readmes_range_and_still_exits_0(run_cli, tmp_path: Path,
                                                                                monkeypatch) -> None:
    """A completed run exits 0: a number outside the README's range (another CPU or TensorFlow
    build) is listed with how far it misses, not failed."""
    from fineprune.benchmark import build
    from fineprune.commands import benchmark
    from fineprune.report import DEMO_TABLE_MARK

    monkeypatch.setattr(build, "BADNETS", [build.BadNetSpec("tiny", {"trigger": 0}, ("trigger_poisoned_data.h5",))])
    monkeypatch.setattr(build, "ensure_data", lambda data, progress=None: None)
    runs = []
    monkeypatch.setattr(benchmark, "demo_cell", lambda name, seed, *folders: runs.append(seed) or
                        fake_evaluation(50.0 if seed == 0 else 70.0, 1.0))
    readme = tmp_path / "README.md"
    columns = "| BadNet/trigger | Accuracy(original) | Accuracy(repaired) | Success Rate(repaired) |"
    readme.write_text(f"Each number the median and range over seeds 0, 1 and 2:\n\n{DEMO_TABLE_MARK}\n\n{columns}\n"
                      "|---|---:|---:|---:|\n| tiny/trigger | 98.00 | 62.89 (57.70-78.14) | 0.27 (0.08-2.11) |\n")
    models = tmp_path / "models"
    result = run_cli("benchmark", "demo", "--readme", readme, "--jobs", 1, "--models-dir", models,
                     "--results-dir", tmp_path / "results")
    assert result.code == 0, result.err
    assert runs == [0]
    assert f"This run (seed 0) against the range of the demo table in {readme}" in result.out
    assert "- tiny/trigger, Accuracy(repaired): 50.00 is outside the README's 62.89 (57.70-78.14) by 7.70 points" \
        in result.out
    assert "2 of 3 numbers inside the README's ranges; a seed repeats a run exactly only" in result.out
    assert not models.exists()
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["demo", "results.json", "results.md"]


@pytest.mark.slow  # waits for a scheduler that never answers
def test_a_scheduler_where_nothing_listens_is_refused_in_one_line(run_cli, tmp_path: Path, monkeypatch) -> None:
    from fineprune.benchmark import build

    monkeypatch.setattr(build, "BADNETS", [build.BadNetSpec("tiny", {"trigger": 0}, ("trigger_poisoned_data.h5",))])
    monkeypatch.setattr(build, "ensure_data", lambda data, progress=None: None)
    result = run_cli("benchmark", "demo", "--scheduler", "tcp://127.0.0.1:9", "--results-dir", tmp_path / "results")
    assert_bad_input(result, "benchmark.py", "--scheduler tcp://127.0.0.1:9: no Dask scheduler answers there")
    assert not (tmp_path / "results" / "results.md").exists()

