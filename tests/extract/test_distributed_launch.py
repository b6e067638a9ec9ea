"""Extraction under torchrun (gloo on CPU; NCCL where GPUs are at hand) against one process.

Each test launches ``torchrun`` as a user would, on a small random-init net and
eleven 30 x 30 images written here (batches of 2, so the last batch is short
and three ranks get unequal shares). The ground truth is an uninterrupted
single process (``python distributed_worker.py`` without torchrun, one thread
like each torchrun process): its files must come out byte for byte.
"""

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from torchlens_like.extract.slices import SliceStore

WORKER = Path(__file__).with_name("distributed_worker.py")
SLURM_SCRIPT = Path(__file__).parents[2] / "tutorials" / "slurm_extract.sh"
N_IMAGES = 11


def environment(timeout_s=60, split="contiguous"):
    env = dict(os.environ, OMP_NUM_THREADS="1", TLL_DISTRIBUTED_TIMEOUT=str(timeout_s),
               TLL_DISTRIBUTED_SPLIT=split)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def run_single(images, out, *options):
    return subprocess.run([sys.executable, str(WORKER), str(images), str(out), *options],
                          env=environment(), capture_output=True, text=True, timeout=300)


def launch(nproc, images, out, *options, timeout_s=60, split="contiguous"):
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={nproc}", str(WORKER), str(images), str(out),
                           *options], env=environment(timeout_s, split), capture_output=True,
                          text=True, timeout=300)
    done.seconds = time.perf_counter() - started
    done.output = done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        folder = root / ("ab"[i % 2])
        folder.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(
            folder / f"im{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def single_process(images, tmp_path_factory):
    """Output folder of one uninterrupted process, per format."""
    made = {}

    def output(format):
        if format not in made:
            made[format] = tmp_path_factory.mktemp("single") / "features"
            done = run_single(images, made[format], "--format", format)
            assert done.returncode == 0, done.stderr
        return made[format]

    return output


@pytest.fixture(scope="module")
def reference(single_process):
    return single_process("npy")


def hdf5_contents(path):
    import h5py

    with h5py.File(path, "r") as file:
        return {key: (file[key].dtype, file[key].shape, file[key][()].tobytes()) for key in file}


def assert_same_output(found, expected, world_sizes):
    names = sorted(p.name for p in expected.iterdir())
    assert sorted(p.name for p in found.iterdir()) == names
    for name in names:
        if name.endswith(".h5"):
            assert hdf5_contents(found / name) == hdf5_contents(expected / name)
        elif name != "manifest.json":
            assert (found / name).read_bytes() == (expected / name).read_bytes(), name
    manifest, single = (json.loads((d / "manifest.json").read_text()) for d in (found, expected))
    assert single["world_sizes"] == [1] and manifest["world_sizes"] == world_sizes
    for field in ("identity", "layers", "n_stimuli", "skipped", "complete"):
        assert manifest[field] == single[field], field
    for key, batches in single["progress"].items():
        assert [start for start, _, _ in batches] == [0] + [stop for _, stop, _ in batches[:-1]]
        assert batches[-1][1] == N_IMAGES
        assert manifest["progress"][key] == batches


@pytest.mark.parametrize("nproc, format, options", [
    (2, "npy", []),
    (3, "hdf5", ["--memory-limit", "200KB"]),  # two layer groups: features.1, then the others
])
def test_ranks_write_the_single_process_result_byte_for_byte(images, single_process, tmp_path,
                                                             nproc, format, options):
    out = tmp_path / "features"
    done = launch(nproc, images, out, "--format", format, *options)
    assert done.returncode == 0, done.output
    assert_same_output(out, single_process(format), [nproc])
    assert not (out / "slices").exists()


def test_the_single_process_reference_is_the_plain_forward(images, reference):
    spec = importlib.util.spec_from_file_location("distributed_worker", WORKER)
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    paths = sorted(images.rglob("*.png"))
    inputs = torch.stack([worker.Transform()(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        expected = worker.small_model()(inputs)
    np.testing.assert_allclose(np.load(reference / "head.npy"), expected.numpy(), rtol=1e-5,
                               atol=1e-6)
    assert (reference / "stimuli.csv").read_text().splitlines()[1:] == [
        f"{i},{p.relative_to(images)},{p.parent.name}" for i, p in enumerate(paths)]


def test_sigkilled_rank_then_relaunch_with_another_world_size(images, reference, tmp_path):
    out = tmp_path / "features"
    killed = launch(3, images, out, "--kill", "1:6")
    assert killed.returncode != 0
    assert re.search(r"Root Cause.*rank\s*: 1 .*\(SIGKILL\)", killed.output, re.DOTALL), \
        killed.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and manifest["world_sizes"] == [3]
    kept = [(r.start, r.stop) for r in SliceStore(out).records()]
    assert (4, 6) in kept and (6, 8) not in kept, kept
    # A relaunch that loaded stimulus 4 again (done before the kill) would fail.
    resumed = launch(2, images, out, "--fail", "*:4", split="strided")
    assert resumed.returncode == 0, resumed.output
    assert_same_output(out, reference, [3, 2])
    assert not (out / "slices").exists()


def test_a_rank_that_raises_stops_every_rank_with_its_name(images, tmp_path):
    done = launch(3, images, tmp_path / "features", "--fail", "1:6")
    assert done.returncode != 0
    for rank in range(3):
        assert (f"[rank {rank}] RankFailure: rank 1 failed while extracting stimuli 6:8: "
                f"ValueError: planted failure at stimulus 6 (reported on rank {rank})"
                in done.output), done.output
    assert done.seconds < 60 + 60


def test_a_rank_that_hangs_is_named_by_the_others_after_the_timeout(images, tmp_path):
    done = launch(3, images, tmp_path / "features", "--hang", "1:6", timeout_s=5)
    assert done.returncode != 0
    for rank, step in ((0, "2:4"), (2, "10:11")):
        assert (f"RankFailure: rank {rank}: lost rank 1 (last seen extracting stimuli 6:8) "
                f"while extracting stimuli {step}: it hangs (no answer within 5 s)"
                in done.output), done.output
    assert done.seconds < 120


def test_a_rank_with_another_graph_is_named_with_the_layer_on_every_rank(images, tmp_path):
    done = launch(2, images, tmp_path / "features", "--differ", "1")
    assert done.returncode != 0
    message = ("rank 1: layer 0: 'features.1' as relu_1_4 (relu, shape (8, 22, 22), "
               "float32) instead of 'features.1' as relu_1_3")
    assert done.output.count(message) >= 2, done.output
    assert "PlanMismatch" in done.output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (NCCL)")
def test_nccl_ranks_on_gpus_match_a_single_gpu_process(images, reference, tmp_path):
    nproc = min(2, torch.cuda.device_count())
    single = tmp_path / "single"
    assert run_single(images, single, "--device", "cuda").returncode == 0
    out = tmp_path / "features"
    done = launch(nproc, images, out)
    assert done.returncode == 0, done.output
    assert_same_output(out, single, [nproc])
    for name in ("features.1.npy", "features.4.npy", "head.npy"):
        np.testing.assert_allclose(np.load(out / name), np.load(reference / name), rtol=1e-4,
                                   atol=1e-5)


def test_the_slurm_script_runs_torchrun_on_the_command_line(images, tmp_path):
    """tutorials/slurm_extract.sh with stand-ins for srun and scontrol: 2 CPU processes on one
    node, rendezvous over c10d, ``torchrun -m torchlens_like extract`` against ``tll extract``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/bash\nexec "$@"\n')
    (bin_dir / "scontrol").write_text("#!/bin/bash\necho 127.0.0.1\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    command = ["extract", "resnet18", str(images), "--layers", "layer1", "avgpool",
               "--batch-size", "4", "--workers", "0"]
    single = subprocess.run([sys.executable, "-m", "torchlens_like", *command,
                             "--out", str(tmp_path / "single")], env=environment(),
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(environment(), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               SLURM_JOB_NODELIST="node01", SLURM_NNODES="1", SLURM_JOB_ID="4242",
               MODEL="resnet18", STIMULI=str(images), OUT=str(tmp_path / "slurm"),
               LAYERS="layer1 avgpool", GPUS_PER_NODE="2", BATCH_SIZE="4", PORT=str(port))
    done = subprocess.run(["bash", str(SLURM_SCRIPT)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("stimuli in") == 1, done.stdout
    assert_same_output(tmp_path / "slurm", tmp_path / "single", [2])


def test_tll_extract_under_torchrun_fails_in_one_line_per_rank(images, tmp_path):
    stimuli = tmp_path / "stimuli"
    for path in sorted(images.rglob("*.png"))[:8]:
        (stimuli / path.parent.name).mkdir(parents=True, exist_ok=True)
        (stimuli / path.parent.name / path.name).write_bytes(path.read_bytes())
    (stimuli / "b" / "zz_broken.png").write_bytes(b"not an image")
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "torchlens_like", "extract", "resnet18", str(stimuli), "--layers", "layer1",
         "--batch-size", "4", "--workers", "0", "--out", str(tmp_path / "features")],
        env=environment(), capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    errors = re.findall(r"tll: error: .*", output)
    assert errors and all("zz_broken.png" in line for line in errors), output
    assert not re.search(r'File ".*torchlens_like', output), output
    assert "stimuli in" not in done.stdout
