"""Build the gallery: a picture of every torchvision classification model and a spread of timm models.

Run from the repository root: ``python gallery/build.py`` (``--only NAME ...``
to redo a few). Writes ``gallery/<source>/<model>.svg`` and
``gallery/index.html`` linking them, with a rolled and an unrolled picture for
models that have recurrent layers.

Choices that keep the gallery small enough for the repository:

- graphs are logged with ``get_model_metadata`` (no activations), on a small
  random input (the smallest of 64, 224, 256, 299 pixels the model accepts);
- each picture uses the deepest ``nesting_depth`` that keeps it at most
  ``MAX_NODES`` nodes and its long edges under ``MAX_SPAN`` (see
  ``layout_span``: DenseNet's concatenations otherwise take Graphviz minutes);
  the index says which depth was used;
- XML comments, which Graphviz writes around every node and edge, are dropped.

A model that cannot be built or run is listed in the index with the reason,
never dropped silently.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import sys
import time
import traceback

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import torchlens_like as tll  # noqa: E402
from torchlens_like.render import RenderOptions  # noqa: E402
from torchlens_like.render.view import build_view, layout_span  # noqa: E402

MAX_NODES = 250
MAX_SPAN = 2000
DEPTHS = (1000, 8, 7, 6, 5, 4, 3, 2, 1)
SIZES = (64, 224, 256, 299)
TIMM_MODELS = (
    "resnet18d", "res2net50_26w_4s", "resnest14d", "cspresnet50", "dla34", "densenet121",
    "vgg11", "repvgg_a0", "regnetx_002", "nfnet_l0", "hrnet_w18_small", "inception_v4",
    "efficientnet_b0", "mobilenetv3_small_100", "ghostnet_100", "rexnet_100", "tinynet_e",
    "convnext_atto", "edgenext_xx_small", "fastvit_t8", "poolformer_s12",
    "vit_tiny_patch16_224", "deit_tiny_patch16_224", "beit_base_patch16_224",
    "cait_xxs24_224", "xcit_nano_12_p16_224", "pit_ti_224", "levit_128s", "crossvit_tiny_240",
    "swin_tiny_patch4_window7_224", "maxvit_nano_rw_256", "coatnet_nano_rw_224",
    "pvt_v2_b0", "twins_pcpvt_small", "mobilevit_xxs", "efficientformer_l1",
    "mixer_s16_224", "resmlp_12_224", "sequencer2d_s",
)


class RecurrentBlock(nn.Module):
    """One area of a recurrent convnet: the same convolution applied ``steps`` times."""

    def __init__(self, channels, steps):
        super().__init__()
        self.steps = steps
        self.conv_input = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm = nn.GroupNorm(4, channels)

    def forward(self, x):
        x = self.conv_input(x)
        state = x
        for _ in range(self.steps):
            state = torch.relu(self.norm(self.conv(state)) + x)
        return state


class RecurrentConvNet(nn.Module):
    """A small convnet with recurrent areas (in the spirit of CORnet-S)."""

    def __init__(self):
        super().__init__()
        self.v1 = nn.Sequential(nn.Conv2d(3, 16, 5, stride=2, padding=2), nn.ReLU())
        self.v2 = RecurrentBlock(16, 2)
        self.v4 = RecurrentBlock(16, 4)
        self.it = RecurrentBlock(16, 2)
        self.decoder = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x):
        return self.decoder(self.it(self.v4(self.v2(self.v1(x)))))


class FeedbackLoop(nn.Module):
    """The paper's Figure 4A shape: cos, a shared linear layer and sin, looped."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        for _ in range(3):
            x = torch.sin(self.fc(torch.cos(x)))
        return x


def torchvision_models():
    import torchvision

    for name in torchvision.models.list_models(module=torchvision.models):
        yield "torchvision", name, lambda name=name: torchvision.models.get_model(name)


def timm_models():
    try:
        import timm
    except ImportError:
        yield "timm", "(all)", None
        return
    for name in TIMM_MODELS:
        yield "timm", name, lambda name=name: timm.create_model(name, pretrained=False)


def example_models():
    yield "examples", "recurrent_convnet", RecurrentConvNet
    yield "examples", "feedback_loop", FeedbackLoop


def log_model(model, source):
    """Log the forward pass on the smallest input size the model accepts."""
    if source == "examples" and isinstance(model, FeedbackLoop):
        return tll.get_model_metadata(model, torch.rand(1, 8)), "1x8"
    errors = []
    for size in SIZES:
        try:
            history = tll.get_model_metadata(model, torch.rand(1, 3, size, size), random_seed=0)
            return history, f"1x3x{size}x{size}"
        except Exception as exc:  # the next size may fit the model
            errors.append(f"{size}px: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    raise RuntimeError("; ".join(errors))


def pick_depth(history, vis_opt):
    for depth in DEPTHS:
        view = build_view(history, RenderOptions(vis_opt=vis_opt, nesting_depth=depth))
        if len(view.nodes) <= MAX_NODES and layout_span(view) <= MAX_SPAN:
            return depth, len(view.nodes)
    return 1, len(view.nodes)


def draw(history, folder, stem, vis_opt):
    depth, nodes = pick_depth(history, vis_opt)
    outpath = os.path.join(folder, stem)
    path = history.render_graph(RenderOptions(vis_opt=vis_opt, nesting_depth=depth,
                                              outpath=outpath))
    os.remove(outpath + ".gv")
    with open(path, encoding="utf-8") as handle:
        svg = re.sub(r"<!--.*?-->\n?", "", handle.read(), flags=re.S)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(svg)
    return {"file": os.path.relpath(path, HERE), "vis_opt": vis_opt, "depth": depth,
            "nodes": nodes, "bytes": os.path.getsize(path)}


def build_one(source, name, build):
    if build is None:
        raise RuntimeError("timm is not installed (pip install timm)")
    torch.manual_seed(0)
    model = build()
    if isinstance(model, nn.Module):
        model.eval()
    history, input_shape = log_model(model, source)
    folder = os.path.join(HERE, source)
    os.makedirs(folder, exist_ok=True)
    recurrent = any(layer.num_passes > 1 for layer in history.layers)
    pictures = [draw(history, folder, f"{name}_unrolled" if recurrent else name, "unrolled")]
    if recurrent:
        pictures.append(draw(history, folder, f"{name}_rolled", "rolled"))
    return {"source": source, "name": name, "layers": len(history.layers),
            "params": history.num_params, "input": input_shape, "recurrent": recurrent,
            "pictures": pictures}


def write_index(entries, skipped):
    sections = []
    for source in ("torchvision", "timm", "examples"):
        rows = []
        for entry in sorted((e for e in entries if e["source"] == source),
                            key=lambda e: e["name"]):
            links = " ".join(
                f'<a href="{html.escape(p["file"])}">{p["vis_opt"] if entry["recurrent"] else "svg"}'
                f'</a> <span class="note">({p["nodes"]} nodes'
                f'{", depth " + str(p["depth"]) if p["depth"] < 1000 else ""})</span>'
                for p in entry["pictures"])
            rows.append(f'<tr><td>{html.escape(entry["name"])}</td><td>{entry["layers"]}</td>'
                        f'<td>{entry["params"]:,}</td><td>{entry["input"]}</td>'
                        f'<td>{links}</td></tr>')
        if rows:
            sections.append(f'<h2>{source} ({len(rows)})</h2><table><tr><th>model</th>'
                            f'<th>layers</th><th>params</th><th>input</th><th>pictures</th>'
                            f'</tr>{"".join(rows)}</table>')
    if skipped:
        items = "".join(f"<li><b>{html.escape(s['source'])}/{html.escape(s['name'])}</b>: "
                        f"{html.escape(s['reason'])}</li>" for s in skipped)
        sections.append(f"<h2>Not drawn ({len(skipped)})</h2><ul>{items}</ul>")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>torchlens_like gallery</title>
<style>body{{font:14px Helvetica,Arial,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{padding:2px 10px;border-bottom:1px solid #ddd;text-align:left}}.note{{color:#777}}</style>
</head><body><h1>torchlens_like gallery</h1>
<p>Computational graphs of randomly initialised models, logged without activations and drawn
with <code>history.render_graph()</code>. Models larger than {MAX_NODES} nodes are drawn at the
deepest <code>nesting_depth</code> that fits. Regenerate with <code>python gallery/build.py</code>.
</p>{"".join(sections)}</body></html>
"""
    with open(os.path.join(HERE, "index.html"), "w", encoding="utf-8") as handle:
        handle.write(page)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="rebuild only these model names")
    args = parser.parse_args(argv)
    manifest_path = os.path.join(HERE, "manifest.json")
    previous = {}
    if args.only and os.path.exists(manifest_path):
        with open(manifest_path, encoding="utf-8") as handle:
            saved = json.load(handle)
        previous = {(e["source"], e["name"]): e for e in saved["models"] + saved["skipped"]}
    entries, skipped = [], []
    for source, name, build in (*torchvision_models(), *timm_models(), *example_models()):
        if args.only and name not in args.only:
            if (source, name) in previous:
                kept = previous[(source, name)]
                (skipped if "reason" in kept else entries).append(kept)
            continue
        start = time.perf_counter()
        try:
            entry = build_one(source, name, build)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            skipped.append({"source": source, "name": name, "reason": reason[:400]})
            print(f"SKIP {source}/{name}: {reason[:200]}", flush=True)
            traceback.print_exc(limit=1)
            continue
        entries.append(entry)
        sizes = ", ".join(f"{p['nodes']} nodes d={p['depth']} {p['bytes'] // 1024} KB"
                          for p in entry["pictures"])
        print(f"{source}/{name}: {entry['layers']} layers, {sizes}, "
              f"{time.perf_counter() - start:.1f} s", flush=True)
    with open(manifest_path, "w", encoding="utf-8") as handle:
        json.dump({"models": entries, "skipped": skipped}, handle, indent=1)
    write_index(entries, skipped)
    total = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(HERE)
                for f in files if f.endswith((".svg", ".html", ".json")))
    print(f"{len(entries)} models drawn, {len(skipped)} skipped; gallery size "
          f"{total / 1024 ** 2:.1f} MB")


if __name__ == "__main__":
    main()
