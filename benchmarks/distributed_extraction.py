"""Images per second of ``extract_features`` over 1, 2 (and more) torchrun processes.

Every variant extracts the same layers of a random-init torchvision model over
the same images (written by this script) into its own output folder, and the
arrays must come out byte-identical to the single process's. Variants:

* ``1 process``: plain ``python`` (no torchrun), one thread, the baseline;
* ``1 process, T threads``: plain ``python`` using every core, for scale;
* ``torchrun xN``: ``torchrun --standalone --nproc_per_node N``, one thread
  per process (torchrun's default), gloo on CPU, NCCL on GPUs.

Images/s counts the time inside ``extract_features`` on rank 0 (joining the
process group, resolving the layers, extracting, waiting for every rank,
assembling the output), not the start of Python and torch; the full wall
time of each launch is printed too. Parallel efficiency is the speedup over
the one-thread process divided by the number of processes. Run from the
repository root::

    python benchmarks/distributed_extraction.py                 # 1, 2 processes; ~1-2 min on 2 cores
    python benchmarks/distributed_extraction.py --procs 1 2 4 --images 256
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def write_images(root, count, size):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            root / f"{i:05d}.png")


def worker(args):
    """One process of a variant: the extraction, then its time on rank 0 as a JSON line."""
    import torchlens_like as tll

    model, transform = tll.load_model(args.model, source="torchvision")
    started = time.perf_counter()
    tll.extract_features(model, tll.ImageFolder(args.images, transform), args.layers,
                         batch_size=args.batch_size, output_dir=args.out, progress=False,
                         num_workers=0)
    seconds = time.perf_counter() - started
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps({"seconds": seconds}), flush=True)


def run_variant(args, out, nproc=None, threads=1):
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable] if nproc is None else [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={nproc}"]
    command += [__file__, "--worker", "--images", str(args.images), "--out", str(out),
                "--model", args.model, "--batch-size", str(args.batch_size),
                "--layers", *args.layers]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("{")][-1]
    return json.loads(line)["seconds"], wall


def same_arrays(a, b):
    names = sorted(p.name for p in a.glob("*.npy"))
    return names and all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2],
                        help="numbers of torchrun processes (default 1 2)")
    parser.add_argument("--images", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--n-images", type=int, default=48)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--layers", nargs="+", default=["layer2", "layer4", "fc"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    import torch

    cores = os.cpu_count() or 1
    print(f"{args.model}, layers {' '.join(args.layers)}, {args.n_images} images, batch size "
          f"{args.batch_size}; {cores} CPU cores, {torch.cuda.device_count()} GPUs; "
          f"torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        args.images = scratch / "images"
        args.images.mkdir()
        write_images(args.images, args.n_images, 256)
        rows = []
        baseline, wall = run_variant(args, scratch / "single")
        rows.append(("1 process, 1 thread", 1, baseline, wall, None))
        if cores > 1:
            seconds, wall = run_variant(args, scratch / "threads", threads=cores)
            rows.append((f"1 process, {cores} threads", 1, seconds, wall,
                         same_arrays(scratch / "threads", scratch / "single")))
        for nproc in args.procs:
            out = scratch / f"torchrun{nproc}"
            seconds, wall = run_variant(args, out, nproc=nproc)
            rows.append((f"torchrun x{nproc}", nproc, seconds, wall,
                         same_arrays(out, scratch / "single")))
    print(f"{'variant':<24}{'images/s':>10}{'speedup':>9}{'efficiency':>12}{'wall s':>9}"
          f"{'identical':>11}")
    for name, procs, seconds, wall, identical in rows:
        speedup = baseline / seconds
        print(f"{name:<24}{args.n_images / seconds:>10.2f}{speedup:>9.2f}"
              f"{speedup / procs:>12.2f}{wall:>9.1f}"
              f"{'-' if identical is None else ('yes' if identical else 'NO'):>11}")
    print("identical: arrays byte-equal to the 1-thread process's (another thread count may "
          "change the last bits of some CPU kernels). Timings share the machine with whatever "
          "else runs on it; repeat for a spread.")


if __name__ == "__main__":
    main()
