"""TensorFlow capture: log_forward_pass over a plain ``model(x)``, measured side by side.

For each keras.applications model (random weights, CPU, batch 2, 224 px) this
times, in one run:

* the first ``get_model_metadata`` call on a fresh model (tracing included),
  over the plain ``model(x)`` timed just before it;
* repeated calls on the same model, interleaved with plain calls: metadata
  only (``get_model_metadata``), every layer saved (``log_forward_pass``), and
  one layer saved (the model's last Keras layer). Each logged call is divided
  by the plain call timed right before it, and the medians of those paired
  ratios are reported, so the machine's slow and fast spells land on both sides.

The plain call is Keras' own eager ``model(x)``, the way a user runs it.
Timings on a shared machine are noisy; compare the ratios, not the seconds.

Run: ``python benchmarks/tensorflow_capture.py [--repeats 7] [--models MobileNetV2 ResNet50]``
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from torchlens_like.tf_runtime.loader import tf  # noqa: F401  (Triton first)
import keras  # noqa: E402

import torchlens_like as tll  # noqa: E402
from timing import time_call  # noqa: E402

MODELS = ("MobileNetV2", "ResNet50")
METADATA_TARGET = 2.0


def measure(name, repeats):
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(224, 224, 3))
    x = np.random.default_rng(0).random((2, 224, 224, 3)).astype("float32")
    last = model.layers[-1].name

    def plain():
        return model(x)

    plain()
    first_plain = time_call(plain)
    first = time_call(lambda: tll.get_model_metadata(model, x))
    modes = {
        "metadata": lambda: tll.get_model_metadata(model, x),
        "all saved": lambda: tll.log_forward_pass(model, x),
        "one layer": lambda: tll.log_forward_pass(model, x, layers_to_save=[last]),
    }
    for run in modes.values():
        run()
    ratios = {mode: [] for mode in modes}
    plains = []
    for _ in range(repeats):
        for mode, run in modes.items():
            base = time_call(plain)
            plains.append(base)
            ratios[mode].append(time_call(run) / base)
    return {"plain_s": statistics.median(plains), "first_s": first,
            "first_ratio": first / first_plain,
            **{mode: statistics.median(values) for mode, values in ratios.items()}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    options = parser.parse_args()
    print(f"{'model':<12} {'plain s':>8} {'first s':>8} {'first/plain':>12} "
          f"{'metadata/plain':>15} {'all/plain':>10} {'one/plain':>10}")
    for name in options.models:
        row = measure(name, options.repeats)
        verdict = "ok" if row["metadata"] <= METADATA_TARGET else "over target"
        print(f"{name:<12} {row['plain_s']:>8.3f} {row['first_s']:>8.2f} "
              f"{row['first_ratio']:>12.1f} {row['metadata']:>15.2f} {row['all saved']:>10.2f} "
              f"{row['one layer']:>10.2f}   metadata target <= {METADATA_TARGET}: {verdict}",
              flush=True)


if __name__ == "__main__":
    main()
