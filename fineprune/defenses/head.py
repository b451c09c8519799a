"""`head`: re-fit only the output layer, in closed form, on the frozen features of clean images.

Everything below the output layer is kept; the output layer's weights are replaced by a linear
discriminant analysis of the penultimate features (the values that enter the output layer) of the
clean training part: class means and one pooled within-class covariance, shrunk towards a scaled
identity (Ledoit-Wolf's estimate of the shrinkage unless `shrinkage` is given), as scikit-learn's
`LinearDiscriminantAnalysis(solver="lsqr")` computes them. A backdoor that lives in how the output
layer reads the features is dropped; one carried by the features themselves stays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tf_keras
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from fineprune.data import LabelledImages
from fineprune.defenses.core import RepairResult, RepairRun, RepairSettings, copy_model, option
from fineprune.defenses.registry import register
from fineprune.errors import InputError
from fineprune.models import LoadedModel, penultimate_features

UNSEEN_CLASS_MARGIN = 1e3  # how far below every fitted class's bias an unseen class's bias is put


@dataclass(frozen=True)
class HeadSettings(RepairSettings):
    """`head`: the shrinkage of the pooled covariance."""

    method: str = "head"
    shrinkage: float | None = option(None, "shrinkage of the pooled feature covariance towards a scaled "
                                     "identity, in [0, 1]; Ledoit-Wolf's estimate if not given", "A", kind=float,
                                     low=0, high=1)


@register("head", "re-fit the output layer in closed form on the frozen features of the clean data "
          "(shrunk linear discriminant analysis)", HeadSettings, order=10)
def refit_head(badnet: LoadedModel, clean: LabelledImages, settings: HeadSettings, verbose: int = 1) -> RepairResult:
    """Replace the output layer's weights by a shrunk LDA of the clean features; the BadNet is untouched.
    Classes with no clean training image can no longer be predicted."""
    run = RepairRun.start(badnet, clean, settings)
    model = copy_model(badnet.model)
    head = output_layer(model)
    features = penultimate_features(model, run.x_train, badnet.input_scale)
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto" if settings.shrinkage is None else settings.shrinkage)
    lda.fit(features.astype(np.float64), run.y_train)
    fitted = lda.classes_.astype(np.int64)
    coef, intercept = lda.coef_, lda.intercept_
    if len(fitted) == 2:  # scikit-learn folds a two-class problem into one discriminant
        coef, intercept = np.stack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    kernel = np.zeros(head.kernel.shape, np.float32)
    bias = np.full(head.units, intercept.min() - UNSEEN_CLASS_MARGIN, np.float32)
    kernel[:, fitted] = coef.T
    bias[fitted] = intercept
    head.set_weights([kernel, bias])
    return run.finish(model, 0, removed="the output layer's weights (re-fitted)", details={"classes_fitted": len(fitted), "feature_dimension": features.shape[1]})


def output_layer(model: tf_keras.Model) -> tf_keras.layers.Dense:
    """The model's last layer, which must be a Dense layer with a bias."""
    head = model.layers[-1]
    if not isinstance(head, tf_keras.layers.Dense) or not head.use_bias:
        raise InputError(f"the last layer {head.name!r} is a {type(head).__name__}, not a Dense layer with a bias; "
                         "--method head re-fits such a layer")
    return head
