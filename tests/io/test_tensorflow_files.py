"""Saving and loading histories of TensorFlow models: arrays come back as NumPy, bit for bit."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("torchlens_like.tf_runtime.loader")
keras = pytest.importorskip("keras")

import keras_zoo as zoo  # noqa: E402
import torchlens_like as tll  # noqa: E402


def _mixed_precision_model():
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(2, name="fc", dtype="bfloat16")(x)
    return keras.Model(inputs, outputs)


def test_a_saved_keras_history_loads_with_keras_values_and_dtypes(tmp_path):
    model = zoo.branching_functional()
    x = zoo.inputs((2, 8, 8, 3))
    history = tll.log_forward_pass(model, x)
    loaded = tll.load_history(history.save(tmp_path / "keras.tll"))
    assert loaded.backend == "tensorflow" and loaded.layer_labels == history.layer_labels
    for name, expected in zoo.layer_outputs(model, x).items():
        got = loaded[name].tensor_contents
        assert isinstance(got, np.ndarray) and got.dtype == expected.dtype, name
        assert np.array_equal(got, expected), name
    np.testing.assert_array_equal(loaded[-1].tensor_contents, model(x).numpy())
    assert loaded.num_params == model.count_params()
    assert loaded["conv2d_1"].param_shapes == history["conv2d_1"].param_shapes


def test_bfloat16_activations_round_trip_bit_for_bit(tmp_path):
    model = _mixed_precision_model()
    x = zoo.inputs((2, 6, 6, 3))
    history = tll.log_forward_pass(model, x)
    loaded = tll.load_history(history.save(tmp_path / "bf16.tll"))
    halves = [layer.layer_label for layer in history if layer.tensor_dtype == "bfloat16"]
    assert halves
    for label in halves:
        got = loaded[label].tensor_contents
        assert str(got.dtype) == "bfloat16"
        assert got.tobytes() == history[label].tensor_contents.tobytes(), label
    np.testing.assert_array_equal(loaded[-1].tensor_contents.astype("float32"),
                                  np.asarray(model(x)).astype("float32"))


def test_a_keras_history_pickles_and_a_metadata_history_saves(tmp_path):
    model = zoo.branching_functional()
    x = zoo.inputs((1, 8, 8, 3))
    history = tll.log_forward_pass(model, x)
    copied = pickle.loads(pickle.dumps(history))
    np.testing.assert_array_equal(copied["left"].tensor_contents,
                                  zoo.layer_outputs(model, x)["left"])
    metadata = tll.get_model_metadata(model, x)
    loaded = tll.load_history(metadata.save(tmp_path / "meta.tll"))
    assert loaded.saved_layers == [] and loaded.layer_labels == metadata.layer_labels
