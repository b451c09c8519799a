"""`head`: re-fit only the output layer on the frozen features of clean images.

Everything below the output layer is kept; only the weights that read the penultimate features
(the values that enter the output layer) are fitted again, on the clean training part:

- `probe` (the default): softmax regression, a regularised linear probe. It starts from the
  BadNet's own output layer and takes `probe_steps` full-batch Adam steps on cross-entropy with
  the true labels plus `weight_decay` times the squared kernel. Nothing in the clean data asks
  for the backdoor's reading of the features, so the steps and the decay wear it away, while
  the start keeps what the BadNet learnt about clean faces from far more images than the
  defender holds. With `distillation` > 0 each image's target blends its label with the
  BadNet's own output on it (knowledge distillation): G then agrees with the BadNet more often
  on clean faces, but the BadNet's outputs on clean faces carry part of the backdoor's reading
  back in.
- `lda`: in closed form, a linear discriminant analysis: class means and one pooled within-class
  covariance, shrunk towards a scaled identity (Ledoit-Wolf's estimate unless `shrinkage` is
  given), as scikit-learn's `LinearDiscriminantAnalysis(solver="lsqr")` computes them. It
  discards the BadNet's output layer entirely.

Either way a backdoor that lives in how the output layer reads the features is dropped; one
carried by the features themselves stays. A class with no clean training image cannot be fitted
and is never predicted afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from fineprune.data import LabelledImages
from fineprune.defenses.core import DISTILLATION_HELP, RepairResult, RepairRun, RepairSettings, option
from fineprune.defenses.output_fit import WEIGHT_DECAY_HELP, fit_output_weights
from fineprune.defenses.registry import register
from fineprune.errors import InputError
from fineprune.models import LoadedModel, copy_model, output_layer, penultimate_features
from fineprune.progress import Progress, silent

FITS = ("probe", "lda")
UNSEEN_CLASS_MARGIN = 1e3  # how far below every fitted class's bias an unseen class's bias is put


@dataclass(frozen=True)
class HeadSettings(RepairSettings):
    """`head`: how the output layer is re-fitted, and that fit's settings."""

    method: str = "head"
    fit: str = option("probe", "how the output layer is re-fitted: probe (softmax regression from the BadNet's "
                      "own output layer, with weight decay) or lda (closed-form shrunk linear discriminant)", "KIND")
    weight_decay: float = option(1e-4, WEIGHT_DECAY_HELP, "L2", low=0)
    probe_steps: int = option(400, "probe: full-batch Adam steps", "N", low=1)
    probe_learning_rate: float = option(0.01, "probe: Adam learning rate", "LR", low=0, low_open=True)
    distillation: float = option(0.0, DISTILLATION_HELP, "W", low=0, high=1)
    shrinkage: float | None = option(None, "lda: shrinkage of the pooled feature covariance towards a scaled "
                                     "identity, in [0, 1]; Ledoit-Wolf's estimate if not given", "A", kind=float,
                                     low=0, high=1)

    def __post_init__(self) -> None:
        if self.fit not in FITS:
            raise InputError(f"--fit {self.fit} is not one of {', '.join(FITS)}")
        if self.shrinkage is not None and self.fit != "lda":
            raise InputError(f"--shrinkage applies to --fit lda, not --fit {self.fit}")
        super().__post_init__()


@register("head", "re-fit the output layer on the frozen features of the clean data (a regularised "
          "linear probe from the BadNet's own output layer, or shrunk linear discriminant analysis)",
          HeadSettings, order=10)
def refit_head(badnet: LoadedModel, clean: LabelledImages, settings: HeadSettings,
               progress: Progress = silent) -> RepairResult:
    """Replace the output layer's weights by a fit on the clean features; the BadNet is untouched."""
    run = RepairRun.start(badnet, clean, settings)
    model = copy_model(badnet.model)
    head = output_layer(model)
    features = penultimate_features(model, run.x_train, badnet.input_scale)
    fitted = np.unique(run.y_train)
    if settings.fit == "lda":
        kernel, bias = lda_head(features, run.y_train, head.units, settings.shrinkage)
        steps = 0
    else:
        kernel, bias = probe_head(features, run.y_train, *head.get_weights(), settings, progress)
        steps = settings.probe_steps
    unseen = np.setdiff1d(np.arange(head.units), fitted)
    bias[unseen] = bias[fitted].min() - UNSEEN_CLASS_MARGIN
    head.set_weights([kernel, bias])
    return run.finish(model, steps, removed=f"the output layer's weights (re-fitted: {settings.fit})",
                      details={"classes_fitted": len(fitted), "feature_dimension": features.shape[1]})


def lda_head(features: np.ndarray, labels: np.ndarray, classes: int,
             shrinkage: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The output kernel and bias of a shrunk linear discriminant analysis (zero for unseen classes)."""
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto" if shrinkage is None else shrinkage)
    lda.fit(features.astype(np.float64), labels)
    fitted = lda.classes_.astype(np.int64)
    coef, intercept = lda.coef_, lda.intercept_
    if len(fitted) == 2:  # scikit-learn folds a two-class problem into one discriminant
        coef, intercept = np.stack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    kernel = np.zeros((features.shape[1], classes), np.float32)
    bias = np.zeros(classes, np.float32)
    kernel[:, fitted] = coef.T
    bias[fitted] = intercept
    return kernel, bias


def probe_head(features: np.ndarray, labels: np.ndarray, kernel: np.ndarray, bias: np.ndarray,
               settings: HeadSettings, progress: Progress = silent) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression of `labels` on `features`, from the given kernel and bias (the BadNet's):
    full-batch Adam on mean cross-entropy + `weight_decay` * |kernel|^2. The target of each image
    is its label, blended by `distillation` with what the starting layer itself outputs on it."""
    targets: np.ndarray = labels
    if settings.distillation:
        start = tf.nn.softmax(tf.matmul(tf.constant(features, tf.float32), kernel) + bias).numpy()
        targets = (1 - settings.distillation) * np.eye(kernel.shape[1], dtype=np.float32)[labels]
        targets += settings.distillation * start
    return fit_output_weights(features, targets, kernel, bias, settings.probe_steps, settings.probe_learning_rate,
                              settings.weight_decay, label="head: probe", progress=progress)
