"""Tests for fineprune.api: the README's example runs as written, each function takes paths or
loaded objects, and bad input gets the commands' one-line errors."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import fineprune
from conftest import REPO_ROOT, TinyBenchmark
from fineprune.errors import InputError
from fineprune.models import load_model, read_metadata


def readme_example() -> str:
    """The Python block of the README's "Python API" section."""
    section = REPO_ROOT.joinpath("README.md").read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def clone(tiny: TinyBenchmark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder laid out as a clone with its data built, the tiny files under the README's names."""
    (tmp_path / "data").mkdir()
    (tmp_path / "models").mkdir()
    shutil.copy(tiny.clean_validation, tmp_path / "data" / "clean_validation_data.h5")
    shutil.copy(tiny.clean_test, tmp_path / "data" / "clean_test_data.h5")
    shutil.copy(tiny.poisoned, tmp_path / "data" / "sunglasses_poisoned_data.h5")
    shutil.copy(tiny.badnet, tmp_path / "models" / "sunglasses_bd_net.h5")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readme_example_runs_as_written(clone: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(readme_example(), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert re.search(r"G: clean accuracy \d+\.\d\d%, attack success \d+\.\d\d%", printed), printed
    saved = clone / "models" / "sunglasses_bd_net_rp.h5"
    record = read_metadata(saved)
    assert record["method"] == "activation" and record["source_model"] == "models/sunglasses_bd_net.h5"
    assert load_model(saved).num_classes == load_model(clone / "models" / "sunglasses_bd_net.h5").num_classes


def test_repair_and_evaluate_take_loaded_objects_and_match_the_files(tiny: TinyBenchmark) -> None:
    badnet = fineprune.load_model(tiny.badnet)
    clean = fineprune.load_dataset(tiny.clean_validation)
    lines: list[str] = []
    repaired = fineprune.repair(badnet, clean, method="finetune", seed=3, epochs=1, progress=lines.append)
    assert repaired.settings.seed == 3 and repaired.settings.epochs == 1
    # one line per epoch of each learning rate the strength rule tries, then one with its verdict
    epochs = [line for line in lines if line.startswith("fine-tuning epoch 1/1: loss ")]
    verdicts = [line for line in lines if line.startswith("fine-tuning: learning_rate ")]
    assert len(epochs) == len(verdicts) == len(repaired.result.details["strength"]["tried"]) >= 1
    assert len(lines) == 2 * len(epochs)
    numbers = fineprune.evaluate(badnet, repaired, clean=tiny.clean_test, poisoned=[tiny.poisoned])
    assert numbers.clean.images == len(fineprune.load_dataset(tiny.clean_test).y)
    assert [row.name for row in numbers.poisoned] == ["trigger"]
    assert 0.0 <= numbers.poisoned[0].asr_detector_pct <= numbers.poisoned[0].asr_original_pct <= 100.0


@pytest.mark.parametrize("call, says", [
    (lambda tiny: fineprune.repair(tiny.badnet, tiny.clean_validation, method="nothing"), "not one of"),
    (lambda tiny: fineprune.repair(tiny.badnet, tiny.clean_validation, method="finetune", probe_steps=3),
     "does not apply to --method finetune"),
    (lambda tiny: fineprune.repair(tiny.badnet, tiny.clean_validation, method="finetune", epochs=0), "epochs"),
    (lambda tiny: fineprune.repair(tiny.badnet, tiny.clean_validation, method="prune", epochs=2),
     "--epochs does not apply to --method prune"),
    (lambda tiny: fineprune.repair(tiny.badnet, tiny.clean_validation, seed=-1), r"--seed -1 is not an integer in \[0, "),
    (lambda tiny: fineprune.inspect(tiny.badnet, tiny.clean_validation, seed=2**32), "--seed 4294967296 is not an"),
    (lambda tiny: fineprune.inspect(tiny.badnet, tiny.clean_validation, colour=1), "inspect has no setting colour"),
    (lambda tiny: fineprune.load_model(tiny.root / "missing.h5"), "missing.h5"),
])
def test_bad_input_is_refused_in_one_line(tiny: TinyBenchmark, call, says: str) -> None:
    with pytest.raises(InputError, match=says) as refused:
        call(tiny)
    assert "\n" not in str(refused.value)


def test_a_repaired_net_is_never_saved_over_its_badnet(tiny: TinyBenchmark, tmp_path: Path) -> None:
    badnet_file = shutil.copy(tiny.badnet, tmp_path / "bd_net.h5")
    repaired = fineprune.repair(badnet_file, tiny.clean_validation, method="finetune", epochs=1)
    before = Path(badnet_file).read_bytes()
    with pytest.raises(InputError, match="overwrite the BadNet"):
        repaired.save(badnet_file)
    assert Path(badnet_file).read_bytes() == before


def test_a_collapsed_repair_is_saved_only_when_asked(tiny: TinyBenchmark, tmp_path: Path) -> None:
    repaired = fineprune.repair(tiny.badnet, tiny.clean_validation, method="prune", prune_fraction=0.95)
    with pytest.raises(InputError, match="nothing was saved"):
        repaired.save(tmp_path / "rp.h5", max_accuracy_drop=10.0)
    assert not (tmp_path / "rp.h5").exists()
    assert repaired.save(tmp_path / "rp.h5", max_accuracy_drop=100.0).exists()


def test_the_top_level_offers_the_api_and_nothing_it_does_not_have() -> None:
    assert set(fineprune.API) <= set(dir(fineprune))
    assert fineprune.repair is fineprune.api.repair
    with pytest.raises(AttributeError):
        fineprune.no_such_thing  # noqa: B018
