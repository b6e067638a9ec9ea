"""The graph stage on records from a fake capture backend: no torch, no capture state.

A made-up backend registers itself in ``capture.BACKENDS`` and returns hand-written
neutral records (shapes as tuples, dtypes as strings, no tensors, a replay object that
fails if anyone reads it). The expected labels, distances, branches and module keys are
worked out by hand from the TorchLens paper's rules, not taken from the code.
"""

import pytest

import torchlens_like as tll
from torchlens_like import capture
from torchlens_like.graph import PASSES, lint
from torchlens_like.records import (ArgSlot, CaptureResult, LayerEntry, ModuleCall, Parameter,
                                    connect)
from torchlens_like.render import RenderOptions
from torchlens_like.render.dot import to_dot
from torchlens_like.render.view import build_view


class Untouchable:
    """A replay record only a replayer may read: any attribute access fails the test."""

    def __getattribute__(self, name):
        raise AssertionError(f"something other than a replayer read replay.{name}")


class FakeProgram:
    """``fc(relu(fc(x))) + x`` with one weight used twice, and ``if sum(...) > 0`` on the way."""

    def records(self):
        weight = Parameter("fc.weight", (4, 4), 64)
        weight_slot = ArgSlot("param", weight, weight.address)
        fc1, fc2 = ModuleCall("fc", 1), ModuleCall("fc", 2)
        nodes = []

        def node(kind, name, shape=(2, 4), dtype="float32", calls=(), args=None):
            entry = LayerEntry(kind, name, shape, dtype, "fake:0", 4 * 8, calls)
            entry.meta["capture_index"] = len(nodes)
            if kind == "op":
                entry.call_index = len(nodes)
                entry.replay = Untouchable()
            if args is not None:
                connect([entry], args)
            nodes.append(entry)
            return ArgSlot("layer", entry)

        x = node("input", "input")
        nodes[-1].source = ("args", 0)
        first = node("op", "linear", calls=(fc1,), args=(x, weight_slot))
        relu = node("op", "relu", args=(first,))
        second = node("op", "linear", calls=(fc2,), args=(relu, weight_slot))
        total = node("op", "sum", shape=(), args=(second,))
        node("op", "gt", shape=(), dtype="bool", args=(total, 0.0))
        added = node("op", "add", args=(second, x))
        node("output", "output", args=(added,))
        nodes[-1].source = ()
        first.ref.module_passes_output.append(fc1)
        second.ref.module_passes_output.append(fc2)
        return CaptureResult(nodes, "FakeProgram", "fake",
                             module_outputs={fc1: [first.ref], fc2: [second.ref]},
                             module_types={"fc": "FakeLinear"}, parameters=[weight])


class FakeBackend:
    name = "fake"

    @staticmethod
    def accepts(model):
        return isinstance(model, FakeProgram)

    @staticmethod
    def prepare(model):
        return model

    @staticmethod
    def capture(runner, args, kwargs, save):
        return runner.records()


@pytest.fixture
def fake_backend():
    capture.BACKENDS["fake"] = FakeBackend
    try:
        yield
    finally:
        del capture.BACKENDS["fake"]


def test_every_pass_keeps_the_fake_graph_sound():
    nodes = FakeProgram().records().nodes
    assert lint(nodes) == []
    for graph_pass in PASSES:
        nodes = graph_pass(nodes)
        assert lint(nodes) == [], graph_pass.__name__


def test_log_forward_pass_picks_the_fake_backend_and_labels_by_the_paper(fake_backend):
    history = tll.log_forward_pass(FakeProgram(), [])
    assert history.backend == "fake" and history.model_name == "FakeProgram"
    assert history.layer_labels == ["input_1_1", "linear_1_2:1", "relu_1_3", "linear_1_2:2",
                                    "sum_1_4", "gt_1_5", "add_1_6", "output_1_7"]
    assert [layer.distance_from_input for layer in history] == [0, 1, 2, 3, 4, 5, 1, 2]
    assert [layer.distance_from_output for layer in history] == [2, 4, 3, 2, None, None, 1, 0]
    assert [l.layer_label for l in history if l.is_cond_bool] == ["gt_1_5"]
    assert [l.layer_label for l in history if l.in_cond_branch] == ["sum_1_4", "gt_1_5"]
    assert [l.layer_label for l in history if l.cond_branch_start] == ["sum_1_4"]
    assert history["fc:2"] is history["linear_1_2:2"]
    with pytest.raises(tll.LayerLookupError, match="ran 2 times"):
        history["fc"]
    assert history["linear_1_2:1"].containing_modules == ["fc:1"]
    assert history["linear_1_2:1"].param_names == ["fc.weight"]
    assert history["add_1_6"].parent_arg_positions == {"linear_1_2:2": 0, "input_1_1": 1}
    assert (history.num_params, history.total_params_bytes) == (16, 64)


def test_readers_work_on_fake_records(fake_backend):
    history = tll.log_forward_pass(FakeProgram(), [])
    frame = history.to_pandas()
    assert list(frame["tensor_dtype"]) == ["float32"] * 5 + ["bool", "float32", "float32"]
    assert list(frame["tensor_shape"])[4] == ()
    assert "FakeProgram: 8 layers" in history.summary()
    assert set(history.to_networkx().edges) == {
        ("input_1_1", "linear_1_2:1"), ("linear_1_2:1", "relu_1_3"),
        ("relu_1_3", "linear_1_2:2"), ("linear_1_2:2", "sum_1_4"), ("sum_1_4", "gt_1_5"),
        ("linear_1_2:2", "add_1_6"), ("input_1_1", "add_1_6"), ("add_1_6", "output_1_7")}
    view = build_view(history, RenderOptions(vis_opt="rolled"))
    assert list(view.nodes) == ["input_1_1", "linear_1_2", "relu_1_3", "sum_1_4", "gt_1_5",
                                "add_1_6", "output_1_7"]
    assert "digraph" in to_dot(history, view, RenderOptions(vis_opt="rolled"))


def test_validation_names_the_backend_without_a_replayer(fake_backend):
    history = tll.log_forward_pass(FakeProgram(), [])
    with pytest.raises(ValueError, match="unknown capture backend 'fake'"):
        history.validate()


def test_a_model_no_backend_accepts_is_refused_with_the_backends_listed():
    with pytest.raises(TypeError, match="backends: tensorflow, torch"):
        tll.log_forward_pass(42, [])
