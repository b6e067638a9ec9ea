"""Pictures of a logged forward pass: Graphviz drawings and a self-contained HTML explorer.

Modules, each with one job:

- :mod:`.options` — :class:`RenderOptions`, every drawing choice in one value;
- :mod:`.view` — which nodes, edges and module boxes the picture has
  (rolled/unrolled recurrence, ``nesting_depth`` collapsing, edge labels);
- :mod:`.styles` — the paper's visual code (colours, shapes, node text);
- :mod:`.dot` — DOT text and running Graphviz's ``dot``;
- :mod:`.html` — the single-file interactive explorer around the SVG;
- :mod:`.draw` — :func:`render_graph`, a history to a picture.

Reads a :class:`~torchlens_like.graph.ModelHistory` (a reader stage) and
produces files. Data flows one way: ``ModelHistory -> View -> DOT -> picture
(-> HTML)``; the renderer reads only the public ``ModelHistory`` /
``LayerEntry`` vocabulary and must never import capture, validation, other
readers or :mod:`torchlens_like.api` (``show_model_graph``, which runs a
model, lives there). It registers ``history.render_graph()`` and
``history.to_html()`` in the reader registry (:mod:`torchlens_like.graph.readers`).
"""

from ..graph.readers import register_reader
from .dot import GraphvizNotFoundError
from .draw import render_graph
from .html import history_to_html
from .notebook import display_inline, history_html, layer_html
from .options import RenderOptions, resolve_options

register_reader("render_graph", render_graph)
register_reader("to_html", history_to_html)
register_reader("history_html", history_html)
register_reader("layer_html", layer_html)

__all__ = ["GraphvizNotFoundError", "RenderOptions", "display_inline", "history_html",
           "history_to_html", "layer_html", "render_graph", "resolve_options"]
