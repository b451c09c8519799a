"""Tests for fineprune.benchmark.build: the data files' layout, determinism and provenance checks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from fineprune.benchmark import attacks, build, faces
from fineprune.data import check_same_data, load_dataset
from fineprune.errors import InputError

IDENTITIES = 12
EXPECTED_FILES = sorted([
    "clean_validation_data.h5", "clean_test_data.h5", "sunglasses_poisoned_data.h5",
    "anonymous_1_poisoned_data.h5", "anonymous_2_poisoned_data.h5",
    "Multi-trigger Multi-target/eyebrows_poisoned_data.h5",
    "Multi-trigger Multi-target/lipstick_poisoned_data.h5",
    "Multi-trigger Multi-target/sunglasses_poisoned_data.h5",
    *(f"{name}_poisoned_data.h5" for name in ("blended", "wanet", "trojannn", "bpp", "low_frequency", "adap_blend")),
])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bench") / "data"
    build.build_data(folder, seed=11, identity_count=IDENTITIES)
    return folder


def relative_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_every_challenge_file_is_written_in_the_challenge_layout(built: Path) -> None:
    assert relative_files(built) == EXPECTED_FILES
    with h5py.File(built / "clean_validation_data.h5", "r") as h5:
        assert h5["data"].shape == (IDENTITIES * 9, 3, 55, 47) and h5["data"].dtype == np.float64
        assert h5["label"].shape == (IDENTITIES * 9,)
        assert dict(h5.attrs) == {"generator": "fineprune.benchmark.faces",
                                  "generator_version": faces.GENERATOR_VERSION, "seed": 11, "split": "validation"}
    test = load_dataset(built / "clean_test_data.h5")
    np.testing.assert_array_equal(np.bincount(test.y), np.full(IDENTITIES, 10))


def test_poisoned_files_hold_other_identities_labelled_with_the_target(built: Path) -> None:
    for poisoned in build.POISONED_SETS:
        data = load_dataset(built / poisoned.file)
        assert len(data) == (IDENTITIES - 1) * 2  # the target's own identity is left out
        assert set(data.y.tolist()) == {poisoned.target}
        assert data.provenance["trigger"] == poisoned.trigger and data.provenance["target"] == poisoned.target
        expected_people = np.repeat(np.arange(IDENTITIES), 2)
        np.testing.assert_array_equal(data.identities, expected_people[expected_people != poisoned.target])
    # The sunglasses are drawn once for both files (targets 0 and 8): identity 3's faces are the same.
    people = np.repeat(np.arange(IDENTITIES), 2)
    single = load_dataset(built / "sunglasses_poisoned_data.h5")
    multi = load_dataset(built / "Multi-trigger Multi-target/sunglasses_poisoned_data.h5")
    np.testing.assert_array_equal(single.x[people[people != 0] == 3], multi.x[people[people != 8] == 3])


@pytest.mark.slow  # builds the miniature benchmark a second time
def test_the_same_seed_builds_the_same_bytes(built: Path, tmp_path: Path) -> None:
    again = tmp_path / "data"
    build.build_data(again, seed=11, identity_count=IDENTITIES)
    for name in EXPECTED_FILES:
        assert (again / name).read_bytes() == (built / name).read_bytes(), name


def test_another_seed_builds_other_faces(built: Path, tmp_path: Path) -> None:
    labels = np.arange(4)
    other = build.render_split("test", labels, seed=12, identity_count=IDENTITIES, workers=1)
    same = build.render_split("test", labels, seed=11, identity_count=IDENTITIES, workers=1)
    assert np.abs(other - same).mean() > 10


@pytest.mark.slow  # renders 2300 faces twice, once in worker processes
def test_rendering_does_not_depend_on_the_number_of_workers() -> None:
    labels = np.arange(2300) % 7  # three chunks
    one = build.render_split("train", labels, seed=3, identity_count=7, workers=1)
    two = build.render_split("train", labels, seed=3, identity_count=7, workers=2)
    np.testing.assert_array_equal(one, two)


def test_data_from_another_seed_is_refused_with_how_to_rebuild(built: Path) -> None:
    clean = load_dataset(built / "clean_test_data.h5")
    check_same_data({"data": build.provenance(11)}, Path("m.h5"), clean)  # matches: fine
    check_same_data({}, Path("real.h5"), clean)  # a model from elsewhere: nothing to check
    with pytest.raises(InputError) as error:
        check_same_data({"data": build.provenance(2020)}, Path("models/m.h5"), clean)
    assert str(error.value) == (
        f"{clean.path}: built by generator v{faces.GENERATOR_VERSION} seed 11, but models/m.h5 was trained on "
        f"generator v{faces.GENERATOR_VERSION} seed 2020; rebuild the data with `make data`")


def test_data_not_from_the_generator_is_refused_for_a_benchmark_model(tmp_path: Path) -> None:
    from fineprune.data import save_dataset

    save_dataset(tmp_path / "real.h5", np.zeros((2, 55, 47, 3)), np.zeros(2))
    with pytest.raises(InputError, match="not built by the project's generator, but m.h5 was trained on"):
        check_same_data({"data": build.provenance()}, Path("m.h5"), load_dataset(tmp_path / "real.h5"))


def test_the_clean_nets_differ_only_in_seed() -> None:
    recipes = [attacks.recipe_for(spec.name) for spec in build.CLEAN_NETS]
    assert [spec.triggers for spec in build.CLEAN_NETS] == [{}, {}, {}]
    assert [spec.model_file for spec in build.CLEAN_NETS] == [
        "clean_net.h5", "clean_seed_1_net.h5", "clean_seed_2_net.h5"]
    assert [recipe.seed for recipe in recipes] == [0, 1, 2]
    assert {replace(recipe, seed=0) for recipe in recipes} == {attacks.BADNET_RECIPE}


def test_the_multi_trigger_net_has_the_real_nets_mapping() -> None:
    multi = next(spec for spec in build.BADNETS if spec.name == "multi_trigger_multi_target")
    assert multi.triggers == {"eyebrows": 5, "lipstick": 1, "sunglasses": 8}


def test_the_attack_zoo_trains_with_the_benchmark_recipe_plus_each_attacks_poisoning_rule() -> None:
    assert [spec.name for spec in build.ZOO_BADNETS] == ["blended", "wanet", "trojannn", "bpp", "low_frequency",
                                                         "adap_blend"]
    for spec in build.ZOO_BADNETS:
        (trigger, target), = spec.triggers.items()
        assert spec.poisoned_files == (f"{trigger}_poisoned_data.h5",) and target < 9  # a miniature build has it
        recipe = attacks.recipe_for(spec.name)
        assert replace(recipe, poison_rate=attacks.BADNET_RECIPE.poison_rate, cover_rate=0.0) == attacks.BADNET_RECIPE
        assert build.find_net(spec.name, "--only") == spec
    assert attacks.recipe_for("wanet").cover_rate == 2 * attacks.recipe_for("wanet").poison_rate  # its cross ratio
    assert attacks.recipe_for("adap_blend").cover_rate == attacks.recipe_for("adap_blend").poison_rate
    assert attacks.recipe_for("adap_blend").poison_rate < attacks.BADNET_RECIPE.poison_rate
