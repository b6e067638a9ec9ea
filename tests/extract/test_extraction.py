"""extract_features against forward hooks and plain recomputation on the same images."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import torchlens_like as tll
from torchlens_like.extract import GraphChangedError, StimulusError

from groundtruth import hooked_module_outputs as hooked
from stimulus_images import SMALL_TRANSFORM, transformed


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
                                       progress=False, num_workers=0, validate_every=None)
        # the first check, on the probe's stimuli (it also resolves the layers): a plain
        # forward and a full capture; the check's lean pass and the batches' stop at layer1
        assert calls == [1] * 2
        full = tll.extract_features(small_model, str(image_root), ["layer1"], batch_size=4,
                                    progress=False, num_workers=0, early_stop=False,
                                    validate_every=None)
        assert len(calls) == 2 + (2 + 1 + 2)  # the same two, the check's lean pass, 2 batches
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
    assert bad == 5 and [batch[:2] for batch in manifest["progress"]["avgpool"]] == [[0, 2], [2, 4]]
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


@pytest.mark.parametrize("training", [False, True])
def test_an_axis_as_long_as_the_probe_is_told_apart_from_the_stimulus_axis(training,
                                                                          monkeypatch):
    from torchlens_like.extract import layers

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4))
    model.train(training)
    state = {name: value.clone() for name, value in model.state_dict().items()}
    x = torch.rand(5, 3, 4, 4)  # the conv's output is (stimuli, 4, 2, 2): three axes of 2
    if not training:
        def no_second_capture(*args, **kwargs):
            raise AssertionError("the larger probe should be a lean pass")

        monkeypatch.setattr(layers, "get_model_metadata", no_second_capture)
    feats = tll.extract_features(model, torch.utils.data.TensorDataset(x), ["0"], batch_size=5,
                                 progress=False)
    with torch.no_grad():
        expected = model[0](x)
    assert feats["0"].shape == (5, 4, 2, 2)
    np.testing.assert_array_equal(feats["0"], expected.numpy())
    if not training:  # in training mode every pass updates the running statistics, as model(x)
        assert all(torch.equal(state[name], value) for name, value in model.state_dict().items())
    assert model.training == training


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


class ReluOnSign(BranchOnSign):
    """The relu runs for some inputs only; an op-level layer comes after it."""

    def forward(self, x):
        return torch.sigmoid(super().forward(x))


def _stimuli_with_both_branches(model):
    x = torch.ones(6, 3)
    with torch.no_grad():
        sign = torch.sign(model.first(x[:1]).sum())
    x[3:] *= -sign
    x[:3] *= sign
    return x


def test_a_batch_off_the_known_graph_is_logged_again_and_its_layers_found_by_label():
    torch.manual_seed(0)
    model = ReluOnSign().eval()
    x = _stimuli_with_both_branches(model)
    with pytest.warns(RuntimeWarning, match="stimuli 3-5 left the graph.*'second' after op #3"):
        feats = tll.extract_features(model, torch.utils.data.TensorDataset(x),
                                     ["second", "sigmoid_1"], batch_size=3, progress=False)
    halves = [hooked(model, x[:3], ["second"])["second"], hooked(model, x[3:], ["second"])["second"]]
    np.testing.assert_array_equal(feats["second"], torch.cat(halves).numpy())
    with torch.no_grad():
        expected = torch.cat([model(x[:3]), model(x[3:])])
    np.testing.assert_array_equal(feats["sigmoid_1"], expected.numpy())


def test_a_layer_that_cannot_be_found_again_stops_the_run_naming_it():
    torch.manual_seed(0)
    model = ReluOnSign().eval()
    x = _stimuli_with_both_branches(model)
    label = tll.get_model_metadata(model, x[:2])["sigmoid_1"].layer_label
    with pytest.warns(RuntimeWarning), pytest.raises(GraphChangedError, match=f"'{label}'"):
        tll.extract_features(model, torch.utils.data.TensorDataset(x), [label],
                             batch_size=3, progress=False)


class PickOneOfTwo(nn.Module):
    """An if/else between two modules of the same type, then a functional op."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 3)

    def forward(self, x):
        y = self.a(x) if x.sum() > 0 else self.b(x)
        return torch.relu(y) * 2


@pytest.mark.parametrize("validate_every", [None, 1])
def test_a_swap_between_two_modules_of_one_type_is_caught_at_the_module_call(validate_every):
    torch.manual_seed(0)
    model = PickOneOfTwo().eval()
    x = torch.rand(6, 3)
    x[3:] *= -1
    relu = tll.get_model_metadata(model, x[:2])["relu_1"].layer_label
    with pytest.warns(RuntimeWarning, match="stimuli 3-5 left the graph.*module call #0 is 'b'"):
        feats = tll.extract_features(model, torch.utils.data.TensorDataset(x), [relu],
                                     batch_size=3, progress=False, validate_every=validate_every)
    with torch.no_grad():
        expected = torch.cat([torch.relu(model.a(x[:3])), torch.relu(model.b(x[3:]))])
    np.testing.assert_array_equal(feats[relu], expected.numpy())
    passes = [record["pass"] for record in feats.validation]
    # a check on the second batch finds its stimuli off the known graph, as the batch is: both
    # are logged with a full pass and the layer found again by label
    assert passes[0] == "ops"  # relu is an op inside no module
    assert len(passes) == (2 if validate_every else 1)
    assert all(p.startswith("full capture (the stimuli left the known graph") for p in passes[1:])
    assert {record["result"] for record in feats.validation} == {"passed"}


def test_each_checked_batch_is_recorded_and_a_wrong_lean_value_stops_the_run(tmp_path,
                                                                          monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    data = torch.utils.data.TensorDataset(torch.rand(10, 3))
    feats = tll.extract_features(model, data, ["relu_1", "2"], batch_size=2, progress=False,
                                 validate_every=2)
    checked = [record["stimuli"] for record in feats.validation]
    assert checked == [[0, 2], [4, 6], [8, 10]]
    assert {record["result"] for record in feats.validation} == {"passed"}
    assert {record["pass"] for record in feats.validation} == {"module_outputs"}
    assert feats.validation[0]["torchlens_like"] == tll.__version__

    # the class the torch backend builds (a doctest run may have imported lean.py a second time)
    from torchlens_like.capture.run import LeanPlan

    original = LeanPlan.__init__

    def keep_the_op_before(self, history, positions, runner):
        original(self, history, positions, runner)
        self.by_ordinal = {ordinal - 1: targets for ordinal, targets in self.by_ordinal.items()}
        self.by_module_start = None
        self.path = "ops"

    monkeypatch.setattr(LeanPlan, "__init__", keep_the_op_before)
    out = tmp_path / "out"
    with pytest.raises(tll.extract.ExtractionValidationError,
                       match="layer 'relu_1' \\(relu_1_3\\) on stimuli 0-1"):
        tll.extract_features(model, data, ["relu_1"], batch_size=2, progress=False,
                             output_dir=out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["validation"][0]["result"].startswith("failed: layer 'relu_1'")
    assert manifest["progress"]["relu_1"] == []


def test_a_first_capture_that_does_not_validate_stops_the_run_before_anything_is_written(
        tmp_path, monkeypatch):
    from torchlens_like.extract import extraction
    from torchlens_like.validate import ValidationError

    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU()).eval()
    data = torch.utils.data.TensorDataset(torch.rand(6, 3))
    checked = []

    def refuse(model, inputs):
        checked.append(len(inputs))
        raise ValidationError("relu_1_2: replay differs (largest difference 0.5)")

    monkeypatch.setattr(extraction, "check_saved_activations", refuse)
    out = tmp_path / "out"
    with pytest.raises(tll.extract.ExtractionValidationError,
                       match="stimuli 0-1 did not validate: relu_1_2: replay differs"):
        tll.extract_features(model, data, ["1"], batch_size=2, progress=False, output_dir=out)
    assert checked == [2]
    assert not out.exists() or not any(out.iterdir())


def test_damaged_rows_are_refused_by_load_features_and_extracted_again(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU()).eval()
    data = torch.utils.data.TensorDataset(torch.rand(9, 3))
    out = tmp_path / "out"
    tll.extract_features(model, data, ["0"], batch_size=4, output_dir=out, progress=False)
    intact = (out / "0.npy").read_bytes()
    stored = np.load(out / "0.npy", mmap_mode="r+")
    stored[5] = 0.0
    stored.flush()
    del stored
    with pytest.raises(tll.extract.DamagedFeaturesError, match="layer '0': rows 4-7"):
        tll.load_features(out)
    assert tll.load_features(out, verify=False)["0"][5].tolist() == [0.0] * 4
    with pytest.warns(RuntimeWarning, match="rows 4-7"):
        again = tll.extract_features(model, data, ["0"], batch_size=4, output_dir=out,
                                     progress=False)
    assert (out / "0.npy").read_bytes() == intact
    np.testing.assert_array_equal(again["0"], tll.load_features(out)["0"])


def test_memory_limit_groups_and_dry_run(image_root, small_model, capsys):
    layers = ["layer1", "layer2", "layer3", "avgpool"]
    plan = tll.extract_features(small_model, str(image_root), layers, dry_run=True,
                                memory_limit="400KB", num_workers=0)
    out = capsys.readouterr().out
    per_stimulus = {"layer1": 64 * 8 * 8 * 4, "layer2": 128 * 4 * 4 * 4,
                    "layer3": 256 * 2 * 2 * 4, "avgpool": 512 * 4}
    assert plan.set_index("layer").bytes_per_stimulus.to_dict() == per_stimulus
    # 7 stimuli: layer1 115 kB, layer2 57 kB, layer3 29 kB, avgpool 14 kB
    assert plan.group.tolist() == [1, 1, 1, 1]
    plan = tll.extract_features(small_model, str(image_root), layers, dry_run=True,
                                memory_limit="150KB", num_workers=0)
    assert plan.group.tolist() == [1, 2, 2, 2]
    assert "Group 2: 3 layer(s)" in capsys.readouterr().out
    assert "Total for the whole set: 215.04 kB" in out
    with pytest.raises(ValueError, match="'layer1' alone needs"):
        tll.extract_features(small_model, str(image_root), layers, memory_limit="100KB",
                             num_workers=0)
