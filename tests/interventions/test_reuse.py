"""Reuse of the source run in replay: what it takes and what it must not; against forward hooks."""

import math

import numpy as np
import pytest
import torch

import torchlens_like as tll
from torchlens_like.interventions.replay import ReplayPlan, ReplayRefused
from torchlens_like.interventions.reuse import SourceRun, bitwise_equal

from intervention_zoo import Blocks, Chain, ReadsANumber, patched_by_hooks


def _replayed(model, address, source_input, target_input):
    source = tll.log_forward_pass(model, source_input)
    target = tll.log_forward_pass(model, target_input)
    plan = ReplayPlan(target, {address: tll.edits.patch(source)})
    values, _ = plan.run(outputs_only=True, source=SourceRun(target, source))
    return values[id(target[target.output_layers[0]])], plan


def test_a_whole_block_of_a_chain_patched_reuses_every_op_after_it():
    model = Chain()
    clean, corrupt = torch.rand(3, 6), torch.rand(3, 6) - 1
    for address in ("blocks.0", "blocks.2"):
        out, plan = _replayed(model, address, clean, corrupt)
        assert plan.recomputed == 0 and plan.reused > 0
        assert torch.equal(out, patched_by_hooks(model, address, clean, corrupt))


def test_where_the_patched_value_meets_a_different_value_of_the_target_run_it_recomputes():
    model = Chain()
    clean, corrupt = torch.rand(3, 6), torch.rand(3, 6) - 1
    out, plan = _replayed(model, "blocks.1.fc2", clean, corrupt)
    assert plan.recomputed > 0
    assert torch.equal(out, patched_by_hooks(model, "blocks.1.fc2", clean, corrupt))
    blocks, clean, corrupt = Blocks(), torch.rand(2, 6), torch.rand(2, 6)
    out, plan = _replayed(blocks, "fc2", clean, corrupt)
    assert plan.recomputed > 0
    assert torch.equal(out, patched_by_hooks(blocks, "fc2", clean, corrupt))


def test_a_python_number_that_differs_between_the_runs_is_not_reused():
    model = ReadsANumber()
    clean = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    corrupt = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    out, plan = _replayed(model, "fc", clean, corrupt)
    assert plan.recomputed > 0
    expected = patched_by_hooks(model, "fc", clean, corrupt)
    assert torch.equal(out, expected)
    with torch.no_grad():
        assert not torch.equal(expected, model(clean))


def test_bitwise_equality_tells_signed_zeros_apart_and_matches_nans():
    target = tll.log_forward_pass(lambda x: x * 0.0 + 1.0, torch.tensor([1.0, float("nan")]))
    source = tll.log_forward_pass(lambda x: x * 0.0 + 1.0, torch.tensor([-1.0, float("nan")]))
    runs = SourceRun(target, source)
    assert torch.equal(target["mul_1"].tensor_contents[:1], source["mul_1"].tensor_contents[:1])
    assert not runs.same_value(target["mul_1"])
    nan = torch.tensor([float("nan")])
    assert bitwise_equal(nan, nan.clone()) and not bitwise_equal(nan, nan.double())
    assert runs.same_call(target["add_1"]) is source["add_1"]


def test_part_of_a_batch_patched_before_batch_norm_in_training_mode_is_recomputed():
    torch.manual_seed(10)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4),
                                torch.nn.Linear(4, 2)).train()
    clean, corrupt = torch.rand(5, 4), torch.rand(5, 4) * 3
    state = {key: value.clone() for key, value in model.state_dict().items()}
    source = tll.log_forward_pass(model, clean)
    target = tll.log_forward_pass(model, corrupt)
    plan = ReplayPlan(target, {"0": tll.edits.patch(source, index=slice(0, 1))})
    values, _ = plan.run(outputs_only=True, source=SourceRun(target, source))
    assert plan.recomputed > 0 and plan.reused == 0
    model.load_state_dict(state)
    first = []
    handle = model[0].register_forward_hook(lambda m, i, o: first.append(o[:1].clone()))
    with torch.no_grad():
        model(clean)
    handle.remove()
    handle = model[0].register_forward_hook(lambda m, i, o: torch.cat([first[0], o[1:]]))
    with torch.no_grad():
        expected = model(corrupt)
    handle.remove()
    model.load_state_dict(state)
    assert torch.equal(values[id(target[target.output_layers[0]])], expected)


class DividesByANumber(torch.nn.Module):
    """``1 / (h * k)`` with ``k`` a Python float read from the input: ``0.0`` or ``-0.0``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(2, 2)

    def forward(self, x):
        k = x[0, 0].item()
        return 1.0 / ((torch.relu(self.fc(x)) + 1.0) * k)


def test_a_python_float_argument_counts_as_the_source_runs_only_with_the_same_sign_bit():
    model = DividesByANumber()
    clean, corrupt = torch.tensor([[0.0, 1.0]]), torch.tensor([[-0.0, 1.0]])
    out, plan = _replayed(model, "fc", clean, corrupt)
    expected = patched_by_hooks(model, "fc", clean, corrupt)
    assert bool((expected == -math.inf).all())
    assert torch.equal(out, expected) and plan.recomputed > 0


def test_python_scalars_compare_by_bits():
    from torchlens_like.interventions.reuse import _same_arguments

    def same(a, b):
        return _same_arguments(a, b, lambda *_: False)

    assert not same(0.0, -0.0) and same(math.nan, math.nan) and same(1.5, 1.5)
    assert not same(complex(0.0, 0.0), complex(0.0, -0.0)) and same(1 + 2j, 1 + 2j)
    assert not same(np.float32(0.0), np.float32(-0.0)) and same(np.float64(2), np.float64(2))
    assert not same(slice(0, 2, 1), slice(0, 2, 2)) and same((slice(None, 3),), (slice(None, 3),))


class ScalesBy(torch.nn.Module):
    """``(fc(x)[..., None] * y).sum(1)``: the sum's order of additions follows ``y``'s strides."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(8, 64)

    def forward(self, x, y):
        return (self.fc(x).unsqueeze(-1) * y).sum(1)


def test_equal_values_in_another_memory_layout_are_not_taken_for_the_source_runs():
    torch.manual_seed(1)
    model = ScalesBy()
    y = torch.randn(64, 64, 64)
    y_other_layout = y.permute(2, 1, 0).contiguous().permute(2, 1, 0)
    clean, corrupt = (torch.randn(64, 8), y), (torch.randn(64, 8), y_other_layout)
    assert torch.equal(y, y_other_layout) and not bitwise_equal(y, y_other_layout)
    out, plan = _replayed(model, "fc", clean, corrupt)
    module, stored = model.fc, []
    handle = module.register_forward_hook(lambda m, i, o: stored.append(o.detach().clone()))
    with torch.no_grad():
        model(*clean)
    handle.remove()
    handle = module.register_forward_hook(lambda m, i, o: stored[0])
    with torch.no_grad():
        expected = model(*corrupt)
    handle.remove()
    assert torch.equal(out, expected) and plan.recomputed > 0


class WritesThroughAnAlias(torch.nn.Module):
    """``d`` shares ``a``'s memory without a graph edge (``detach`` or ``.data``); ``a`` is then
    written into, which ``d`` sees."""

    def __init__(self, alias):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(3, 3)
        self.alias = alias

    def forward(self, x):
        a = torch.relu(self.fc(x)) * 1.0
        d = self.alias(a)
        a.add_(x)
        return d * 2


def test_a_value_whose_memory_its_run_wrote_into_later_is_not_taken_from_the_source_run():
    clean, corrupt = torch.rand(2, 3), torch.rand(2, 3) + 5
    for alias in (torch.Tensor.detach, lambda a: a.data):
        model = WritesThroughAnAlias(alias)
        out, _ = _replayed(model, "fc", clean, corrupt)
        assert torch.equal(out, patched_by_hooks(model, "fc", clean, corrupt))
        sweep = tll.patching_sweep(model, clean, corrupt, lambda o: float(o.double().sum()),
                                   sites=["fc"])
        expected = patched_by_hooks(model, "fc", clean, corrupt)
        assert sweep["metric"][0] == float(expected.double().sum())


class ScalesItsWeight(torch.nn.Module):
    """After reading ``fc_k.weight`` the forward doubles it in place, when the input says so."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc_q, self.fc_k = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)

    def forward(self, x):
        out = self.fc_k(torch.relu(self.fc_q(x)))
        if x[0, 0] > 0.5:
            with torch.no_grad():
                self.fc_k.weight.mul_(2.0)
        return out


class MomentumEncoder(torch.nn.Module):
    """MoCo's key encoder: its weights move towards the query encoder's, through ``.data``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc_q, self.fc_k = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)

    def forward(self, x):
        with torch.no_grad():
            for query, key in zip(self.fc_q.parameters(), self.fc_k.parameters()):
                key.data.mul_(0.5).add_(query.data * 0.5)
        return self.fc_k(torch.relu(self.fc_q(x)))


def test_weights_a_forward_writes_into_are_not_taken_for_the_source_runs():
    clean, corrupt = torch.tensor([[0.9, 0.1, 0.2]]), torch.tensor([[0.1, 0.7, 0.3]])
    for build in (ScalesItsWeight, MomentumEncoder):
        expected = patched_by_hooks(build(), "fc_q", clean, corrupt)
        sweep = tll.patching_sweep(build(), clean, corrupt, lambda o: float(o.double().sum()),
                                   sites=["fc_q"])
        assert sweep["metric"][0] == float(expected.double().sum())
        model = build()
        out, _ = _replayed(model, "fc_q", clean, corrupt)
        assert torch.equal(out, patched_by_hooks(build(), "fc_q", clean, corrupt))


def test_weights_written_between_logging_the_two_runs_are_not_taken_for_the_source_runs():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    clean, corrupt = torch.rand(2, 3), torch.rand(2, 3) + 5
    source = tll.log_forward_pass(model, clean)
    with torch.no_grad():
        model[2].weight.mul_(2.0)
    target = tll.log_forward_pass(model, corrupt)
    plan = ReplayPlan(target, {"0": tll.edits.patch(source)})
    values, _ = plan.run(outputs_only=True, source=SourceRun(target, source))
    handle = model[0].register_forward_hook(lambda m, i, o: source["0"].tensor_contents)
    with torch.no_grad():
        expected = model(corrupt)
    handle.remove()
    assert torch.equal(values[id(target[target.output_layers[0]])], expected)


def test_replay_refuses_a_history_whose_forward_wrote_a_weight_after_reading_it():
    history = tll.log_forward_pass(ScalesItsWeight(), torch.tensor([[0.9, 0.1, 0.2]]))
    with pytest.raises(ReplayRefused, match="fc_k.weight"):
        history.intervene({"fc_q": tll.edits.scale(2.0)})
