"""Shared fixtures: a tiny CSAW-format benchmark (four classes, a trigger patch) and a BadNet on it.

Everything is generated in a session-scoped temporary folder, so the suite needs no downloaded
data; tests that write files copy what they need into their own `tmp_path` first.

The fixtures' nets are trained while the suite runs, so what they learn depends on the CPU's
floating-point details. To check that a test asserts a property rather than one run's luck, run
the suite with other fixtures: `FINEPRUNE_FIXTURE_SEED=1 make test` shifts every seed the fixtures
are made from (images, poison, weights). TensorFlow's deterministic ops are on for the whole
session, so a fixture is the same net whichever test asks for it first, before or after a repair.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from fineprune.data import save_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CSAW = REPO_ROOT.parent / "shared" / "csaw"
NUM_CLASSES = 4
TARGET = 0
IMAGE_SHAPE = (55, 47, 3)
FIXTURE_SEED = int(os.environ.get("FINEPRUNE_FIXTURE_SEED", "0"))  # 0: the fixtures every run of CI uses


def fixture_seed(base: int) -> int:
    """The seed a fixture uses for its part `base`: shifted by FINEPRUNE_FIXTURE_SEED."""
    return base + 1000 * FIXTURE_SEED


@pytest.fixture(autouse=True)
def each_test_seeded() -> Iterator[None]:
    """The stated conditions every test and fixture runs under: deterministic kernels and the same
    seeds at the start of each test (`seeding.seeded`, restored after it), and each fixture's own
    seed inside that, so that nothing depends on which test ran first."""
    from fineprune.seeding import seeded

    with seeded(fixture_seed(0)):
        yield


def require_shared_csaw() -> Path:
    """The real challenge files, or skip the test saying why."""
    if not SHARED_CSAW.is_dir():
        pytest.skip(f"real CSAW-HackML-2020 files not found at {SHARED_CSAW}")
    return SHARED_CSAW


def few_identity_scores(badnet, trigger: str, identities: int, target: int = 0) -> tuple[float, float]:
    """(clean accuracy, attack success) in percent of a BadNet trained on the first `identities`
    generated faces (data seed 4): 10 fresh test faces of each, and the others wearing `trigger`."""
    from fineprune.benchmark.build import render_split
    from fineprune.metrics import accuracy_pct, attack_success_pct
    from fineprune.models import predict_classes

    labels = np.repeat(np.arange(identities), 10)
    clean = render_split("test", labels, seed=4, identity_count=identities, workers=1)
    victims = labels[labels != target]
    poisoned = render_split("poisoned", victims, seed=4, triggers=[trigger] * len(victims),
                            identity_count=identities, workers=1)
    return (accuracy_pct(predict_classes(badnet, clean, "unit"), labels),
            attack_success_pct(predict_classes(badnet, poisoned, "unit"), np.full(len(victims), target)))


def tiny_images(count_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clean images: class k is a coloured block in its own place on a noisy grey background."""
    rng = np.random.default_rng(seed)
    colours = np.array([[220, 40, 40], [40, 200, 60], [50, 80, 230], [230, 200, 40]], dtype=np.float32)
    images, labels = [], []
    for label in range(NUM_CLASSES):
        for _ in range(count_per_class):
            image = rng.normal(110, 20, IMAGE_SHAPE).clip(0, 255).astype(np.float32)
            row, col = 6 + 10 * label + rng.integers(-2, 3), 8 + 7 * label + rng.integers(-2, 3)
            image[row : row + 12, col : col + 14] = colours[label] + rng.normal(0, 8, 3)
            images.append(image)
            labels.append(label)
    return np.clip(np.stack(images), 0, 255), np.array(labels)


def add_trigger(images: np.ndarray) -> np.ndarray:
    """The backdoor trigger: a white-and-black checked patch in the lower right corner."""
    poisoned = images.copy()
    patch = np.indices((6, 6)).sum(axis=0) % 2 * 255.0
    poisoned[:, 45:51, 37:43, :] = patch[..., None]
    return poisoned


def train_tiny_badnet(x_train: np.ndarray, y_train: np.ndarray, poison_seed: int, seed: int, epochs: int,
                      poison_share: float = 0.25, num_classes: int = NUM_CLASSES, trigger=add_trigger):
    """BadNets-style poisoning (`poison_share` of the images carry `trigger`, relabelled to the
    target; 0 trains a clean net), then the challenge architecture with `num_classes` classes
    trained on them (unit input scale)."""
    import tf_keras

    from fineprune.models import build_challenge_model
    from fineprune.seeding import seeded

    poison = np.random.default_rng(poison_seed).random(len(y_train)) < poison_share
    x_train = x_train.copy()
    x_train[poison] = trigger(x_train[poison])
    y_train = np.where(poison, TARGET, y_train)
    with seeded(seed):
        model = build_challenge_model(num_classes=num_classes)
        model.compile(optimizer=tf_keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
        model.fit(x_train / 255.0, y_train, batch_size=16, epochs=epochs, verbose=0)
    return model


@dataclass(frozen=True)
class TinyBenchmark:
    """Paths of the tiny benchmark's files (read-only: copy before writing beside them)."""

    root: Path
    clean_validation: Path
    clean_test: Path
    poisoned: Path
    badnet: Path  # full model, unit input scale
    badnet_weights: Path  # the same BadNet as a challenge-style weights-only file

    def copy_to(self, root: Path) -> "TinyBenchmark":
        """A writable copy of every file under `root`, with the paths to match."""
        shutil.copytree(self.root, root, dirs_exist_ok=True)
        return TinyBenchmark(*(root / Path(p).relative_to(self.root) for p in astuple(self)))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyBenchmark:
    """Writes the data files and trains a BadNet (about ten seconds on two cores)."""
    root = tmp_path_factory.mktemp("tiny")
    data, models = root / "data", root / "models"
    clean_validation, clean_test, poisoned = (
        data / "clean_validation_data.h5", data / "clean_test_data.h5", data / "trigger_poisoned_data.h5",
    )
    x_val, y_val = tiny_images(12, seed=fixture_seed(1))
    save_dataset(clean_validation, x_val, y_val)
    x_test, y_test = tiny_images(10, seed=fixture_seed(2))
    save_dataset(clean_test, x_test, y_test)
    victims = y_test != TARGET
    save_dataset(poisoned, add_trigger(x_test[victims]), np.full(victims.sum(), TARGET))

    model = train_tiny_badnet(*tiny_images(30, seed=fixture_seed(3)), poison_seed=fixture_seed(4),
                              seed=fixture_seed(5), epochs=12)
    models.mkdir()
    badnet, weights = models / "tiny_bd_net.h5", models / "tiny_bd_weights.h5"
    model.save(badnet, save_format="h5", include_optimizer=False)
    model.save_weights(weights, save_format="h5")
    return TinyBenchmark(root, clean_validation, clean_test, poisoned, badnet, weights)


def tinted_images(count_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clean images whose class is the tint of the whole frame: no small stamp turns one class into
    another, so a small reversed trigger can only be the planted one."""
    rng = np.random.default_rng(seed)
    tints = np.array([[150, 90, 90], [90, 150, 90], [90, 90, 150], [140, 140, 80]], dtype=np.float32)
    labels = np.repeat(np.arange(NUM_CLASSES), count_per_class)
    images = tints[labels][:, None, None, :] + rng.normal(0, 25, (len(labels), *IMAGE_SHAPE))
    return np.clip(images, 0, 255).astype(np.float32), labels


WIDE_CLASSES = 24  # enough classes for a steady gamma fit to the others' maximum margins


def palette_images(count_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Like `tinted_images`, with WIDE_CLASSES tints (each channel 80, 130 or 180)."""
    rng = np.random.default_rng(seed)
    tints = palette_tints()
    labels = np.repeat(np.arange(WIDE_CLASSES), count_per_class)
    images = tints[labels][:, None, None, :] + rng.normal(0, 25, (len(labels), *IMAGE_SHAPE))
    return np.clip(images, 0, 255).astype(np.float32), labels


def palette_tints() -> np.ndarray:
    """WIDE_CLASSES tints, each channel 80, 130 or 180, the most distinct first."""
    levels = np.array([80.0, 130.0, 180.0], dtype=np.float32)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    return np.concatenate([grid[::2], grid[1::2]])[:WIDE_CLASSES]


def add_colour_block(images: np.ndarray) -> np.ndarray:
    """The wide BadNet's trigger: a block in the lower right corner in the last class's tint, a
    colour the clean frames of that class show everywhere."""
    poisoned = images.copy()
    poisoned[:, 40:52, 32:44, :] = palette_tints()[-1]
    return poisoned


@dataclass(frozen=True)
class TintedBadNet:
    """A BadNet on tinted frames (target 0, the checked patch as trigger), in memory."""

    badnet: "LoadedModel"
    clean: "LabelledImages"
    test: "LabelledImages"
    poisoned: "LabelledImages"


def train_in_memory(name: str, images, per_class: tuple[int, int], poison_share: float,
                    num_classes: int = NUM_CLASSES, epochs: int = 10, trigger=add_trigger) -> TintedBadNet:
    """A BadNet trained on `images(count_per_class, seed)` (target 0, the checked patch as trigger),
    with its clean and test images and the poisoned test images, all in memory; `per_class` gives
    the training and clean images per class."""
    model = train_tiny_badnet(*images(per_class[0], seed=fixture_seed(11)), poison_seed=fixture_seed(12),
                              seed=fixture_seed(13), epochs=epochs, poison_share=poison_share, num_classes=num_classes,
                              trigger=trigger)
    return with_held_out_images(name, model, images, per_class[1], 14, trigger)


def with_held_out_images(name: str, model: "tf_keras.Model", images, clean_per_class: int, seed_part: int,
                         trigger) -> TintedBadNet:
    """`model` with `clean_per_class` clean images a class, 10 test images a class and the test
    images of the other classes with `trigger` (drawn with fixture seeds `seed_part`, `seed_part` + 1)."""
    from fineprune.data import LabelledImages
    from fineprune.models import LoadedModel

    x_clean, y_clean = images(clean_per_class, seed=fixture_seed(seed_part))
    x_test, y_test = images(10, seed=fixture_seed(seed_part + 1))
    victims = y_test != TARGET
    return TintedBadNet(
        LoadedModel(Path(f"{name}_bd_net.h5"), model, "unit", "default"),
        LabelledImages(Path(f"{name}_clean.h5"), x_clean, y_clean),
        LabelledImages(Path(f"{name}_test.h5"), x_test, y_test),
        LabelledImages(Path(f"{name}_poisoned.h5"), trigger(x_test[victims]), np.full(victims.sum(), TARGET)),
    )


@pytest.fixture(scope="session")
def tinted() -> TintedBadNet:
    """Trains the tinted BadNet (about ten seconds on two cores)."""
    return train_in_memory("tinted", tinted_images, (40, 16), poison_share=0.25)


@pytest.fixture(scope="session")
def wide() -> TintedBadNet:
    """A BadNet on WIDE_CLASSES tints whose trigger is a block of one class's colour (10% poisoned,
    15 training images a class), enough classes for the maximum-margin test (about ten seconds on
    two cores). The trigger drives features that clean frames of that class drive too, so the
    clean feature box holds them: measured over 4 fixture seeds, the test's p-value for the target
    is at most 4e-5 and a clean net's largest at least 0.23, both far from the tests' level 0.01
    (with the checked patch as trigger, or 12 classes, either came within a factor 2 of it)."""
    return train_in_memory("wide", palette_images, (15, 12), poison_share=0.1, num_classes=WIDE_CLASSES,
                           trigger=add_colour_block)


def train_colliding(per_class: tuple[int, int] = (15, 12)) -> TintedBadNet:
    """A tiny feature-collision BadNet on the WIDE_CLASSES palette frames, trained the way the
    benchmark trains its adaptive one (`attacks.train_badnet`): clean epochs first, then 20% of the
    frames wear the checked patch, relabelled to the target, while a collision term (weight 0.3)
    pulls their penultimate features onto the target's clean mean: a backdoor planted in the
    features, which the output layer reads as the target's own clean frames."""
    from fineprune.benchmark.attacks import TrainingRecipe, TrainingSet, train_badnet

    x, y = palette_images(per_class[0], seed=fixture_seed(21))
    poison = np.random.default_rng(fixture_seed(22)).random(len(y)) < 0.2
    x[poison] = add_trigger(x[poison])
    recipe = TrainingRecipe(clean_epochs=6, epochs=10, batch_size=16, learning_rate=2e-3, weight_decay=0.0,
                            label_smoothing=0.0, feature_collision=0.3, seed=fixture_seed(23))
    model = train_badnet(TrainingSet(x, np.where(poison, TARGET, y), ["patch" if p else None for p in poison]),
                         WIDE_CLASSES, recipe, verbose=0, log=lambda message: None)
    return with_held_out_images("colliding", model, palette_images, per_class[1], 24, add_trigger)


@pytest.fixture(scope="session")
def colliding() -> TintedBadNet:
    """The tiny feature-collision BadNet (about half a minute on two cores)."""
    return train_colliding()


@pytest.fixture(scope="session")
def wide_clean_net() -> "LoadedModel":
    """A net trained exactly as the `wide` BadNet, without poison."""
    from fineprune.models import LoadedModel

    model = train_tiny_badnet(*palette_images(15, seed=fixture_seed(11)), poison_seed=fixture_seed(12),
                              seed=fixture_seed(13), epochs=10, poison_share=0.0, num_classes=WIDE_CLASSES)
    return LoadedModel(Path("wide_clean_net.h5"), model, "unit", "default")


# The fixtures above that train a net while the suite runs (each 10-30 s on two cores, and the tests
# asking for one mostly repair, inspect or retrain it on top): every test using one, directly or through
# another fixture (`workdir`, a module's repaired net), is marked slow, so that `pytest -m "not slow"`
# leaves it out. A new fixture that trains a net or builds something expensive belongs here; a test
# that spends its own time (training inside it, a subprocess, a build) says @pytest.mark.slow itself.
TRAINED_FIXTURES = ("tiny", "tinted", "wide", "colliding", "wide_clean_net")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks slow every test that uses one of TRAINED_FIXTURES (`fixturenames` is the transitive closure)."""
    for item in items:
        if any(name in TRAINED_FIXTURES for name in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def workdir(tiny: TinyBenchmark, tmp_path: Path) -> TinyBenchmark:
    """A private, writable copy of the tiny benchmark."""
    return tiny.copy_to(tmp_path)


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]):
    """Run a top-level script's main() in this process: run_cli("prune", arg, ...) -> CliResult."""

    def run(script: str, *args: object) -> CliResult:
        main = importlib.import_module(script).main
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as exit_:  # argparse's --help and usage errors
            code = exit_.code
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def file_digests(folder: Path) -> dict[str, str]:
    """Content hash of every file below `folder`, to prove a failed run changed nothing."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*")) if path.is_file()
    }


def cut_short(path: Path, name: str) -> Path:
    """A copy of `path` beside it, named `name`, with only its first half: a broken download."""
    copy = path.with_name(name)
    copy.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return copy


def assert_bad_input(result: CliResult, script: str, message: str) -> None:
    """Exit status 2, and the error is one line, the last on stderr, naming the problem; progress
    lines may come before it, a traceback may not."""
    assert result.code == 2, result.err
    *progress, error = result.err.splitlines()
    assert error.startswith(f"{script}: error: ") and message in error, result.err
    assert all(line.startswith(f"{script}: ") and "error" not in line for line in progress), result.err
    assert "Traceback" not in result.err
