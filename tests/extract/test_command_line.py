"""`tll extract` and `tll models` in a subprocess, as a user runs them."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from stimulus_images import write_images

ROOT = Path(__file__).resolve().parents[2]


def tll(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "torchlens_like.cli", *map(str, args)],
                          capture_output=True, text=True, env=env)


def test_extract_writes_resumes_and_matches_hooks(tmp_path):
    write_images(tmp_path / "images", count=5)
    out = tmp_path / "out"
    args = ["extract", "alexnet", tmp_path / "images", "--source", "torchvision", "--layers",
            "features.3", "-2", "--out", out, "--batch-size", "2", "--workers", "0",
            "--validate-every", "1"]
    done = tll(*args)
    assert done.returncode == 0, done.stderr
    assert "img/s" in done.stderr and "5 stimuli" in done.stdout
    import json

    records = json.loads((out / "manifest.json").read_text())["validation"]
    assert [r["stimuli"] for r in records] == [[0, 2], [2, 4], [4, 5]]
    assert "validated 3 batches (stimuli 0-1, 2-3, 4-4) with a full capture: passed" in \
        done.stdout
    import torchlens_like as tll_module

    model, transform = tll_module.load_model("alexnet", source="torchvision")
    paths = sorted((tmp_path / "images").rglob("img*"))
    from PIL import Image

    seen = {}
    model.features[3].register_forward_hook(lambda m, i, o: seen.__setitem__("f3", o.clone().numpy()))
    model.classifier[6].register_forward_hook(lambda m, i, o: seen.__setitem__("r", o.clone().numpy()))
    with torch.no_grad():
        model(torch.stack([transform(Image.open(p).convert("RGB")) for p in paths]))
    np.testing.assert_allclose(np.load(out / "features.3.npy"), seen["f3"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.load(out / "position-2.npy"), seen["r"], rtol=1e-5, atol=1e-5)
    again = tll(*args)
    assert again.returncode == 0 and "img/s" not in again.stderr


def test_user_errors_are_one_line_with_status_2(tmp_path):
    write_images(tmp_path / "images", count=2)
    for args, expected in [
        (["extract", "resnt18x", tmp_path / "images", "--layers", "fc", "--out", tmp_path / "o"],
         "unknown model name 'resnt18x'"),
        (["extract", "alexnet", tmp_path / "images", "--layers", "featurs.3", "--out",
          tmp_path / "o", "--source", "torchvision"], "featurs.3"),
        (["extract", "alexnet", tmp_path / "nowhere", "--layers", "fc", "--out", tmp_path / "o",
          "--source", "torchvision"], "nowhere"),
    ]:
        done = tll(*args)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and expected in done.stderr
        assert "Traceback" not in done.stderr


def test_a_wrong_validate_every_is_refused_naming_the_option(tmp_path):
    done = tll("extract", "alexnet", tmp_path, "--layers", "fc", "--out", tmp_path / "o",
               "--validate-every", "often")
    assert done.returncode == 2
    assert "--validate-every: expected auto, none or a whole number, got 'often'" in done.stderr


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    write_images(tmp_path / "images", count=3)
    done = tll("extract", "alexnet", tmp_path / "images", "--source", "torchvision", "--layers",
               "features.0", "classifier.6", "--out", tmp_path / "o", "--dry-run",
               "--memory-limit", "2.33MB", "--workers", "0")
    assert done.returncode == 0, done.stderr
    # 3 x 64 x 55 x 55 float32 = 2,323,200 bytes; 3 x 1000 float32 = 12,000 bytes
    assert "(3, 64, 55, 55)" in done.stdout and "(3, 1000)" in done.stdout
    assert "Group 1: 1 layer(s), 2.32 MB: features.0" in done.stdout
    assert "Group 2: 1 layer(s), 12.00 kB: classifier.6" in done.stdout
    assert not (tmp_path / "o").exists()


def test_unreadable_images_speak_command_line_and_skipped_ones_are_named(tmp_path):
    paths = write_images(tmp_path / "images", count=4)
    paths[1].write_bytes(b"not an image")
    args = ["extract", "alexnet", tmp_path / "images", "--source", "torchvision", "--layers",
            "features.3", "--batch-size", "2", "--workers", "0"]
    refused = tll(*args, "--out", tmp_path / "refused")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    line = refused.stderr.strip().splitlines()[-1]
    assert "--on-error skip" in line and "on_error" not in line
    assert str(paths[1].relative_to(tmp_path / "images")) in line
    skipped = tll(*args, "--out", tmp_path / "skipped", "--on-error", "skip")
    assert skipped.returncode == 0, skipped.stderr
    name = str(paths[1].relative_to(tmp_path / "images"))
    assert "1 unreadable image(s) skipped" in skipped.stdout
    assert any(line.strip().startswith(f"{name}: cannot read image")
               for line in skipped.stdout.splitlines())
    other = tll(*args, "--out", tmp_path / "skipped", "--on-error", "skip", "--format", "hdf5")
    assert other.returncode == 2 and "--format" in other.stderr and "another --out" in \
        other.stderr and "output_dir" not in other.stderr
