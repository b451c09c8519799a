"""Tests for fineprune.models: the architecture, both file kinds, input scaling, metadata."""

from __future__ import annotations

import gc
import json
import weakref
from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from conftest import NUM_CLASSES, TinyBenchmark, require_shared_csaw

from fineprune import models
from fineprune.errors import InputError
from fineprune.models import (
    METADATA_ATTR,
    LoadedModel,
    build_challenge_model,
    class_predictor,
    copy_model,
    in_batches,
    layer_outputs,
    load_model,
    penultimate_features,
    predict_classes,
    read_metadata,
    save_model,
    scale_inputs,
    traced_call,
)

REAL_WEIGHTS = [
    "sunglasses_bd_weights.h5",
    "anonymous_1_bd_weights.h5",
    "anonymous_2_bd_weights.h5",
    "multi_trigger_multi_target_bd_weights.h5",
    "lab3_sunglasses_bd_weights.h5",
]
REAL_FULL_MODELS = ["lab3_pruned_2pct_net.h5", "sunglasses_repaired_net.h5"]


def test_challenge_architecture_has_the_challenge_layers_and_shapes() -> None:
    model = build_challenge_model()
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert shapes == {
        "input": (55, 47, 3),
        "conv_1": (52, 44, 20), "pool_1": (26, 22, 20),
        "conv_2": (24, 20, 40), "pool_2": (12, 10, 40),
        "conv_3": (10, 8, 60), "pool_3": (5, 4, 60),
        "flatten_1": (1200,), "fc_1": (160,),
        "conv_4": (4, 3, 80), "flatten_2": (960,), "fc_2": (160,),
        "add_1": (160,), "activation_1": (160,), "output": (1283,),
    }


@pytest.mark.parametrize("name", REAL_WEIGHTS)
def test_real_weights_only_files_load_with_classes_from_the_output_kernel(name: str) -> None:
    path = require_shared_csaw() / "weights" / name
    loaded = load_model(path)
    assert loaded.num_classes == 1283
    assert loaded.image_shape == (55, 47, 3)
    with h5py.File(path, "r") as h5:
        stored = h5["conv_3"]["conv_3"]["kernel:0"][()]
    np.testing.assert_array_equal(loaded.model.get_layer("conv_3").kernel.numpy(), stored)


@pytest.mark.parametrize("name", REAL_FULL_MODELS)
def test_real_full_models_from_later_keras_versions_load(name: str) -> None:
    loaded = load_model(require_shared_csaw() / "full_models" / name)
    assert loaded.num_classes == 1283
    assert loaded.input_scale == "unit" and loaded.input_scale_source == "default"


def test_weights_only_and_full_model_of_the_same_net_predict_alike(tiny: TinyBenchmark) -> None:
    x = np.random.default_rng(0).uniform(0, 255, (8, 55, 47, 3)).astype(np.float32)
    full, weights = load_model(tiny.badnet), load_model(tiny.badnet_weights)
    assert weights.num_classes == NUM_CLASSES
    np.testing.assert_array_equal(full.predict_classes(x), weights.predict_classes(x))


def test_saved_metadata_round_trips_and_sets_the_input_scale(tiny: TinyBenchmark, tmp_path: Path) -> None:
    out = tmp_path / "saved.h5"
    save_model(load_model(tiny.badnet).model, out, {"input_scale": "raw", "method": "magnitude"})
    assert read_metadata(out) == {"input_scale": "raw", "method": "magnitude"}
    loaded = load_model(out)
    assert (loaded.input_scale, loaded.input_scale_source) == ("raw", "file")
    assert load_model(out, input_scale="unit").input_scale == "unit"
    assert [p.name for p in tmp_path.iterdir()] == ["saved.h5"]


def test_keras_archives_load_like_hdf5_and_keep_the_record(tiny: TinyBenchmark, tmp_path: Path) -> None:
    import zipfile

    badnet = load_model(tiny.badnet)
    out = tmp_path / "saved.keras"
    save_model(badnet.model, out, {"input_scale": "raw", "method": "head"})
    assert zipfile.is_zipfile(out) and [p.name for p in tmp_path.iterdir()] == ["saved.keras"]
    assert read_metadata(out) == {"input_scale": "raw", "method": "head"}
    loaded = load_model(out)
    assert (loaded.input_scale, loaded.input_scale_source) == ("raw", "file")
    x = np.random.default_rng(2).uniform(0, 255, (4, 55, 47, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict_classes(x), predict_classes(badnet.model, x, "raw"))


def test_input_scale_falls_back_to_the_given_record(tiny: TinyBenchmark) -> None:
    loaded = load_model(tiny.badnet, fallback_scale="raw")
    assert (loaded.input_scale, loaded.input_scale_source) == ("raw", "fallback")


def test_scale_inputs_divides_only_for_unit() -> None:
    x = np.array([0.0, 127.5, 255.0], dtype=np.float32)
    np.testing.assert_allclose(scale_inputs(x, "unit"), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(scale_inputs(x, "raw"), x)


def test_predict_classes_feeds_the_scaled_pixels(tiny: TinyBenchmark) -> None:
    model = load_model(tiny.badnet).model
    x = np.random.default_rng(1).uniform(0, 255, (5, 55, 47, 3)).astype(np.float32)
    expected = np.argmax(model.predict(x / 255.0, verbose=0), axis=1)
    np.testing.assert_array_equal(predict_classes(model, x, "unit"), expected)


def test_scores_features_and_layer_outputs_match_keras(tiny: TinyBenchmark, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load_model(tiny.badnet)
    x = np.random.default_rng(3).uniform(0, 255, (7, 55, 47, 3))  # float64, as the challenge stores it
    monkeypatch.setattr(models, "PREDICT_BATCH", 3)  # batches of 3, 3 and 1
    expected = loaded.model.predict(x / 255.0, verbose=0)
    np.testing.assert_allclose(loaded.predict_scores(x), expected, rtol=1e-5, atol=1e-6)
    features = tf_keras.Model(loaded.model.input, loaded.model.layers[-1].input).predict(x / 255.0, verbose=0)
    np.testing.assert_allclose(loaded.penultimate_features(x), features, rtol=1e-5, atol=1e-5)
    assert loaded.penultimate_features(x).shape == (7, 160)
    conv = tf_keras.Model(loaded.model.input, loaded.model.get_layer("conv_3").output).predict(x, verbose=0)
    np.testing.assert_allclose(layer_outputs(loaded.model, "conv_3", x, "raw"), conv, rtol=1e-5, atol=1e-4)
    assert predict_classes(loaded.model, x[:0], "unit").shape == (0,)


def test_in_batches_gives_float32_batches_of_the_set_size() -> None:
    batches = list(in_batches(np.arange(10, dtype=np.float64).reshape(5, 2), batch_size=2))
    assert [tuple(batch.shape) for batch in batches] == [(2, 2), (2, 2), (1, 2)]
    assert all(batch.dtype == tf.float32 for batch in batches)


def test_one_traced_function_per_model_that_follows_its_weights(tiny: TinyBenchmark) -> None:
    model = copy_model(load_model(tiny.badnet).model)
    assert traced_call(model, "unit", classes=True) is traced_call(model, "unit", classes=True)
    assert traced_call(model, "unit") is not traced_call(model, "raw")
    x = np.random.default_rng(4).uniform(0, 255, (6, 55, 47, 3))
    before = predict_classes(model, x, "unit")
    head = model.layers[-1]
    kernel, bias = head.get_weights()
    target = int(before[0] + 1) % len(bias)  # a class image 0 did not go to
    bias[:] = -1e3
    bias[target] = 1e3  # every image now goes to the target
    head.set_weights([kernel, bias])
    assert (predict_classes(model, x, "unit") == target).all()


def test_the_cache_lets_a_model_go(tiny: TinyBenchmark) -> None:
    model = copy_model(load_model(tiny.badnet).model)
    penultimate_features(model, np.zeros((1, 55, 47, 3)), "unit")
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None


def test_class_predictor_runs_several_nets_each_on_its_own_scale(tiny: TinyBenchmark,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    unit = load_model(tiny.badnet)
    raw = LoadedModel(unit.path, unit.model, "raw", "option")
    x = np.random.default_rng(2).uniform(0, 255, (300, 55, 47, 3)).astype(np.float32)

    monkeypatch.setattr(models, "PREDICT_BATCH", 128)
    as_unit, as_raw = class_predictor([unit, raw])(x)

    np.testing.assert_array_equal(as_unit, predict_classes(unit.model, x, "unit"))
    np.testing.assert_array_equal(as_raw, predict_classes(unit.model, x, "raw"))
    assert as_unit.dtype == np.int64 and len(as_unit) == 300


def test_class_predictor_refuses_nets_with_different_inputs(tiny: TinyBenchmark) -> None:
    small = LoadedModel(Path("small.h5"), build_challenge_model(num_classes=4, image_shape=(40, 40, 3)), "unit", "option")
    with pytest.raises(ValueError, match="different image shapes"):
        class_predictor([load_model(tiny.badnet), small])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_text("not a model"), "neither an HDF5 file nor a .keras archive"),
        (lambda p: h5py.File(p, "w").close(), "not a Keras model"),
        (lambda p: _weights_file_without(p, "conv_4"), "lacks the challenge layers conv_4"),
        (lambda p: _file_with_attr(p, METADATA_ATTR, "{not json"), "not valid JSON"),
    ],
    ids=["missing", "not-hdf5", "empty-hdf5", "foreign-weights", "bad-metadata"],
)
def test_bad_model_files_raise_one_line_errors_naming_the_file(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "model.h5"
    make(path)
    with pytest.raises(InputError) as error:
        load_model(path)
    assert str(path) in str(error.value) and message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_wrong_input_scale_name_is_refused(tiny: TinyBenchmark) -> None:
    with pytest.raises(InputError, match="not one of unit, raw"):
        load_model(tiny.badnet, input_scale="percent")


def _weights_file_without(path: Path, layer: str) -> None:
    build_challenge_model(num_classes=3).save_weights(path, save_format="h5")
    with h5py.File(path, "a") as h5:
        h5.attrs["layer_names"] = [n for n in h5.attrs["layer_names"] if str(n) != layer]


def _file_with_attr(path: Path, name: str, value: str) -> None:
    with h5py.File(path, "w") as h5:
        h5.attrs[name] = value
        h5.attrs["layer_names"] = []


def _as_keras_2_2_4(source: Path, target: Path) -> None:
    """Rewrite a tf-keras full-model file the way Keras 2.2.4 wrote it: class "Model", no layer
    dtypes, no `groups`/`ragged` settings, uniform-distribution initialisers, version 2.2.4."""
    target.write_bytes(source.read_bytes())
    with h5py.File(target, "a") as h5:
        config = json.loads(h5.attrs["model_config"])
        config["class_name"] = "Model"
        for layer in config["config"]["layers"]:
            settings = layer["config"]
            for newer in ("groups", "ragged"):
                settings.pop(newer, None)
            if layer["class_name"] != "InputLayer":
                settings.pop("dtype", None)
        h5.attrs["model_config"] = json.dumps(config)
        h5.attrs["keras_version"] = "2.2.4"
        for newer in ("training_config", METADATA_ATTR):
            if newer in h5.attrs:
                del h5.attrs[newer]


def test_full_models_written_by_keras_2_2_4_load(tiny: TinyBenchmark, tmp_path: Path) -> None:
    old = tmp_path / "keras224_net.h5"
    _as_keras_2_2_4(tiny.badnet, old)
    with h5py.File(old, "r") as h5:
        assert '"class_name": "Model"' in h5.attrs["model_config"] and h5.attrs["keras_version"] == "2.2.4"
    x = np.random.default_rng(2).uniform(0, 255, (6, 55, 47, 3)).astype(np.float32)
    np.testing.assert_array_equal(load_model(old).predict_classes(x), load_model(tiny.badnet).predict_classes(x))
