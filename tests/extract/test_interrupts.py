"""Ctrl-C: in Python the KeyboardInterrupt propagates and the output folder resumes; the command
line prints one line and exits 130, at any moment (the layer probe too)."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import torchlens_like as tll
from stimulus_images import SMALL_TRANSFORM, transformed, write_images

TESTS = Path(__file__).resolve().parents[1]


class Interruptible(torch.nn.Module):
    """A small conv net whose forward raises KeyboardInterrupt once ``stop_when()`` is true."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.head = torch.nn.Linear(4, 2)
        self.stop_when = None
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.stop_when is not None and self.stop_when():
            raise KeyboardInterrupt
        features = self.conv(x).relu()
        return self.head(features.mean(dim=(2, 3)))


def _stimuli_written(out):
    """How many stimuli the manifest in ``out`` records as written (0 before it exists)."""
    try:
        progress = json.loads((out / "manifest.json").read_text())["progress"]
    except FileNotFoundError:
        return 0
    return min(sum(stop - start for start, stop, *_ in ranges) for ranges in progress.values())


def _expected(model, root):
    paths = sorted(Path(root).rglob("img*"))
    seen = {}
    handle = model.conv.register_forward_hook(lambda m, i, o: seen.__setitem__("conv", o))
    stop_when, model.stop_when = model.stop_when, None
    try:
        with torch.no_grad():
            model(transformed(paths))
    finally:
        handle.remove()
        model.stop_when = stop_when
    return seen["conv"].numpy()


@pytest.mark.parametrize("fmt", ["npy", "hdf5", "mat"])
def test_keyboard_interrupt_propagates_and_the_same_call_resumes(fmt, tmp_path):
    root = tmp_path / "images"
    write_images(root, count=7)
    model = Interruptible().eval()
    model.stop_when = lambda: _stimuli_written(tmp_path / "out") >= 2  # in the second batch
    arguments = dict(batch_size=2, output_dir=tmp_path / "out", format=fmt, progress=False,
                     num_workers=0)
    with pytest.raises(KeyboardInterrupt):
        tll.extract_features(model, tll.ImageFolder(root, SMALL_TRANSFORM), ["conv"],
                             **arguments)
    from torchlens_like.extract.manifest import Manifest

    manifest = Manifest.load(tmp_path / "out")
    assert not manifest.complete and manifest.missing("conv", 0, 7) == [(2, 7)]
    model.stop_when = None
    features = tll.extract_features(model, tll.ImageFolder(root, SMALL_TRANSFORM), ["conv"],
                                    **arguments)
    np.testing.assert_allclose(np.asarray(features["conv"]), _expected(model, root),
                               rtol=1e-5, atol=1e-6)


def test_ctrl_c_while_the_run_is_being_finished_lets_the_finish_complete(tmp_path, monkeypatch):
    root = tmp_path / "images"
    write_images(root, count=5)
    from torchlens_like.extract.writers import MatWriter

    convert = MatWriter.convert
    interrupted = []

    def convert_then_ctrl_c(path, values):
        convert(path, values)
        if not interrupted:
            interrupted.append(True)
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(MatWriter, "convert", staticmethod(convert_then_ctrl_c))
    model = Interruptible().eval()
    arguments = dict(batch_size=2, output_dir=tmp_path / "out", format="mat", progress=False,
                     num_workers=0)
    with pytest.raises(KeyboardInterrupt):
        tll.extract_features(model, tll.ImageFolder(root, SMALL_TRANSFORM), ["conv", "head"],
                             **arguments)
    assert interrupted and not (tmp_path / "out" / "partial").exists()
    features = tll.load_features(tmp_path / "out")
    assert features.manifest["complete"]
    np.testing.assert_allclose(features["conv"], _expected(model, root), rtol=1e-5, atol=1e-6)
    calls = model.calls
    again = tll.extract_features(model, tll.ImageFolder(root, SMALL_TRANSFORM), ["conv", "head"],
                             **arguments)
    assert model.calls == calls and np.array_equal(again["conv"], features["conv"])


SCRIPT = textwrap.dedent("""
    import os, sys, time
    import torch
    import torchlens_like as tll
    from torchlens_like.cli import main
    from stimulus_images import SMALL_TRANSFORM

    WHERE, _, AT = os.environ.get("PAUSE_AT", ":").partition(":")

    def pause():
        open(os.environ["MARKER"], "w").close()
        time.sleep(120)

    class Slow(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            if WHERE == "call" and self.calls == int(AT):
                pause()
            return self.conv(x).relu()

    class SlowTransform:
        def __call__(self, image):
            if WHERE == "image" and image.size == tuple(map(int, AT.split("x"))) \\
                    and torch.utils.data.get_worker_info() is not None:
                pause()
            return SMALL_TRANSFORM(image)

        def __repr__(self):
            return repr(SMALL_TRANSFORM)

    tll.extract.register_model("slow_net", Slow, transform=SlowTransform())
    sys.exit(main(sys.argv[1:]))
""")


def _command(tmp_path, root, out, pause_at=None):
    script = tmp_path / "tll_with_slow_net.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "MARKER": str(tmp_path / "paused"),
           "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    if pause_at is not None:
        env["PAUSE_AT"] = pause_at
    return subprocess.Popen([sys.executable, str(script), "extract", "slow_net", str(root),
                             "--layers", "conv", "--out", str(out), "--batch-size", "2",
                             "--workers", "2", "--format", "hdf5"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


# done: the most stimuli that can be written by then (workers read ahead of the model)
@pytest.mark.parametrize("pause_at, done", [("call:1", None), ("call:3", 2), ("image:58x66", 6)],
                         ids=["layer probe", "forward of batch 2", "decoding in a worker"])
def test_ctrl_c_on_the_command_line_is_one_line_and_status_130(pause_at, done, tmp_path):
    root, out = tmp_path / "images", tmp_path / "out"
    write_images(root, count=7)
    process = _command(tmp_path, root, out, pause_at)
    deadline = time.time() + 240
    while not (tmp_path / "paused").exists() and process.poll() is None \
            and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line and not re.search(r"\d+%\|", line)]
    assert len(lines) == 1 and lines[0].startswith("tll: interrupted"), stderr
    if done is None:
        assert "no features written" in lines[0]
    else:
        found = re.search(r"(\d+) of 7 stimuli are done", lines[0])
        assert found and int(found.group(1)) <= done and "resume" in lines[0], lines[0]
    finished = _command(tmp_path, root, out)
    stdout, stderr = finished.communicate(timeout=300)
    assert finished.returncode == 0, stderr
    features = tll.load_features(out)
    assert features.manifest["complete"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # load_model's random init of the registered model, as in the script
        conv = torch.nn.Conv2d(3, 4, 3)
    with torch.no_grad():
        expected = conv(transformed(sorted(root.rglob("img*"))))
    np.testing.assert_allclose(features["conv"][:], expected.numpy(), rtol=1e-5, atol=1e-6)
