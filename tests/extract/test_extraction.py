"""extract_features against forward hooks and plain recomputation on the same images."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import torchlens_like as tll
from torchlens_like.extract import GraphChangedError, StimulusError

from stimulus_images import SMALL_TRANSFORM, transformed


def hooked(model, inputs, addresses):
    seen = {}
    hooks = [model.get_submodule(a).register_forward_hook(
        lambda m, i, o, a=a: seen.__setitem__(a, o.detach().clone())) for a in addresses]
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def model_state(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [(n, m.training, len(m._forward_hooks), "forward" in vars(m))
             for n, m in model.named_modules()])


def same_state(a, b):
    return a[1] == b[1] and all(torch.equal(a[0][k], b[0][k]) for k in a[0])


def test_module_layers_equal_forward_hooks_in_stimulus_order(image_root, small_model):
    folder = tll.ImageFolder(image_root, SMALL_TRANSFORM)
    before, rng = model_state(small_model), torch.get_rng_state()
    feats = tll.extract_features(small_model, folder, ["layer2", "layer3.0.conv1", "fc"],
                                 batch_size=3, progress=False, num_workers=0)
    assert same_state(before, model_state(small_model))
    assert torch.equal(rng, torch.get_rng_state())
    paths = sorted(image_root.rglob("img*"))
    assert feats.stimulus_ids == [str(p.relative_to(image_root)) for p in paths]
    assert feats.stimulus_labels == [p.parent.name for p in paths]
    expected = hooked(small_model, transformed(paths), ["layer2", "layer3.0.conv1", "fc"])
    for key, value in expected.items():
        assert feats[key].shape == tuple(value.shape)
        np.testing.assert_allclose(feats[key], value.numpy(), rtol=1e-5, atol=1e-5)
    assert feats.layer_labels["layer3.0.conv1"].startswith("conv2d_")


def test_non_module_residual_add_equals_recomputation(image_root, small_model):
    history = tll.get_model_metadata(small_model, torch.rand(2, 3, 32, 32))
    adds = [layer.layer_label for layer in history if layer.func_name in ("add", "add_",
                                                                           "__iadd__")]
    feats = tll.extract_features(small_model, str(image_root), [adds[0]], batch_size=4,
                                 progress=False, num_workers=0, flatten=True)
    m, block = small_model, small_model.layer1[0]
    with torch.no_grad():
        x = transformed(sorted(image_root.rglob("img*")))
        stem = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        expected = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(stem))))) + stem
    np.testing.assert_allclose(feats[adds[0]], expected.flatten(1).numpy(), rtol=1e-5,
                               atol=1e-5)


def test_early_stop_skips_the_rest_and_changes_nothing(image_root, small_model):
    calls = []
    probe = small_model.fc.register_forward_hook(lambda *a: calls.append(1))
    try:
        stopped = tll.extract_features(small_model, str(image_root), ["layer1"], batch_size=4,
                                       progress=False, num_workers=0)
        assert calls == [1]  # only the probe pass reaches fc
        full = tll.extract_features(small_model, str(image_root), ["layer1"], batch_size=4,
                                    progress=False, num_workers=0, early_stop=False)
        assert len(calls) == 1 + (1 + 2)  # probe + two batches of 4 and 3
    finally:
        probe.remove()
    np.testing.assert_array_equal(stopped["layer1"], full["layer1"])


def test_datasets_loaders_and_path_lists_give_the_same_rows(image_root, small_model):
    paths = sorted(image_root.rglob("img*"))
    x = transformed(paths)
    expected = hooked(small_model, x, ["avgpool"])["avgpool"].flatten(1).numpy()
    dataset = torch.utils.data.TensorDataset(x, torch.arange(len(x)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=2)
    for stimuli in (dataset, loader, [str(p) for p in paths]):
        feats = tll.extract_features(small_model, stimuli, ["avgpool"], batch_size=3,
                                     progress=False, flatten=True, num_workers=0)
        np.testing.assert_allclose(feats["avgpool"], expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="shuffle"):
        tll.extract_features(small_model, torch.utils.data.DataLoader(dataset, shuffle=True),
                             ["avgpool"])


def test_unknown_layer_names_close_matches(image_root, small_model):
    with pytest.raises(ValueError, match="layers: .*layer3"):
        tll.extract_features(small_model, str(image_root), ["layr3"], progress=False,
                             num_workers=0)


def test_corrupt_image_raises_naming_it_or_is_skipped(tmp_path, image_root, small_model):
    broken = image_root / "dogs" / "img03b.jpg"
    good = (image_root / "cats" / "img03.jpg").read_bytes()
    broken.write_bytes(good[: len(good) // 3])
    out = tmp_path / "out"
    with pytest.raises(StimulusError, match="img03b.jpg"):
        tll.extract_features(small_model, str(image_root), ["avgpool"], batch_size=2,
                             output_dir=str(out), progress=False, num_workers=0)
    manifest = pd.read_json(out / "manifest.json", typ="series")
    ids = pd.read_csv(out / "stimuli.csv").path.tolist()
    bad = ids.index("dogs/img03b.jpg")
    assert bad == 5 and manifest["progress"]["avgpool"][0][:2] == [0, 4]  # batches of 2 before it
    feats = tll.extract_features(small_model, str(image_root), ["avgpool"], batch_size=2,
                                 output_dir=str(tmp_path / "skip"), progress=False,
                                 num_workers=0, on_error="skip", flatten=True)
    assert list(feats.skipped) == [bad] and "img03b.jpg" in feats.skipped[bad]
    rows = np.asarray(feats["avgpool"])
    assert np.isnan(rows[bad]).all() and not np.isnan(np.delete(rows, bad, 0)).any()
    kept = [p for p in sorted(image_root.rglob("img*")) if p != broken]
    expected = hooked(small_model, transformed(kept), ["avgpool"])["avgpool"].flatten(1)
    np.testing.assert_allclose(np.delete(rows, bad, 0), expected.numpy(), rtol=1e-5, atol=1e-5)


class SequenceFirstEncoder(nn.Module):
    """Token embedding then a sequence-first attention layer: (tokens, stimuli, features)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(6, 8)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.attention = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0)

    def forward(self, x):
        tokens = self.embed(x).transpose(0, 1)
        tokens = torch.cat([self.cls.expand(1, tokens.shape[1], 8), tokens])
        return self.attention(tokens)


def test_token_reductions_find_the_stimulus_axis_in_the_tensor():
    torch.manual_seed(0)
    model = SequenceFirstEncoder().eval()
    x = torch.rand(5, 4, 6)
    feats = tll.extract_features(model, torch.utils.data.TensorDataset(x), ["attention"],
                                 batch_size=2, progress=False,
                                 reduction="class_token")
    with torch.no_grad():
        out = model(x)
    assert out.shape == (5, 5, 8)
    np.testing.assert_allclose(feats["attention"], out[0].numpy(), rtol=1e-5, atol=1e-6)
    means = tll.extract_features(model, torch.utils.data.TensorDataset(x), ["attention"],
                                 batch_size=2, progress=False, reduction="token_mean")
    np.testing.assert_allclose(means["attention"], out.mean(0).numpy(), rtol=1e-5, atol=1e-6)
    conv = nn.Sequential(nn.Conv2d(3, 2, 1))
    with pytest.raises(ValueError, match="class_token.*layer '0' has shape \\(2, 4, 4\\) per"):
        tll.extract_features(conv, torch.utils.data.TensorDataset(torch.rand(3, 3, 4, 4)), ["0"],
                             progress=False, reduction={"0": "class_token"})


def test_spatial_mean_and_random_projection(image_root, small_model):
    from torchlens_like.analysis import sparse_random_projection

    feats = tll.extract_features(small_model, str(image_root), ["layer2", "layer3"],
                                 batch_size=3, progress=False, num_workers=0,
                                 reduction={"layer2": "spatial_mean",
                                            "layer3": ("srp", {"n_components": 20, "seed": 3})})
    seen = hooked(small_model, transformed(sorted(image_root.rglob("img*"))),
                  ["layer2", "layer3"])
    np.testing.assert_allclose(feats["layer2"], seen["layer2"].mean((2, 3)).numpy(),
                               rtol=1e-5, atol=1e-6)
    projected = sparse_random_projection(seen["layer3"].flatten(1).numpy(), 20, seed=3)
    np.testing.assert_allclose(feats["layer3"], projected, rtol=1e-4, atol=1e-5)


class BranchOnSign(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Linear(3, 3)
        self.second = nn.Linear(3, 3)

    def forward(self, x):
        y = self.first(x)
        if y.sum() > 0:
            y = torch.relu(y)
        return self.second(y)


def test_a_graph_that_changes_between_batches_is_an_error_naming_the_layer():
    torch.manual_seed(0)
    model = BranchOnSign().eval()
    x = torch.ones(6, 3)
    with torch.no_grad():
        sign = torch.sign(model.first(x[:1]).sum())
    x[3:] *= -sign
    x[:3] *= sign
    with pytest.raises(GraphChangedError, match="'second'"):
        tll.extract_features(model, torch.utils.data.TensorDataset(x), ["second"],
                             batch_size=3, progress=False)


def test_memory_limit_groups_and_dry_run(image_root, small_model, capsys):
    layers = ["layer1", "layer2", "layer3", "avgpool"]
    plan = tll.extract_features(small_model, str(image_root), layers, dry_run=True,
                                memory_limit="400KB", num_workers=0)
    out = capsys.readouterr().out
    per_stimulus = {"layer1": 64 * 8 * 8 * 4, "layer2": 128 * 4 * 4 * 4,
                    "layer3": 256 * 2 * 2 * 4, "avgpool": 512 * 4}
    assert plan.set_index("layer").bytes_per_stimulus.to_dict() == per_stimulus
    # 7 stimuli: layer1 115 KB, layer2 57 KB, layer3 29 KB, avgpool 14 KB
    assert plan.group.tolist() == [1, 1, 1, 1]
    plan = tll.extract_features(small_model, str(image_root), layers, dry_run=True,
                                memory_limit="150KB", num_workers=0)
    assert plan.group.tolist() == [1, 2, 2, 2]
    assert "Group 2: 3 layer(s)" in capsys.readouterr().out
    assert "Total for the whole set: 215.04 KB" in out
    with pytest.raises(ValueError, match="'layer1' alone needs"):
        tll.extract_features(small_model, str(image_root), layers, memory_limit="100KB",
                             num_workers=0)
