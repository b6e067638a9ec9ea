"""Speed of torchlens_like.analysis next to the field's references, measured in one run.

Cases (defaults are the sizes of the project's performance targets):

1. correlation RDM of 1854 x 4096 float32 features (THINGS-sized):
   ``compute_rdm`` vs ``rsatoolbox.rdm.calc_rdm`` (target: at least 50x faster)
   and vs one ``X @ X.T`` of the same shape and dtype (target: at most 1.0x), in
   torch (a full product) and in numpy (which computes ``X @ X.T`` with BLAS
   ``syrk``, half the products), with ``numpy.corrcoef`` for scale;
2. Spearman comparison of two 1854-stimulus RDMs:
   ``correlate_rdms`` vs ``rsatoolbox.rdm.compare(method="spearman")``,
   with ``scipy.stats.spearmanr`` for scale;
3. ridge with one alpha per target, 1000 stimuli x 4096 features x 10,000
   targets: ``RidgeGCV`` vs ``sklearn.linear_model.RidgeCV(alpha_per_target=True)``
   over the same alphas (target: at least 2x faster);
4. CKA, 2000 stimuli: ``cka`` (linear and RBF, biased and debiased) vs
   ckatorch's ``cka_base`` (Kornblith et al.'s formulas on ``n x n`` Gram
   matrices);
5. RDM noise ceilings of 8 subjects over 600 stimuli: ``rdm_noise_ceiling`` vs
   rsatoolbox's ``boot_noise_ceiling`` (Pearson and Spearman);
6. ncsnr and split-half reliability of 3 repeats x 5000 stimuli x 2000 targets vs
   the same formulas in numpy;
7. variance partitioning of three feature sets (1000 stimuli, 300 targets) vs
   the same fits with scikit-learn's ``RidgeCV`` on the same folds;
8. at 20,000 stimuli, each in a fresh process for its peak memory: linear CKA of
   two 2048-wide float32 representations (biased and debiased), the Pearson
   RDM noise ceiling of 3 subjects' condensed float32 RDMs (2 * 10^8 pairs
   each), and ncsnr of 3 repeats x 20,000 stimuli x 1000 targets;
9. with ``--large``: a condensed correlation RDM of 26,000 stimuli, for time and
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
import multiprocessing
import os
import platform
import resource
import threading
import time
import warnings

import numpy as np
import rsatoolbox
import scipy.spatial.distance
import scipy.stats
import torch
from ckatorch.core import cka_base
from rsatoolbox.inference.noise_ceiling import boot_noise_ceiling
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from threadpoolctl import threadpool_limits

from torchlens_like.analysis import (
    RidgeGCV,
    cka,
    compute_rdm,
    correlate_rdms,
    ncsnr,
    rdm_noise_ceiling,
    split_half_reliability,
    variance_partitioning,
)

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


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def rdm_case(n_stimuli: int, n_features: int, repeats: int, device: str) -> None:
    features = np.random.default_rng(0).standard_normal((n_stimuli, n_features)).astype(np.float32)
    tensor = torch.from_numpy(features).to(device)
    dataset = rsatoolbox.data.Dataset(features)

    def on_device(function):
        def timed():
            result = function()
            synchronize(device)
            return result
        return timed

    timed = best_times({
        "ours": lambda: compute_rdm(features, device=device),
        "ours, tensor on the device": on_device(lambda: compute_rdm(tensor)),
        "torch X @ X.T": on_device(lambda: tensor @ tensor.T),
        "numpy X @ X.T": lambda: features @ features.T,
        "ours float64": lambda: compute_rdm(features, device=device, dtype="float64"),
        "rsatoolbox": lambda: rsatoolbox.rdm.calc_rdm(dataset, method="correlation"),
        "numpy": lambda: 1 - np.corrcoef(features),
    }, repeats)
    ours_time, ours = timed["ours"]
    reference = timed["rsatoolbox"][1]
    difference = np.abs(ours[np.triu_indices(n_stimuli, 1)] - reference.dissimilarities[0]).max()
    case = f"correlation RDM {n_stimuli} x {n_features} float32"
    report(case, ours_time, "rsatoolbox calc_rdm", timed["rsatoolbox"][0],
           f"max |diff| {difference:.1e}, output {ours.dtype}")
    report(case, ours_time, "numpy 1 - corrcoef", timed["numpy"][0], "")
    device_time = timed["ours, tensor on the device"][0]
    for name in ("torch X @ X.T", "numpy X @ X.T"):
        print(f"{case:<44} ours (tensor on {device}) {device_time:8.3f} s = "
              f"{device_time / timed[name][0]:.2f}x the time of one {name} ({timed[name][0]:.3f} s)")
    print(f"{case:<44} ours with dtype='float64' {timed['ours float64'][0]:8.3f} s, "
          f"output {timed['ours float64'][1].dtype}")


def cka_case(n_stimuli: int, repeats: int, device: str) -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n_stimuli, 512))
    y = np.tanh(x[:, :300] @ rng.standard_normal((300, 256)) / 17) + rng.standard_normal((n_stimuli, 256))
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    for kernel in ("linear", "rbf"):
        for debiased in (False, True):
            options = {"kernel": kernel, "debiased": debiased}
            if kernel == "rbf":
                medians = []
                for features in (tx, ty):
                    squared = torch.cdist(features, features) ** 2
                    medians.append(float(torch.median(squared)))
                threshold = [np.median(scipy.spatial.distance.pdist(a)) / np.sqrt(m) for a, m in zip((x, y), medians)]
                reference = _ckatorch_rbf(tx, ty, threshold, debiased)
            else:
                def reference():
                    return float(cka_base(tx, ty, "linear", unbiased=debiased))
            timed = best_times({"ours": lambda: cka(x, y, device=device, **options), "ckatorch": reference}, repeats)
            (ours_time, ours), (ref_time, theirs) = timed.values()
            name = f"CKA {kernel}{', debiased' if debiased else ''}, {n_stimuli} stimuli"
            report(name, ours_time, "ckatorch (n x n Gram)", ref_time, f"|diff| {abs(ours - theirs):.1e}")


def _ckatorch_rbf(tx, ty, thresholds, debiased):
    from ckatorch.utils import center_gram_matrix, rbf_kernel

    def reference():
        grams = [center_gram_matrix(rbf_kernel(t, threshold), unbiased=debiased)
                 for t, threshold in zip((tx, ty), thresholds)]
        return float((grams[0] * grams[1]).sum() / (grams[0].norm() * grams[1].norm()))
    return reference


def noise_ceiling_case(n_subjects: int, n_stimuli: int, repeats: int) -> None:
    rng = np.random.default_rng(6)
    truth = rng.standard_normal((n_stimuli, 20))
    vectors = np.stack([compute_rdm(truth + rng.standard_normal(truth.shape), condensed=True)
                        for _ in range(n_subjects)])
    rdms = rsatoolbox.rdm.RDMs(vectors)
    for ours_method, their_method in (("pearson", "corr"), ("spearman", "spearman")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            timed = best_times({
                "ours": lambda: rdm_noise_ceiling(vectors, ours_method),
                "rsatoolbox": lambda: boot_noise_ceiling(rdms, method=their_method),
            }, repeats)
        (ours_time, ours), (ref_time, theirs) = timed.values()
        difference = max(abs(a - b) for a, b in zip(ours, theirs))
        report(f"RDM noise ceiling {ours_method}, {n_subjects} x {n_stimuli} stimuli", ours_time,
               "rsatoolbox boot_noise_ceiling", ref_time, f"max |diff| {difference:.1e}")


def numpy_ncsnr(repeats):
    noise = repeats.var(axis=0, ddof=1).mean(axis=0)
    total = repeats.reshape(-1, repeats.shape[2]).var(axis=0, ddof=1)
    return np.sqrt(np.maximum(total - noise, 0) / noise)


def numpy_split_half(repeats):
    even, odd = repeats[0::2].mean(axis=0), repeats[1::2].mean(axis=0)
    even, odd = even - even.mean(axis=0), odd - odd.mean(axis=0)
    r = (even * odd).sum(axis=0) / np.sqrt((even**2).sum(axis=0) * (odd**2).sum(axis=0))
    return 2 * r / (1 + r)


def encoding_ceiling_case(n_stimuli: int, n_targets: int, repeats: int) -> None:
    rng = np.random.default_rng(7)
    trials = rng.standard_normal((1, n_stimuli, n_targets)) + rng.standard_normal((3, n_stimuli, n_targets))
    for name, ours_function, reference in (("ncsnr", ncsnr, numpy_ncsnr),
                                           ("split-half reliability", split_half_reliability, numpy_split_half)):
        timed = best_times({"ours": lambda: ours_function(trials), "numpy": lambda: reference(trials)}, repeats)
        (ours_time, ours), (ref_time, theirs) = timed.values()
        report(f"{name}, 3 x {n_stimuli} x {n_targets}", ours_time, "the formula in numpy", ref_time,
               f"max |diff| {np.abs(ours - theirs).max():.1e}")


def partition_case(n_stimuli: int, n_targets: int, device: str) -> None:
    rng = np.random.default_rng(8)
    sets = {name: rng.standard_normal((n_stimuli, width)) for name, width in (("A", 400), ("B", 300), ("C", 200))}
    y = (sets["A"][:, :20] @ rng.standard_normal((20, n_targets)) + sets["B"][:, :20] @ rng.standard_normal(
        (20, n_targets)) + 4 * rng.standard_normal((n_stimuli, n_targets)))
    start = time.perf_counter()
    partition = variance_partitioning(sets, y, folds=5, alphas=ALPHAS, device=device)
    ours_time = time.perf_counter() - start
    start = time.perf_counter()
    worst = 0.0
    for union in partition.r2.columns:
        x = np.concatenate([sets[name] for name in union.split("+")], axis=1)
        scores = [r2_score(y[test], RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(x[train], y[train])
                           .predict(x[test]), multioutput="raw_values") for train, test in partition.folds]
        worst = max(worst, np.abs(np.mean(scores, axis=0) - partition.r2[union].to_numpy()).max())
    ref_time = time.perf_counter() - start
    report(f"variance partitioning, 3 sets, {n_stimuli} x {n_targets}", ours_time, "sklearn RidgeCV, same folds",
           ref_time, f"max |diff| of R^2 {worst:.1e}")


def _resident_gib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


class PeakMemory:
    """Peak resident memory of this process above its level at entry, sampled every 5 ms."""

    def __enter__(self):
        self.base = self.peak = _resident_gib()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.done.wait(0.005):
            self.peak = max(self.peak, _resident_gib())

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, _resident_gib())

    @property
    def above_entry(self) -> float:
        return self.peak - self.base


def _scale_child(case: str, n_stimuli: int, device: str, threads, queue) -> None:
    if threads is not None:
        torch.set_num_threads(threads)
        threadpool_limits(threads)
    rng = np.random.default_rng(9)
    if case == "cka":
        x = rng.standard_normal((n_stimuli, 2048), dtype=np.float32)
        y = np.tanh(x[:, :1024] * 0.5) + rng.standard_normal((n_stimuli, 1024), dtype=np.float32)
        inputs = {"x": x, "y": y}
        calls = {"linear CKA": lambda: cka(x, y, device=device),
                 "linear CKA, debiased": lambda: cka(x, y, debiased=True, device=device)}
    elif case == "rdm ceiling":
        n_pairs = n_stimuli * (n_stimuli - 1) // 2
        truth = rng.standard_normal(n_pairs, dtype=np.float32)
        vectors = np.empty((3, n_pairs), dtype=np.float32)
        for subject in range(3):
            vectors[subject] = truth + rng.standard_normal(n_pairs, dtype=np.float32)
        del truth
        inputs = {"RDMs": vectors}
        calls = {"Pearson RDM noise ceiling, 3 subjects": lambda: rdm_noise_ceiling(
            torch.from_numpy(vectors).to(device), "pearson")}
    else:
        trials = rng.standard_normal((3, n_stimuli, 1000), dtype=np.float32)
        inputs = {"repeats": trials}
        calls = {"ncsnr, 3 repeats x 1000 targets": lambda: ncsnr(trials)}
    lines = []
    for name, call in calls.items():
        with PeakMemory() as memory:
            start = time.perf_counter()
            value = call()
            synchronize(device)
            elapsed = time.perf_counter() - start
        shown = value if np.isscalar(value) or isinstance(value, tuple) else np.asarray(value).mean()
        lines.append(f"{name}, {n_stimuli} stimuli: {elapsed:.2f} s, peak resident memory "
                     f"{memory.above_entry:+.2f} GiB above the {sum(a.nbytes for a in inputs.values()) / 2**30:.2f}"
                     f" GiB of inputs (result {np.round(shown, 4)})")
    if device.startswith("cuda"):
        lines.append(f"  peak CUDA memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    queue.put(lines)


def scale_case(n_stimuli: int, device: str, threads) -> None:
    context = multiprocessing.get_context("spawn")
    for case in ("cka", "rdm ceiling", "ncsnr"):
        queue = context.Queue()
        process = context.Process(target=_scale_child, args=(case, n_stimuli, device, threads, queue))
        process.start()
        lines = queue.get()
        process.join()
        print("\n".join(lines))


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
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch and for the BLAS of the references alike (default: as installed); "
                             "1 gives steadier figures on a machine that others are using")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    limited = f" (the references' BLAS too)" if args.threads else ""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads{limited}, {platform.processor() or platform.machine()},"
          f" {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, our device: {args.device}")
    if args.quick:
        rdm_case(300, 512, args.repeats, args.device)
        spearman_case(300, args.repeats)
        ridge_case(200, 512, 500, args.repeats, args.device)
        cka_case(300, args.repeats, args.device)
        noise_ceiling_case(4, 60, args.repeats)
        encoding_ceiling_case(500, 100, args.repeats)
        partition_case(200, 20, args.device)
        scale_case(2000, args.device, args.threads)
    else:
        rdm_case(1854, 4096, args.repeats, args.device)
        spearman_case(1854, args.repeats)
        ridge_case(1000, 4096, 10_000, args.ridge_repeats, args.device)
        cka_case(2000, args.repeats, args.device)
        noise_ceiling_case(8, 600, args.repeats)
        encoding_ceiling_case(5000, 2000, args.repeats)
        partition_case(1000, 300, args.device)
        scale_case(20_000, args.device, args.threads)
    if args.large:
        large_rdm_case(26_000, 4096, args.device)


if __name__ == "__main__":
    main()
