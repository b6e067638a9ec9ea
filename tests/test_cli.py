"""The tll command line: layer table and the demo job, checked against plain torchvision."""

import numpy as np
import torch
import torchvision

from torchlens_like.cli import load_torchvision_model, main, sample_images


def test_layers_prints_one_row_per_op(capsys):
    main(["layers", "resnet18", "--image-size", "64"])
    out = capsys.readouterr().out
    assert out.startswith("ResNet:")
    model = torchvision.models.resnet18()
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert sum(line.startswith("conv2d_") for line in out.splitlines()) == convs
    assert "layer4.1.conv2" in out


def test_weights_file_is_loaded(tmp_path):
    torch.manual_seed(3)
    reference = torchvision.models.alexnet()
    path = tmp_path / "alexnet.pt"
    torch.save(reference.state_dict(), path)
    loaded = load_torchvision_model("alexnet", str(path))
    for (name, a), (_, b) in zip(reference.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert not loaded.training


def test_unknown_model_names_close_ones(capsys):
    import pytest

    with pytest.raises(SystemExit, match="resnet18"):
        load_torchvision_model("resnet_18")


def test_demo_features_equal_forward_hooks(tmp_path, capsys):
    main(["demo", "--model", "resnet18", "--layers", "layer4", "avgpool", "fc",
          "--out", str(tmp_path)])
    saved = np.load(tmp_path / "features.npz")
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    assert torch.equal(model.fc.weight, load_torchvision_model("resnet18").fc.weight)
    seen = {}
    for name in ("layer4", "avgpool", "fc"):
        model.get_submodule(name).register_forward_hook(
            lambda m, i, o, name=name: seen.__setitem__(name, o.detach().flatten(1).numpy()))
    model(sample_images())
    keys = [k for k in saved.files if k != "images"]
    assert len(keys) == 3
    for key, name in zip(keys, ("layer4", "avgpool", "fc")):
        np.testing.assert_array_equal(saved[key], seen[name])
    assert list(saved["images"]) == ["astronaut", "coffee", "chelsea", "rocket", "cat",
                                     "immunohistochemistry"]
