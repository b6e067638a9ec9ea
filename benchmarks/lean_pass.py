"""The lean pass against a plain forward, and extraction against a plain loop, side by side.

For each model (random init, eval, CPU, ``torch.no_grad()``), timed in
adjacent pairs so slow and fast spells of a shared machine land on both
sides:

* the lean pass's cost per op: (lean pass - plain forward) / number of op
  nodes, for the module-outputs path (only module calls watched) and the ops
  path (every call checked; an op-level layer is wanted);
* ``extract_features`` without early stop over one in-memory DataLoader,
  against a plain ``model(x)`` loop over the same DataLoader, for layers that
  are all module outputs and for a set with an op-level layer (and, for
  resnet50, with the early stop after ``layer3``); validation
  (the default schedule, ``validate_every="auto"``) is included.

Before each round, 2 GiB are written and freed. On the virtual machine these
figures come from, a first write to fresh pages can be very slow (one
batch's 6.4 MB of resnet50 ``layer3`` rows: 160-350 ms, against 2.5 ms into
pages used before), a cost of the host that the extraction's output arrays
pay and the plain loop, reusing its buffers, does not; the warm-up removes it
in isolation, not always within a run (see the README).

Run: ``python benchmarks/lean_pass.py [--repeats 21] [--images 512]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torchvision

import torchlens_like as tll
from torchlens_like.api import plan_lean_pass

CONFIGS = {
    "mobilenet_v3_small": {"size": 64, "batch": 16, "modules": ["features.6", "features.9"],
                           "op": "flatten_1"},
    "resnet50": {"size": 224, "batch": 32, "modules": ["layer3"], "op": "add_13",
                 "early_stop": ["layer3"]},
}


def paired(first, second, repeats):
    """Medians of ``second - first``, ``first`` and ``second`` over adjacent runs."""
    gaps, a_times, b_times = [], [], []
    for _ in range(repeats):
        start = time.perf_counter(); first(); a = time.perf_counter() - start
        start = time.perf_counter(); second(); b = time.perf_counter() - start
        gaps.append(b - a); a_times.append(a); b_times.append(b)
    return statistics.median(gaps), statistics.median(a_times), statistics.median(b_times)


def lean_costs(name, config, repeats):
    model = torchvision.models.get_model(name, weights=None).eval()
    x = torch.rand(2, 3, config["size"], config["size"])
    with torch.no_grad():
        history = tll.log_forward_pass(model, x)
    ops = sum(1 for layer in history.layers if layer.kind == "op")
    for keys in (config["modules"], config["modules"] + [config["op"]]):
        plan = plan_lean_pass(model, history, [history[k].meta["capture_index"] for k in keys])
        with torch.no_grad():
            gap, plain, lean = paired(lambda: model(x), lambda: plan.run((x,), {}), repeats)
        print(f"{name:20s} lean pass, {plan.path:15s} {gap / ops * 1e6:6.2f} us/op "
              f"({ops} ops; plain {plain * 1e3:.2f} ms, lean {lean * 1e3:.2f} ms, "
              f"{lean / plain:.3f}x)")


def warm_memory(gibibytes=2):
    """Write and free ``gibibytes`` of memory, so the next allocations get pages already used."""
    block = np.ones((gibibytes << 30) // 8)
    del block


def extraction_ratio(name, config, images, rounds):
    model = torchvision.models.get_model(name, weights=None).eval()
    size, batch = config["size"], config["batch"]
    data = torch.utils.data.TensorDataset(torch.rand(images, 3, size, size))
    loader = torch.utils.data.DataLoader(data, batch_size=batch)

    def plain():
        with torch.no_grad():
            for (x,) in loader:
                model(x)

    runs = [("module outputs", config["modules"], False),
            ("with an op-level layer", config["modules"] + [config["op"]], False)]
    if "early_stop" in config:
        runs.append((f"early stop after {config['early_stop'][-1]}", config["early_stop"], True))
    for label, keys, early_stop in runs:
        ratios = []
        for _ in range(rounds):
            warm_memory()
            start = time.perf_counter(); plain(); plain_time = time.perf_counter() - start
            start = time.perf_counter()
            feats = tll.extract_features(model, loader, keys, batch_size=batch, progress=False,
                                         early_stop=early_stop)
            extract_time = time.perf_counter() - start
            ratios.append(plain_time / extract_time)
        passes = sorted({record["pass"] for record in feats.validation})
        print(f"{name:20s} extraction, {label:24s} {statistics.median(ratios):.3f}x the plain "
              f"loop (rounds {', '.join(f'{r:.3f}' for r in ratios)}; pass {passes}; "
              f"{len(feats.validation)} checked batches of {images // batch})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", nargs="*", default=list(CONFIGS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"CPU, 1 torch thread, load average {__import__('os').getloadavg()[0]:.1f}")
    for name in args.models:
        lean_costs(name, CONFIGS[name], args.repeats)
        extraction_ratio(name, CONFIGS[name], args.images, args.rounds)


if __name__ == "__main__":
    main()
