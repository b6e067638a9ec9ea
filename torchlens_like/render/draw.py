"""``render_graph``: a logged history to a Graphviz picture."""

from __future__ import annotations

import warnings

from .dot import run_dot, to_dot
from .options import resolve_options
from .view import build_view, layout_span

SLOW_LAYOUT_SPAN = 3000
"""Above this :func:`~torchlens_like.render.view.layout_span`, Graphviz takes tens of seconds
to minutes (DenseNet-121 fully expanded: about 28,000)."""


def render_graph(history, options=None, **changes):
    """Draw a logged forward pass with Graphviz and return the picture's path.

    Parameters
    ----------
    history : ModelHistory
    options : RenderOptions, optional
        Defaults to ``RenderOptions()``.
    **changes
        Fields of :class:`RenderOptions` to change, e.g. ``vis_opt="rolled"``.

    Returns
    -------
    str
        Path of the picture (the DOT source, ``.gv``, is kept next to it only
        with ``keep_source=True``).

    Raises
    ------
    GraphvizNotFoundError
        When Graphviz's ``dot`` is not installed (the ``.gv`` file is still written).

    Examples
    --------
    >>> import os, tempfile, torch, torchlens_like as tll
    >>> history = tll.get_model_metadata(torch.nn.Linear(3, 2), torch.rand(1, 3))
    >>> path = render_graph(history, outpath=os.path.join(tempfile.mkdtemp(), "linear"))
    >>> os.path.basename(path)
    'linear.svg'
    """
    options = resolve_options(options, **changes)
    view = build_view(history, options)
    if layout_span(view) > SLOW_LAYOUT_SPAN:
        warnings.warn(_slow_layout_message(history, options), stacklevel=2)
    return run_dot(to_dot(history, view, options), options)


def _slow_layout_message(history, options):
    deepest = max((len(layer.containing_modules) for layer in history.layers), default=1)
    fast = next((depth for depth in range(min(deepest, options.nesting_depth) - 1, 0, -1)
                 if layout_span(build_view(history, options.replace(nesting_depth=depth)))
                 <= SLOW_LAYOUT_SPAN), None)
    hint = f" nesting_depth={fast} draws quickly." if fast else ""
    return (f"This graph has many long edges (e.g. dense concatenations); Graphviz may take "
            f"minutes to lay it out.{hint}")
