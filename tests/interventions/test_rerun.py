"""tll.intervene against forward hooks, hand-written forwards and the replay engine."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchlens_like as tll
from torchlens_like.model_state import snapshot_rng

from intervention_zoo import (Blocks, Branches, Dropout, InPlace, Normed, Outer, PassThrough,
                              Shared, TupleOut, hooked)


def _out(history):
    return history[history.output_layers[0]].tensor_contents


CASES = [
    (Blocks, (3, 6), "fc2", tll.edits.scale(-2.0), lambda o: o * -2.0),
    (Blocks, (3, 6), "fc1", tll.edits.zero(index=(slice(None), 3)),
     lambda o: o.index_fill(1, torch.tensor([3]), 0.0)),
    (Shared, (2, 4), "fc", tll.edits.clamp(-0.1, 0.1), lambda o: o.clamp(-0.1, 0.1)),
    (TupleOut, (2, 3), "pair", tll.edits.scale(0.5), lambda o: o * 0.5),
    (InPlace, (3, 5), "act", tll.edits.clamp(hi=0.2), lambda o: o.clamp(max=0.2)),
    (Outer, (2, 3), "block", tll.edits.scale(3.0), lambda o: o * 3.0),
]


@pytest.mark.parametrize("build, shape, site, edit, by_hand", CASES)
def test_both_engines_equal_a_forward_hook_bitwise(build, shape, site, edit, by_hand):
    model, x = build(), torch.rand(*shape) * 2 - 0.5
    rerun = tll.intervene(model, x, {site: edit})
    expected = hooked(model, site, by_hand, x)
    assert torch.equal(_out(rerun), expected)
    replayable = site != "block"
    if replayable:
        replayed = tll.log_forward_pass(model, x).intervene({site: edit})
        assert replayed.layer_labels == rerun.layer_labels
        for label in replayed.layer_labels:
            assert torch.equal(replayed[label].tensor_contents, rerun[label].tensor_contents), label
        assert list(replayed.interventions["fired"]) == list(rerun.interventions["fired"])
        assert replayed.interventions["change_at_site"][0] == pytest.approx(
            rerun.interventions["change_at_site"][0])


def test_an_op_site_equals_a_hand_written_forward_and_the_replay():
    model, x = Blocks(), torch.rand(3, 6)
    edit = tll.edits.steer(torch.linspace(0, 1, 8), alpha=-1.5)
    rerun = tll.intervene(model, x, {"relu_1": edit})
    with torch.no_grad():
        expected = model.by_hand(x, lambda h: h - 1.5 * torch.linspace(0, 1, 8))
    assert torch.equal(_out(rerun), expected)
    replayed = tll.log_forward_pass(model, x).intervene({"relu_1": edit})
    assert all(torch.equal(rerun[label].tensor_contents, replayed[label].tensor_contents)
               for label in rerun.layer_labels)
    assert rerun["relu_1"].meta["intervention"] == [repr(edit)]


def test_a_pass_through_module_is_edited_like_a_forward_hook_without_touching_its_input():
    model, x = PassThrough(), torch.rand(2, 3)
    rerun = tll.intervene(model, x, {"skip": tll.edits.zero()})
    assert torch.equal(_out(rerun), hooked(model, "skip", torch.zeros_like, x))
    edit_layer = rerun["skip"]
    assert edit_layer.func_name == "intervention" and edit_layer.parent_layers == ["linear_1_2"]
    assert torch.equal(rerun["relu_1"].tensor_contents, F.relu(rerun["linear_1"].tensor_contents))
    assert rerun.validate()


def test_random_calls_draw_as_in_the_clean_run_in_both_engines():
    model, x = Dropout().train(), torch.rand(4, 6)
    torch.manual_seed(21)
    rerun = tll.intervene(model, x, {"fc": tll.edits.scale(2.0)})
    torch.manual_seed(21)
    replayed = tll.log_forward_pass(model, x).intervene({"fc": tll.edits.scale(2.0)})
    expected = hooked(model, "fc", lambda o: o * 2.0, x, seed=21)
    assert torch.equal(_out(rerun), expected) and torch.equal(_out(replayed), expected)


def test_input_and_output_sites():
    model, x = Blocks(), torch.rand(3, 6)
    rerun = tll.intervene(model, x, {"input_1": tll.edits.scale(2.0)})
    with torch.no_grad():
        assert torch.equal(_out(rerun), model(x * 2.0))
    assert torch.equal(rerun["input_1"].tensor_contents, x * 2.0)
    last = tll.intervene(model, x, {"output_1": tll.edits.zero()})
    assert torch.equal(_out(last), torch.zeros(3, 3))


def test_a_flipped_branch_is_reported_with_the_first_op_that_differs():
    model, x = Branches(), torch.rand(2, 3)
    with torch.no_grad():
        model.fc.bias.fill_(5.0)
    with pytest.warns(tll.OpsChangedWarning, match="op #\\d+ was mul .* is linear"):
        rerun = tll.intervene(model, x, {"fc": tll.edits.scale(-1.0)})
    assert torch.equal(_out(rerun), hooked(model, "fc", lambda o: -o, x))
    with pytest.raises(tll.OpsChangedError, match="first op that differs"):
        tll.intervene(model, x, {"fc": tll.edits.scale(-1.0)}, strict=True)
    with pytest.raises(tll.EditNeverFiredError, match="site 'mul_1' never fired"), \
            pytest.warns(tll.OpsChangedWarning):
        tll.intervene(model, x, {"fc": tll.edits.scale(-1.0), "mul_1": tll.edits.zero()})


def test_a_wrong_edit_raises_naming_the_site_and_leaves_no_trace():
    model, x = Normed().train(), torch.rand(5, 4)
    state = copy.deepcopy(model.state_dict())
    rng = snapshot_rng()
    with pytest.raises(ValueError, match="site 'norm' \\(layer batchnorm_1_\\d+\\) returned "
                                         "shape \\(1, 4\\)"):
        tll.intervene(model, x, {"norm": lambda a, layer: a[:1]})
    tll.intervene(model, x, {"norm": tll.edits.scale(0.5)})
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert torch.equal(torch.get_rng_state(), rng["torch"])
    assert all("forward" not in module.__dict__ for module in model.modules())
    assert model.training and torch.is_grad_enabled()


def test_an_edit_changing_nothing_warns_in_the_rerun_too():
    with pytest.warns(tll.EditChangedNothingWarning, match="site 'fc2'"):
        tll.intervene(Blocks(), torch.rand(3, 6), {"fc2": tll.edits.scale(1.0)})


def test_tensorflow_models_are_refused_saying_what_works():
    keras_zoo = pytest.importorskip("keras_zoo")
    with pytest.raises(NotImplementedError, match="Interventions run on torch models"):
        tll.intervene(keras_zoo.nested_blocks(), keras_zoo.inputs((2, 4)),
                      {"mid": tll.edits.zero()})


def test_unknown_sites_fail_before_anything_is_edited():
    with pytest.raises(KeyError, match="fc1"):
        tll.intervene(Blocks(), torch.rand(3, 6), {"fc_1": tll.edits.zero()})
    with pytest.raises(ValueError, match="buffer"):
        model = nn.Sequential(nn.BatchNorm1d(3)).eval()
        history = tll.get_model_metadata(model, torch.rand(2, 3))
        tll.intervene(model, torch.rand(2, 3), {history.buffer_layers[0]: tll.edits.zero()})


def test_the_change_at_the_outputs_is_measured_against_a_plain_forward():
    model, x = Blocks(), torch.rand(3, 6)
    rerun = tll.intervene(model, x, {"fc1": tll.edits.scale(0.3)})
    with torch.no_grad():
        expected = float((_out(rerun) - model(x)).double().norm())
    assert rerun.interventions["change_at_outputs"][0] == pytest.approx(expected, rel=1e-5)
    assert not model._forward_hooks

    def plain(x):
        return torch.tanh(x * 3.0) + 1

    edited = tll.intervene(plain, torch.rand(4), {"mul_1": tll.edits.zero()})
    assert edited.interventions["change_at_outputs"][0] == pytest.approx(
        float((torch.ones(4) - plain(edited["input_1"].tensor_contents)).norm()), rel=1e-5)
