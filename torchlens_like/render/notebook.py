"""What a notebook shows for a history, a layer, and ``show_model_graph``.

``ModelHistory._repr_html_`` is the model's totals, the graph as inline SVG
(modules collapsed to the deepest nesting level that keeps the picture to
:data:`READABLE_NODES` nodes, so large models stay legible) and the layer
table folded under it. ``LayerEntry._repr_html_`` is a card with the layer's
metadata and a histogram of its saved activation, and after a backward its
gradient's histogram, the gradient's size (filling the card's title from
white to orange as :mod:`.styles` shades graph nodes, relative to the
largest gradient of the pass) and its parameter gradients' norms. Both are registered in the
reader registry, so the graph classes stay free of rendering code. Without
Graphviz the history's picture is left out and the page says how to get it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from html import escape

from .dot import INSTALL_HINT, to_dot
from .options import RenderOptions
from .styles import gradient_size, shade_color
from .view import build_view

READABLE_NODES = 120
"""Most nodes an inline notebook picture gets before deeper modules are collapsed."""

HISTOGRAM_BINS = 24


def readable_options(history, limit=READABLE_NODES):
    """Default options with the deepest ``nesting_depth`` whose picture has at most ``limit`` nodes.

    Examples
    --------
    >>> import torch, torchvision, torchlens_like as tll
    >>> history = tll.get_model_metadata(torchvision.models.resnet50(), torch.rand(1, 3, 64, 64))
    >>> readable_options(history).nesting_depth
    2
    """
    deepest = max((len(layer.containing_modules) for layer in history.layers), default=0)
    options = RenderOptions(nesting_depth=deepest + 1)
    for depth in range(deepest + 1, 1, -1):
        options = options.replace(nesting_depth=depth)
        if len(build_view(history, options).nodes) <= limit:
            return options
    return options.replace(nesting_depth=1)


def svg_text(history, options):
    """The graph as SVG text (Graphviz reading the DOT source from stdin), or None without it.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.get_model_metadata(torch.nn.ReLU(), torch.ones(2))
    >>> svg_text(history, RenderOptions())[:4]
    '<svg'
    """
    executable = shutil.which("dot")
    if executable is None:
        return None
    source = to_dot(history, build_view(history, options), options)
    done = subprocess.run([executable, "-Tsvg"], input=source, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"Graphviz `dot` failed: {done.stderr.strip()}")
    return done.stdout[done.stdout.index("<svg"):]


def history_html(history):
    """HTML for a notebook cell: totals, the graph as inline SVG, the layer table folded.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> page = tll.log_forward_pass(torch.nn.ReLU(), torch.ones(2))._repr_html_()
    >>> page.count("<svg") >= 1, "relu_1_2" in page
    (True, True)
    """
    header, _, table = history.summary().partition("\n")
    options = readable_options(history)
    svg = svg_text(history, options)
    if svg is None:
        picture = f"<p>No picture: {escape(INSTALL_HINT)}</p>"
    else:
        note = "" if options.nesting_depth > max(
            (len(layer.containing_modules) for layer in history.layers), default=0) else (
            f"<p><small>Modules below nesting depth {options.nesting_depth} are collapsed; "
            "<code>history.render_graph(nesting_depth=...)</code> draws more.</small></p>")
        picture = f'<div style="max-height:720px;overflow:auto">{svg}</div>{note}'
    return (f"<div><p><b>{escape(header)}</b></p>{picture}<details><summary>"
            f"{len(history.layers)} layers</summary><pre>{escape(table)}</pre></details></div>")


def layer_html(layer):
    """HTML card for one layer: its metadata, and a histogram of its saved activation.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> card = tll.log_forward_pass(torch.nn.ReLU(), torch.randn(50))["relu_1"]._repr_html_()
    >>> card.count("<rect") == HISTOGRAM_BINS
    True
    """
    rows = [("function", layer.func_name or layer.kind),
            ("output", f"{_shape(layer.tensor_shape)} {layer.tensor_dtype}"),
            ("parents", ", ".join(layer.parent_layers) or "-"),
            ("children", ", ".join(layer.child_layers) or "-"),
            ("modules", ", ".join(layer.containing_modules) or "-"),
            ("output of", ", ".join(layer.module_outputs) or "-"),
            ("params", ", ".join(f"{name} {_shape(shape)}" for name, shape
                                 in zip(layer.param_names, layer.param_shapes)) or "-"),
            ("pass", f"{layer.pass_num} of {layer.num_passes}")]
    table = "".join(f"<tr><th style='text-align:left'>{escape(key)}</th>"
                    f"<td style='text-align:left'>{escape(str(value))}</td></tr>"
                    for key, value in rows)
    if layer.has_saved_activation:
        statistics, picture = activation_histogram(layer.tensor_contents)
    else:
        statistics, picture = ("not saved: log with layers_to_save=[" +
                               repr(layer.layer_label) + ", ...] to see it"), ""
    gradient, title_color = _gradient_part(layer)
    return (f"<div style='border:1px solid #ccc;padding:6px;display:inline-block'>"
            f"<b style='background:{title_color}'>{escape(layer.layer_label)}</b>"
            f"<table>{table}</table><div>{escape(statistics)}</div>{picture}{gradient}</div>")


def _gradient_part(layer):
    """``(HTML of the gradient's statistics and histogram, title colour)`` of a layer card."""
    if not layer.has_grad:
        return "", "transparent"
    statistics, picture = activation_histogram(layer.grad)
    size = gradient_size(layer)
    largest = layer.meta.get("largest_grad_norm") or size
    lines = [f"gradient (L2 norm {size:.4g}): {statistics}"]
    if layer.has_param_grads:
        lines.append("parameter gradients: " + ", ".join(
            f"{name} {float(grad.double().norm()):.4g}"
            for name, grad in layer.param_grads.items()))
    text = "".join(f"<div>{escape(line)}</div>" for line in lines)
    return (f"<div data-part='gradient'>{text}{picture}</div>",
            shade_color(size / largest if largest else 0.0))


def activation_histogram(tensor, bins=HISTOGRAM_BINS, width=240, height=60):
    """``(statistics text, SVG histogram)`` of a tensor's finite values.

    Each bar is a ``<rect>`` whose ``data-count`` is the number of values in
    its bin (``numpy.histogram`` over the finite values; complex values by
    magnitude). ``tensor`` is any backend's array: a torch tensor or a NumPy
    array.

    Examples
    --------
    >>> import torch
    >>> text, svg = activation_histogram(torch.arange(10.0), bins=2)
    >>> text
    'min 0, max 9, mean 4.5, std 2.872'
    >>> svg.count('data-count="5"')
    2
    """
    import numpy as np

    values = _float64_values(tensor)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "no finite values", ""
    counts, _ = np.histogram(values, bins=bins)
    text = (f"min {values.min():.4g}, max {values.max():.4g}, mean {values.mean():.4g}, "
            f"std {values.std():.4g}")
    step = width / bins
    tallest = max(int(counts.max()), 1)
    bars = "".join(
        f'<rect x="{index * step:.1f}" y="{height - count / tallest * height:.1f}" '
        f'width="{step * 0.9:.1f}" height="{count / tallest * height:.1f}" '
        f'fill="#5b7fa6" data-count="{count}"/>'
        for index, count in enumerate(counts.tolist()))
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}">{bars}</svg>')
    return text, svg


def _float64_values(tensor):
    """The values as a flat float64 NumPy array (complex ones by magnitude)."""
    import numpy as np

    if hasattr(tensor, "detach"):
        tensor = tensor.detach().cpu()
        tensor = tensor.abs() if tensor.is_complex() else tensor
        return tensor.double().numpy().ravel()
    array = np.asarray(tensor)
    array = np.abs(array) if np.iscomplexobj(array) else array
    return array.astype(np.float64).ravel()


def display_inline(path):
    """Show a picture in the running notebook (SVG or PNG); False outside a notebook.

    Examples
    --------
    >>> display_inline("graph.svg")     # not in a notebook: nothing shown
    False
    """
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or not hasattr(shell, "kernel"):
        return False
    from IPython.display import SVG, Image, display

    extension = os.path.splitext(path)[1].lower()
    if extension == ".svg":
        display(SVG(filename=path))
    elif extension == ".png":
        display(Image(filename=path))
    else:
        return False
    return True


def _shape(shape):
    return "x".join(str(size) for size in shape) if shape else "-"
