"""Speed of torchlens_like.analysis next to the field's references, measured in one run.

Cases (defaults are the sizes of the project's performance targets):

1. correlation RDM of 1854 x 4096 float32 features (THINGS-sized):
   ``compute_rdm`` vs ``rsatoolbox.rdm.calc_rdm`` (target: at least 20x faster),
   with ``numpy.corrcoef`` for scale;
2. Spearman comparison of two 1854-stimulus RDMs:
   ``correlate_rdms`` vs ``rsatoolbox.rdm.compare(method="spearman")``,
   with ``scipy.stats.spearmanr`` for scale;
3. ridge with one alpha per target, 1000 stimuli x 4096 features x 10,000
   targets: ``RidgeGCV`` vs ``sklearn.linear_model.RidgeCV(alpha_per_target=True)``
   over the same alphas (target: at least 2x faster);
4. with ``--large``: a condensed correlation RDM of 26,000 stimuli, for time and
   peak memory.

Every case also checks that the results agree.  Times are the best of
``--repeats`` runs (full-size ridge: ``--ridge-repeats``, default 1; the large
RDM: one run), the sides of a case taking turns.  Run from the repository
root::

    python benchmarks/analysis_speed.py            # full sizes, about a minute on 2 cores
    python benchmarks/analysis_speed.py --quick    # small sizes, a few seconds
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np
import rsatoolbox
import scipy.stats
import torch
from sklearn.linear_model import RidgeCV

from torchlens_like.analysis import RidgeGCV, compute_rdm, correlate_rdms

ALPHAS = np.logspace(-1, 5, 7)


def best_times(functions: dict, repeats: int) -> dict[str, tuple[float, object]]:
    """Best time and last result of each function, running them in turns so that a change in the
    machine's load during the run affects all sides alike."""
    times = {name: [] for name in functions}
    results = {}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            results[name] = function()
            times[name].append(time.perf_counter() - start)
    return {name: (min(times[name]), results[name]) for name in functions}


def report(case: str, ours: float, reference_name: str, reference: float, agreement: str) -> None:
    print(f"{case:<44} ours {ours:8.3f} s | {reference_name:<30} {reference:8.3f} s | "
          f"{reference / ours:6.1f}x | {agreement}")


def rdm_case(n_stimuli: int, n_features: int, repeats: int, device: str) -> None:
    features = np.random.default_rng(0).standard_normal((n_stimuli, n_features)).astype(np.float32)
    dataset = rsatoolbox.data.Dataset(features)
    timed = best_times({
        "ours": lambda: compute_rdm(features, device=device),
        "rsatoolbox": lambda: rsatoolbox.rdm.calc_rdm(dataset, method="correlation"),
        "numpy": lambda: 1 - np.corrcoef(features),
    }, repeats)
    (ours_time, ours), (ref_time, reference), (numpy_time, _) = timed.values()
    difference = np.abs(ours[np.triu_indices(n_stimuli, 1)] - reference.dissimilarities[0]).max()
    case = f"correlation RDM {n_stimuli} x {n_features} float32"
    report(case, ours_time, "rsatoolbox calc_rdm", ref_time, f"max |diff| {difference:.1e}")
    report(case, ours_time, "numpy 1 - corrcoef", numpy_time, "")


def spearman_case(n_stimuli: int, repeats: int) -> None:
    rng = np.random.default_rng(1)
    features = rng.standard_normal((n_stimuli, 256))
    first = compute_rdm(features, condensed=True)
    second = compute_rdm(features + rng.standard_normal(features.shape), condensed=True)
    rdms = rsatoolbox.rdm.RDMs(first[None]), rsatoolbox.rdm.RDMs(second[None])
    timed = best_times({
        "ours": lambda: correlate_rdms(first, second, "spearman"),
        "rsatoolbox": lambda: rsatoolbox.rdm.compare(*rdms, method="spearman")[0, 0],
        "scipy": lambda: scipy.stats.spearmanr(first, second),
    }, repeats)
    (ours_time, ours), (ref_time, reference), (scipy_time, _) = timed.values()
    case = f"Spearman RDM comparison, {n_stimuli} stimuli"
    report(case, ours_time, "rsatoolbox compare spearman", ref_time, f"|diff| {abs(ours - reference):.1e}")
    report(case, ours_time, "scipy spearmanr", scipy_time, "")


def ridge_case(n_samples: int, n_features: int, n_targets: int, repeats: int, device: str) -> None:
    rng = np.random.default_rng(2)
    X = rng.standard_normal((n_samples, n_features)).astype(np.float32)
    signal = X[:, :200] @ rng.standard_normal((200, n_targets)).astype(np.float32)
    Y = signal * np.logspace(-2, 0.5, n_targets, dtype=np.float32) + 3 * rng.standard_normal((n_samples, n_targets))
    timed = best_times({
        "ours": lambda: RidgeGCV(ALPHAS, device=device).fit(X, Y),
        "sklearn": lambda: RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X, Y),
    }, repeats)
    (ours_time, ours), (ref_time, reference) = timed.values()
    same = np.mean(ours.alpha_ == reference.alpha_)
    scale = np.abs(reference.coef_).max()
    difference = np.abs(ours.coef_ - reference.coef_).max() / scale
    case = f"ridge, alpha per target, {n_samples} x {n_features} x {n_targets}"
    report(case, ours_time, "sklearn RidgeCV", ref_time,
           f"same alpha {same:.2%}, coef rel diff {difference:.1e}, {len(set(reference.alpha_))} alphas used")


def large_rdm_case(n_stimuli: int, n_features: int, device: str) -> None:
    features = np.random.default_rng(3).standard_normal((n_stimuli, n_features)).astype(np.float32)
    start = time.perf_counter()
    rdm = compute_rdm(features, condensed=True, device=device)
    elapsed = time.perf_counter() - start
    probe = np.random.default_rng(4).choice(n_stimuli, 2, replace=False)
    i, j = sorted(probe)
    expected = 1 - np.corrcoef(features[i], features[j])[0, 1]
    position = i * n_stimuli - i * (i + 1) // 2 + j - i - 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"condensed correlation RDM {n_stimuli} x {n_features} float32: {elapsed:.1f} s, "
          f"output {rdm.nbytes / 2**30:.2f} GiB, peak resident memory of this process {peak:.2f} GiB, "
          f"spot check |diff| {abs(rdm[position] - expected):.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--large", action="store_true", help="also a 26,000-stimulus condensed RDM")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side of the RDM and Spearman cases")
    parser.add_argument("--ridge-repeats", type=int, default=1, help="runs per side of the full-size ridge case")
    parser.add_argument("--device", default="cpu", help="torch device for our side, e.g. cuda")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()},"
          f" {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, our device: {args.device}")
    if args.quick:
        rdm_case(300, 512, args.repeats, args.device)
        spearman_case(300, args.repeats)
        ridge_case(200, 512, 500, args.repeats, args.device)
    else:
        rdm_case(1854, 4096, args.repeats, args.device)
        spearman_case(1854, args.repeats)
        ridge_case(1000, 4096, 10_000, args.ridge_repeats, args.device)
    if args.large:
        large_rdm_case(26_000, 4096, args.device)


if __name__ == "__main__":
    main()
