"""Interventions on a TensorFlow history say what is supported instead of answering wrongly."""

import pytest

pytest.importorskip("torchlens_like.tf_runtime.loader")
keras_zoo = pytest.importorskip("keras_zoo")

import torchlens_like as tll  # noqa: E402


def test_a_tensorflow_history_raises_not_implemented_saying_what_works():
    model = keras_zoo.nested_blocks()
    history = tll.log_forward_pass(model, keras_zoo.inputs((2, 4)))
    with pytest.raises(NotImplementedError, match="tensorflow backend are not supported.*"
                                                  "torch models"):
        history.intervene({"mid": tll.edits.zero()})
