"""Pictures of a logged forward pass: Graphviz drawings and a self-contained HTML explorer.

Modules, each with one job:

- :mod:`.options` — :class:`RenderOptions`, every drawing choice in one value;
- :mod:`.view` — which nodes, edges and module boxes the picture has
  (rolled/unrolled recurrence, ``nesting_depth`` collapsing, edge labels);
- :mod:`.styles` — the paper's visual code (colours, shapes, node text);
- :mod:`.dot` — DOT text and running Graphviz's ``dot``;
- :mod:`.html` — the single-file interactive explorer around the SVG;
- :mod:`.api` — :func:`render_graph` and :func:`show_model_graph`.

Data flows one way: ``ModelHistory -> View -> DOT -> picture (-> HTML)``; the
renderer reads only the public ``ModelHistory`` / ``LayerEntry`` vocabulary.
"""

from .api import render_graph, show_model_graph
from .dot import GraphvizNotFoundError
from .html import history_to_html
from .options import RenderOptions

__all__ = ["GraphvizNotFoundError", "RenderOptions", "history_to_html", "render_graph",
           "show_model_graph"]
