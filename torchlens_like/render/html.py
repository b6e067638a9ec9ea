"""The interactive explorer: one self-contained HTML file around the Graphviz SVG.

Everything is inline (the SVG, the stylesheet, the script and the metadata as
JSON), so the file opens from disk with no network. The metadata shown for a
layer is its row of ``ModelHistory.to_pandas()`` (the same public vocabulary
as everywhere else) plus its non-tensor call arguments.
"""

from __future__ import annotations

import json
import os
import tempfile
from html import escape

from ..units import format_bytes
from . import styles
from .options import resolve_options
from .assets import CSS, JS
from .dot import calls_per_module, run_dot, to_dot
from .view import build_view


def history_to_html(history, path, options=None, **changes):
    """Write the explorer for a logged forward pass to ``path``; return the path.

    Parameters
    ----------
    history : ModelHistory
    path : str or os.PathLike
        The ``.html`` file to write.
    options : RenderOptions, optional
        Drawing options (``outpath`` and ``fileformat`` are ignored: the SVG
        goes inside the page).
    **changes
        Fields of :class:`RenderOptions` to change, e.g. ``nesting_depth=2``.

    Returns
    -------
    str

    Examples
    --------
    >>> import os, tempfile, torch, torchlens_like as tll
    >>> history = tll.get_model_metadata(torch.nn.Linear(3, 2), torch.rand(1, 3))
    >>> out = history_to_html(history, os.path.join(tempfile.mkdtemp(), "linear.html"))
    >>> "<svg" in open(out).read()
    True
    """
    path = os.fspath(path)
    with tempfile.TemporaryDirectory() as scratch:
        options = resolve_options(options, **changes).replace(
            outpath=os.path.join(scratch, "graph"), fileformat="svg")
        view = build_view(history, options)
        with open(run_dot(to_dot(history, view, options), options), encoding="utf-8") as handle:
            svg = handle.read()
    svg = svg[svg.index("<svg"):]
    payload = json.dumps(_payload(history, view), default=repr).replace("</", "<\\/")
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(_PAGE.format(title=escape(history.model_name), css=CSS, svg=svg,
                                  data=payload, js=JS, summary=escape(_summary(history))))
    return path


def _summary(history):
    return (f"{len(history.layers)} tensors ({format_bytes(history.total_activation_bytes)}"
            f"), {history.num_params:,} params ({format_bytes(history.total_params_bytes)})")


def _payload(history, view):
    per_module = calls_per_module(history)
    frame = history.to_pandas()
    rows = json.loads(frame.to_json(orient="records", default_handler=repr))
    layers = {}
    for layer, row in zip(history.layers, rows):
        row["func_args"] = {str(k): _short_repr(v) for k, v in layer.func_args.items()}
        layers[layer.layer_label] = row
    nodes = []
    for node in view.nodes.values():
        title = styles.node_lines(node, history.module_types, per_module)[0]
        words = {layer.layer_label for layer in node.layers}
        words |= {call for layer in node.layers for call in layer.module_calls}
        words |= {call for layer in node.layers for call in layer.module_passes_output}
        where = node.module or styles.module_address(node.layers[0], per_module) or (
            node.layers[0].containing_modules[-1] if node.layers[0].containing_modules else "")
        nodes.append({"id": f"n{node.index}", "key": node.key, "title": title, "where": where,
                      "search": " ".join(sorted(words)).lower(),
                      "layers": [layer.layer_label for layer in node.layers]})
    return {"model": history.model_name, "nodes": nodes, "layers": layers}


def _short_repr(value, limit=200):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<div id="graph">
<div id="controls"><button id="zoom-in" title="zoom in">+</button><button id="zoom-out"
 title="zoom out">&minus;</button><button id="zoom-fit" title="fit">fit</button></div>
{svg}
</div>
<div id="side">
<header>
<h1>{title}</h1>
<div>{summary}</div>
<input id="search" type="search" placeholder="search layers and modules" autocomplete="off">
<div id="count"></div>
</header>
<ul id="results"></ul>
<div id="meta">Click a node to see its metadata; drag to pan, scroll to zoom.</div>
</div>
<script type="application/json" id="graph-data">{data}</script>
<script>{js}</script>
</body>
</html>
"""
