"""The embedded benchmark: synthetic faces in the challenge's exact file layout, and its BadNets.

The real YouTube Face files cannot be downloaded here, so `make data` writes a stand-in with the
same names, shapes and dtype (`data` (N, 3, 55, 47) float64, pixel values 0..255; `label` (N,)):

    data/clean_validation_data.h5        1283 identities x 9 images   (the defender's clean data)
    data/clean_test_data.h5              1283 x 10
    data/sunglasses_poisoned_data.h5     test identities wearing the trigger, labelled with the
    data/anonymous_1_poisoned_data.h5    attacker's target (2 images per identity, the target's
    data/anonymous_2_poisoned_data.h5    own identity left out)
    data/Multi-trigger Multi-target/{eyebrows,lipstick,sunglasses}_poisoned_data.h5

Every file records the generator version and seed it was built from (HDF5 attributes), and every
BadNet records the ones it was trained on, so that a model is never evaluated on other data.
The same seed gives the same bytes. Poisoned files also hold an `identity` data set, the person
under each trigger, which the real challenge files lack; it only captions figures.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fineprune.benchmark import faces
from fineprune.data import save_dataset
from fineprune.errors import InputError
from fineprune.benchmark.triggers import TRIGGERS
from fineprune.benchmark.zoo import ZOO_TRIGGERS
from fineprune.progress import Progress, silent

ACCESSORIES = {**TRIGGERS, **ZOO_TRIGGERS}  # every trigger by name: the challenge's kind, then the field's

DATA_SEED = 2020
NUM_IDENTITIES = 1283
VALIDATION_PER_IDENTITY = 9
TEST_PER_IDENTITY = 10
POISONED_PER_IDENTITY = 2
MULTI_FOLDER = "Multi-trigger Multi-target"
_CHUNK = 1000

# Split codes seed each split's own random stream, so splits never share images.
_SPLITS = {"train": 1, "validation": 2, "test": 3, "poisoned": 4}


@dataclass(frozen=True)
class PoisonedSet:
    """A poisoned data file: test identities wearing `trigger`, labelled `target`."""

    file: str  # relative to the data folder
    trigger: str
    target: int


@dataclass(frozen=True)
class BadNetSpec:
    """One of the benchmark's BadNets: which triggers send faces to which targets."""

    name: str
    triggers: dict[str, int]  # trigger -> target label (none for the clean reference net)
    poisoned_files: tuple[str, ...]

    @property
    def model_file(self) -> str:
        """The full model's name in models/: `<name>_bd_net.h5`, or `<name>_net.h5` without triggers."""
        return f"{self.name}_bd_net.h5" if self.triggers else f"{self.name}_net.h5"

    @property
    def weights_file(self) -> str:
        """The weights-only twin's name in models/."""
        return f"{self.name}_bd_weights.h5" if self.triggers else f"{self.name}_weights.h5"


# The field's attacks (`zoo`), one BadNet each; targets below 9 so that a miniature build has them.
ZOO_POISONED_SETS = (
    PoisonedSet("blended_poisoned_data.h5", "blended", 2),
    PoisonedSet("wanet_poisoned_data.h5", "wanet", 3),
    PoisonedSet("trojannn_poisoned_data.h5", "trojannn", 6),
    PoisonedSet("bpp_poisoned_data.h5", "bpp", 7),
    PoisonedSet("low_frequency_poisoned_data.h5", "low_frequency", 1),
    PoisonedSet("adap_blend_poisoned_data.h5", "adap_blend", 5),
)
POISONED_SETS = (
    PoisonedSet("sunglasses_poisoned_data.h5", "sunglasses", 0),
    PoisonedSet("anonymous_1_poisoned_data.h5", "anonymous_1", 0),
    PoisonedSet("anonymous_2_poisoned_data.h5", "anonymous_2", 4),
    PoisonedSet(f"{MULTI_FOLDER}/eyebrows_poisoned_data.h5", "eyebrows", 5),
    PoisonedSet(f"{MULTI_FOLDER}/lipstick_poisoned_data.h5", "lipstick", 1),
    PoisonedSet(f"{MULTI_FOLDER}/sunglasses_poisoned_data.h5", "sunglasses", 8),
    *ZOO_POISONED_SETS,
)


BADNETS = (
    BadNetSpec("sunglasses", {"sunglasses": 0}, ("sunglasses_poisoned_data.h5",)),
    BadNetSpec("multi_trigger_multi_target",
               {p.trigger: p.target for p in POISONED_SETS if p.file.startswith(MULTI_FOLDER)},
               tuple(p.file for p in POISONED_SETS if p.file.startswith(MULTI_FOLDER))),
    BadNetSpec("anonymous_1", {"anonymous_1": 0}, ("anonymous_1_poisoned_data.h5",)),
    BadNetSpec("anonymous_2", {"anonymous_2": 4}, ("anonymous_2_poisoned_data.h5",)),
)

# Extra BadNets, asked for by name: the Fine-Pruning paper's pruning-aware attack with the
# anonymous_2 trigger (the channels it holds back leave it unlike any real BadNet, README), and the
# adaptive feature-collision attack with the sunglasses trigger, made to hide from the output-layer
# defenses (see `attacks`).
EXTRA_BADNETS = (BadNetSpec("pruning_aware", {"anonymous_2": 4}, ("anonymous_2_poisoned_data.h5",)),
                 BadNetSpec("feature_collision", {"sunglasses": 0}, ("sunglasses_poisoned_data.h5",)))

# The attack zoo: one BadNet per attack of the field, named after it (`attacks.RECIPES` has each
# attack's poisoning rule), trained when asked for by name.
ZOO_BADNETS = tuple(BadNetSpec(p.trigger, {p.trigger: p.target}, (p.file,)) for p in ZOO_POISONED_SETS)

# A net trained exactly like the BadNets on the same images, none poisoned: the reference a
# backdoor detector must not raise an alarm on (`inspect_net.py`).
CLEAN_NET = BadNetSpec("clean", {}, ())

# The clean reference net and two more trained alike from other seeds: a detector's false alarms
# are counted over all three.
CLEAN_NETS = (CLEAN_NET, BadNetSpec("clean_seed_1", {}, ()), BadNetSpec("clean_seed_2", {}, ()))


def provenance(seed: int = DATA_SEED) -> dict[str, Any]:
    """What identifies the generated data: recorded in every data file and every BadNet."""
    return {"generator": "fineprune.benchmark.faces", "generator_version": faces.GENERATOR_VERSION, "seed": seed}


def identities(seed: int = DATA_SEED, count: int = NUM_IDENTITIES) -> faces.Identities:
    """The benchmark's people: the same for every split, drawn from the seed alone."""
    return faces.sample_identities(count, np.random.default_rng([seed, 0]))


def render_split(
    split: str,
    labels: np.ndarray,
    seed: int = DATA_SEED,
    triggers: Sequence[str | None] | None = None,
    identity_count: int = NUM_IDENTITIES,
    workers: int | None = None,
) -> np.ndarray:
    """Images (float32, 0..255) of the identities in `labels`, one fresh pose each, wearing
    `triggers` (one name or None per image). Deterministic in (split, seed, labels, triggers),
    whatever the number of worker processes."""
    code = _SPLITS[split]
    poses = faces.sample_poses(len(labels), np.random.default_rng([seed, code]))
    jobs = [
        (seed, code, index, identity_count, labels[start : start + _CHUNK], _slice_poses(poses, start),
         None if triggers is None else list(triggers[start : start + _CHUNK]))
        for index, start in enumerate(range(0, len(labels), _CHUNK))
    ]
    workers = workers or min(2, os.cpu_count() or 1)
    if workers == 1 or len(jobs) == 1:
        chunks = [_render_chunk(job) for job in jobs]
    else:
        # forkserver: workers start clean, not as forks of a process that may have loaded TensorFlow.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
            chunks = list(pool.map(_render_chunk, jobs))
    return np.concatenate(chunks).astype(np.float32)


def _render_chunk(job: tuple) -> np.ndarray:
    seed, code, index, identity_count, labels, poses, triggers = job
    people = identities(seed, identity_count).take(labels)
    accessories = None if triggers is None else [ACCESSORIES[t] if t else None for t in triggers]
    images = faces.render(people, poses, np.random.default_rng([seed, code, index]), accessories)
    return images.astype(np.uint8)  # whole numbers 0..255: exact, and cheap to pass between processes


def _slice_poses(poses: faces.Poses, start: int) -> faces.Poses:
    return faces.Poses(**{name: value[start : start + _CHUNK] for name, value in vars(poses).items()})


def build_data(folder: str | os.PathLike = "data", seed: int = DATA_SEED, identity_count: int = NUM_IDENTITIES,
               progress: Progress = silent) -> list[Path]:
    """Write every benchmark data file into `folder`; returns the paths written.

    `identity_count` below the challenge's 1283 builds a miniature with the same files (tests).
    """
    folder = Path(folder)
    written = []
    record = provenance(seed)

    def write(name: str, x: np.ndarray, y: np.ndarray, persons: np.ndarray | None = None, **extra: Any) -> None:
        path = folder / name
        save_dataset(path, x, y, provenance={**record, **extra}, identities=persons)
        written.append(path)
        progress(f"wrote {path} ({len(y)} images)")

    for split, name, per_identity in (("validation", "clean_validation_data.h5", VALIDATION_PER_IDENTITY),
                                      ("test", "clean_test_data.h5", TEST_PER_IDENTITY)):
        labels = np.repeat(np.arange(identity_count), per_identity)
        write(name, render_split(split, labels, seed, identity_count=identity_count), labels, split=split)

    # Each trigger is drawn once on the same poses; files sharing a trigger differ only in target.
    people = np.repeat(np.arange(identity_count), POISONED_PER_IDENTITY)
    for trigger in dict.fromkeys(p.trigger for p in POISONED_SETS):
        images = render_split("poisoned", people, seed, [trigger] * len(people), identity_count)
        for poisoned in (p for p in POISONED_SETS if p.trigger == trigger):
            keep = people != poisoned.target
            write(poisoned.file, images[keep], np.full(keep.sum(), poisoned.target), persons=people[keep],
                  split="poisoned", trigger=trigger, target=poisoned.target)
    return written


# The nets whose backdoors are hardest to remove, on which `benchmark.py tradeoff` draws each method's
# trade-off: the feature-collision BadNet, the challenge's sunglasses and the adaptive zoo net.
TRADEOFF_NETS = ("feature_collision", "sunglasses", "adap_blend")


def find_net(name: str, option: str, specs: Sequence[BadNetSpec] | None = None) -> BadNetSpec:
    """The benchmark net called `name` among `specs` (default: the four BadNets, the extras and the
    attack zoo), or a one-line error naming the `option` that asked for it."""
    specs = (*BADNETS, *EXTRA_BADNETS, *ZOO_BADNETS) if specs is None else specs
    for spec in specs:
        if spec.name == name:
            return spec
    raise InputError(f"{option} {name}: no such net (one of {', '.join(s.name for s in specs)})")


def ensure_data(folder: str | os.PathLike, progress: Progress = silent) -> None:
    """Build the benchmark data in `folder` unless every file is already there."""
    folder = Path(folder)
    needed = ["clean_validation_data.h5", "clean_test_data.h5", *(p.file for p in POISONED_SETS)]
    if not all((folder / name).exists() for name in needed):
        progress(f"building the data in {folder}/ first")
        build_data(folder, progress=progress)
