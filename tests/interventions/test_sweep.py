"""tll.patching_sweep against a loop of hand-written forward hooks."""

import math

import pytest
import torch
import torch.nn.functional as F

import torchlens_like as tll

from intervention_zoo import (Blocks, Chain, Dropout, InPlace, PassThrough, Shared,
                              patched_by_hooks)


def _hook_sweep(model, source_input, target_input, addresses, metric):
    """For each module: record its output on the source input, patch it into the target run."""
    return [metric(patched_by_hooks(model, address, source_input, target_input))
            for address in addresses]


def metric(out):
    return float(out[:, 1].sum() - out[:, 0].sum())


@pytest.mark.parametrize("direction", ["clean_to_corrupt", "corrupt_to_clean"])
def test_the_sweep_equals_a_loop_of_forward_hooks(direction):
    model = Blocks()
    clean, corrupt = torch.rand(2, 6), torch.rand(2, 6) * -1
    sites = ["fc1", "fc2", "head"]
    sweep = tll.patching_sweep(model, clean, corrupt, metric, sites=sites, direction=direction)
    source, target = (clean, corrupt) if direction == "clean_to_corrupt" else (corrupt, clean)
    assert list(sweep["metric"]) == _hook_sweep(model, source, target, sites, metric)
    with torch.no_grad():
        clean_metric, corrupt_metric = metric(model(clean)), metric(model(corrupt))
    assert sweep.attrs["clean_metric"] == clean_metric
    expected = [(m - corrupt_metric) / (clean_metric - corrupt_metric) for m in sweep["metric"]]
    assert list(sweep["normalized"]) == pytest.approx(expected)
    assert sweep["normalized"].iloc[-1] == pytest.approx(
        1.0 if direction == "clean_to_corrupt" else 0.0)
    assert set(sweep["engine"]) == {"replay"}


@pytest.mark.parametrize("direction", ["clean_to_corrupt", "corrupt_to_clean"])
def test_whole_blocks_of_a_chain_take_the_source_runs_values_and_equal_the_hooks(direction):
    model = Chain()
    clean, corrupt = torch.rand(3, 6), torch.rand(3, 6) - 1
    sites = ["blocks.0", "blocks.1", "blocks.2", "blocks.3", "blocks.1.fc2"]
    sweep = tll.patching_sweep(model, clean, corrupt, metric, sites=sites, direction=direction)
    source, target = (clean, corrupt) if direction == "clean_to_corrupt" else (corrupt, clean)
    assert list(sweep["metric"]) == _hook_sweep(model, source, target, sites, metric)
    assert list(sweep["calls_run"][:4]) == [0, 0, 0, 0]
    assert sweep["calls_run"][4] > 0
    assert list(sweep["normalized"][:4]) == [float(direction == "clean_to_corrupt")] * 4


def test_batch_norm_in_training_mode_reuses_only_a_whole_batch_of_the_source_run():
    torch.manual_seed(9)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(),
                                torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)).train()
    clean, corrupt = torch.rand(5, 4), torch.rand(5, 4) * 3
    state = {key: value.clone() for key, value in model.state_dict().items()}
    sweep = tll.patching_sweep(model, clean, corrupt, metric, sites=["0", "1", "3"])
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())
    expected = []
    for site in ["0", "1", "3"]:
        expected += _hook_sweep(model, clean, corrupt, [site], metric)
        model.load_state_dict(state)
    assert list(sweep["metric"]) == expected
    assert list(sweep["calls_run"]) == [0, 0, 0]


def test_an_op_site_and_every_pass_of_a_shared_module():
    model = Blocks()
    clean, corrupt = torch.rand(2, 6), torch.rand(2, 6)
    sweep = tll.patching_sweep(model, clean, corrupt, metric, sites=["relu_1"])
    with torch.no_grad():
        clean_relu = F.relu(F.linear(clean, model.fc1.weight, model.fc1.bias))
        expected = metric(model.by_hand(corrupt, lambda h: clean_relu))
    assert sweep["metric"][0] == expected
    shared = Shared()
    both = tll.patching_sweep(shared, clean[:, :4], corrupt[:, :4], metric, sites=["fc"])
    assert both["metric"][0] == _hook_sweep(shared, clean[:, :4], corrupt[:, :4], ["fc"],
                                            metric)[0]


def test_sites_replay_refuses_fall_back_to_the_re_run():
    model = PassThrough()
    clean, corrupt = torch.rand(2, 3), torch.rand(2, 3)
    sweep = tll.patching_sweep(model, clean, corrupt, lambda out: float(out.sum()),
                               sites=["skip", "fc"])
    assert list(sweep["engine"]) == ["re-run", "replay"]
    history = tll.log_forward_pass(model, corrupt)
    assert sweep["calls_run"][0] == len({layer.call_index for layer in history.layers
                                         if layer.kind == "op"})
    assert sweep["metric"][0] == _hook_sweep(model, clean, corrupt, ["skip"],
                                             lambda out: float(out.sum()))[0]


def test_random_calls_draw_the_same_numbers_in_every_run():
    model = Dropout().train()
    clean, corrupt = torch.rand(3, 6), torch.rand(3, 6)
    torch.manual_seed(8)
    sweep = tll.patching_sweep(model, clean, corrupt, metric, sites=["fc"])
    torch.manual_seed(8)
    stored = []
    handle = model.fc.register_forward_hook(lambda m, i, o: stored.append(o.detach()))
    with torch.no_grad():
        model(clean)
    handle.remove()
    torch.manual_seed(8)
    handle = model.fc.register_forward_hook(lambda m, i, o: stored[0])
    with torch.no_grad():
        expected = metric(model(corrupt))
    handle.remove()
    assert sweep["metric"][0] == expected


def test_bad_arguments_fail_before_the_sweep_runs():
    model = Blocks()
    x = torch.rand(2, 6)
    with pytest.raises(ValueError, match="unknown direction"):
        tll.patching_sweep(model, x, x, metric, sites=["fc1"], direction="both")
    with pytest.raises(TypeError, match="list of sites"):
        tll.patching_sweep(model, x, x, metric, sites="fc1")
    with pytest.raises(KeyError, match="fc1"):
        tll.patching_sweep(model, x, x, metric, sites=["fc1", "fc_1"])
    with pytest.raises(TypeError, match="must return a number"):
        tll.patching_sweep(model, x, x, lambda out: out, sites=["fc1"])
    with pytest.warns(RuntimeWarning, match="cannot be normalised"):
        same = tll.patching_sweep(model, x, x, metric, sites=["fc1"])
    assert math.isnan(same["normalized"][0])


def test_in_place_ops_downstream_of_the_sites_write_into_the_replays_own_values():
    model = InPlace()
    clean, corrupt = torch.rand(3, 5) * 4 - 1, torch.rand(3, 5) * 4 - 1
    sweep = tll.patching_sweep(model, clean, corrupt, metric, sites=["fc", "act"])
    assert list(sweep["metric"]) == _hook_sweep(model, clean, corrupt, ["fc", "act"], metric)
    history = tll.log_forward_pass(model, corrupt)
    saved = {label: history[label].tensor_contents.clone() for label in history.layer_labels}
    from torchlens_like.interventions.replay import ReplayPlan

    values, _ = ReplayPlan(history, {"fc": tll.edits.scale(2.0)}).run(outputs_only=True)
    assert all(torch.equal(history[label].tensor_contents, value) for label, value in saved.items())
    assert torch.equal(values[id(history["output_1"])], hooked_output(model, corrupt))


def hooked_output(model, x):
    handle = model.fc.register_forward_hook(lambda m, i, o: o * 2.0)
    with torch.no_grad():
        out = model(x)
    handle.remove()
    return out


def test_a_metric_that_writes_into_its_argument_changes_no_later_row():
    def doubles_in_place(out):
        return float(out.mul_(2).sum())

    torch.manual_seed(0)
    model, clean, corrupt = Chain(), torch.rand(3, 6), torch.rand(3, 6) - 1
    sites = ["blocks.0", "blocks.1", "blocks.2"]
    sweep = tll.patching_sweep(model, clean, corrupt, doubles_in_place, sites=sites)
    assert list(sweep["metric"]) == _hook_sweep(model, clean, corrupt, sites, doubles_in_place)
    with torch.no_grad():
        assert sweep.attrs["clean_metric"] == doubles_in_place(model(clean))
