"""The model zoo against the libraries' own constructors, configs and files."""

import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import torchlens_like as tll
from torchlens_like.extract.sources.torchvision_models import resolve_weights
from torchlens_like.extract.zoo import WeightsDownloadError


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_torchvision_random_init_is_seeded_and_leaves_rng_alone():
    before = torch.get_rng_state()
    model, transform = tll.load_model("resnet18", source="torchvision")
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(0)
    reference = torchvision.models.resnet18()
    assert _same_state(model, reference)
    assert not model.training
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    assert repr(transform) == repr(weights.transforms())


@pytest.mark.parametrize("name", torchvision.models.list_models(module=torchvision.models))
def test_every_torchvision_weights_value_resolves(name):
    for value in torchvision.models.get_model_weights(name):
        assert resolve_weights(name, value.name) is value
        assert resolve_weights(name, str(value)) is value
    with pytest.raises(ValueError, match="valid: DEFAULT"):
        resolve_weights(name, "NO_SUCH_WEIGHTS")


def test_download_failure_is_reported_plainly(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    with pytest.raises(WeightsDownloadError, match="could not download the 'IMAGENET1K_V1' "
                                                   "weights of torchvision model 'alexnet'"):
        tll.load_model("alexnet", source="torchvision", weights="IMAGENET1K_V1")


def test_weights_file_for_a_zoo_architecture(tmp_path):
    torch.manual_seed(7)
    reference = torchvision.models.alexnet()
    path = tmp_path / "alexnet.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}},
               path)
    model, _ = tll.load_model("alexnet", source="torchvision", weights=str(path))
    assert _same_state(model, reference)
    with pytest.raises(ValueError, match="does not fit ResNet"):
        tll.load_model("resnet18", source="torchvision", weights=str(path))


def test_timm_transform_is_the_models_own_normalisation():
    import timm

    model, transform = tll.load_model("vit_tiny_patch16_224", source="timm")
    torch.manual_seed(0)
    assert _same_state(model, timm.create_model("vit_tiny_patch16_224"))
    mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
    assert mean == (0.5, 0.5, 0.5)
    image = Image.fromarray(np.full((224, 224, 3), 255, np.uint8))
    assert torch.allclose(transform(image), torch.full((3, 224, 224), (1 - 0.5) / 0.5))


def test_open_clip_image_tower_and_its_preprocess():
    import open_clip

    model, transform = tll.load_model("RN50", source="open_clip")
    torch.manual_seed(0)
    full, _, preprocess = open_clip.create_model_and_transforms("RN50", pretrained=None)
    assert _same_state(model, full.visual)
    assert repr(transform) == repr(preprocess)
    assert model(torch.rand(1, 3, 224, 224)).shape == (1, 1024)


@pytest.mark.parametrize("name", ["cornet_z", "cornet-rt", "cornet_s"])
def test_cornet_areas_have_the_published_sizes(name):
    model, transform = tll.load_model(name)
    sizes = {}
    for area in ("V1", "V2", "V4", "IT"):
        getattr(model, area).register_forward_hook(
            lambda m, i, o, area=area: sizes.__setitem__(area, tuple(o.shape[1:])))
    out = model(transform(Image.fromarray(np.zeros((300, 260, 3), np.uint8)))[None])
    assert out.shape == (1, 1000)
    assert sizes == {"V1": (64, 56, 56), "V2": (128, 28, 28), "V4": (256, 14, 14),
                     "IT": (512, 7, 7)}


def test_cornet_s_loads_a_checkpoint_in_the_published_layout(tmp_path):
    torch.manual_seed(1)
    reference, _ = tll.load_model("cornet_s", seed=1)
    path = tmp_path / "cornet_s.pth"
    torch.save({"epoch": 43, "state_dict": {f"module.{k}": v
                                           for k, v in reference.state_dict().items()}}, path)
    model, _ = tll.load_model("cornet_s", weights=str(path))
    assert _same_state(model, reference)
    assert not _same_state(model, tll.load_model("cornet_s")[0])


def test_bare_names_unknown_and_the_lookup_order():
    registered = torch.nn.Linear(2, 2)
    tll.extract.register_model("resnet18", lambda: registered)
    try:
        assert tll.load_model("resnet18")[0] is registered, "a model you registered comes first"
    finally:
        tll.extract.unregister_model("resnet18")
    assert tll.load_model("resnet18")[0].__class__ is torchvision.models.ResNet
    with pytest.raises(ValueError, match="Close names: resnet50"):
        tll.load_model("resnet5O")
    with pytest.raises(ValueError, match="unknown model source 'caffe'.*valid sources"):
        tll.load_model("alexnet", source="caffe")


def test_model_object_and_registered_custom_model():
    module = torch.nn.Linear(3, 2).train()
    model, transform = tll.load_model(module, transform=str)
    assert model is module and not model.training and transform is str
    tll.extract.register_model("two_layers", lambda: torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.Linear(4, 1)), family="toy")
    try:
        table = tll.list_models(source="custom")
        assert table.model.tolist() == ["two_layers"] and table.num_params.isna().all()
        table = tll.list_models(source="custom", count_params=True)
        assert table.num_params.tolist() == [21]
        assert isinstance(tll.load_model("two_layers")[0], torch.nn.Sequential)
    finally:
        tll.extract.unregister_model("two_layers")


def test_list_models_matches_the_libraries():
    import timm

    table = tll.list_models(source="torchvision")
    assert sorted(table.model) == sorted(torchvision.models.list_models(module=torchvision.models))
    row = table.set_index("model").loc["resnet18"]
    assert row.num_params == sum(p.numel() for p in torchvision.models.resnet18().parameters())
    assert "IMAGENET1K_V1" in row.weights and row.input_size == 224
    vits = tll.list_models({"source": "timm"}, model="vit_tiny_patch16_224", count_params=True)
    counted = vits.set_index("model").num_params["vit_tiny_patch16_224"]
    assert counted == sum(p.numel() for p in timm.create_model("vit_tiny_patch16_224").parameters())
    assert set(tll.list_models(source="timm").model) == set(timm.list_models())
    with pytest.raises(ValueError, match="unknown column"):
        tll.list_models(colour="red")


def test_models_command_prints_the_filtered_table(capsys):
    from torchlens_like.cli import main

    main(["models", "--source", "cornet"])
    out = capsys.readouterr().out
    assert out.split()[:6] == ["source", "model", "family", "task", "num_params", "input_size"]
    for name in ("cornet_rt", "cornet_s", "cornet_z"):
        assert name in out
    assert out.rstrip().endswith("3 models match")


def test_cornet_parameter_counts_listed_without_building_are_those_of_the_models():
    from torchlens_like.extract.cornet import ARCHITECTURES

    table = tll.list_models(source="cornet").set_index("model")
    for name, build in ARCHITECTURES.items():
        assert table.num_params[name] == sum(p.numel() for p in build().parameters())


def test_an_unknown_name_mentions_a_missing_source_only_if_it_might_know_the_name(monkeypatch):
    from torchlens_like.extract.sources import SOURCES, ModelSource
    from torchlens_like.extract.zoo import find_source

    missing = ModelSource("fakezoo", lambda: ["fake_net"], None, list,
                          requires="no_such_library_for_tll", install="fakezoo",
                          might_know=lambda name: name.startswith("fake_"))
    monkeypatch.setitem(SOURCES, "fakezoo", missing)
    with pytest.raises(ValueError) as unrelated:
        find_source("resnt18x")
    assert "Not installed" not in str(unrelated.value) and "fakezoo" not in str(unrelated.value)
    with pytest.raises(ValueError, match=r"Not installed, and might know it: fakezoo \(pip "
                                         r"install fakezoo\)"):
        find_source("fake_net2")
