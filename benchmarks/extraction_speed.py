"""Feature extraction speed and memory: extract_features against the loops it replaces.

Run: ``python benchmarks/extraction_speed.py`` (short: 128 images; peak memory
for 128 and 512) or ``python benchmarks/extraction_speed.py --full`` (512
images; peak memory for 512 and 2048). torchvision's resnet50 (random init,
eval mode) on 224-px JPEG files, batch 32, CPU, two layers: ``layer3`` (a
module output) and the last residual ``add`` inside layer3 (an op that is no
module's output).

Every method reads the images through one and the same ``DataLoader`` (same
workers, collate function and transform), so the figures differ only by what
each method does with a batch:

* ``plain``: ``model(x)``, nothing kept (the limit);
* ``hooks``: a forward hook on ``layer3`` whose output each batch is written
  with ``np.save`` (what THINGSvision does; it gets only the module layer);
* ``extract``: ``tll.extract_features(..., format="hdf5")``, both layers, the
  forward stopped once they are saved;
* ``extract, no early stop``: the same running every pass to the end.

One untimed pass of the plain loop comes first (the image files enter the
page cache, the workers, allocator and thread pool settle), so no method
pays for the process's first pass. The methods then take turns in each of
``--rounds`` rounds (each round starting with the next method); the median
images/s of each, the ratios of the medians and each round's ratios are
printed (on a shared machine, a round whose methods all ran under the same
load is the fairer comparison). Then the peak resident memory of an
extraction of the two set sizes, each in a fresh process: the peak of the
whole (``ru_maxrss``) and, on Linux, the largest anonymous and file-backed
parts seen (sampled every 20 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np
import torch

import torchlens_like as tll
from torchlens_like.extract.samples import write_sample_images
from timing import time_call

BATCH = 32
WORKERS = 2


def layers_of(model):
    """``layer3`` and the label of the last residual add inside it."""
    history = tll.get_model_metadata(model, torch.rand(1, 3, 224, 224))
    adds = [layer.layer_label for layer in history if layer.func_name in ("add", "add_")
            and any(m.startswith("layer3") for m in layer.containing_modules)]
    return ["layer3", adds[-1]]


def stack_images(items):
    """Collate ``ImageFolder`` items ``(image, class_index)`` into one tensor of images."""
    return torch.stack([image for image, _ in items])


def image_loader(folder):
    """The one DataLoader configuration every method reads the images through."""
    return torch.utils.data.DataLoader(folder, batch_size=BATCH, num_workers=WORKERS,
                                       collate_fn=stack_images)


def plain(model, loader, layers, out):
    with torch.no_grad():
        for x in loader:
            model(x)


def hooks(model, loader, layers, out):
    kept = {}
    handle = model.layer3.register_forward_hook(lambda m, i, o: kept.__setitem__("x", o))
    try:
        with torch.no_grad():
            for i, x in enumerate(loader):
                model(x)
                np.save(os.path.join(out, f"layer3_{i:05d}.npy"), kept["x"].numpy())
    finally:
        handle.remove()


def extract(model, loader, layers, out, early_stop=True):
    tll.extract_features(model, loader, layers, batch_size=BATCH, output_dir=out,
                         format="hdf5", progress=False, early_stop=early_stop)


def extract_without_early_stop(model, loader, layers, out):
    extract(model, loader, layers, out, early_stop=False)


METHODS = {"plain": plain, "hooks": hooks, "extract": extract,
           "extract, no early stop": extract_without_early_stop}
RATIOS = {"extract / plain": ("extract", "plain"), "extract / hooks": ("extract", "hooks"),
          "extract, no early stop / plain": ("extract, no early stop", "plain")}


def images_per_second(method, model, loader, layers):
    with tempfile.TemporaryDirectory() as out:
        return len(loader.dataset) / time_call(lambda: method(model, loader, layers, out))


def speed_rounds(model, loader, layers, rounds):
    """Median images/s of each method over ``rounds`` rounds, the order rotated each round."""
    names = list(METHODS)
    rates = {name: [] for name in names}
    for round_index in range(rounds):
        turn = round_index % len(names)
        for name in names[turn:] + names[:turn]:
            rates[name].append(images_per_second(METHODS[name], model, loader, layers))
    return {name: statistics.median(values) for name, values in rates.items()}, rates


PEAK_MEMORY_SCRIPT = """
import json, resource, sys, tempfile, threading
sys.path.insert(0, {benchmarks!r})
import torchlens_like as tll
from extraction_speed import BATCH, layers_of, image_loader

peaks = {{"RssAnon": 0, "RssFile": 0}}
finished = threading.Event()

def sample():
    while not finished.wait(0.02):
        try:
            with open("/proc/self/status") as status:
                for line in status:
                    name, _, value = line.partition(":")
                    if name in peaks:
                        peaks[name] = max(peaks[name], int(value.split()[0]) // 1024)
        except OSError:
            return

model, transform = tll.load_model("resnet50", source="torchvision")
layers = layers_of(model)
folder = tll.ImageFolder({images!r}, transform)
folder.paths, folder.labels = folder.paths[:{count}], folder.labels[:{count}]
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
with tempfile.TemporaryDirectory() as out:
    tll.extract_features(model, image_loader(folder), layers, batch_size=BATCH, output_dir=out,
                         format="hdf5", progress=False)
finished.set()
sampler.join()
peaks["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print(json.dumps(peaks))
"""


def peak_memory(images_dir, count):
    """Peak RSS (MB: whole, anonymous, file-backed) of a fresh process extracting ``count`` images."""
    code = PEAK_MEMORY_SCRIPT.format(benchmarks=os.path.dirname(os.path.abspath(__file__)),
                                     images=images_dir, count=count)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="512 images, peak memory for 512 and 2048 (default 128; 128, 512)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all four methods")
    args = parser.parse_args()
    count, memory_counts = (512, (512, 2048)) if args.full else (128, (128, 512))
    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    with tempfile.TemporaryDirectory() as images_dir:
        write_sample_images(images_dir, count=max(memory_counts), size=224, extension=".jpg")
        model, transform = tll.load_model("resnet50", source="torchvision")
        layers = layers_of(model)
        folder = tll.ImageFolder(images_dir, transform)
        folder.paths, folder.labels = folder.paths[:count], folder.labels[:count]
        print(f"resnet50, {count} JPEG images of 224 px, batch {BATCH}, one DataLoader with "
              f"{WORKERS} workers for every method, {torch.get_num_threads()} torch threads, "
              f"layers {layers}, {args.rounds} round(s), load average before: "
              f"{os.getloadavg()[0]:.1f}")
        loader = image_loader(folder)
        plain(model, loader, layers, None)
        rate, rates = speed_rounds(model, loader, layers, args.rounds)
        for name, value in rate.items():
            each = ", ".join(f"{r:.2f}" for r in rates[name])
            print(f"{name:24s} {value:7.2f} images/s (median of {each})")
        for label, (top, bottom) in RATIOS.items():
            per_round = [a / b for a, b in zip(rates[top], rates[bottom])]
            print(f"{label:32s} {rate[top] / rate[bottom]:.3f}x of the medians; per round "
                  f"{', '.join(f'{r:.3f}' for r in per_round)} (median "
                  f"{statistics.median(per_round):.3f}x)")
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        peaks = {n: peak_memory(images_dir, n) for n in memory_counts}
        small, large = memory_counts
        for part in ("maxrss", "RssAnon", "RssFile"):
            print(f"peak {part:8s} {peaks[small][part]:6d} MB for {small} images, "
                  f"{peaks[large][part]:6d} MB for {large} "
                  f"({peaks[large][part] / max(peaks[small][part], 1):.3f}x)")


if __name__ == "__main__":
    main()
