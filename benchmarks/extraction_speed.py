"""Feature extraction speed and memory: extract_features against the loops it replaces.

Run: ``python benchmarks/extraction_speed.py`` (short: 128 images; peak memory
for 128 and 512) or ``python benchmarks/extraction_speed.py --full`` (512
images; peak memory for 512 and 2048). torchvision's resnet50 (random init,
eval mode) on 224-px JPEG files decoded in DataLoader workers, batch 32, CPU,
two layers: ``layer3`` (a module output) and the last residual ``add`` inside
layer3 (an op that is no module's output). Measured side by side in one run,
in rounds that alternate the methods:

* ``plain``: ``model(x)`` over the same DataLoader, nothing kept (the limit);
* ``hooks``: a forward hook on ``layer3`` whose output each batch is written
  with ``np.save`` (what THINGSvision does; it gets only the module layer);
* ``extract``: ``tll.extract_features(..., format="hdf5")``, both layers, the
  forward stopped once they are saved;
* ``extract, no early stop``: the same running every pass to the end.

Prints images/s of each and the ratios extract / plain and extract / hooks,
then the peak resident memory of an extraction of the two set sizes (each in
a fresh process).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

import torchlens_like as tll
from torchlens_like.extract.samples import write_sample_images

BATCH = 32
WORKERS = 2


def layers_of(model):
    """``layer3`` and the label of the last residual add inside it."""
    history = tll.get_model_metadata(model, torch.rand(1, 3, 224, 224))
    adds = [layer.layer_label for layer in history if layer.func_name in ("add", "add_")
            and any(m.startswith("layer3") for m in layer.containing_modules)]
    return ["layer3", adds[-1]]


def loader(folder):
    return torch.utils.data.DataLoader(folder, batch_size=BATCH, num_workers=WORKERS,
                                       collate_fn=lambda items: torch.stack(
                                           [image for image, _, _ in items]))


def plain(model, folder, out):
    with torch.no_grad():
        for x in loader(folder):
            model(x)


def hooks(model, folder, out):
    kept = {}
    handle = model.layer3.register_forward_hook(lambda m, i, o: kept.__setitem__("x", o))
    try:
        with torch.no_grad():
            for i, x in enumerate(loader(folder)):
                model(x)
                np.save(os.path.join(out, f"layer3_{i:05d}.npy"), kept["x"].numpy())
    finally:
        handle.remove()


def extract(model, folder, out, early_stop=True):
    tll.extract_features(model, folder, layers_of.cache, batch_size=BATCH, output_dir=out,
                         format="hdf5", progress=False, num_workers=WORKERS,
                         early_stop=early_stop)


METHODS = {"plain": plain, "hooks": hooks, "extract": extract,
           "extract, no early stop": lambda m, f, o: extract(m, f, o, early_stop=False)}


def images_per_second(method, model, folder):
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        method(model, folder, out)
        return len(folder) / (time.perf_counter() - start)


def peak_memory(images_dir, count):
    """Peak RSS (MB) of a fresh process extracting the first ``count`` images."""
    code = (f"import resource, sys, torchlens_like as tll\n"
            f"sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
            f"from extraction_speed import layers_of, BATCH, WORKERS\n"
            f"model, transform = tll.load_model('resnet50', source='torchvision')\n"
            f"folder = tll.ImageFolder({images_dir!r}, transform)\n"
            f"folder.paths = folder.paths[:{count}]; folder.labels = folder.labels[:{count}]\n"
            f"import tempfile\n"
            f"with tempfile.TemporaryDirectory() as out:\n"
            f"    tll.extract_features(model, folder, layers_of(model), batch_size=BATCH,\n"
            f"        output_dir=out, format='hdf5', progress=False, num_workers=WORKERS)\n"
            f"print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return float(done.stdout.split()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="512 images, peak memory for 512 and 2048 (default 128; 128, 512)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of all four methods")
    args = parser.parse_args()
    count, memory_counts = (512, (512, 2048)) if args.full else (128, (128, 512))
    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    with tempfile.TemporaryDirectory() as images_dir:
        write_sample_images(images_dir, count=max(memory_counts), size=224, extension=".jpg")
        model, transform = tll.load_model("resnet50", source="torchvision")
        layers_of.cache = layers_of(model)
        folder = tll.ImageFolder(images_dir, transform)
        folder.paths, folder.labels = folder.paths[:count], folder.labels[:count]
        print(f"resnet50, {count} JPEG images of 224 px, batch {BATCH}, {WORKERS} loader "
              f"workers, {torch.get_num_threads()} torch threads, layers {layers_of.cache}")
        rates = {name: [] for name in METHODS}
        for _ in range(args.rounds):
            for name, method in METHODS.items():
                rates[name].append(images_per_second(method, model, folder))
        rate = {name: statistics.median(values) for name, values in rates.items()}
        for name, value in rate.items():
            print(f"{name:24s} {value:7.2f} images/s")
        print(f"extract / plain                  {rate['extract'] / rate['plain']:.3f}x")
        print(f"extract / hooks                  {rate['extract'] / rate['hooks']:.3f}x")
        print(f"extract, no early stop / plain   "
              f"{rate['extract, no early stop'] / rate['plain']:.3f}x")
        peaks = {n: peak_memory(images_dir, n) for n in memory_counts}
        small, large = memory_counts
        print(f"peak RSS: {peaks[small]:.0f} MB for {small} images, {peaks[large]:.0f} MB for "
              f"{large} ({peaks[large] / peaks[small]:.3f}x)")


if __name__ == "__main__":
    main()
