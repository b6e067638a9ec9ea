"""A run killed with SIGKILL and started again ends with the files of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from stimulus_images import write_images

SCRIPT = textwrap.dedent("""
    import sys, time
    import torch
    import torchlens_like as tll
    from stimulus_images import SMALL_TRANSFORM

    class SlowFolder(torch.utils.data.Dataset):
        def __init__(self, root):
            self.folder = tll.ImageFolder(root, SMALL_TRANSFORM)

        def __len__(self):
            return len(self.folder)

        def __getitem__(self, index):
            time.sleep(0.1)
            return self.folder[index][0]

    root, out, fmt = sys.argv[1:4]
    model, _ = tll.load_model("resnet18", source="torchvision", transform=SMALL_TRANSFORM)
    tll.extract_features(model, SlowFolder(root), ["layer2", "add_3"], batch_size=2,
                         output_dir=out, format=fmt, progress=False, num_workers=0)
""")
TESTS = Path(__file__).resolve().parents[1]


def _run(script, *args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], env=env)


def _done(out):
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
    return min(sum(b - a for a, b, _ in ranges) for ranges in manifest["progress"].values())


@pytest.mark.parametrize("fmt", ["npy", "hdf5"])
def test_sigkill_then_resume_equals_an_uninterrupted_run(fmt, tmp_path):
    root = tmp_path / "images"
    write_images(root, count=12)
    script = tmp_path / "extract.py"
    script.write_text(SCRIPT)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    process = _run(script, root, killed, fmt)
    deadline = time.time() + 300
    while _done(killed) < 4 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.12)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = _done(killed)
    assert 4 <= done < 12, "the run must be killed part-way"
    if fmt == "npy":
        array = np.load(killed / "layer2.npy", mmap_mode="r+")
        array[1] += 1  # a completed row damaged on disk: its range is detected and redone
        array.flush()
        del array
    assert _run(script, root, killed, fmt).wait() == 0
    assert _run(script, root, clean, fmt).wait() == 0
    manifests = [json.loads((d / "manifest.json").read_text()) for d in (killed, clean)]
    assert manifests[0]["progress"] == manifests[1]["progress"]
    assert manifests[0]["complete"] and manifests[1]["complete"]
    if fmt == "npy":
        for name in ("layer2.npy", "add_3.npy"):
            assert (killed / name).read_bytes() == (clean / name).read_bytes()
    else:
        with h5py.File(killed / "features.h5", "r") as a, h5py.File(clean / "features.h5",
                                                                     "r") as b:
            for key in ("layer2", "add_3"):
                assert a[key].dtype == b[key].dtype
                assert a[key][:].tobytes() == b[key][:].tobytes()
