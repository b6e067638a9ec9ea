"""Each edit against the same change written with numpy; reprs; restriction by index and mask."""

import numpy as np
import pytest
import torch

import torchlens_like as tll
from torchlens_like.records import LayerEntry


def _layer(label="relu_1_2", func="relu"):
    layer = LayerEntry("op", func)
    layer.layer_label = label
    return layer


VALUE = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) - 10


def test_zero_scale_clamp_steer_equal_numpy():
    v = VALUE.numpy()
    assert np.array_equal(tll.edits.zero()(VALUE, None).numpy(), np.zeros_like(v))
    assert np.array_equal(tll.edits.scale(-0.5)(VALUE, None).numpy(), v * -0.5)
    assert np.array_equal(tll.edits.clamp(-3, 4)(VALUE, None).numpy(), np.clip(v, -3, 4))
    assert np.array_equal(tll.edits.clamp(lo=0)(VALUE, None).numpy(), np.maximum(v, 0))
    vector = np.array([1.0, -2.0, 0.5], dtype=np.float32)
    steered = tll.edits.steer(torch.from_numpy(vector), alpha=3.0, dim=1)(VALUE, None)
    assert np.array_equal(steered.numpy(), v + 3.0 * vector[None, :, None])
    last = tll.edits.steer(torch.ones(4))(VALUE, None)
    assert np.array_equal(last.numpy(), v + 1)


def test_mean_resample_patch_read_the_reference_at_the_same_label():
    reference = torch.randn(5, 3, 4)
    layer = _layer()
    meaned = tll.edits.mean({"relu_1_2": reference})(VALUE, layer)
    expected = reference.numpy().mean(axis=0, keepdims=True).repeat(2, axis=0)
    np.testing.assert_allclose(meaned.numpy(), expected, rtol=1e-5, atol=1e-6)
    over_tokens = tll.edits.mean({"relu_1_2": reference[:2]}, axis=1)(VALUE, layer)
    np.testing.assert_allclose(over_tokens.numpy(),
                               np.broadcast_to(reference[:2].numpy().mean(1, keepdims=True),
                                               (2, 3, 4)), rtol=1e-5, atol=1e-6)
    patched = tll.edits.patch({"relu_1_2": reference[:2]})(VALUE, layer)
    assert torch.equal(patched, reference[:2])


def test_resample_gives_each_item_another_items_value():
    reference = torch.arange(6.0).reshape(6, 1).expand(6, 4).clone()
    for seed in range(20):
        drawn = tll.edits.resample({"relu_1_2": reference}, seed=seed)(reference, _layer())
        items = drawn[:, 0].long().tolist()
        assert all(item != own for own, item in enumerate(items))
        assert all(torch.equal(drawn[i], reference[items[i]]) for i in range(6))
    same = tll.edits.resample({"relu_1_2": reference}, seed=4)
    assert torch.equal(same(reference, _layer()), same(reference, _layer()))
    with pytest.raises(ValueError, match="at least 2 items"):
        tll.edits.resample({"relu_1_2": reference[:1]})(reference[:1], _layer())


def test_index_and_mask_restrict_the_edit():
    v = VALUE.numpy()
    channel = tll.edits.zero(index=(slice(None), 1))(VALUE, None).numpy()
    expected = v.copy()
    expected[:, 1] = 0
    assert np.array_equal(channel, expected)
    tokens = tll.edits.scale(10, index=(slice(None), slice(None), [0, 3]))(VALUE, None).numpy()
    expected = v.copy()
    expected[:, :, [0, 3]] *= 10
    assert np.array_equal(tokens, expected)
    mask = torch.tensor([True, False, True]).view(1, 3, 1)
    masked = tll.edits.clamp(hi=0, mask=mask)(VALUE, None).numpy()
    assert np.array_equal(masked, np.where(mask.numpy(), np.minimum(v, 0), v))
    with pytest.raises(ValueError, match="not both"):
        tll.edits.zero(index=0, mask=mask)
    with pytest.raises(TypeError, match="boolean"):
        tll.edits.zero(mask=torch.ones(3))


def test_replace_gets_a_copy_and_the_layer():
    seen = []

    def lesion(activation, layer):
        seen.append(layer.layer_label)
        return activation.mul_(0).add_(7)

    value = VALUE.clone()
    out = tll.edits.replace(lesion)(value, _layer())
    assert torch.equal(value, VALUE) and torch.equal(out, torch.full_like(VALUE, 7))
    assert seen == ["relu_1_2"]


def test_reprs_are_readable_and_equality_is_by_value():
    assert repr(tll.edits.zero(index=(slice(None), 5))) == "zero(index=(:, 5))"
    assert repr(tll.edits.scale(2, index=(Ellipsis, slice(1, 3)))) == "scale(k=2, index=(..., 1:3))"
    assert repr(tll.edits.clamp(0, 1)) == "clamp(lo=0, hi=1)"
    assert repr(tll.edits.steer(torch.zeros(8), alpha=4.0)) == \
        "steer(vector=tensor(shape=(8,), dtype=float32), alpha=4.0, dim=-1)"
    assert repr(tll.edits.mean({"a": torch.ones(1)})) == "mean(reference=<values of 1 layers>, axis=0)"
    assert tll.edits.steer(torch.ones(2)) == tll.edits.steer(torch.ones(2))
    assert tll.edits.steer(torch.ones(2)) != tll.edits.steer(torch.ones(2), alpha=2.0)
    assert tll.edits.zero(index=(slice(None), 1)) != tll.edits.zero(index=(slice(None), 2))


def test_bad_arguments_are_refused_naming_the_edit():
    with pytest.raises(TypeError, match="scale\\(k=...\\)"):
        tll.edits.scale("2")
    with pytest.raises(ValueError, match="clamp\\(\\) needs"):
        tll.edits.clamp()
    with pytest.raises(TypeError, match="patch"):
        tll.edits.patch([1, 2])
    with pytest.raises(ValueError, match="3 elements .* 4 along dim=-1"):
        tll.edits.steer(torch.ones(3))(VALUE, None)
    with pytest.raises(ValueError, match="shape \\(1, 3, 4\\).*\\(2, 3, 4\\)"):
        tll.edits.patch({"relu_1_2": VALUE[:1]})(VALUE, _layer())
    with pytest.raises(KeyError, match="relu_1_2"):
        tll.edits.patch({"other": VALUE})(VALUE, _layer())
    with pytest.raises(ValueError, match="unknown edit 'ablate'; choose one of: clamp"):
        tll.edits.edit_class("ablate")
