"""Write a :class:`~torchlens_like.render.view.View` as Graphviz DOT, and run ``dot`` on it.

The DOT text is written by hand rather than through the ``graphviz`` package:
layer labels contain ``:`` (``linear_1_2:2``), which that package reads as a
node port, and writing quoted IDs directly keeps the node names in the output
(the ``<title>`` of each SVG node) exactly equal to the view's keys, which the
HTML explorer and the tests rely on. Every node also gets a DOT ``id``
(``n0``, ``n1``, ... in view order) that Graphviz copies into the SVG.

The DOT source is always written first, so a missing ``dot`` executable still
leaves a file the user can render elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from html import escape

from ..units import format_bytes
from . import styles

INSTALL_HINT = ("Install Graphviz: `apt-get install graphviz` (Debian/Ubuntu), "
                "`conda install graphviz` (conda) or `brew install graphviz` (macOS), "
                "then check that `dot -V` works in the same shell.")


class GraphvizNotFoundError(RuntimeError):
    """Graphviz's ``dot`` program is not on ``PATH``; the DOT source was still written."""


def calls_per_module(history):
    """``{address: number of calls}`` from the history's module outputs."""
    return Counter(call.address for call in history.module_outputs)


def to_dot(history, view, options):
    """The DOT source of the picture.

    Parameters
    ----------
    history : ModelHistory
    view : View
        From :func:`~torchlens_like.render.view.build_view`.
    options : RenderOptions

    Returns
    -------
    str

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> from torchlens_like.render import RenderOptions
    >>> from torchlens_like.render.view import build_view
    >>> history = tll.get_model_metadata(torch.nn.ReLU(), torch.rand(2))
    >>> source = to_dot(history, build_view(history, RenderOptions()), RenderOptions())
    >>> '"input_1_1" -> "relu_1_2"' in source
    True
    """
    per_module = calls_per_module(history)
    lines = ["digraph model {",
             f"  graph [rankdir={options.direction}, fontname=Helvetica, nodesep=0.25, "
             "ranksep=0.35, newrank=true];",
             "  node [fontname=Helvetica, fontsize=10, style=\"filled,solid\", margin=\"0.08,0.04\"];",
             "  edge [fontname=Helvetica, fontsize=9, arrowsize=0.7];"]
    if options.show_header:
        lines.append(f"  label={_header(history)}; labelloc=t; labeljust=l;")
    tree = _cluster_tree(view)
    sizes = styles.shade_sizes(history.layers, options.shade_by) if options.shade_by else None
    _write_cluster(lines, (), tree, view, history, per_module, "  ", sizes)
    for edge in view.edges:
        lines.append(f"  {_quote(edge.tail)} -> {_quote(edge.head)}{_edge_attrs(edge)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _header(history):
    return styles.html_label([
        history.model_name,
        f"{len(history.layers)} tensors, {format_bytes(history.total_activation_bytes)} "
        f"total",
        f"{history.num_params:,} params, {format_bytes(history.total_params_bytes)}",
    ])


def _cluster_tree(view):
    tree = {(): {"nodes": [], "children": []}}
    for node in view.nodes.values():
        path = ()
        for key in node.clusters:
            child = path + (key,)
            if child not in tree:
                tree[child] = {"nodes": [], "children": []}
                tree[path]["children"].append(child)
            path = child
        tree[path]["nodes"].append(node)
    return tree


def _write_cluster(lines, path, tree, view, history, per_module, indent, sizes):
    entry = tree[path]
    if path:
        address, class_name, call = view.clusters[path[-1]]
        title = call if call and per_module.get(address, 1) > 1 else address
        depth = len(path)
        lines.append(f"{indent}subgraph {_quote('cluster ' + '/'.join(path))} {{")
        lines.append(f"{indent}  label={styles.html_label([f'{title} ({class_name})'])}; "
                     f"labeljust=l; style=rounded; fontsize=11; "
                     f"penwidth={max(3.0 - 0.5 * depth, 1.0)};")
        indent += "  "
    for node in entry["nodes"]:
        lines.append(f"{indent}{_quote(node.key)} "
                     f"{_node_attrs(node, history, per_module, sizes)};")
    for child in entry["children"]:
        _write_cluster(lines, child, tree, view, history, per_module, indent, sizes)
    if path:
        lines.append(indent[:-2] + "}")


def _node_attrs(node, history, per_module, sizes):
    label = styles.html_label(styles.node_lines(node, history.module_types, per_module))
    return (f"[id=n{node.index}, label={label}, shape={styles.shape(node)}, "
            f"fillcolor=\"{styles.fill_color(node, sizes)}\", "
            f"style=\"filled,{styles.outline(node)}\"]")


def _edge_attrs(edge):
    attrs = []
    text = ([] if not edge.starts_if else ["<b>IF</b>"]) + (
        [escape(edge.arg_label)] if edge.arg_label else [])
    if text:
        attrs.append(f"label=<{'<br/>'.join(text)}>")
    if edge.in_label:
        attrs.append(f"headlabel={_quote(edge.in_label)}")
    if edge.out_label:
        attrs.append(f"taillabel={_quote(edge.out_label)}")
    if edge.in_label or edge.out_label:
        attrs.append("labelfontsize=8, labeldistance=1.6")
    return f" [{', '.join(attrs)}]" if attrs else ""


def _quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def output_paths(options):
    """``(picture path, DOT source path)`` for the options' ``outpath`` and format.

    Examples
    --------
    >>> from torchlens_like.render import RenderOptions
    >>> output_paths(RenderOptions(outpath="out/net.svg", fileformat="png"))
    ('out/net.png', 'out/net.gv')
    """
    base = os.fspath(options.outpath)
    stem, ext = os.path.splitext(base)
    if ext.lower().lstrip(".") in ("svg", "pdf", "png", "gv", "dot"):
        base = stem
    return f"{base}.{options.fileformat}", f"{base}.gv"


def run_dot(source, options):
    """Draw the DOT source with Graphviz's ``dot``; return the picture's path.

    The picture is written under a temporary name and moved into place. The
    DOT source is written next to it (``.gv``) only when
    ``options.keep_source`` asks for it, or when ``dot`` is missing (so the
    picture can be made later).

    Raises
    ------
    GraphvizNotFoundError
        When ``dot`` is not on ``PATH`` (after the ``.gv`` file is written).
    RuntimeError
        When ``dot`` fails; its message is included.
    """
    picture, source_path = output_paths(options)
    folder = os.path.dirname(picture)
    if folder:
        os.makedirs(folder, exist_ok=True)
    executable = shutil.which("dot")
    if options.keep_source or executable is None:
        with open(source_path, "w", encoding="utf-8") as handle:
            handle.write(source)
    if executable is None:
        raise GraphvizNotFoundError(
            f"Cannot draw the graph: Graphviz's `dot` program was not found on PATH. "
            f"{INSTALL_HINT} The DOT source was written to {source_path}; render it later with "
            f"`dot -T{options.fileformat} {source_path} -o {picture}`.")
    temporary = os.path.join(folder, f".{os.path.basename(picture)}.{os.getpid()}.part")
    try:
        done = subprocess.run([executable, f"-T{options.fileformat}", "-o", temporary],
                              input=source, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"Graphviz `dot` failed on the graph of {picture} (exit "
                               f"{done.returncode}): {done.stderr.strip()}")
        os.replace(temporary, picture)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return picture
