"""top_k_classes against a hand softmax; compare_models against tll.analysis called by hand."""

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision

import torchlens_like as tll
from torchlens_like.analysis import compare_rdms, compute_rdm

from stimulus_images import SMALL_TRANSFORM, transformed


def test_top_k_equals_a_hand_softmax_with_imagenet_names(image_root, small_model):
    table = tll.top_k_classes(small_model, str(image_root), k=3, batch_size=4, num_workers=0)
    paths = sorted(image_root.rglob("img*"))
    with torch.no_grad():
        logits = small_model(transformed(paths)).double()
    exp = torch.exp(logits - logits.max(1, keepdim=True).values)
    probabilities = (exp / exp.sum(1, keepdim=True)).numpy()
    names = torchvision.models.ResNet18_Weights.DEFAULT.meta["categories"]
    assert len(table) == 3 * len(paths)
    for i, path in enumerate(paths):
        rows = table[table.stimulus == str(path.relative_to(image_root))]
        order = np.argsort(-probabilities[i])[:3]
        assert rows["rank"].tolist() == [1, 2, 3]
        assert rows.class_index.tolist() == order.tolist()
        assert rows["class"].tolist() == [names[j] for j in order]
        np.testing.assert_allclose(rows.probability, probabilities[i, order], rtol=1e-5)


def test_compare_models_equals_rdms_by_hand_and_reuses_features(tmp_path, image_root):
    models = {f"seed{s}": tll.load_model("resnet18", source="torchvision", seed=s)[0]
              for s in (0, 1)}
    folder = tll.ImageFolder(image_root, SMALL_TRANSFORM)
    table = tll.compare_models(models, folder, {"seed0": "layer3", "seed1": "avgpool"},
                               dissimilarity="euclidean", correlation="spearman",
                               output_dir=str(tmp_path), num_workers=0, progress=False)
    x = transformed(sorted(image_root.rglob("img*")))
    with torch.no_grad():
        seen = {}
        models["seed0"].layer3.register_forward_hook(
            lambda m, i, o: seen.__setitem__("seed0", o.flatten(1).numpy()))
        models["seed1"].avgpool.register_forward_hook(
            lambda m, i, o: seen.__setitem__("seed1", o.flatten(1).numpy()))
        models["seed0"](x)
        models["seed1"](x)
    expected = compare_rdms({k: compute_rdm(v, "euclidean") for k, v in seen.items()},
                            "spearman")
    pd.testing.assert_frame_equal(table, expected, atol=1e-6)
    assert (tmp_path / "seed0" / "manifest.json").exists()
    calls = []
    models["seed1"].register_forward_hook(lambda *a: calls.append(1))
    again = tll.compare_models(models, folder, {"seed0": "layer3", "seed1": "avgpool"},
                               dissimilarity="euclidean", correlation="spearman",
                               output_dir=str(tmp_path), num_workers=0, progress=False)
    assert calls == []
    pd.testing.assert_frame_equal(again, table)


def test_compare_models_cka_equals_cka_by_hand_and_refuses_rsa_options():
    from torchlens_like.analysis import cka

    torch.manual_seed(0)
    models = {"a": torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU()),
              "b": torch.nn.Sequential(torch.nn.Linear(6, 9), torch.nn.Tanh())}
    inputs = torch.rand(12, 6)
    data = torch.utils.data.TensorDataset(inputs)
    table = tll.compare_models(models, data, {"a": "relu_1", "b": "tanh_1"}, measure="cka",
                               debiased=True, progress=False)
    with torch.no_grad():
        expected = cka(models["a"](inputs).numpy(), models["b"](inputs).numpy(), debiased=True)
    assert table.loc["a", "b"] == table.loc["b", "a"] == pytest.approx(expected, rel=1e-6)
    assert table.loc["a", "a"] == 1.0 and not 0.99 < expected
    with pytest.raises(ValueError, match="correlation do not apply to measure='cka'"):
        tll.compare_models(models, data, "linear_1", correlation="spearman", measure="cka", progress=False)
    with pytest.raises(ValueError, match="kernel do not apply to measure='rsa'"):
        tll.compare_models(models, data, "linear_1", kernel="rbf", progress=False)
    with pytest.raises(ValueError, match="unknown measure 'svcca'; choose one of: cka, rsa"):
        tll.compare_models(models, data, "linear_1", measure="svcca", progress=False)


def test_compare_models_progress_bars_name_each_model(capsys):
    torch.manual_seed(0)
    models = {"first net": torch.nn.Sequential(torch.nn.Linear(3, 4)).eval(),
              "second net": torch.nn.Sequential(torch.nn.Linear(3, 5)).eval()}
    data = torch.utils.data.TensorDataset(torch.rand(6, 3))
    tll.compare_models(models, data, "0", batch_size=3)
    bars = capsys.readouterr().err
    assert "first net: 1 layer" in bars and "second net: 1 layer" in bars
    tll.compare_models(models, data, "0", batch_size=3, progress=False)
    assert "net" not in capsys.readouterr().err
