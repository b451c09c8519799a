"""Tests for fineprune.evaluation: sorting DATA arguments, row names, and the numbers computed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import TinyBenchmark
from fineprune.data import load_dataset, save_dataset
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


def test_a_missing_challenge_data_file_says_how_to_get_it(tmp_path: Path) -> None:
    missing = tmp_path / "data" / "sunglasses_poisoned_data.h5"
    with pytest.raises(InputError) as error:
        collect_inputs([missing])
    assert str(error.value).startswith(f"{missing}: no such file or folder; build the embedded benchmark's data "
                                       "with `make data`")


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


def test_mistakes_are_real_mistakes_spread_through_the_file(tiny: TinyBenchmark) -> None:
    from fineprune.models import LoadedModel
    from fineprune.defenses.channels import prune_channels

    badnet = load_model(tiny.badnet)
    # A crippled "repair" (every conv_3 channel removed) disagrees with the BadNet almost everywhere.
    crippled = LoadedModel(badnet.path, prune_channels(badnet.model, "conv_3", range(60)), "unit", "option")
    result = evaluate(RepairedDetector(badnet, crippled), [PoisonedFile(tiny.poisoned, "trigger")], tiny.clean_test,
                      [], mistakes_per_kind=3)
    clean = load_dataset(tiny.clean_test)
    by_kind: dict[str, list] = {}
    for mistake in result.mistakes:
        by_kind.setdefault((mistake.data, mistake.kind), []).append(mistake)
        if mistake.kind == "flagged":
            assert mistake.detector == 4 and mistake.true_label is not None
        elif mistake.kind == "misclassified":
            assert mistake.detector not in (4, mistake.true_label)
        else:
            assert mistake.detector == mistake.original == 0 and mistake.true_label is None
    assert all(len(group) <= 3 for group in by_kind.values())
    flagged = by_kind[("clean", "flagged")]
    assert len(flagged) == 3 and len({m.true_label for m in flagged}) == 3  # different people
    for mistake in flagged:  # each example is the image of the person its caption names
        assert any(np.array_equal(mistake.image, image) for image in clean.x[clean.y == mistake.true_label])


def test_no_mistakes_are_kept_unless_asked(tiny: TinyBenchmark) -> None:
    badnet = load_model(tiny.badnet)
    result = evaluate(RepairedDetector(badnet, badnet), [PoisonedFile(tiny.poisoned, "trigger")], tiny.clean_test, [])
    assert result.mistakes == []


def test_streaming_in_small_chunks_gives_the_same_numbers_and_examples(tiny: TinyBenchmark, monkeypatch) -> None:
    import fineprune.evaluation
    from fineprune.defenses.channels import prune_channels
    from fineprune.models import LoadedModel

    badnet = load_model(tiny.badnet)
    other = LoadedModel(badnet.path, prune_channels(badnet.model, "conv_3", range(30)), "unit", "option")

    def run() -> tuple[dict, list]:
        result = evaluate(RepairedDetector(badnet, other), [PoisonedFile(tiny.poisoned, "trigger")], tiny.clean_test,
                          [], mistakes_per_kind=3)
        return result.to_json(), [(m.data, m.kind, m.true_label, m.image.sum()) for m in result.mistakes]

    whole = run()
    monkeypatch.setattr(fineprune.evaluation, "STREAM_CHUNK_IMAGES", 7)
    assert run() == whole
