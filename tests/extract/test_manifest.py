"""The manifest identifies a run the same way in every process; its checksums are those of the files."""

import json
import os
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image

import torchlens_like as tll

from stimulus_images import write_images

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    import torchlens_like as tll

    root, out, transform_name, padding = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    allocated_first = [object() for _ in range(padding)]  # moves the functions' addresses

    def small_tensor(image):
        pixels = np.asarray(image.resize((12, 12)), dtype=np.float32) / 255
        return torch.from_numpy(pixels).permute(2, 0, 1)

    def flipped_small_tensor(image):
        return small_tensor(image).flip(-1)

    transform = {"small": small_tensor, "flipped": flipped_small_tensor}[transform_name]
    print(repr(transform), flush=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten())
    tll.extract_features(model.eval(), tll.ImageFolder(root, transform), ["1"], batch_size=2,
                         output_dir=out, progress=False, num_workers=0)
""")
TESTS = Path(__file__).resolve().parents[1]


def _run(script, root, out, transform="small", padding=0):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(script), str(root), str(out), transform,
                           str(padding)], env=env, capture_output=True, text=True, timeout=300)


def _expected(paths):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten())
    images = [np.asarray(Image.open(p).convert("RGB").resize((12, 12)), dtype=np.float32) / 255
              for p in paths]
    with torch.no_grad():
        return model[:2](torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)).numpy()


def test_a_function_transform_resumes_in_a_new_process(tmp_path):
    root = tmp_path / "images"
    paths = sorted(write_images(root, count=8))
    unreadable = paths[5]
    intact = unreadable.read_bytes()
    unreadable.write_bytes(b"not an image")
    script = tmp_path / "extract.py"
    script.write_text(SCRIPT)
    resumed, clean = tmp_path / "resumed", tmp_path / "clean"

    first = _run(script, root, resumed)
    assert first.returncode != 0 and "StimulusError" in first.stderr
    progress = json.loads((resumed / "manifest.json").read_text())["progress"]["1"]
    assert [start_stop[:2] for start_stop in progress] == [[0, 2], [2, 4]]

    unreadable.write_bytes(intact)
    second = _run(script, root, resumed, padding=20000)
    assert second.returncode == 0, second.stderr
    assert first.stdout != second.stdout, "the function's repr must differ between the processes"
    assert _run(script, root, clean).returncode == 0

    assert (resumed / "1.npy").read_bytes() == (clean / "1.npy").read_bytes()
    np.testing.assert_allclose(np.load(resumed / "1.npy"), _expected(paths), rtol=1e-5, atol=1e-6)
    manifest = json.loads((resumed / "manifest.json").read_text())
    assert manifest["complete"] and manifest["identity"]["transform"] == "__main__.small_tensor"

    before = (resumed / "manifest.json").stat().st_mtime_ns
    again = _run(script, root, resumed, padding=40000)
    assert again.returncode == 0, again.stderr
    assert (resumed / "manifest.json").stat().st_mtime_ns == before, "a finished run is a no-op"

    other = _run(script, root, resumed, transform="flipped")
    assert other.returncode != 0
    assert "ManifestMismatch" in other.stderr and "transform='__main__.small_tensor'" in \
        other.stderr


def test_each_recorded_checksum_is_that_of_the_bytes_in_the_file(tmp_path):
    root = tmp_path / "images"
    write_images(root, count=7)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten())
    folder = tll.ImageFolder(root, lambda image: torch.from_numpy(
        np.asarray(image.resize((12, 12)), dtype=np.float32) / 255).permute(2, 0, 1))
    for fmt in ("npy", "hdf5"):
        out = tmp_path / fmt
        tll.extract_features(model.eval(), folder, ["0", "1"], batch_size=3, output_dir=out,
                             format=fmt, progress=False, num_workers=0)
        progress = json.loads((out / "manifest.json").read_text())["progress"]
        for key in ("0", "1"):
            if fmt == "npy":
                stored = np.load(out / f"{key}.npy")
            else:
                with h5py.File(out / "features.h5", "r") as file:
                    stored = file[key][:]
            assert progress[key] == [[start, stop, zlib.crc32(stored[start:stop].tobytes())]
                                     for start, stop in ((0, 3), (3, 6), (6, 7))]
