"""What every repair method shares: its settings' common part, the seeded held-out split, the
fine-tuning loop and the record of what a repair measured.

A repair starts from a BadNet and clean data only. Part of the clean data is held out (a seeded
shuffle, not Keras's "last 10%", because the challenge files are ordered by identity) so that the
repair can report clean accuracy before and after on images it never trained on.

Settings are frozen dataclasses checked up front (`fineprune.settings`). A field that `prune.py`
exposes as an option carries its help text (see `option`); `prune.py` builds its command line from
them.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from fineprune import __version__
from fineprune.data import LabelledImages
from fineprune.errors import InputError
from fineprune.files import strict_json
from fineprune.metrics import accuracy_pct
from fineprune.models import LoadedModel, predict_classes, scale_inputs
from fineprune.progress import Progress, silent
from fineprune.defenses.strength import ACCURACY_BUDGET, ACCURACY_BUDGET_HELP, StrengthChoice, strongest_within_budget
from fineprune.settings import HeldOutSettings, check_bounds, option, split_heldout  # noqa: F401 (re-exported)

DISTILLATION_HELP = ("share of each training image's target that is the BadNet's own output on the clean image "
                     "(knowledge distillation), the rest its label, in [0, 1]")
VALIDATION_BATCH = 256  # held-out images per batch when Keras measures them after each epoch
# A repair that costs more held-out accuracy than this has broken the net rather than repaired it:
# prune.py and `RepairedNet.save` refuse to write it unless given a larger limit. The original
# recipe (`magnitude`) costs up to 40 points on the benchmark's nets, and is saved.
MAX_ACCURACY_DROP = 50.0
MAX_ACCURACY_DROP_HELP = ("refuse to save a repair whose held-out clean accuracy fell more than this many points "
                          "below the BadNet's (default: %(default)s; 100 saves any)")


@dataclass(frozen=True)
class RepairSettings(HeldOutSettings):
    """What every repair shares: its method's name, the held-out split and the seed."""

    method: str = ""


@dataclass(frozen=True)
class FineTuningSettings(RepairSettings):
    """A repair that fine-tunes on the clean training part with Adam at a given rate."""

    epochs: int = option(2, "fine-tuning epochs", "N", low=1)
    batch_size: int = option(10, "fine-tuning batch size", "N", low=1)
    learning_rate: float = option(1e-3, "Adam learning rate", "LR", low=0, low_open=True)


# The fine-tuning ladder, strongest first. Whole-net fine-tuning of these nets (no normalisation
# layers, about 8 clean images a class) is fragile: Adam at 1e-3 costs a clean net 20 held-out
# points, 3e-4 about 4, 1e-4 about 1.5 (2 epochs, batch 64); SGD at 0.01 with momentum, 60.
LEARNING_RATES = (1e-3, 3e-4, 1e-4, 3e-5, 1e-5)


@dataclass(frozen=True)
class TunedFineTuningSettings(FineTuningSettings):
    """Fine-tuning whose learning rate, unless given, the strength rule chooses: the strongest of
    `LEARNING_RATES` whose held-out accuracy stays within `accuracy_budget` points."""

    batch_size: int = option(64, "fine-tuning batch size", "N", low=1)
    learning_rate: float | None = option(None, "Adam learning rate", "LR", kind=float, low=0, low_open=True,
                                         unset="the strongest of " + ", ".join(f"{r:g}" for r in LEARNING_RATES)
                                         + " within --accuracy-budget")
    accuracy_budget: float = option(ACCURACY_BUDGET, ACCURACY_BUDGET_HELP, "POINTS", low=0)


@dataclass
class RepairResult:
    """A repaired net and what the repair measured on held-out clean data."""

    model: tf_keras.Model
    heldout_accuracy_before_pct: float
    heldout_accuracy_after_pct: float
    train_images: int
    heldout_images: int
    fine_tuning_steps: int
    seconds: float
    removed: str = "nothing"  # what the repair took out or replaced, in words, e.g. "25/60 conv_3 channels"
    sparsity: dict[str, float] = field(default_factory=dict)  # fraction of zero kernel weights per pruned layer
    pruned_channels: dict[str, list[int]] = field(default_factory=dict)  # per layer, in pruning order
    details: dict[str, Any] = field(default_factory=dict)  # what else a method found, e.g. a suspected target

    def summary(self) -> dict[str, object]:
        """Everything but the model, for recording in the repaired file and in reports: strict JSON,
        a value not measured (NaN) given as None."""
        return strict_json({key: value for key, value in asdict(self).items() if key != "model"})


def check_accuracy_kept(result: RepairResult, method: str, max_accuracy_drop: float) -> None:
    """InputError, in one line, if the repair's held-out accuracy fell more than `max_accuracy_drop`
    points: a collapsed repair is not saved unless the caller allows that much."""
    drop = result.heldout_accuracy_before_pct - result.heldout_accuracy_after_pct
    if drop > max_accuracy_drop:
        raise InputError(f"--method {method} took held-out clean accuracy from {result.heldout_accuracy_before_pct:.2f}% "
                         f"to {result.heldout_accuracy_after_pct:.2f}% ({drop:.1f} points, more than "
                         f"--max-accuracy-drop {max_accuracy_drop:g}); nothing was saved (a larger "
                         "--max-accuracy-drop saves it)")


def repair_record(badnet: LoadedModel, clean_data: str, settings: RepairSettings, result: RepairResult,
                  ) -> dict[str, Any]:
    """What a repaired net's file records of how it was made (`models.save_model`'s metadata): its
    input scale, the data its BadNet was trained on, the BadNet, the clean data, the method and its
    settings, and what the repair measured."""
    return {
        "created_by": f"fineprune {__version__}",
        "input_scale": badnet.input_scale,
        **({"data": badnet.metadata["data"]} if "data" in badnet.metadata else {}),
        "source_model": str(badnet.path),
        "clean_data": str(clean_data),
        "method": settings.method,
        "settings": asdict(settings),
        "result": result.summary(),
    }


@dataclass
class RepairRun:
    """One repair in progress: the seeded split of the clean data, the clock, and the BadNet's
    held-out accuracy. Every method starts with `RepairRun.start` and ends with `finish`."""

    badnet: LoadedModel
    clean: LabelledImages
    train: np.ndarray  # indices into clean
    heldout: np.ndarray
    accuracy_before_pct: float
    started: float
    seed: int

    @classmethod
    def start(cls, badnet: LoadedModel, clean: LabelledImages, settings: RepairSettings) -> RepairRun:
        """Split the clean data into train / held out by `settings.seed` and start the clock (every
        registered method runs seeded, see `registry.register`)."""
        started = time.perf_counter()
        train, heldout = split_heldout(len(clean), settings.validation_split, settings.seed)
        before = accuracy_pct(badnet.predict_classes(clean.x[heldout]), clean.y[heldout])
        return cls(badnet, clean, train, heldout, before, started, settings.seed)

    @property
    def x_train(self) -> np.ndarray:
        return self.clean.x[self.train]

    @property
    def y_train(self) -> np.ndarray:
        return self.clean.y[self.train]

    def training_sample(self, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """`count` images of the training part (all, if fewer) drawn by `rng`, scaled for the net as
        float32, and their labels: what the methods that unlearn on part of the data work on."""
        chosen = self.train[rng.choice(len(self.train), min(count, len(self.train)), replace=False)]
        return np.asarray(scale_inputs(self.clean.x[chosen], self.badnet.input_scale), np.float32), self.clean.y[chosen]

    def heldout_accuracy_pct(self, model: tf_keras.Model) -> float:
        """`model`'s accuracy on the held-out clean images."""
        return accuracy_pct(predict_classes(model, self.clean.x[self.heldout], self.badnet.input_scale),
                            self.clean.y[self.heldout])

    def fine_tune(self, model: tf_keras.Model, settings: FineTuningSettings,
                  callbacks: Sequence[tf_keras.callbacks.Callback] = (), progress: Progress = silent,
                  x: np.ndarray | None = None, y: np.ndarray | None = None) -> int:
        """Fine-tune `model` in place with Adam and cross-entropy; returns the number of steps.

        By default on the clean training part with its labels; a method may pass its own `x`
        (pixels 0..255) and `y`: class labels, or one row of target probabilities per image.
        The images are gathered and scaled one batch at a time (`image_batches`), so fine-tuning
        adds no copy of the data to the one the caller holds. `progress` gets a line per epoch."""
        if x is None:
            x, indices, y = self.clean.x, self.train, self.clean.y[self.train]
        else:
            indices = np.arange(len(x))
        loss = "sparse_categorical_crossentropy" if y.ndim == 1 else "categorical_crossentropy"
        model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate=settings.learning_rate), loss=loss,
                      metrics=["accuracy"])
        scale = self.badnet.input_scale
        heldout_y = self.clean.y[self.heldout]
        if y.ndim > 1:
            heldout_y = tf_keras.utils.to_categorical(heldout_y, y.shape[1])
        model.fit(
            image_batches(x, indices, y, settings.batch_size, scale, shuffle_seed=self.seed),
            epochs=settings.epochs,
            validation_data=image_batches(self.clean.x, self.heldout, heldout_y, VALIDATION_BATCH, scale),
            callbacks=[*callbacks, EpochLines(progress, settings.epochs)], verbose=0,
        )
        return fine_tuning_steps(len(indices), settings)

    def tuned_fine_tune(self, start: Callable[[], tf_keras.Model], settings: TunedFineTuningSettings,
                        callbacks: Sequence[tf_keras.callbacks.Callback] = (), progress: Progress = silent,
                        x: np.ndarray | None = None, y: np.ndarray | None = None,
                        ) -> tuple[tf_keras.Model, int, StrengthChoice]:
        """`fine_tune` a fresh `start()` at the given learning rate, or, if none is given, at the
        strongest of `LEARNING_RATES` within the accuracy budget (the strength rule, on held-out
        clean accuracy; fewer runs than the ladder's length, as it searches by halving). Returns the
        net, its steps and the record of the choice."""
        def tuned(rate: float) -> tf_keras.Model:
            model = start()
            self.fine_tune(model, replace(settings, learning_rate=rate), callbacks, progress, x, y)
            return model

        steps = fine_tuning_steps(len(self.train) if x is None else len(x), settings)
        model, choice = strongest_within_budget("learning_rate", LEARNING_RATES, tuned, self.heldout_accuracy_pct,
                                                self.accuracy_before_pct, settings.accuracy_budget,
                                                lambda line: progress(f"fine-tuning: {line}"), settings.learning_rate)
        return model, steps, choice

    def finish(self, model: tf_keras.Model, steps: int, **found: Any) -> RepairResult:
        """The record of the repair: held-out accuracy of `model`, sizes, steps, time and what the
        method found (`sparsity`, `pruned_channels`, `details`)."""
        return RepairResult(
            model=model,
            heldout_accuracy_before_pct=self.accuracy_before_pct,
            heldout_accuracy_after_pct=self.heldout_accuracy_pct(model),
            train_images=len(self.train),
            heldout_images=len(self.heldout),
            fine_tuning_steps=steps,
            seconds=time.perf_counter() - self.started,
            **found,
        )


class EpochLines(tf_keras.callbacks.Callback):
    """Keras callback: one progress line per fine-tuning epoch, with its loss and accuracies."""

    def __init__(self, progress: Progress, epochs: int) -> None:
        super().__init__()
        self.progress, self.epochs = progress, epochs

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs or {}
        self.progress(f"fine-tuning epoch {epoch + 1}/{self.epochs}: loss {logs.get('loss', math.nan):.3f}, "
                      f"accuracy {100 * logs.get('accuracy', math.nan):.1f}%, held-out accuracy "
                      f"{100 * logs.get('val_accuracy', math.nan):.1f}%")


def image_batches(x: np.ndarray, indices: np.ndarray, y: np.ndarray, batch_size: int, input_scale: str,
                  shuffle_seed: int | None = None) -> tf.data.Dataset:
    """Batches of the images `x[indices]` (pixels 0..255) scaled for the model, with their targets
    `y` (one per index), gathered from `x` one batch at a time so that no copy of the selected images
    is ever made whole. With `shuffle_seed`, every pass (epoch) takes a new seeded order."""
    rng = np.random.default_rng(shuffle_seed)

    def generate() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = rng.permutation(len(indices)) if shuffle_seed is not None else np.arange(len(indices))
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            yield np.asarray(scale_inputs(x[indices[chosen]], input_scale), np.float32), y[chosen]

    signature = (tf.TensorSpec((None, *x.shape[1:]), tf.float32), tf.TensorSpec((None, *y.shape[1:]), y.dtype))
    batches = tf.data.Dataset.from_generator(generate, output_signature=signature)
    return batches.apply(tf.data.experimental.assert_cardinality(math.ceil(len(indices) / batch_size))).prefetch(2)


def fine_tuning_steps(train_images: int, settings: FineTuningSettings) -> int:
    """How many optimizer steps `settings.epochs` epochs over `train_images` images take."""
    return math.ceil(train_images / settings.batch_size) * settings.epochs
