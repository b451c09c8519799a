"""Tests for fineprune.detector: the repaired detector G (agreed class, else N)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tf_keras
from tf_keras import layers

from fineprune.detector import Predictions, RepairedDetector, combine
from fineprune.errors import InputError
from fineprune.models import LoadedModel, build_challenge_model

# --- combine -------------------------------------------------------------------------------------


def test_combine_keeps_agreed_classes_and_flags_the_rest():
    original = np.array([0, 1, 2, 3, 1, 0])
    repaired = np.array([0, 2, 2, 0, 1, 3])
    assert combine(original, repaired, 4).tolist() == [0, 4, 2, 4, 1, 4]


def test_combine_all_agree_and_all_disagree():
    same = np.array([5, 0, 9])
    assert combine(same, same.copy(), 10).tolist() == [5, 0, 9]
    assert combine(np.array([1, 1]), np.array([2, 0]), 7).tolist() == [7, 7]


# --- tiny models with known answers --------------------------------------------------------------
#
# A "colour" classifier on 1x1 images: class k is the channel set by the weights. With zero biases,
# a pure red, green or blue pixel goes to whichever class that channel points at.

def colour_model(channel_to_class: list[int], num_classes: int = 3, image_shape=(1, 1, 3)) -> tf_keras.Model:
    inputs = layers.Input(image_shape)
    outputs = layers.Dense(num_classes, activation="softmax", name="output")(layers.Flatten()(inputs))
    model = tf_keras.Model(inputs, outputs)
    kernel = np.zeros((int(np.prod(image_shape)), num_classes), dtype=np.float32)
    for channel, cls in enumerate(channel_to_class):
        kernel[channel, cls] = 1.0
    model.get_layer("output").set_weights([kernel, np.zeros(num_classes, dtype=np.float32)])
    return model


def loaded(model: tf_keras.Model, name: str) -> LoadedModel:
    return LoadedModel(path=Path(name), model=model, input_scale="unit", input_scale_source="default")


RED, GREEN, BLUE = [255.0, 0.0, 0.0], [0.0, 255.0, 0.0], [0.0, 0.0, 255.0]


def pixels(*colours: list[float]) -> np.ndarray:
    return np.array(colours, dtype=np.float32).reshape(len(colours), 1, 1, 3)


def test_predict_gives_agreed_class_else_backdoor_class():
    badnet = loaded(colour_model([0, 1, 2]), "bd_net.h5")
    repaired = loaded(colour_model([0, 1, 0]), "repaired.h5")  # the repair moved blue to class 0
    detector = RepairedDetector(badnet, repaired)
    assert detector.backdoor_class == 3

    predicted = detector.predict(pixels(RED, GREEN, BLUE, BLUE, RED))

    assert isinstance(predicted, Predictions)
    assert predicted.original.tolist() == [0, 1, 2, 2, 0]
    assert predicted.repaired.tolist() == [0, 1, 0, 0, 0]
    assert predicted.detector.tolist() == [0, 1, 3, 3, 0]


def test_detector_with_identical_models_never_flags():
    detector = RepairedDetector(loaded(colour_model([2, 0, 1]), "a.h5"), loaded(colour_model([2, 0, 1]), "b.h5"))
    predicted = detector.predict(pixels(RED, GREEN, BLUE))
    assert predicted.detector.tolist() == [2, 0, 1]
    assert predicted.detector.tolist() == predicted.original.tolist() == predicted.repaired.tolist()


def test_backdoor_class_is_the_badnets_class_count():
    detector = RepairedDetector(loaded(colour_model([0, 1, 2], 6), "a.h5"), loaded(colour_model([0, 1, 2], 6), "b.h5"))
    assert detector.backdoor_class == 6
    assert detector.predict(pixels(GREEN)).detector.tolist() == [1]


def test_challenge_models_that_disagree_are_flagged():
    """The real architecture: a repaired net whose output bias forces class 2 disagrees except on 2."""
    badnet_model = build_challenge_model(num_classes=3)
    repaired_model = build_challenge_model(num_classes=3)
    repaired_model.set_weights(badnet_model.get_weights())
    kernel, _ = badnet_model.get_layer("output").get_weights()
    badnet_model.get_layer("output").set_weights([np.zeros_like(kernel), np.array([0.0, 50.0, 0.0], np.float32)])
    repaired_model.get_layer("output").set_weights([np.zeros_like(kernel), np.array([0.0, 0.0, 50.0], np.float32)])
    detector = RepairedDetector(loaded(badnet_model, "bd_net.h5"), loaded(repaired_model, "repaired.h5"))

    x = np.random.default_rng(0).uniform(0, 255, (4, 55, 47, 3)).astype(np.float32)
    predicted = detector.predict(x)

    assert predicted.original.tolist() == [1, 1, 1, 1]
    assert predicted.repaired.tolist() == [2, 2, 2, 2]
    assert predicted.detector.tolist() == [3, 3, 3, 3]


# --- models that do not fit together ---------------------------------------------------------------


@pytest.mark.parametrize(
    "badnet_shape, repaired_shape, expected",
    [
        (dict(num_classes=3), dict(num_classes=4), ["4 classes", "models/bd_net.h5 has 3"]),
        (dict(image_shape=(1, 1, 3)), dict(image_shape=(2, 2, 3)), ["(2, 2, 3)", "(1, 1, 3)"]),
    ],
    ids=["class-counts", "input-shapes"],
)
def test_models_that_do_not_fit_raise_input_error_naming_the_repaired_file(badnet_shape, repaired_shape, expected):
    badnet = loaded(colour_model([0, 1, 2], **badnet_shape), "models/bd_net.h5")
    repaired = loaded(colour_model([0, 1, 2], **repaired_shape), "models/repaired_net.h5")
    with pytest.raises(InputError) as caught:
        RepairedDetector(badnet, repaired)
    message = str(caught.value)
    assert message.startswith("models/repaired_net.h5: ")
    assert all(part in message for part in expected)
    assert "\n" not in message
