"""Tests for fineprune.evaluation: sorting DATA arguments, row names, and the numbers computed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import TinyBenchmark
from fineprune.data import save_dataset
from fineprune.detector import RepairedDetector
from fineprune.errors import InputError
from fineprune.evaluation import PoisonedFile, collect_inputs, evaluate
from fineprune.models import load_model


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "Multi-trigger Multi-target"
    for name in ("lipstick_poisoned_data.h5", "eyebrows_poisoned_data.h5"):
        save_dataset(folder / name, np.zeros((1, 55, 47, 3)), np.zeros(1))
    (folder / "notes.txt").write_text("not data")
    save_dataset(tmp_path / "sunglasses_poisoned_data.h5", np.zeros((1, 55, 47, 3)), np.zeros(1))
    (tmp_path / "face.PNG").write_bytes(b"")
    return tmp_path


def test_files_and_folders_become_named_rows_in_order(inputs: Path) -> None:
    h5_files, images = collect_inputs([inputs / "sunglasses_poisoned_data.h5", inputs / "Multi-trigger Multi-target"])
    assert images == []
    assert h5_files == [
        PoisonedFile(inputs / "sunglasses_poisoned_data.h5", "sunglasses"),
        PoisonedFile(inputs / "Multi-trigger Multi-target" / "eyebrows_poisoned_data.h5", "Multi-trigger Multi-target/eyebrows"),
        PoisonedFile(inputs / "Multi-trigger Multi-target" / "lipstick_poisoned_data.h5", "Multi-trigger Multi-target/lipstick"),
    ]


def test_images_are_recognised_by_suffix_in_any_case(inputs: Path) -> None:
    assert collect_inputs([inputs / "face.PNG"]) == ([], [inputs / "face.PNG"])


@pytest.mark.parametrize(
    "names, message",
    [
        (["absent.h5"], "absent.h5: no such file or folder"),
        (["Multi-trigger Multi-target/notes.txt"], "notes.txt: not a data file (.h5)"),
        (["sunglasses_poisoned_data.h5", "face.PNG"], "face.PNG: give either .h5 data or images"),
    ],
)
def test_unusable_data_arguments_are_refused(inputs: Path, names: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        collect_inputs([inputs / name for name in names])


def test_a_folder_without_data_files_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="folder holds no .h5 data files"):
        collect_inputs([tmp_path])


def test_a_net_paired_with_itself_flags_nothing_and_keeps_its_numbers(tiny: TinyBenchmark) -> None:
    badnet = load_model(tiny.badnet)
    progress: list[str] = []
    result = evaluate(
        RepairedDetector(badnet, badnet), [PoisonedFile(tiny.poisoned, "trigger")], tiny.clean_test, [],
        progress=progress.append,
    )
    assert result.clean is not None
    assert result.clean.accuracy_original_pct == result.clean.accuracy_detector_pct == 100.0
    (row,) = result.poisoned
    assert (row.name, row.target, row.images) == ("trigger", 0, 30)
    assert row.asr_original_pct == row.asr_detector_pct == 100.0 and row.detected_pct == 0.0
    assert progress == [f"evaluating clean data {tiny.clean_test} (40 images)",
                        f"evaluating poisoned data {tiny.poisoned} (30 images)"]
