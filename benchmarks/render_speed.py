"""Rendering speed and readability at scale.

Run: ``python benchmarks/render_speed.py``. Prints, for torchvision's
vit_b_16 (random init, 224x224), the seconds from a logged history to an SVG
(the number to keep under 10 s), and for models of about 1,000 to 2,000 ops
how many nodes the picture has at each ``nesting_depth`` and how long each
takes to draw. Logging time is reported separately: it is not rendering.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings

import torch
import torchvision
from torch import nn

import torchlens_like as tll
from torchlens_like.render import RenderOptions
from torchlens_like.render.view import build_view


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, 2 * width)
        self.act = nn.GELU()
        self.down = nn.Linear(2 * width, width)

    def forward(self, x):
        h = self.down(self.act(self.up(self.norm(x))))
        return x + h * torch.sigmoid(h.mean(dim=-1, keepdim=True)) - 0.5 * torch.tanh(x)


class DeepStack(nn.Module):
    """Four stages of 50 blocks: about 2,000 ops with three levels of modules."""

    def __init__(self, width=16, stages=4, blocks=50):
        super().__init__()
        self.stages = nn.ModuleList(nn.Sequential(*[Block(width) for _ in range(blocks)])
                                    for _ in range(stages))
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return self.head(x)


def time_render(history, folder, name, **options):
    """Seconds to draw, and whether the slow-layout warning was raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        history.render_graph(outpath=os.path.join(folder, name), **options)
        seconds = time.perf_counter() - start
    return seconds, any("many long edges" in str(w.message) for w in caught)


def main():
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        vit = torchvision.models.vit_b_16().eval()
        start = time.perf_counter()
        history = tll.get_model_metadata(vit, torch.rand(1, 3, 224, 224))
        logged = time.perf_counter() - start
        seconds = min(time_render(history, folder, "vit")[0] for _ in range(3))
        print(f"vit_b_16: {len(history.layers)} layers (logged in {logged:.1f} s); "
              f"render to svg, full depth: {seconds:.2f} s (best of 3; target < 10 s)")
        try:
            import timm
        except ImportError:
            print("timm vit_base_patch16_224: skipped (timm is not installed)")
        else:
            history = tll.get_model_metadata(timm.create_model("vit_base_patch16_224"),
                                             torch.rand(1, 3, 224, 224))
            seconds = min(time_render(history, folder, "timm_vit")[0] for _ in range(3))
            print(f"timm vit_base_patch16_224 (attention written out op by op): "
                  f"{len(history.layers)} layers; render to svg: {seconds:.2f} s (best of 3)")

        cases = [("DeepStack", DeepStack(), torch.rand(2, 16)),
                 ("swin_v2_b", torchvision.models.swin_v2_b().eval(), torch.rand(1, 3, 64, 64)),
                 ("efficientnet_b7", torchvision.models.efficientnet_b7().eval(),
                  torch.rand(1, 3, 64, 64))]
        for name, model, x in cases:
            history = tll.get_model_metadata(model, x)
            print(f"\n{name}: {len(history.layers)} layers")
            print(f"  {'nesting_depth':>13}  {'nodes':>6}  {'edges':>6}  {'module boxes':>12}  "
                  f"{'render s':>8}  slow-layout warning")
            for depth in (1, 2, 3, 4, 1000):
                view = build_view(history, RenderOptions(nesting_depth=depth))
                seconds, warned = time_render(history, folder, f"{name}{depth}",
                                              nesting_depth=depth)
                print(f"  {depth:>13}  {len(view.nodes):>6}  {len(view.edges):>6}  "
                      f"{len(view.clusters):>12}  {seconds:>8.2f}  {'yes' if warned else ''}")


if __name__ == "__main__":
    main()
