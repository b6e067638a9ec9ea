"""Validation speed: checking a pass's saved activations over logging that pass.

For each model (random init, CPU, batch 2, 224 px, under ``torch.no_grad()``)
this times, interleaved in one run: ``log_forward_pass`` saving every layer
(one capture), ``history.validate()`` on that history (replay and
perturbation of every layer), and ``validate_saved_activations`` (a plain
forward for the ground-truth outputs, a capture, and the replay). Reported
are medians over repeats and the ratios to one capture; the target is
``validate / capture <= 3``.

Run: ``python benchmarks/validation_speed.py [--repeats 3] [--models alexnet ...]``
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
import torchvision

import torchlens_like as tll
from timing import time_call  # noqa: E402

MODELS = ("alexnet", "resnet50", "mobilenet_v3_small", "vit_b_16")
TARGET = 3.0


def measure(name, repeats):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        history = tll.log_forward_pass(model, x)
        runs = {
            "capture": lambda: tll.log_forward_pass(model, x),
            "validate": history.validate,
            "end_to_end": lambda: tll.validate_saved_activations(model, x),
        }
        for fn in runs.values():
            assert fn() is not False, f"{name}: validation failed"
        times = {key: [] for key in runs}
        for _ in range(repeats):
            for key, fn in runs.items():
                times[key].append(time_call(fn))
    return {key: statistics.median(values) for key, values in times.items()}, len(history)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 2, 224 px, CPU")
    print(f"{'model':20s} {'layers':>6s} {'capture s':>9s} {'validate s':>10s} "
          f"{'end-to-end s':>12s} {'validate/capture':>16s} {'end-to-end/capture':>18s}")
    results = {}
    for name in args.models:
        med, n_layers = measure(name, args.repeats)
        ratio = med["validate"] / med["capture"]
        ratio_all = med["end_to_end"] / med["capture"]
        results[name] = {"layers": n_layers, **med, "validate/capture": ratio,
                         "end_to_end/capture": ratio_all}
        print(f"{name:20s} {n_layers:6d} {med['capture']:9.3f} {med['validate']:10.3f} "
              f"{med['end_to_end']:12.3f} {ratio:16.2f} {ratio_all:18.2f}"
              f"{'' if ratio <= TARGET else '  over target'}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
