"""tll.attribute against Captum on module sites and against autograd by hand on op sites."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchlens_like as tll
from groundtruth import assert_model_unchanged, assert_same_rng, model_snapshot, rng_state

captum_attr = pytest.importorskip("captum.attr")

RULES = ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]


class Residual(nn.Module):
    """fc1 -> tanh -> (+ relu(fc2)) -> head; ``by_hand`` can replace the residual sum."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(5, 8)
        self.act = nn.Tanh()
        self.fc2 = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = self.act(self.fc1(x))
        h = h + F.relu(self.fc2(h))
        return self.head(h)

    def by_hand(self, x, at_sum=lambda value: value):
        h = torch.tanh(F.linear(x, self.fc1.weight, self.fc1.bias))
        h = at_sum(h + F.relu(F.linear(h, self.fc2.weight, self.fc2.bias)))
        return F.linear(h, self.head.weight, self.head.bias)


def _x():
    return torch.randn(4, 5, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("site", ["fc1", "act", "fc2", "head"])
def test_grad_x_activation_on_module_sites_equals_captum(site):
    model, x = Residual(), _x()
    expected = captum_attr.LayerGradientXActivation(model, model.get_submodule(site)).attribute(
        x, target=2)
    found = tll.attribute(model, x, site, method="grad_x_activation", target=2)
    torch.testing.assert_close(found.value, expected, atol=1e-7, rtol=1e-6)
    saliency = tll.attribute(model, x, site, target=2)
    expected = captum_attr.LayerGradientXActivation(model, model.get_submodule(site),
                                                    multiply_by_inputs=False).attribute(
        x, target=2)
    torch.testing.assert_close(saliency.value, expected, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("site", ["fc1", "act", "fc2"])
def test_integrated_gradients_on_module_sites_equal_captum(site, rule):
    model, x = Residual(), _x()
    baseline = torch.full_like(x, 0.3)
    expected, delta = captum_attr.LayerIntegratedGradients(
        model, model.get_submodule(site)).attribute(
        x, baselines=baseline, target=1, n_steps=12, method=rule,
        return_convergence_delta=True)
    found = tll.attribute(model, x, site, method="integrated_gradients", target=1,
                          baseline=baseline, n_steps=12, integration=rule)
    torch.testing.assert_close(found.value, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(found.completeness_gap, delta, atol=1e-5, rtol=1e-4)
    assert found.n_steps == 12 and found.method == "integrated_gradients"


def _fast_path_encoder():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    return nn.Sequential(nn.Linear(4, 8), encoder, nn.Flatten(), nn.Linear(24, 2)).eval()


@pytest.mark.parametrize("site", ["1.layers.0", "1.layers.1.linear1", "2", "3"])
def test_integrated_gradients_after_a_module_with_a_no_grad_fast_path_equal_captum(site):
    """An eval TransformerEncoder takes a fused path without grad: every pass runs with grad."""
    model, x = _fast_path_encoder(), torch.randn(3, 3, 4)
    expected = captum_attr.LayerIntegratedGradients(model, model.get_submodule(site)).attribute(
        x, target=1, n_steps=8)
    found = tll.attribute(model, x, site, method="integrated_gradients", target=1, n_steps=8)
    torch.testing.assert_close(found.value, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("method", ["saliency", "grad_x_activation", "integrated_gradients"])
def test_values_are_contiguous_and_share_no_memory(method):
    """The gradient at ``add`` reaches its ``relu`` operand unchanged: autograd's one tensor."""
    model, x = Residual(), _x()
    found = tll.attribute(model, x, ["add_1", "relu_1"], method=method, target=1, n_steps=4)
    values = [found[key].value for key in ("add_1", "relu_1")]
    assert all(value.is_contiguous() and 0 not in value.stride() for value in values)
    assert values[0].untyped_storage().data_ptr() != values[1].untyped_storage().data_ptr()
    if method == "saliency":
        torch.testing.assert_close(values[0], values[1])
        values[0].zero_()
        torch.testing.assert_close(values[1], _gradient_at_sum(model, x))


def _gradient_at_sum(model, x):
    kept = []

    def at_sum(value):
        value.retain_grad()
        kept.append(value)
        return value

    model.by_hand(x, at_sum)[:, 1].sum().backward()
    return kept[0].grad


class Bag(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, ids):
        return self.head(torch.tanh(self.embed(ids)).mean(1))


@pytest.mark.parametrize("method", ["saliency", "grad_x_activation"])
@pytest.mark.parametrize("site", ["embed", "tanh_1", "head"])
def test_a_frozen_model_with_integer_inputs_equals_captum(site, method):
    """No parameter requires grad and the input is token ids: the site's value is made to."""
    model, ids = Bag().requires_grad_(False), torch.tensor([[1, 2, 3], [4, 5, 6]])
    layer = model.get_submodule(site) if site != "tanh_1" else None
    captum_class = captum_attr.LayerGradientXActivation
    if layer is not None:
        expected = captum_class(model, layer, multiply_by_inputs=method != "saliency").attribute(
            ids, target=0)
    else:
        embedded = torch.tanh(model.embed(ids)).requires_grad_(True)
        (grad,) = torch.autograd.grad(model.head(embedded.mean(1))[:, 0].sum(), embedded)
        expected = grad * embedded.detach() if method != "saliency" else grad
    found = tll.attribute(model, ids, site, method=method, target=0)
    torch.testing.assert_close(found.value, expected, atol=1e-7, rtol=1e-6)
    assert not any(p.requires_grad for p in model.parameters())


def test_integrated_gradients_at_the_input_equal_captum_integrated_gradients():
    model, x = Residual(), _x()
    expected = captum_attr.IntegratedGradients(model).attribute(x, target=0, n_steps=16)
    found = tll.attribute(model, x, "input_1", method="integrated_gradients", target=0,
                          n_steps=16)
    torch.testing.assert_close(found.value, expected, atol=1e-6, rtol=1e-5)


def _by_hand_at_sum(model, x, baseline, n_steps, rule, target):
    """Layer integrated gradients at the residual sum, written out with plain autograd."""
    captured = {}

    def grab(name):
        def at_sum(value):
            captured[name] = value.detach()
            return value
        return at_sum

    with torch.no_grad():
        model.by_hand(x, grab("x"))
        model.by_hand(baseline, grab("b"))
    alphas, weights = tll.gradients.integration.path_points(rule, n_steps)
    start, end = captured["b"], captured["x"]
    path = torch.cat([start + a * (end - start) for a in alphas]).requires_grad_()
    out = model.by_hand(torch.cat([x] * n_steps), lambda value: path)
    (grad,) = torch.autograd.grad(out[:, target].sum(), path)
    average = sum(w * g for w, g in zip(weights, grad.view(n_steps, *end.shape)))
    with torch.no_grad():
        gap_target = model.by_hand(x)[:, target] - model.by_hand(baseline)[:, target]
    return average * (end - start), gap_target


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_middle"])
def test_an_op_site_inside_a_forward_equals_the_formula_by_hand(rule):
    model, x = Residual(), _x()
    baseline = torch.zeros_like(x)
    expected, difference = _by_hand_at_sum(model, x, baseline, 10, rule, target=2)
    found = tll.attribute(model, x, "add_1", method="integrated_gradients", target=2,
                          n_steps=10, integration=rule)
    torch.testing.assert_close(found.value, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(found.target_difference, difference)
    torch.testing.assert_close(found.completeness_gap, found.value.sum(1) - difference)

    value = {}
    def keep(v):  # noqa: E306
        value["sum"] = v
        return v
    out = model.by_hand(x, keep)
    (grad,) = torch.autograd.grad(out[:, 2].sum(), value["sum"])
    torch.testing.assert_close(tll.attribute(model, x, "add_1", target=2).value, grad)
    torch.testing.assert_close(
        tll.attribute(model, x, "add_1", method="grad_x_activation", target=2).value,
        grad * value["sum"].detach())


def test_the_completeness_gap_shrinks_as_steps_grow():
    model, x = Residual(), _x()
    gaps = [tll.attribute(model, x, "fc1", method="integrated_gradients", target=0,
                          n_steps=n, integration="riemann_trapezoid"
                          ).completeness_gap.abs().max().item() for n in (2, 4, 16, 64)]
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3]
    assert gaps[3] < 0.05 * gaps[0]


def test_several_sites_in_one_call_equal_one_call_each():
    model, x = Residual(), _x()
    sites = ["fc1", "add_1", tll.select(func="relu")]
    for method in ("saliency", "grad_x_activation", "integrated_gradients"):
        together = tll.attribute(model, x, sites, method=method, target=1, n_steps=8)
        assert list(together) == sites
        for site in sites:
            alone = tll.attribute(model, x, site, method=method, target=1, n_steps=8)
            torch.testing.assert_close(together[site].value, alone.value)


def test_a_module_called_twice_gives_each_call_its_own_attribution():
    torch.manual_seed(2)
    fc = nn.Linear(3, 3)
    model = nn.Sequential(fc, nn.Tanh(), fc)
    x = torch.randn(2, 3)
    found = tll.attribute(model, x, "0", target=0)
    assert list(found.values) == ["linear_1_2:1", "linear_1_2:2"]
    with pytest.raises(ValueError, match="read attr.values"):
        found.value
    first = fc(x)
    second = fc(torch.tanh(first))
    grads = torch.autograd.grad(second[:, 0].sum(), [first, second])
    torch.testing.assert_close(found.values["linear_1_2:1"], grads[0])
    torch.testing.assert_close(found.values["linear_1_2:2"], grads[1])


def test_a_hugging_face_model_called_with_keywords_equals_captum():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50,
                                     n_positions=16, bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.randint(1, 50, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.long)
    pad = torch.zeros_like(ids)

    def logits(input_ids, attention_mask):
        return model(input_ids=input_ids, attention_mask=attention_mask).logits[:, -1]

    layer = model.transformer.h[0].mlp
    expected = captum_attr.LayerIntegratedGradients(logits, layer).attribute(
        ids, baselines=pad, target=3, additional_forward_args=(mask,), n_steps=6)
    found = tll.attribute(model, input_kwargs={"input_ids": ids, "attention_mask": mask},
                          sites="transformer.h.0.mlp", method="integrated_gradients",
                          target=lambda out: out.logits[:, -1, 3], baseline={"input_ids": pad},
                          n_steps=6)
    torch.testing.assert_close(found.value, expected, atol=1e-6, rtol=1e-5)


def test_attribute_leaves_no_trace():
    model, x = Residual(), _x()
    model.train()
    model.fc1.weight.grad = torch.ones_like(model.fc1.weight)
    before_x, snapshot, rng = x.clone(), model_snapshot(model), rng_state()
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for method in ("saliency", "integrated_gradients"):
            tll.attribute(model, x, ["fc2", "input_1"], method=method, target=0, n_steps=4)
        assert not torch.is_grad_enabled()
    assert torch.equal(x, before_x) and not x.requires_grad and x.grad is None
    assert torch.equal(model.fc1.weight.grad, torch.ones_like(model.fc1.weight))
    assert model.fc2.weight.grad is None
    assert [p.requires_grad for p in model.parameters()] == \
        [p.requires_grad for p in twin.parameters()]
    assert_model_unchanged(snapshot, model)
    assert_same_rng(rng, rng_state())


def test_targets_and_bad_arguments_are_said_plainly():
    model, x = Residual(), _x()
    by_int = tll.attribute(model, x, "fc2", target=1).value
    by_tuple = tll.attribute(model, x, "fc2", target=(1,)).value
    by_call = tll.attribute(model, x, "fc2", target=lambda out: out[:, 1]).value
    torch.testing.assert_close(by_int, by_tuple)
    torch.testing.assert_close(by_int, by_call)
    with pytest.raises(ValueError, match="unknown attribution method 'deeplift'; choose one of: "
                                         "grad_x_activation, integrated_gradients, saliency"):
        tll.attribute(model, x, "fc2", method="deeplift", target=1)
    with pytest.raises(ValueError, match="target=None needs one output value per example"):
        tll.attribute(model, x, "fc2")
    with pytest.raises(TypeError, match="needs sites"):
        tll.attribute(model, x, target=1)
    with pytest.raises(KeyError, match="fc9"):
        tll.attribute(model, x, "fc9", target=1)
    with pytest.raises(ValueError, match="unknown integration rule"):
        tll.attribute(model, x, "fc2", method="integrated_gradients", target=1,
                      integration="simpson")
    two = lambda z: (z.sum(1, keepdim=True), z * 2)  # noqa: E731
    with pytest.raises(TypeError, match="returned a tuple; give target as a callable"):
        tll.attribute(two, x, "sum_1", target=0)
    with pytest.raises(ValueError, match="'mul_1' \\(layer mul_1_3\\) does not reach the target"):
        tll.attribute(two, x, "mul_1", target=lambda out: out[0][:, 0])
