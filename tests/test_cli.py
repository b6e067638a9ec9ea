"""The tll command line, checked against plain torchvision / timm, the files it writes and
the exit statuses a shell sees."""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
import timm
import torch
import torchvision
from PIL import Image

import torchlens_like as tll
from torchlens_like import cli
from torchlens_like.cli import build_model, main

SVG = "{http://www.w3.org/2000/svg}"


def tll_run(*args, cwd=None, env=None):
    """Run the installed command line in a fresh interpreter, as a shell would."""
    return subprocess.run([sys.executable, "-m", "torchlens_like.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_help_and_version_answer_without_importing_torch():
    code = ("import sys, torchlens_like.cli as c\n"
            "for argv in (['--help'], ['--version'], ['validate', '--help']):\n"
            "    try:\n        c.main(argv)\n    except SystemExit as e:\n"
            "        assert e.code == 0, e.code\n"
            "print('torch' in sys.modules, 'numpy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.splitlines()[-1] == "False False"
    assert "validate" in done.stdout and "--junit-xml" in done.stdout
    version = tll_run("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"tll {tll.__version__}"


def test_layers_prints_one_row_per_op(capsys):
    assert main(["layers", "resnet18", "--image-size", "64"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ResNet:")
    model = torchvision.models.resnet18()
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert sum(line.startswith("conv2d_") for line in out.splitlines()) == convs
    assert "layer4.1.conv2" in out


def test_timm_names_build_the_timm_model(capsys):
    torch.manual_seed(0)
    reference = timm.create_model("resnet10t")
    for name in ("resnet10t", "timm/resnet10t"):
        built = build_model(name)
        assert type(built) is type(reference) and not built.training
        for (key, a), (_, b) in zip(reference.state_dict().items(), built.state_dict().items()):
            assert torch.equal(a, b), key
    assert main(["layers", "resnet10t", "--image-size", "64"]) == 0
    out = capsys.readouterr().out
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in reference.modules())
    assert sum(line.startswith("conv2d_") for line in out.splitlines()) == convs


def test_weights_file_is_loaded(tmp_path):
    torch.manual_seed(3)
    reference = torchvision.models.alexnet()
    path = tmp_path / "alexnet.pt"
    torch.save(reference.state_dict(), path)
    loaded = build_model("alexnet", str(path))
    for (name, a), (_, b) in zip(reference.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert not loaded.training


def _write_wrong_weights(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    return str(path)


def _write_image(tmp_path, name="photo.png", seed=0):
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / name)
    return str(tmp_path / name)


USER_ERRORS = {
    "unknown model": (["layers", "resnet_18"], "unknown model name 'resnet_18'", "resnet18"),
    "unknown timm model": (["layers", "timm/convnext_atom"], "timm has no model 'convnext_atom'",
                           "convnext_atto"),
    "unknown source": (["layers", "hub/resnet18"], "Unknown model source 'hub'", "timm"),
    "missing weights file": (["layers", "alexnet", "--weights", "nowhere/w.pt"],
                             "'nowhere/w.pt' does not exist", "state_dict"),
    "unfitting weights file": (["layers", "alexnet", "--weights", _write_wrong_weights],
                               "does not fit AlexNet", "other.pt"),
    "unknown weights tag": (["graph", "alexnet", "--weights", "IMAGENET1K_V9"],
                            "no weights 'IMAGENET1K_V9'", "IMAGENET1K_V1"),
    "bad format": (["graph", "alexnet", "--out", "graph.jpg"], "format 'jpg'", ".svg"),
    "out is a folder": (["graph", "alexnet", "--out", "pics.svg"], "it is a folder",
                        "file name"),
    "html format": (["html", "alexnet", "--out", "page.htm"], "format 'htm'", ".html"),
    "bad nesting depth": (["graph", "alexnet", "--nesting-depth", "0"], "nesting_depth",
                          ">= 1"),
    "unknown layer": (["demo", "--model", "alexnet", "--layers", "features.99"],
                      "--layers features.99", "tll layers alexnet"),
    "layer position": (["demo", "--model", "alexnet", "--layers", "99"], "--layers 99",
                       "out of range"),
    "bad input shape": (["validate", "alexnet", "--input-shape", "1x3"], "--input-shape",
                        "1,3,224,224"),
    "no such module": (["validate", "no_such_module:build"], "Cannot import 'no_such_module'",
                       "folder"),
    "no such factory": (["validate", "json:no_such_function"], "no function 'no_such_function'",
                        "package.module:function"),
    "not a history": (["layers", "notes.txt"], "not a saved torchlens_like history",
                      "history.save"),
    "missing image": (["patch", "alexnet", "--clean", "a.png", "--corrupt", "b.png", "--sites",
                       "features.0"], "'a.png' does not exist", "image file"),
    "unknown metric": (["patch", "alexnet", "--clean", "a.png", "--corrupt", "b.png",
                        "--sites", "features.0", "--metric", "loss"], "unknown --metric 'loss'",
                       "logit"),
    "unknown site": (["patch", "alexnet", "--clean", _write_image, "--corrupt", _write_image,
                      "--sites", "features.99"], "--sites: No layer 'features.99'",
                     "tll layers alexnet"),
    "out cannot be written": (["extract", "alexnet", ".", "--layers", "fc", "--out",
                               "notes.txt/features"], "--out 'notes.txt/features': cannot write",
                              "choose a folder"),
    "demo out cannot be written": (["demo", "--out", "notes.txt/demo"], "cannot write in",
                                   "choose a folder"),
    "unknown models column": (["models", "--columns", "model", "colour"],
                              "--columns colour: not a column", "num_params"),
}
"""``{case: (argv, what the line must say, the hint it must give)}``."""

BUILT_BEFORE_CHECK = {"unfitting weights file", "unknown layer", "layer position",
                      "not a history", "unknown site"}
"""Cases that can only be found once the model (or a file) is read."""


@pytest.mark.parametrize("case", sorted(USER_ERRORS))
def test_user_errors_are_one_line_and_exit_2(case, tmp_path, monkeypatch, capsys):
    argv, says, hint = USER_ERRORS[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pics.svg").mkdir()
    (tmp_path / "notes.txt").write_text("not a history")
    argv = [arg(tmp_path) if callable(arg) else arg for arg in argv]
    before = sorted(os.listdir(tmp_path))
    built = []
    for module, function in ((torchvision.models, "get_model"), (timm, "create_model")):
        original = getattr(module, function)
        monkeypatch.setattr(module, function,
                            lambda *a, original=original, **k: built.append(a) or original(*a, **k))
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tll: error: "), captured.err
    assert says in lines[0] and hint in lines[0]
    if case not in BUILT_BEFORE_CHECK:
        assert built == [], "the mistake was found only after building the model"
    assert sorted(os.listdir(tmp_path)) == before


def test_user_error_exit_status_in_a_shell_and_debug_traceback(tmp_path):
    done = tll_run("graph", "resnet_18", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("tll: error: unknown model name 'resnet_18'")
    debug = tll_run("--debug", "graph", "resnet_18", cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert "CommandError: unknown model name 'resnet_18'" in debug.stderr


def test_offline_weights_download_says_it_needs_the_internet(tmp_path):
    offline = {"HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
               "TORCH_HOME": str(tmp_path)}
    done = tll_run("layers", "alexnet", "--weights", "DEFAULT", cwd=tmp_path, env=offline)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("tll: error: Downloading the weights 'DEFAULT' of alexnet needs "
                            "the internet")
    assert "--weights path/to/weights.pt" in error


def _svg_titles(path):
    root = ET.parse(path).getroot()
    return [group.find(f"{SVG}title").text for group in root.iter(f"{SVG}g")
            if group.get("class") == "node"]


def test_graph_writes_only_the_picture_and_prints_its_path(tmp_path, capsys):
    out = tmp_path / "pics" / "alexnet.svg"
    assert main(["graph", "alexnet", "--image-size", "64", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert os.listdir(out.parent) == ["alexnet.svg"]
    history = tll.get_model_metadata(torchvision.models.alexnet(), torch.rand(1, 3, 64, 64))
    assert len(_svg_titles(out)) == len(history)
    assert main(["graph", "alexnet", "--image-size", "64", "--out", str(out),
                 "--keep-source"]) == 0
    assert capsys.readouterr().out.split() == [str(out.with_suffix(".gv")), str(out)]
    assert sorted(os.listdir(out.parent)) == ["alexnet.gv", "alexnet.svg"]


def test_saved_history_is_drawn_without_the_model(tmp_path, capsys):
    case = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
    history = tll.log_forward_pass(case, torch.ones(1, 3))
    path = history.save(tmp_path / "run.tll")
    assert main(["graph", path, "--out", str(tmp_path / "run.svg")]) == 0
    assert len(_svg_titles(tmp_path / "run.svg")) == len(history)
    assert main(["layers", path]) == 0
    assert capsys.readouterr().out.splitlines()[-len(history):] == \
        history.summary().splitlines()[-len(history):]


def test_demo_extracts_photographs_to_disk_equal_to_forward_hooks(tmp_path, capsys):
    import h5py
    from PIL import Image

    assert main(["demo", "--layers", "layer4", "add_8", "fc", "--out", str(tmp_path)]) == 0
    images = sorted((tmp_path / "images").iterdir())
    assert sorted(p.stem for p in images) == sorted(["astronaut", "coffee", "chelsea", "rocket",
                                                     "cat", "immunohistochemistry"])
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    assert torch.equal(model.fc.weight, build_model("resnet18").fc.weight)
    transform = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    seen = {}
    for name in ("layer4", "fc"):
        model.get_submodule(name).register_forward_hook(
            lambda m, i, o, name=name: seen.__setitem__(name, o.detach().numpy()))
    with torch.no_grad():
        model(torch.stack([transform(Image.open(p).convert("RGB")) for p in images]))
    with h5py.File(tmp_path / "features" / "features.h5", "r") as file:
        for name in ("layer4", "fc"):
            np.testing.assert_allclose(file[name][:], seen[name], rtol=1e-5, atol=1e-5)
        # the last residual add of resnet18, before layer4's final relu
        np.testing.assert_allclose(np.maximum(file["add_8"][:], 0), seen["layer4"], atol=1e-5)
    assert "add_8 = add_8_106" in capsys.readouterr().out


def test_demo_layers_take_integer_positions(tmp_path, capsys):
    assert main(["demo", "--model", "alexnet", "--layers", "3", "-2", "--format", "npy",
                 "--out", str(tmp_path)]) == 0
    labels = tll.get_model_metadata(torchvision.models.alexnet(), torch.rand(1, 3, 224, 224)
                                    ).layer_labels
    manifest = json.loads((tmp_path / "features" / "manifest.json").read_text())
    assert {k: v["label"] for k, v in manifest["layers"].items()} == {"3": labels[3],
                                                                     "-2": labels[-2]}
    assert np.load(tmp_path / "features" / "position-2.npy").shape == (6, 1000)


BAD_MODELS = '''
import torch


class WritesBehindTorch(torch.nn.Module):
    """Changes an activation through numpy, where torch cannot see the write."""

    def forward(self, x):
        y = torch.relu(x)
        y.detach().numpy()[...] = 5.0
        return y * 2


def numpy_write():
    return WritesBehindTorch(), torch.randn(2, 3)


def good():
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
'''


def test_validate_exit_status_and_junit_report(tmp_path):
    (tmp_path / "usermodels.py").write_text(BAD_MODELS)
    good = tll_run("validate", "usermodels:good", "--input-shape", "2,3", "--junit-xml",
                   "reports/good.xml", cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    assert "all 4 saved activations validated" in good.stdout
    suite = ET.parse(tmp_path / "reports" / "good.xml").getroot()
    assert (suite.tag, suite.get("tests"), suite.get("failures")) == ("testsuite", "1", "0")

    bad = tll_run("validate", "usermodels:numpy_write", "--junit-xml", "bad.xml", cwd=tmp_path)
    assert bad.returncode == 1, bad.stderr
    assert "validation failed: relu_1_2 (relu)" in bad.stdout
    suite = ET.parse(tmp_path / "bad.xml").getroot()
    assert suite.get("failures") == "1"
    failure = suite.find("testcase/failure")
    assert failure.get("message").startswith("relu_1_2 (relu)")

    sys.path.insert(0, str(tmp_path))
    try:
        import usermodels
    finally:
        sys.path.remove(str(tmp_path))
    model, x = usermodels.numpy_write()
    with pytest.raises(AssertionError) as raised:
        tll.testing.assert_activations_valid(model, x, random_seed=0)
    assert str(raised.value).split(": ", 1)[1] in bad.stdout
    assert tll.testing.assert_activations_valid(usermodels.good(), torch.rand(2, 3)).passed


def test_validate_a_zoo_name(tmp_path):
    done = tll_run("validate", "alexnet", "--input-shape", "1,3,64,64", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("alexnet: all 24 saved activations validated")


def test_patch_prints_the_sweep_of_a_loop_of_forward_hooks(tmp_path, capsys):
    clean, corrupt = _write_image(tmp_path, "clean.png", 1), _write_image(tmp_path, "bad.png", 2)
    out = tmp_path / "sweep.csv"
    argv = ["patch", "resnet18", "--clean", clean, "--corrupt", corrupt, "--sites", "layer1",
            "layer3.1", "--target", "7", "--out", str(out)]
    assert main(argv) == 0
    table = pd.read_csv(out)
    model, transform = build_model("resnet18", with_transform=True)
    images = [transform(Image.open(path).convert("RGB")).unsqueeze(0) for path in (clean, corrupt)]
    expected = []
    for address in ("layer1", "layer3.1"):
        module = model.get_submodule(address)
        kept = []
        handle = module.register_forward_hook(lambda m, i, o: kept.append(o))
        with torch.no_grad():
            model(images[0])
        handle.remove()
        handle = module.register_forward_hook(lambda m, i, o: kept[0])
        with torch.no_grad():
            expected.append(float(model(images[1])[0, 7]))
        handle.remove()
    assert list(table["site"]) == ["layer1", "layer3.1"]
    assert np.allclose(table["metric"], expected, rtol=1e-5, atol=1e-6)
    assert main(argv[:-2]) == 0
    printed = capsys.readouterr().out
    assert "logit of class 7" in printed and "layer3.1" in printed


def _nothing_built_nothing_sent(monkeypatch):
    """Fail the test if a module is constructed or a socket connects."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("tll models touched the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    original = torch.nn.Module.__init__

    def built(self, *args, **kwargs):
        raise AssertionError(f"tll models built a {type(self).__name__}")

    monkeypatch.setattr(torch.nn.Module, "__init__", built)
    return original


@pytest.mark.parametrize("name", ["convnext_base", "ViT-B-32"])
def test_models_lists_metadata_without_building_or_downloading(name, monkeypatch, capsys):
    _nothing_built_nothing_sent(monkeypatch)
    assert main(["models", "--model", name]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == list(cli.MODELS_COLUMNS)
    table = tll.list_models(model=name)
    assert f"{len(table)} models match" in "\n".join(lines)
    assert len(lines) == 1 + len(table) + 1 + table.num_params.isna().any()
    if table.num_params.isna().any():
        assert lines[-1].startswith("num_params is empty where the metadata has no count")


def test_models_prints_integers_limits_rows_and_writes_the_full_table(capsys):
    assert main(["models", "--source", "torchvision", "--model", "resnet1"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if " resnet18 " in f" {line} ")
    expected = sum(p.numel() for p in torchvision.models.resnet18().parameters())
    assert f"{expected:,}" in row.split() and "224" in row.split() and ".0" not in row
    assert main(["models", "--source", "timm", "--limit", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    total = len(tll.list_models(source="timm"))
    assert len(out) == 1 + 5 + 2 and out[6].startswith(f"{total} models match; the first 5")
    assert main(["models", "--source", "cornet", "--format", "csv"]) == 0
    import io

    import pandas as pd

    csv = pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False)
    full = tll.list_models(source="cornet")
    assert list(csv.columns) == list(full.columns) and csv.model.tolist() == full.model.tolist()
    assert csv.num_params.tolist() == full.num_params.tolist()
    assert main(["models", "--model", "alexnet", "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in records] == tll.list_models(model="alexnet").model.tolist()
    assert isinstance(records[0]["num_params"], int)


def test_a_name_several_sources_know_follows_the_rule_of_load_model(capsys):
    from torchlens_like.extract.zoo import LOOKUP_ORDER, sources_knowing

    holders = sources_knowing("resnet18")
    assert holders == [s for s in LOOKUP_ORDER if s in holders] and len(holders) > 1
    python_model = tll.load_model("resnet18")[0]
    reference = tll.load_model("resnet18", source=holders[0])[0]
    command_line_model = build_model("resnet18")
    note = capsys.readouterr().err
    for model in (python_model, command_line_model):
        assert type(model) is type(reference) is torchvision.models.ResNet
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                      reference.state_dict().values()))
    assert note.count("\n") == 1 and "timm/resnet18" in note and holders[0] in note
    assert isinstance(build_model("timm/resnet18"), timm.models.ResNet)


def test_an_interrupt_python_could_not_raise_is_raised_again(monkeypatch, capsys):
    """Ctrl-C landing in a weakref callback (Python prints "Exception ignored" and goes on)."""
    import signal
    import time
    import weakref

    def run(args):
        class Thing:
            pass

        def callback(reference):
            raise KeyboardInterrupt

        thing = Thing()
        reference = weakref.ref(thing, callback)  # noqa: F841
        del thing
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.01)
        raise FileNotFoundError("the interrupt was lost and the command went on")

    monkeypatch.setitem(cli.COMMANDS, "stall", ("a command that gets interrupted",
                                                lambda parser: None, run))
    start = time.monotonic()
    try:
        assert main(["stall"]) == cli.EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert time.monotonic() - start < 10, "stopped by the interrupt, not by the later error"
    assert capsys.readouterr().err == "tll: interrupted.\n"
