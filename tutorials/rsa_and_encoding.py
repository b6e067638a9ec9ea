"""RSA and encoding models with torchlens_like.analysis, on a synthetic benchmark.

Run it from the repository root::

    python tutorials/rsa_and_encoding.py

It takes about a minute on a laptop CPU and writes three images to
``outputs/tutorial/``.  With real data, replace the synthetic benchmark by
``Benchmark.from_files(...)`` and the synthetic feature maps by activations,
e.g. ``{label: history[label].tensor_contents for label in layers}`` from
``torchlens_like.log_forward_pass`` over your stimulus set.
"""

# %% 1. A benchmark with known answers
# ``Benchmark.synthetic`` returns brain-like responses (neuroids x stimuli) of
# two regions in two subjects, and four "layers" of features.  EVC responds to
# the factors of layer1, OTC to those of layer3; every layer also shares some
# factors with all others, so the wrong layers score above zero too.  Each
# stimulus was "shown" 4 times (``benchmark.repeats``: repeats x stimuli x
# neuroids, noise of sd 1 per trial); the responses are the trial averages.
from pathlib import Path

import numpy as np
import torch

import torchlens_like as tll
from torchlens_like.analysis import (
    Benchmark,
    RidgeGCV,
    cka,
    compare_rdms,
    compute_rdm,
    correlate_rdms,
    cross_validated_scores,
    effective_dimensionality,
    get_results_max,
    ncsnr,
    ncsnr_noise_ceiling,
    plot_rdm,
    plot_variance_partitioning,
    rdm_noise_ceiling,
    relative_representations,
    score_feature_maps,
    split_half_reliability,
    variance_partitioning,
)

output = Path("outputs/tutorial")
benchmark, feature_maps = Benchmark.synthetic(n_stimuli=200, n_repeats=4, noise=1.0, seed=0)
print(benchmark)
for name, features in feature_maps.items():
    print(f"  {name}: features of shape {features.shape}")

# %% 2. RDMs and their comparison (THINGSvision-style RSA)
# ``compute_rdm`` flattens each stimulus's features; numpy in gives numpy out,
# a (CUDA) tensor in gives a tensor on the same device.
model_rdms = {name: compute_rdm(features, method="correlation") for name, features in feature_maps.items()}
brain_rdms = benchmark.build_rdms(method="correlation")
otc = brain_rdms.select(region="OTC", subj_id=1).get_matrices()[0]
for name, rdm in model_rdms.items():
    print(f"{name} vs OTC (subject 1): Spearman rho = {correlate_rdms(rdm, otc, method='spearman'):.3f}")
print(compare_rdms(model_rdms, method="pearson").round(2))
print("wrote", plot_rdm(model_rdms["layer3"], output / "layer3_rdm.png", colormap="cividis", dpi=200))
print("wrote", plot_rdm(otc, output / "otc_rdm.png"))

# %% 3. Encoding models: ridge onto every neuroid with its own penalty
# ``RidgeGCV`` chooses alpha per neuroid by exact leave-one-out error (the same
# alphas as scikit-learn's RidgeCV(alpha_per_target=True)), from one
# eigendecomposition.  ``cross_validated_scores`` gives held-out Pearson r.
responses = benchmark.responses.T
layer3 = feature_maps["layer3"]
model = RidgeGCV(alphas=np.logspace(-2, 5, 8)).fit(layer3[:150], responses[:150])
print("chosen alphas (first 5 neuroids):", model.alpha_[:5])
scores = cross_validated_scores(layer3, responses, folds=5)
otc_rows = benchmark.neuroids("OTC", 1)
print(f"layer3 -> OTC subject 1, mean held-out r: {scores[otc_rows].mean():.3f}")

# %% 4. DeepJuice's alignment procedures over all layers
# cRSA (classical RSA), eReg (encoding regression after a sparse random
# projection) and eRSA (RSA on the encoding model's predicted responses), on a
# train/test split of the stimuli, with a statistic per feature map.
results = score_feature_maps(
    feature_maps, benchmark, ["cRSA", "eReg", "eRSA"], test_size=0.5, seed=0,
    feature_map_stats={"effective_dimensionality": effective_dimensionality},
)
print(results.head())
summary = results.query("cv_split == 'test'").groupby(["metric", "region", "model_layer"]).score.mean()
print(summary.unstack().round(2))

# The best layer per metric, region and subject is chosen on the train split
# and reported on the test split:
best = get_results_max(results, "score", ["metric", "region", "subj_id"], ["model_layer", "model_layer_index"],
                       criterion={"cv_split": "train"})
print(best[["metric", "region", "subj_id", "model_layer", "criterion_score", "score"]])
assert set(zip(best.region, best.model_layer)) == {("EVC", "layer1"), ("OTC", "layer3")}

# %% 5. Relative representations
# Re-express every stimulus by its cosine similarity to a few anchors (in
# practice: embeddings of text queries); here the anchors are the first five
# stimuli themselves.
relative = relative_representations(layer3, anchors=layer3[:5])
print("relative representation shape:", relative.shape)
print("effective dimensionality of layer3:", round(effective_dimensionality(layer3), 2))

# %% 6. Noise ceilings: how well could any model do?
# Across subjects (rsatoolbox's boot_noise_ceiling): each subject's RDM against
# the pool of the others (lower bound) and against the pool of all (upper).
otc_rdms = brain_rdms.select(region="OTC")
lower, upper = rdm_noise_ceiling(otc_rdms, method="pearson")
print(f"OTC RDM noise ceiling (Pearson): lower {lower:.3f}, upper {upper:.3f}")
# From repeated presentations: split-half reliability (Spearman-Brown
# corrected) and the Natural Scenes Dataset's ncsnr, with the fraction of the
# variance of a 4-trial average that is signal (what a perfect model's R^2 is).
snr = ncsnr(benchmark.repeats)
ceiling = ncsnr_noise_ceiling(snr, n_averaged=4)
print(f"ncsnr: median {np.median(snr):.2f} (planted: {benchmark.neuroid_data.planted_ncsnr.median():.2f}); "
      f"noise ceiling median {np.median(ceiling):.2f}; "
      f"split-half reliability median {np.median(split_half_reliability(benchmark.repeats)):.2f}")
# ``score_feature_maps`` reports every score also as a fraction of its ceiling.
results = score_feature_maps(feature_maps, benchmark, ["cRSA", "eReg"], test_size=0.5, seed=0, ceiling=True)
print(results.query("cv_split == 'test'").groupby(["metric", "region", "model_layer"])[
    ["score", "ceiling", "fraction_of_ceiling"]].mean().round(2))

# %% 7. CKA between two models' layers
# Centered kernel alignment compares two representations directly, without
# RDMs.  Here: two small CNNs with different random weights, their activations
# logged with torchlens_like over the same 300 random images.
def small_cnn(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4),
        torch.nn.Flatten(), torch.nn.Linear(256, 10),
    ).eval()


images = torch.rand(300, 3, 32, 32, generator=torch.Generator().manual_seed(1))
modules = ["1", "4", "7"]  # module addresses: first ReLU, second ReLU, the linear read-out
activations = {}
for name, seed in (("net_a", 0), ("net_b", 1)):
    history = tll.log_forward_pass(small_cnn(seed), images)
    activations[name] = {module: history[module].tensor_contents.flatten(1).numpy() for module in modules}
table = np.array([[cka(activations["net_a"][a], activations["net_b"][b]) for b in modules] for a in modules])
print("linear CKA, net_a layers (rows) x net_b layers (columns):")
print(table.round(2))
print("debiased linear CKA, first ReLUs:",
      round(cka(activations["net_a"]["1"], activations["net_b"]["1"], debiased=True), 3))
print("RBF CKA, read-outs:", round(cka(activations["net_a"]["7"], activations["net_b"]["7"], kernel="rbf"), 3))

# %% 8. Variance partitioning: what does one layer explain that another does not?
# Ridge fits of layer1, layer3 and both together, scored by held-out R^2 on 5
# folds; the Venn arithmetic gives the unique and the shared parts per neuroid.
partition = variance_partitioning({"layer1": feature_maps["layer1"], "layer3": feature_maps["layer3"]},
                                  benchmark.responses.T, folds=5)
# Over all neuroids, EVC's are explained by layer1 alone and OTC's by layer3
# alone, so each layer's unique part is about 0 for the other region's
# neuroids, and slightly negative for many of them: held-out estimates are
# noisy, and negative parts are reported as they come out, not clipped.
print(partition.summary().round(3))
evc = benchmark.neuroids("EVC", 1)
print("wrote", plot_variance_partitioning(partition, output / "variance_partitioning_evc.png", targets=evc,
                                          title="EVC, subject 1"))
