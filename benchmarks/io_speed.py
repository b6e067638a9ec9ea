"""Saving and loading a history: time and size.

Run: ``python benchmarks/io_speed.py``. For torchvision's resnet50 and
vit_b_16 (random init, batch 2, 224 px, every layer saved), prints, measured
in one run: the seconds to log, to save, to load (metadata only), to read
every activation of the loaded history, and to pickle; the file size over
the saved activation bytes; and the load time over the log time.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import time

import torch
import torchvision

import torchlens_like as tll

MODELS = ("resnet50", "vit_b_16")


def seconds(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def main():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 224, 224)
    print(f"{'model':10s} {'layers':>6s} {'log s':>7s} {'save s':>7s} {'load s':>7s} "
          f"{'read all s':>10s} {'pickle s':>8s} {'file/saved':>10s} {'load/log':>8s}")
    for name in MODELS:
        model = torchvision.models.get_model(name).eval()
        with torch.no_grad():
            logged, history = seconds(lambda: tll.log_forward_pass(model, x))
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, f"{name}.tll")
            saved, _ = seconds(lambda: history.save(path))
            loaded_in, loaded = seconds(lambda: tll.load_history(path))
            read, _ = seconds(lambda: [layer.tensor_contents for layer in loaded])
            pickled, _ = seconds(lambda: pickle.dumps(history))
            ratio = os.path.getsize(path) / history.saved_activation_bytes
        print(f"{name:10s} {len(history):6d} {logged:7.3f} {saved:7.3f} {loaded_in:7.3f} "
              f"{read:10.3f} {pickled:8.3f} {ratio:10.3f} {loaded_in / logged:8.3f}")


if __name__ == "__main__":
    main()
