"""Gradients on TensorFlow models say what is supported instead of answering wrongly."""

import pytest

pytest.importorskip("torchlens_like.tf_runtime.loader")
keras_zoo = pytest.importorskip("keras_zoo")

import torchlens_like as tll  # noqa: E402

SUPPORTED = "Gradients and attributions run on torch models"


def test_tensorflow_models_and_histories_raise_not_implemented_saying_what_works():
    model, x = keras_zoo.nested_blocks(), keras_zoo.inputs((2, 4))
    with pytest.raises(NotImplementedError, match=f"not supported for tensorflow models.*"
                                                  f"{SUPPORTED}"):
        tll.log_forward_pass(model, x, save_gradients=True)
    history = tll.log_forward_pass(model, x)
    with pytest.raises(NotImplementedError, match=f"tensorflow backend. {SUPPORTED}"):
        history.backward(lambda out: out.sum())
    with pytest.raises(NotImplementedError, match="does not run tensorflow models"):
        tll.attribute(model, x, "mid", target=0)
