"""history.intervene against forward hooks and hand-written forwards; what it refuses; no trace."""

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import torchlens_like as tll
from torchlens_like.model_state import snapshot_rng

from intervention_zoo import (Blocks, Branches, Dropout, InPlace, PassThrough, Shared, TupleOut,
                              hooked)


def _out(history):
    return history[history.output_layers[0]].tensor_contents


def test_a_module_site_equals_a_forward_hook_making_the_same_edit():
    model, x = Blocks(), torch.rand(3, 6)
    history = tll.log_forward_pass(model, x)
    vector = torch.linspace(-1, 1, 8)
    for edit, by_hand in [(tll.edits.zero(), torch.zeros_like),
                          (tll.edits.scale(3.0), lambda o: o * 3.0),
                          (tll.edits.steer(vector, alpha=2.0), lambda o: o + 2.0 * vector),
                          (tll.edits.zero(index=(slice(None), 2)),
                           lambda o: o.index_fill(1, torch.tensor([2]), 0.0))]:
        edited = history.intervene({"fc2": edit})
        assert torch.equal(_out(edited), hooked(model, "fc2", by_hand, x)), edit
        assert torch.equal(edited["fc2"].tensor_contents, by_hand(history["fc2"].tensor_contents))


def test_an_op_site_inside_a_forward_equals_a_hand_written_forward():
    model, x = Blocks(), torch.rand(3, 6)
    history = tll.log_forward_pass(model, x)
    edited = history.intervene({"relu_1": tll.edits.clamp(hi=0.1)})
    with torch.no_grad():
        expected = model.by_hand(x, lambda h: h.clamp(max=0.1))
    assert torch.equal(_out(edited), expected)
    assert torch.equal(edited["tanh_1"].tensor_contents, torch.tanh(
        F.linear(history["relu_1"].tensor_contents.clamp(max=0.1), model.fc2.weight,
                 model.fc2.bias)))


def test_every_pass_of_a_module_or_one_pass():
    model, x = Shared(), torch.rand(2, 4)
    history = tll.log_forward_pass(model, x)
    both = history.intervene({"fc": tll.edits.scale(0.5)})
    assert torch.equal(_out(both), hooked(model, "fc", lambda o: o * 0.5, x))
    assert list(both.interventions["fired"]) == [2]
    second = history.intervene({"fc:2": tll.edits.scale(0.5)})
    calls = []

    def second_only(output):
        calls.append(1)
        return output * 0.5 if len(calls) == 2 else output

    assert torch.equal(_out(second), hooked(model, "fc", second_only, x))
    assert torch.equal(second["fc:1"].tensor_contents, history["fc:1"].tensor_contents)


def test_a_tuple_output_is_edited_in_every_part():
    model, x = TupleOut(), torch.rand(2, 3)
    history = tll.log_forward_pass(model, x)
    edited = history.intervene({"pair": tll.edits.scale(-1.0)})
    assert torch.equal(_out(edited), hooked(model, "pair", lambda o: -o, x))


def test_an_in_place_op_is_edited_where_it_wrote():
    model, x = InPlace(), torch.rand(3, 5) * 4 - 1
    history = tll.log_forward_pass(model, x)
    add = [layer.layer_label for layer in history if layer.func_name == "add_"][0]
    edited = history.intervene({add: tll.edits.scale(2.0), "act": tll.edits.clamp(hi=0.2)})
    with torch.no_grad():
        h = F.relu(F.linear(x, model.fc.weight, model.fc.bias)).clamp(max=0.2)
        expected = F.linear((h + 1) * 2.0, model.out.weight, model.out.bias)
    assert torch.equal(_out(edited), expected)


def test_random_calls_replay_with_the_clean_runs_generator_states():
    model, x = Dropout().train(), torch.rand(4, 6)
    torch.manual_seed(11)
    history = tll.log_forward_pass(model, x)
    edited = history.intervene({"fc": tll.edits.scale(2.0)})
    assert torch.equal(_out(edited), hooked(model, "fc", lambda o: o * 2.0, x, seed=11))


def test_the_interventions_table_measures_what_changed():
    model, x = Blocks(), torch.rand(3, 6)
    history = tll.log_forward_pass(model, x)
    edited = history.intervene({"fc1": tll.edits.scale(0.0, index=(slice(None), 0)),
                                tll.select(func="tanh"): tll.edits.scale(2.0)})
    table = edited.interventions
    assert list(table["site"]) == ["fc1", "select(func='tanh')"]
    assert list(table["fired"]) == [1, 1] and list(table["kind"]) == ["module", "layer"]
    fc1 = history["fc1"].tensor_contents.double().numpy()
    assert table["norm_before"][0] == pytest.approx(np.linalg.norm(fc1))
    assert table["change_at_site"][0] == pytest.approx(np.linalg.norm(fc1[:, 0]))
    with torch.no_grad():
        fc2 = F.linear(edited["relu_1"].tensor_contents, model.fc2.weight, model.fc2.bias)
    tanh_clean = np.tanh(fc2.double().numpy())
    assert table["change_at_site"][1] == pytest.approx(np.linalg.norm(tanh_clean), rel=1e-6)
    change = (_out(edited) - _out(history)).double().numpy()
    assert table["change_at_outputs"][0] == pytest.approx(np.linalg.norm(change))
    assert edited["fc1"].meta["intervention"] == ["scale(k=0.0, index=(:, 0))"]


def test_an_edit_that_changes_nothing_warns_naming_the_site():
    history = tll.log_forward_pass(Blocks(), torch.rand(3, 6))
    with pytest.warns(tll.EditChangedNothingWarning,
                      match="steer.*site 'fc2' changed nothing") as caught:
        history.intervene({"fc2": tll.edits.steer(torch.zeros(8))})
    assert caught[0].filename == __file__

    def edits_a_copy(activation, layer):
        activation.clone().mul_(0)
        return activation

    with pytest.warns(tll.EditChangedNothingWarning, match="site 'relu_1'"):
        history.intervene({"relu_1": edits_a_copy})


@pytest.mark.parametrize("fn, what", [
    (lambda a, layer: a[:1], "returned shape \\(1, 8\\); the value there has shape \\(3, 8\\)"),
    (lambda a, layer: a.double(), "returned dtype torch.float64; the value there has dtype torch.float32"),
    (lambda a, layer: a.tolist(), "returned list, not a tensor"),
])
def test_a_wrong_edit_result_raises_naming_the_site(fn, what):
    history = tll.log_forward_pass(Blocks(), torch.rand(3, 6))
    with pytest.raises((ValueError, TypeError), match=f"site 'fc2' \\(layer linear_2_4\\) {what}"):
        history.intervene({"fc2": fn})


def test_replay_refuses_what_it_cannot_answer_and_says_to_re_run(tmp_path):
    model, x = Blocks(), torch.rand(3, 6)
    history = tll.log_forward_pass(model, x)
    loaded = tll.load_history(history.save(tmp_path / "run.tll"))
    with pytest.raises(tll.ReplayRefused, match="no replay information.*tll.intervene"):
        loaded.intervene({"fc1": tll.edits.zero()})
    partial = tll.log_forward_pass(model, x, layers_to_save=["fc1", "output_1"])
    with pytest.raises(tll.ReplayRefused, match="saved values .*linear_1_2|relu_1_3"):
        partial.intervene({"fc2": tll.edits.zero()})
    with pytest.raises(tll.ReplayRefused, match="Identity|did not compute"):
        tll.log_forward_pass(PassThrough(), torch.rand(2, 3)).intervene(
            {"skip": tll.edits.zero()})
    with torch.no_grad():
        model.fc2.weight.mul_(1.5)
    with pytest.raises(tll.ReplayRefused, match="fc2.weight .*version counter \\d+ then, \\d+ now"):
        history.intervene({"fc1": tll.edits.zero()})
    assert history.intervene({"head": tll.edits.zero()}).interventions["fired"][0] == 1


def test_replay_refuses_a_python_conversion_downstream_but_not_upstream():
    model, x = Branches(), torch.rand(2, 3)
    history = tll.log_forward_pass(model, x)
    with pytest.raises(tll.ReplayRefused, match="sum_1_3.*__bool__|Python value"):
        history.intervene({"fc": tll.edits.scale(-1.0)})
    after_branch = history.intervene({"out": tll.edits.scale(-1.0)})
    assert torch.equal(_out(after_branch), -_out(history))


def test_the_source_history_the_model_and_torch_are_untouched():
    model, x = Dropout().train(), torch.rand(4, 6)
    history = tll.log_forward_pass(model, x)
    values = {layer.layer_label: layer.tensor_contents.clone() for layer in history
              if layer.has_saved_activation}
    state = copy.deepcopy(model.state_dict())
    rng = snapshot_rng()
    grad_mode = torch.is_grad_enabled()
    history.intervene({"fc": tll.edits.replace(lambda a, layer: a.mul_(3))})
    with pytest.raises(ValueError):
        history.intervene({"fc": lambda a, layer: a[:1]})
    assert all(torch.equal(history[label].tensor_contents, value) for label, value in values.items())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert torch.equal(torch.get_rng_state(), rng["torch"])
    assert torch.is_grad_enabled() == grad_mode and model.training
    assert history.interventions is None and history.lint() == []


def test_the_edited_history_is_a_sound_graph_of_its_own():
    model, x = Blocks(), torch.rand(3, 6)
    history = tll.log_forward_pass(model, x)
    edited = history.intervene({"relu_1": tll.edits.scale(3.0)})
    assert edited.lint() == [] and edited.layer_labels == history.layer_labels
    assert all(a is not b for a, b in zip(edited, history))
    assert edited["tanh_1"].parent_nodes[0].parent_nodes[0] is edited["relu_1"]


def test_bad_edit_sets_are_refused():
    history = tll.log_forward_pass(Blocks(), torch.rand(3, 6))
    with pytest.raises(ValueError, match="edits is empty"):
        history.intervene({})
    with pytest.raises(TypeError, match="dict"):
        history.intervene([("fc1", tll.edits.zero())])
    with pytest.raises(TypeError, match="site 'fc1' is the str 'zero'"):
        history.intervene({"fc1": "zero"})
    with pytest.raises(KeyError, match="fc1"):
        history.intervene({"fc_1": tll.edits.zero()})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history.intervene({"fc1": tll.edits.zero()})
