"""RSA and encoding models with torchlens_like.analysis, on a synthetic benchmark.

Run it from the repository root::

    python tutorials/rsa_and_encoding.py

It takes well under a minute on a laptop CPU and writes two images to
``outputs/tutorial/``.  With real data, replace the synthetic benchmark by
``Benchmark.from_files(...)`` and the synthetic feature maps by activations,
e.g. ``{label: history[label].tensor_contents for label in layers}`` from
``torchlens_like.log_forward_pass`` over your stimulus set.
"""

# %% 1. A benchmark with known answers
# ``Benchmark.synthetic`` returns brain-like responses (neuroids x stimuli) of
# two regions in two subjects, and four "layers" of features.  EVC responds to
# the factors of layer1, OTC to those of layer3; every layer also shares some
# factors with all others, so the wrong layers score above zero too.
from pathlib import Path

import numpy as np

from torchlens_like.analysis import (
    Benchmark,
    RidgeGCV,
    compare_rdms,
    compute_rdm,
    correlate_rdms,
    cross_validated_scores,
    effective_dimensionality,
    get_results_max,
    plot_rdm,
    relative_representations,
    score_feature_maps,
)

output = Path("outputs/tutorial")
benchmark, feature_maps = Benchmark.synthetic(n_stimuli=200, seed=0)
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
