"""How fast the command line answers ``--help`` and ``--version``.

Run: ``python benchmarks/cli_startup.py``. Times each command in a fresh
interpreter (median of several runs, measured side by side in one run) next
to a bare ``python -c pass`` and to ``import torch``, the cost the command
line avoids at start. The target is ``tll --help`` under 0.5 s.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 7
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "tll --help": [sys.executable, "-m", "torchlens_like.cli", "--help"],
    "tll --version": [sys.executable, "-m", "torchlens_like.cli", "--version"],
    "tll validate --help": [sys.executable, "-m", "torchlens_like.cli", "validate", "--help"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def median_seconds(argv):
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    measured = {name: median_seconds(argv) for name, argv in COMMANDS.items()}
    bare = measured["python -c pass"]
    print(f"{'command':28s} {'median s':>9s} {'x bare python':>14s}")
    for name, seconds in measured.items():
        print(f"{name:28s} {seconds:9.3f} {seconds / bare:14.1f}")


if __name__ == "__main__":
    main()
