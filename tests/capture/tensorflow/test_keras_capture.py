"""The TensorFlow backend on small Keras / tf.Module models, against Keras' own values."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("torchlens_like.tf_runtime.loader").tf
keras = pytest.importorskip("keras")

import keras_zoo as zoo  # noqa: E402
import torchlens_like as tll  # noqa: E402


def test_functional_layers_equal_keras_submodels_and_validate():
    model = zoo.branching_functional()
    x = zoo.inputs((2, 8, 8, 3))
    history = tll.log_forward_pass(model, x)
    assert history.lint() == []
    truth = zoo.layer_outputs(model, x)
    for name, expected in truth.items():
        got = history[name].tensor_contents
        assert got.dtype == expected.dtype and np.array_equal(got, expected), name
    np.testing.assert_array_equal(history[-1].tensor_contents, model(x).numpy())
    assert tll.validate_saved_activations(model, x)
    assert history.validate()
    history["left"].tensor_contents[0, 0, 0, 0] += 1.0
    assert not history.validate()


def test_ops_are_layers_with_paper_labels_and_parameters():
    model = zoo.branching_functional()
    history = tll.log_forward_pass(model, zoo.inputs((1, 8, 8, 3)))
    types = [layer.func_name for layer in history]
    assert "Identity" not in types and "ReadVariableOp" not in types and "Const" not in types
    conv = history["conv2d_1"]
    assert conv.func_name == "Conv2D" and conv.layer_label == "conv2d_1_2"
    assert conv.param_names == ["stem.kernel"] and conv.param_shapes == [(3, 3, 3, 4)]
    assert conv.params_fsize == 3 * 3 * 3 * 4 * 4
    assert history["stem"].func_name == "BiasAdd"
    assert conv.containing_modules == ["stem:1"]
    assert history.input_layers == ["input_1_1"] and len(history.output_layers) == 1
    assert history.num_params == model.count_params()


def test_sequential_with_nested_block_called_twice():
    model = zoo.nested_blocks()
    x = zoo.inputs((3, 4))
    history = tll.log_forward_pass(model, x)
    block = model.get_layer("block1")
    first = block(x).numpy()
    second = block(model.get_layer("mid")(first)).numpy()
    np.testing.assert_array_equal(history["block1:1"].tensor_contents, first)
    np.testing.assert_array_equal(history["block1.act:2"].tensor_contents, second)
    assert history["block1.conv:2"].containing_modules == ["block1:2", "block1.conv:2"]
    assert history["block1.conv:2"].pass_num == 2
    np.testing.assert_array_equal(history[-1].tensor_contents, model(x).numpy())
    assert history.validate()


def test_subclassed_loop_shared_layer_passes_and_cond():
    model = zoo.LoopAndCond()
    x = zoo.inputs((2, 6))
    expected = model(x).numpy()
    model.seen.clear()
    model(x)
    seen = list(model.seen)
    history = tll.log_forward_pass(model, x)
    assert history.lint() == []
    for pass_num, value in enumerate(seen, start=1):
        np.testing.assert_array_equal(history[f"shared:{pass_num}"].tensor_contents, value)
    assert history["shared:2"].pass_num == 2 and history["shared:2"].is_recurrent
    assert "StatelessIf" in [layer.func_name for layer in history]
    np.testing.assert_array_equal(history[-1].tensor_contents, expected)
    assert tll.validate_saved_activations(model, x)


def test_lstm_loop_is_one_layer_with_outputs_saved():
    model = zoo.lstm_model()
    x = zoo.inputs((2, 5, 3))
    history = tll.log_forward_pass(model, x)
    loops = [layer for layer in history if layer.func_name == "While"]
    assert loops and all(layer.containing_modules == ["lstm:1"] for layer in loops)
    assert set(loops[0].param_names) >= {"lstm.lstm_cell.kernel",
                                         "lstm.lstm_cell.recurrent_kernel"}
    np.testing.assert_array_equal(history["lstm"].tensor_contents,
                                  zoo.layer_outputs(model, x)["lstm"])
    np.testing.assert_array_equal(history[-1].tensor_contents, model(x).numpy())
    assert tll.validate_saved_activations(model, x)


def test_dropout_in_training_mode_matches_plain_call_and_keeps_seed():
    model = zoo.dropout_model(seed=3)
    x = zoo.inputs((4, 6))
    state = model.get_layer("drop").seed_generator.state.numpy().copy()
    history = tll.log_forward_pass(model, x, input_kwargs={"training": True})
    assert np.array_equal(model.get_layer("drop").seed_generator.state.numpy(), state)
    assert history.validate()
    again = tll.log_forward_pass(model, x, input_kwargs={"training": True})
    plain = model(x, training=True).numpy()
    np.testing.assert_array_equal(history[-1].tensor_contents, plain)
    np.testing.assert_array_equal(again["drop"].tensor_contents, history["drop"].tensor_contents)
    dropped = history["drop"].tensor_contents == 0
    assert 0 < dropped.mean() < 1


def test_dict_inputs_tf_module_and_tf_function():
    model = zoo.dict_input_model()
    feed = {"a": zoo.inputs((2, 4), 1), "b": tf.constant(zoo.inputs((2, 4), 2))}
    history = tll.log_forward_pass(model, [feed])
    assert sorted(history[name].source for name in history.input_layers) == [
        ("args", 0, "a"), ("args", 0, "b")]
    np.testing.assert_array_equal(history["mul"].tensor_contents,
                                  feed["a"] * feed["b"].numpy())
    module = zoo.Affine()
    x = zoo.inputs((3, 3))
    history = tll.log_forward_pass(module, x)
    assert [layer.func_name for layer in history] == ["input", "MatMul", "AddV2", "Relu",
                                                      "output"]
    assert history["matmul_1"].param_names == ["w"]
    np.testing.assert_array_equal(history[-1].tensor_contents, module(x).numpy())
    function = tf.function(lambda v: tf.sigmoid(v) * 2.0)
    history = tll.log_forward_pass(function, x)
    np.testing.assert_array_equal(history[-1].tensor_contents, function(x).numpy())
    assert history.validate()


def test_metadata_only_and_selected_layers():
    model = zoo.branching_functional()
    x = zoo.inputs((2, 8, 8, 3))
    full = tll.log_forward_pass(model, x)
    meta = tll.get_model_metadata(model, x)
    assert meta.saved_layers == [] and meta.layer_labels == full.layer_labels
    assert [layer.tensor_shape for layer in meta] == [
        layer.tensor_contents.shape for layer in full]
    some = tll.log_forward_pass(model, x, layers_to_save=["left", "relu_1"])
    assert some.saved_layers == [full["relu_1"].layer_label, full["left"].layer_label]
    np.testing.assert_array_equal(some["left"].tensor_contents, full["left"].tensor_contents)
    with pytest.raises(ValueError, match="layers_to_save"):
        tll.log_forward_pass(model, x, layers_to_save=["no_such_layer"])


def test_a_layer_selection_costs_one_run_of_the_pruned_graph(monkeypatch):
    from torchlens_like.capture import backend_for
    from torchlens_like.capture.tensorflow import session

    model = zoo.branching_functional()
    x = zoo.inputs((2, 8, 8, 3))
    assert backend_for(model).name == "tensorflow"
    runs = []

    def counted(trace, tensors, values):
        runs.append([tensor.name for tensor in tensors])
        return run_trace(trace, tensors, values)

    run_trace = session.run_trace
    monkeypatch.setattr(session, "run_trace", counted)
    history = tll.log_forward_pass(model, x, layers_to_save=["left"])
    assert history.backend == "tensorflow" and len(runs) == 1
    assert len(runs[0]) < len(history.layers) // 2
    np.testing.assert_array_equal(history["left"].tensor_contents,
                                  zoo.layer_outputs(model, x)["left"])


def test_show_model_graph_draws_keras_model(tmp_path):
    model = zoo.branching_functional()
    path = tll.show_model_graph(model, zoo.inputs((1, 8, 8, 3)), outpath=str(tmp_path / "g"))
    text = open(path).read()
    assert "conv2d_1_2" in text and "stem" in text


def _global_state():
    from keras.src.backend.common import global_state

    return (tf.executing_eagerly(), tf.config.functions_run_eagerly(),
            dict(vars(global_state.GLOBAL_STATE_TRACKER)))


def _draws():
    tf.random.set_seed(11)
    return tf.random.uniform((3,)).numpy(), np.random.rand(2)


def test_leaves_no_trace_also_when_the_model_raises():
    model = zoo.LoopAndCond()
    x = zoo.inputs((2, 6))
    model(x)
    weights = [w.numpy().copy() for w in model.weights]
    layers = list(model._flatten_layers(include_self=True))
    called = [layer._called for layer in layers]
    before = _global_state()
    np.random.seed(5)
    expected_draws = _draws()
    np.random.seed(5)
    tf.random.set_seed(11)
    tll.log_forward_pass(model, x)
    assert all(np.array_equal(a, b) for a, b in zip(_draws(), expected_draws))
    assert _global_state() == before
    assert [layer._called for layer in layers] == called
    assert all("call" not in vars(layer) for layer in layers)
    assert all(np.array_equal(w.numpy(), v) for w, v in zip(model.weights, weights))

    raising = zoo.Raising()
    with pytest.raises(ValueError, match="bad input") as info:
        tll.log_forward_pass(raising, x)
    assert "inner" in "".join(getattr(info.value, "__notes__", []))
    assert all("call" not in vars(layer) for layer in raising._flatten_layers())
    assert _global_state() == before


def test_untraceable_model_gets_a_clear_error():
    model = zoo.UsesNumpy()
    x = zoo.inputs((2, 3))
    model(x)
    with pytest.raises(TypeError, match="cannot be traced.*tf.cond"):
        tll.log_forward_pass(model, x)
    with pytest.raises(ValueError, match="random_seed"):
        tll.log_forward_pass(zoo.dropout_model(), zoo.inputs((1, 6)), random_seed=0)


def test_missing_tensorflow_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchlens_like.capture.tensorflow.session", None)
    with pytest.raises(ImportError, match=r"torchlens_like\[tensorflow\]"):
        tll.log_forward_pass(zoo.dropout_model(), zoo.inputs((1, 6)))


def test_torch_users_do_not_import_tensorflow():
    code = ("import sys, torch, torchlens_like as tll; "
            "tll.log_forward_pass(torch.nn.ReLU(), torch.ones(2)); "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["False", "False"]
