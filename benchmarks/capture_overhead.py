"""Capture overhead: log_forward_pass over a plain forward, measured side by side.

For each model (random init, CPU, batch 2, 224 px) this times, interleaved in
one run: a plain forward, ``log_forward_pass`` saving every layer, and
``get_model_metadata`` (no activations), all under ``torch.no_grad()`` like a
feature-extraction run. Each logged run is timed right after a plain forward
and divided by it; the ratios reported are the medians of those paired ratios
over the repeats, which keeps the machine's slow and fast spells from
landing on one side only. Beside the ratios it prints the cost per op: the
median over the repeats of (logged - plain forward) divided by the number of
op nodes (inputs, buffers and outputs are not ops). For reference it
also times the forward under an empty pass-through ``TorchFunctionMode``
(column ``mode/plain``): what intercepting every torch call from Python costs
before anything is recorded, the floor for any logger built that way; and
under a pass-through mode that only holds on to every tensor a call returns
(column ``keep/plain``): the cost of the fresh memory that keeping every
activation needs (the allocator cannot reuse it within the pass), the floor
for saving every layer. It also reports
peak memory above a plain forward (tracemalloc does not see tensor memory, so
the peak resident set is measured in a fresh subprocess per mode).

Run: ``python benchmarks/capture_overhead.py [--repeats 15] [--models alexnet ...]
[--threads 1]`` (``--threads`` sets ``torch.set_num_threads``; on a machine
shared with other work one thread keeps the plain forward steadier).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

import torch
import torchvision
from torch.overrides import TorchFunctionMode

import torchlens_like as tll
from timing import time_call  # noqa: E402

MODELS = ("alexnet", "resnet50", "mobilenet_v3_small", "vit_b_16")
TARGETS = {"alexnet": 1.5, "resnet50": 1.5, "mobilenet_v3_small": 1.6, "vit_b_16": 1.5}
"""All layers saved over a plain forward."""
METADATA_TARGETS = {"alexnet": 1.2, "resnet50": 1.2, "mobilenet_v3_small": 1.4, "vit_b_16": 1.2}
"""Metadata only over a plain forward."""
PER_OP_TARGET = 20
"""Microseconds per op node, logged minus plain."""


class PassThroughMode(TorchFunctionMode):
    """Intercepts every torch call and only runs it."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


class KeepingMode(TorchFunctionMode):
    """Intercepts every torch call, runs it and holds on to the tensor it returns."""

    def __init__(self):
        super().__init__()
        self.kept = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            self.kept.append(out)
        return out


def measure(name, repeats):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    x = torch.rand(2, 3, 224, 224)

    def intercepted_only():
        with PassThroughMode():
            return model(x)

    def keeping():
        with KeepingMode() as mode:
            model(x)
        return mode.kept

    def plain():
        return model(x)

    runs = {
        "all": lambda: tll.log_forward_pass(model, x),
        "metadata": lambda: tll.get_model_metadata(model, x),
        "mode": intercepted_only,
        "keep": keeping,
    }
    times = {key: [] for key in ("plain", *runs)}
    ratios = {key: [] for key in runs}
    extra = {key: [] for key in runs}
    with torch.no_grad():
        plain()
        for fn in runs.values():
            fn()
        for _ in range(repeats):
            for key, fn in runs.items():
                reference = time_call(plain)
                elapsed = time_call(fn)
                times["plain"].append(reference)
                times[key].append(elapsed)
                ratios[key].append(elapsed / reference)
                extra[key].append(elapsed - reference)
    history = tll.get_model_metadata(model, x)
    n_ops = sum(1 for layer in history if layer.kind == "op")
    seconds = {key: statistics.median(values) for key, values in times.items()}
    ratio = {key: statistics.median(values) for key, values in ratios.items()}
    per_op = {key: statistics.median(values) / n_ops * 1e6 for key, values in extra.items()}
    return seconds, ratio, per_op, n_ops


def peak_rss(name, mode):
    """Peak resident memory added by one call, in a fresh process (Linux).

    The kernel's peak counter (VmHWM) is reset just before the call by
    writing 5 to /proc/self/clear_refs, so model construction does not count.
    """
    code = f"""
import torch, torchvision, torchlens_like as tll
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
torch.manual_seed(0)
m = torchvision.models.get_model({name!r}, weights=None).eval(); x = torch.rand(2, 3, 224, 224)
with torch.no_grad():
    m(x)
    open("/proc/self/clear_refs", "w").write("5")
    before = status("VmRSS:")
    h = m(x) if {mode!r} == "plain" else tll.log_forward_pass(m, x)
    peak = status("VmHWM:")
saved = 0 if {mode!r} == "plain" else h.saved_activation_bytes
print(peak - before, saved, 0 if {mode!r} == "plain" else len(h))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    return [int(v) for v in out]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 2, 224 px, CPU")
    print(f"{'model':20s} {'ops':>5s} {'plain s':>8s} {'all s':>8s} {'meta s':>8s} "
          f"{'all/plain':>9s} {'meta/plain':>10s} {'mode/plain':>10s} {'all us/op':>9s} "
          f"{'meta us/op':>10s} {'mode us/op':>10s} {'keep/plain':>10s}  targets")
    results = {}
    for name in args.models:
        med, ratio, per_op, n_ops = measure(name, args.repeats)
        results[name] = {"ops": n_ops, **med, "all/plain": ratio["all"],
                         "meta/plain": ratio["metadata"], "mode/plain": ratio["mode"],
                         "all us/op": per_op["all"], "meta us/op": per_op["metadata"],
                         "mode us/op": per_op["mode"], "keep/plain": ratio["keep"]}
        target = TARGETS.get(name, 1.5), METADATA_TARGETS.get(name, 1.2), PER_OP_TARGET
        print(f"{name:20s} {n_ops:5d} {med['plain']:8.3f} {med['all']:8.3f} "
              f"{med['metadata']:8.3f} {ratio['all']:9.2f} {ratio['metadata']:10.2f} "
              f"{ratio['mode']:10.2f} {per_op['all']:9.1f} {per_op['metadata']:10.1f} "
              f"{per_op['mode']:10.1f} {ratio['keep']:10.2f}  "
              f"<= {target[0]} / <= {target[1]} / <= {target[2]} us")
    if not args.no_memory:
        print("\npeak memory above a plain forward (resident set, fresh process per run)")
        print(f"{'model':20s} {'plain MB':>9s} {'logged MB':>10s} {'extra MB':>9s} "
              f"{'saved MB':>9s} {'extra-saved per layer KB':>25s}")
        for name in args.models:
            plain, _, _ = peak_rss(name, "plain")
            logged, saved, n_layers = peak_rss(name, "all")
            extra = logged - plain
            print(f"{name:20s} {plain / 2**20:9.1f} {logged / 2**20:10.1f} "
                  f"{extra / 2**20:9.1f} {saved / 2**20:9.1f} "
                  f"{(extra - saved) / 1024 / n_layers:25.1f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
