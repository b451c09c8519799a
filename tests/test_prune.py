"""End-to-end tests of prune.py on the tiny benchmark, including every bad input it must refuse."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import tf_keras

from conftest import TinyBenchmark, assert_bad_input, cut_short, file_digests
from fineprune.data import save_dataset
from fineprune.models import build_challenge_model, read_metadata

FAST = ["--epochs", "1", "--batch-size", "8", "--pruning-frequency", "1", "--quiet"]


def prune_args(bench: TinyBenchmark, *extra: object) -> list[object]:
    return [bench.badnet, "--clean-data", bench.clean_validation, *FAST, *extra]


def test_prune_writes_the_repaired_model_beside_the_input(run_cli, workdir: TinyBenchmark) -> None:
    before = file_digests(workdir.root)
    result = run_cli("prune", *prune_args(workdir, "--seed", 3))
    assert result.code == 0, result.err
    output = workdir.badnet.with_name("tiny_bd_net_rp.h5")
    assert output.is_file()
    after = file_digests(workdir.root)
    assert after.pop("models/tiny_bd_net_rp.h5") and after == before  # the input model is unchanged
    for layer in ("fc_1", "fc_2", "output"):
        assert f"| {layer}" in result.out and "70.00 |" in result.out
    assert "Held-out clean accuracy (5 images): 100.00% before" in result.out
    metadata = read_metadata(output)
    assert metadata["input_scale"] == "unit"
    assert metadata["method"] == "magnitude"
    assert metadata["settings"]["seed"] == 3
    assert metadata["settings"]["final_sparsity"] == 0.7
    assert metadata["result"]["sparsity"]["fc_1"] == pytest.approx(0.7, abs=0.005)


def test_prune_records_the_input_scale_it_used(run_cli, workdir: TinyBenchmark) -> None:
    output = workdir.root / "out" / "raw_rp.h5"
    loud = [arg for arg in prune_args(workdir, "--input-scale", "raw", "--output", output, "--seed", 1) if arg != "--quiet"]
    result = run_cli("prune", *loud)
    assert result.code == 0, result.err
    assert read_metadata(output)["input_scale"] == "raw"
    assert "input scale raw [option]" in result.err


def test_prune_without_a_seed_uses_seed_0_as_every_command_does(run_cli, workdir: TinyBenchmark) -> None:
    result = run_cli("prune", *prune_args(workdir))
    assert read_metadata(workdir.badnet.with_name("tiny_bd_net_rp.h5"))["settings"]["seed"] == 0
    assert "seed 0)" in result.out


@pytest.mark.parametrize("seed", ["-1", "4294967296", "1.5", "many"])
def test_a_seed_outside_the_rule_is_refused_in_one_line(run_cli, workdir: TinyBenchmark, seed: str) -> None:
    before = file_digests(workdir.root)
    result = run_cli("prune", workdir.badnet, "--seed", seed)
    assert result.code == 2 and result.out == ""
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert f"--seed: {seed!r} is not an integer in [0, 4294967295]" in result.err
    assert file_digests(workdir.root) == before


@pytest.mark.parametrize("method, option", [("finetune", ["--layer", "conv_4"]), ("prune", ["--epochs", "9"]),
                                            ("magnitude", ["--fit", "lda"]), ("maxmargin", ["--epochs", "2"])])
def test_an_option_the_method_does_not_use_is_refused_before_any_work(
    run_cli, workdir: TinyBenchmark, method: str, option: list[str]
) -> None:
    before = file_digests(workdir.root)
    result = run_cli("prune", workdir.badnet, "--clean-data", workdir.clean_validation, "--method", method, *option)
    assert_bad_input(result, "prune.py", f"{option[0]} does not apply to --method {method} (its options: --")
    assert result.err.count("\n") == 1  # refused before the model was even loaded
    assert file_digests(workdir.root) == before


def test_progress_goes_to_stderr_and_quiet_silences_it(run_cli, workdir: TinyBenchmark) -> None:
    loud = run_cli("prune", *[arg for arg in prune_args(workdir) if arg != "--quiet"])
    assert loud.code == 0, loud.err
    assert "fine-tuning epoch 1/1: loss" in loud.err and "fine-tuning epoch" not in loud.out
    assert loud.out.startswith("Repaired model: ")  # stdout holds the report alone
    quiet = run_cli("prune", *prune_args(workdir))
    assert quiet.code == 0 and quiet.err == ""
    untimed = lambda out: [line for line in out.splitlines() if not line.startswith("Time:")]  # noqa: E731
    assert untimed(quiet.out) == untimed(loud.out)


def test_an_interrupted_save_keeps_the_previous_repaired_model(
    run_cli, workdir: TinyBenchmark, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = workdir.badnet.with_name("tiny_bd_net_rp.h5")
    previous.write_bytes(b"previous repaired model")

    def save_then_interrupt(self, filepath, *args, **kwargs):
        Path(filepath).write_bytes(b"half a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(tf_keras.Model, "save", save_then_interrupt)
    result = run_cli("prune", *prune_args(workdir, "--seed", 1))
    assert result.code == 130
    assert previous.read_bytes() == b"previous repaired model"
    assert sorted(p.name for p in previous.parent.iterdir()) == ["tiny_bd_net.h5", "tiny_bd_net_rp.h5", "tiny_bd_weights.h5"]


def _bad_labels(bench: TinyBenchmark) -> list[object]:
    path = bench.root / "bad_labels.h5"
    save_dataset(path, np.zeros((3, 55, 47, 3)), np.array([0, 1, 9]))
    return [bench.badnet, "--clean-data", path]


def _small_images(bench: TinyBenchmark) -> list[object]:
    path = bench.root / "small.h5"
    save_dataset(path, np.zeros((3, 32, 32, 3)), np.array([0, 1, 2]))
    return [bench.badnet, "--clean-data", path]


def _no_label(bench: TinyBenchmark) -> list[object]:
    path = bench.root / "no_label.h5"
    with h5py.File(path, "w") as h5:
        h5["data"] = np.zeros((2, 3, 55, 47))
    return [bench.badnet, "--clean-data", path]


def _not_a_model(bench: TinyBenchmark) -> list[object]:
    return [bench.clean_validation, "--clean-data", bench.clean_validation]


def _other_input_size_model(bench: TinyBenchmark) -> list[object]:
    path = bench.root / "models" / "wide_net.h5"
    build_challenge_model(4, image_shape=(64, 64, 3)).save(path, save_format="h5")
    return [path, "--clean-data", bench.clean_validation]


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda b: [b.root / "missing.h5"], "missing.h5: no such file"),
        (_not_a_model, "clean_validation_data.h5: not a Keras model"),
        (lambda b: [b.badnet, "--clean-data", b.root / "none.h5"], "none.h5: no such file"),
        (lambda b: [b.badnet, "--clean-data", b.badnet], "tiny_bd_net.h5: no 'data' data set"),
        (_no_label, "no_label.h5: no 'label' data set"),
        (_bad_labels, "bad_labels.h5: 1 labels outside [0, 4)"),
        (_small_images, "small.h5: images are 32x32 (rows x columns), the model expects 55x47"),
        (_other_input_size_model, "clean_validation_data.h5: images are 55x47 (rows x columns), the model expects 64x64"),
        (lambda b: [b.badnet, "--final-sparsity", "1.2"], "--final-sparsity 1.2 is outside [0, 1)"),
        (lambda b: [b.badnet, "--initial-sparsity", "0.8"], "--initial-sparsity 0.8 is greater than --final-sparsity 0.7"),
        (lambda b: [b.badnet, "--output", b.badnet], "--output would overwrite the input"),
        (lambda b: [b.badnet, "--clean-data", b.clean_validation, "--output", b.clean_validation],
         "clean_validation_data.h5: --output would overwrite the input"),
        (lambda b: [b.badnet, "--method", "voodoo"], "invalid choice: 'voodoo'"),
        (lambda b: [b.badnet, "--method", "head"], "--epochs does not apply to --method head"),
        (lambda b: [cut_short(b.badnet, "cut_bd_net.h5")], "cut_bd_net.h5: the file is cut short"),
    ],
    ids=["missing-model", "not-a-model", "missing-data", "no-data-set", "no-labels", "labels-out-of-range",
         "wrong-image-size", "model-input-mismatch", "sparsity-range", "initial-above-final", "output-is-input",
         "output-is-clean-data",
         "unknown-method", "option-of-another-method", "model-cut-short"],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    run_cli, workdir: TinyBenchmark, make_args, message: str
) -> None:
    args = make_args(workdir)
    before = file_digests(workdir.root)
    result = run_cli("prune", *args, *FAST)
    assert_bad_input(result, "prune.py", message)
    assert result.out == ""
    assert file_digests(workdir.root) == before


def test_a_benchmark_badnet_refuses_data_from_another_seed(run_cli, workdir: TinyBenchmark) -> None:
    from fineprune.benchmark.build import provenance
    from fineprune.models import load_model, save_model

    badnet = workdir.root / "models" / "bench_bd_net.h5"
    save_model(load_model(workdir.badnet).model, badnet, {"input_scale": "unit", "data": provenance(5)})
    before = file_digests(workdir.root)
    result = run_cli("prune", badnet, "--clean-data", workdir.clean_validation, *FAST)
    assert_bad_input(result, "prune.py", "not built by the project's generator, but")
    assert "rebuild the data with `make data`" in result.err
    assert file_digests(workdir.root) == before


def test_the_repaired_net_keeps_the_badnets_data_record(run_cli, workdir: TinyBenchmark) -> None:
    from fineprune.benchmark.build import provenance
    from fineprune.data import load_dataset
    from fineprune.models import load_model, save_model

    data = load_dataset(workdir.clean_validation)
    stamped = workdir.root / "data" / "stamped.h5"
    save_dataset(stamped, data.x, data.y, provenance=provenance(5))
    badnet = workdir.root / "models" / "bench_bd_net.h5"
    save_model(load_model(workdir.badnet).model, badnet, {"input_scale": "unit", "data": provenance(5)})
    result = run_cli("prune", badnet, "--clean-data", stamped, "--seed", 1, *FAST)
    assert result.code == 0, result.err
    assert read_metadata(badnet.with_name("bench_bd_net_rp.h5"))["data"] == provenance(5)


@pytest.mark.parametrize("method", ["activation", "prune", "finetune"])
def test_fine_pruning_methods_record_settings_that_round_trip(run_cli, workdir: TinyBenchmark, method: str) -> None:
    from fineprune import defenses

    given = {"prune_fraction": 0.25} if method != "finetune" else {}
    if method != "prune":
        given.update(epochs=1, batch_size=8)
    options = [str(part) for name, value in given.items() for part in (f"--{name.replace('_', '-')}", value)]
    result = run_cli("prune", workdir.badnet, "--clean-data", workdir.clean_validation, *options,
                     "--quiet", "--method", method, "--seed", 2)
    assert result.code == 0, result.err
    metadata = read_metadata(workdir.badnet.with_name("tiny_bd_net_rp.h5"))
    recorded = dict(metadata["settings"])
    assert defenses.get(recorded.pop("method")).settings(**recorded) == defenses.settings_for(method, seed=2, **given)
    assert metadata["method"] == method
    pruned = metadata["result"]["pruned_channels"]
    if method == "finetune":
        assert pruned == {} and "Fine-tuned for" in result.out
    else:
        assert len(pruned["conv_3"]) == 15 and "Pruned 15 channels of conv_3" in result.out


def test_head_records_its_settings_and_what_it_found(run_cli, workdir: TinyBenchmark) -> None:
    from fineprune.defenses.head import HeadSettings

    result = run_cli("prune", workdir.badnet, "--clean-data", workdir.clean_validation, "--method", "head",
                     "--fit", "lda", "--shrinkage", 0.5, "--seed", 4, "--quiet")
    assert result.code == 0, result.err
    metadata = read_metadata(workdir.badnet.with_name("tiny_bd_net_rp.h5"))
    assert HeadSettings(**metadata["settings"]) == HeadSettings(fit="lda", shrinkage=0.5, seed=4)
    assert metadata["result"]["removed"] == "the output layer's weights (re-fitted: lda)"
    assert "Found: classes fitted 4, feature dimension 160" in result.out


def test_the_default_probe_reports_its_fit(run_cli, workdir: TinyBenchmark) -> None:
    result = run_cli("prune", workdir.badnet, "--clean-data", workdir.clean_validation, "--method", "head",
                     "--probe-steps", 20, "--seed", 4, "--quiet")
    assert result.code == 0, result.err
    assert "Fitted the output layer for 20 full-batch steps on the features of 43 images" in result.out


def test_maxmargin_refuses_a_net_with_too_few_classes(run_cli, workdir: TinyBenchmark) -> None:
    result = run_cli("prune", workdir.badnet, "--clean-data", workdir.clean_validation, "--method", "maxmargin",
                     "--seed", 4, "--quiet")
    assert_bad_input(result, "prune.py", "4 classes; the maximum-margin test needs at least 10")
    assert not workdir.badnet.with_name("tiny_bd_net_rp.h5").exists()


def test_help_lists_every_method_and_its_settings(run_cli) -> None:
    from fineprune import defenses

    result = run_cli("prune", "--help")
    assert result.code == 0
    for name in defenses.names():
        assert f"  {name} " in result.out
    for option in defenses.option_fields():
        assert f"--{option.replace('_', '-')}" in result.out


def test_a_fresh_clone_without_data_is_told_how_to_get_it(run_cli, workdir: TinyBenchmark, tmp_path) -> None:
    missing = tmp_path / "fresh" / "data" / "clean_validation_data.h5"
    result = run_cli("prune", workdir.badnet, "--clean-data", missing, *FAST)
    assert_bad_input(result, "prune.py", f"{missing}: no such file; build the embedded benchmark's data with "
                     "`make data`, or put the challenge's data files there")


def test_a_keras_archive_output_is_written_and_read_back_by_eval(run_cli, workdir: TinyBenchmark) -> None:
    output = workdir.root / "models" / "repaired.keras"
    result = run_cli("prune", *prune_args(workdir, "--output", output, "--seed", 1))
    assert result.code == 0, result.err
    assert read_metadata(output)["settings"]["seed"] == 1 and read_metadata(output)["input_scale"] == "unit"
    evaluated = run_cli("eval", workdir.poisoned, workdir.badnet, "--repaired", output, "--clean-data",
                        workdir.clean_test)
    assert evaluated.code == 0, evaluated.err
    assert "repaired.keras" in evaluated.out


def test_a_collapsed_repair_is_refused_in_one_line_and_nothing_is_written(run_cli, workdir: TinyBenchmark) -> None:
    """Pruning 57 of conv_3's 60 channels takes the tiny BadNet near chance (25%); past
    --max-accuracy-drop the repaired net is not saved, and the line says how to keep it."""
    before = file_digests(workdir.root)
    result = run_cli("prune", workdir.badnet, "--clean-data", workdir.clean_validation, "--method", "prune",
                     "--prune-fraction", "0.95", "--max-accuracy-drop", "10", "--quiet")
    assert_bad_input(result, "prune.py", "--method prune took held-out clean accuracy from ")
    assert "more than --max-accuracy-drop 10); nothing was saved (a larger --max-accuracy-drop saves it)" in result.err
    assert result.out == "" and file_digests(workdir.root) == before
    kept = run_cli("prune", workdir.badnet, "--clean-data", workdir.clean_validation, "--method", "prune",
                   "--prune-fraction", "0.95", "--max-accuracy-drop", "100", "--quiet")
    assert kept.code == 0 and workdir.badnet.with_name("tiny_bd_net_rp.h5").exists()


def test_json_is_never_written_over_an_input(run_cli, workdir: TinyBenchmark) -> None:
    result = run_cli("prune", workdir.badnet, "--clean-data", workdir.clean_validation, "--json",
                     workdir.clean_validation, *FAST)
    assert_bad_input(result, "prune.py", "--json would overwrite the input")


def test_a_negative_max_accuracy_drop_is_refused(run_cli, workdir: TinyBenchmark) -> None:
    result = run_cli("prune", workdir.badnet, "--max-accuracy-drop", "-1", *FAST)
    assert_bad_input(result, "prune.py", "--max-accuracy-drop -1 must be at least 0")


def test_the_strength_rule_s_choice_is_printed_and_recorded(run_cli, workdir: TinyBenchmark) -> None:
    record = workdir.root / "repair.json"
    result = run_cli("prune", workdir.badnet, "--clean-data", workdir.clean_validation, "--method", "finetune",
                     "--epochs", "1", "--quiet", "--json", record)
    assert result.code == 0, result.err
    strength = read_metadata(workdir.badnet.with_name("tiny_bd_net_rp.h5"))["result"]["details"]["strength"]
    assert json.loads(record.read_text())["result"]["details"]["strength"] == strength
    assert strength["parameter"] == "learning_rate" and strength["rule"].startswith("the strongest learning_rate")
    assert f"Strength: learning rate {strength['chosen']:g}, by the rule: the strongest" in result.out
