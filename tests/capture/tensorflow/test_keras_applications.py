"""keras.applications models with random weights: every layer exact, every op validated."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("torchlens_like.tf_runtime.loader").tf
keras = pytest.importorskip("keras")

import keras_zoo as zoo  # noqa: E402
import torchlens_like as tll  # noqa: E402

APPLICATIONS = ["MobileNetV2", "ResNet50", "EfficientNetB0", "DenseNet121"]


@pytest.mark.parametrize("name", APPLICATIONS)
def test_application_layers_exact_and_validated(name):
    model = getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3))
    x = (np.random.default_rng(0).random((2, 32, 32, 3)) * 255).astype("float32")
    history = tll.log_forward_pass(model, x)
    assert history.lint() == []
    for layer_name, expected in zoo.layer_outputs(model, x).items():
        got = history[layer_name].tensor_contents
        assert got.dtype == expected.dtype and np.array_equal(got, expected), layer_name
    np.testing.assert_array_equal(history[-1].tensor_contents, model(x).numpy())
    assert history.num_params == model.count_params()
    assert history.validate(verbose=True)
