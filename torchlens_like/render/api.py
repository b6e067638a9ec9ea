"""Rendering entry points: ``render_graph`` (a history) and ``show_model_graph`` (a model)."""

from __future__ import annotations

import warnings

from .dot import run_dot, to_dot
from .options import RenderOptions
from .view import build_view, layout_span

SLOW_LAYOUT_SPAN = 3000
"""Above this :func:`~torchlens_like.render.view.layout_span`, Graphviz takes tens of seconds
to minutes (DenseNet-121 fully expanded: about 28,000)."""


def resolve_options(options=None, **changes):
    """A :class:`RenderOptions` from ``True``/``None``/an instance, with fields changed.

    Examples
    --------
    >>> resolve_options(True).vis_opt, resolve_options(None, vis_opt="rolled").vis_opt
    ('unrolled', 'rolled')
    """
    if options is None or options is True:
        options = RenderOptions()
    elif not isinstance(options, RenderOptions):
        raise TypeError(f"Rendering options must be a RenderOptions (or True for the defaults); "
                        f"got {type(options).__name__}.")
    return options.replace(**changes) if changes else options


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
        Path of the picture; the DOT source sits next to it (``.gv``).

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


def show_model_graph(model, input_args, input_kwargs=None, vis_opt="unrolled",
                     nesting_depth=1000, outpath="graph", fileformat="svg", options=None,
                     random_seed=None):
    """Log a model's forward pass without keeping activations, and draw its graph.

    Parameters
    ----------
    model : torch.nn.Module or callable
    input_args : tensor, tuple or list
        As for :func:`~torchlens_like.log_forward_pass`.
    input_kwargs : dict, optional
    vis_opt : {"unrolled", "rolled"}
    nesting_depth : int
        Module levels drawn as boxes; deeper modules become one node per call.
    outpath : str
        Picture path, with or without extension; the DOT source goes next to it.
    fileformat : {"svg", "pdf", "png"}
    options : RenderOptions, optional
        Every option at once (for the less common ones such as ``direction``).
        Give either this or the four arguments above, not both.
    random_seed : int, optional

    Returns
    -------
    str
        Path of the picture.

    Examples
    --------
    >>> import os, tempfile, torch, torchvision, torchlens_like as tll
    >>> out = os.path.join(tempfile.mkdtemp(), "alexnet")
    >>> path = tll.show_model_graph(torchvision.models.alexnet(), torch.rand(1, 3, 64, 64),
    ...                             outpath=out, fileformat="png")
    >>> os.path.exists(path), path.endswith(".png")
    (True, True)
    """
    from ..api import get_model_metadata

    given = {"vis_opt": vis_opt, "nesting_depth": nesting_depth, "outpath": outpath,
             "fileformat": fileformat}
    changed = {name: value for name, value in given.items()
               if value != getattr(RenderOptions, name)}
    if options is not None and changed:
        raise ValueError(f"Pass either options=RenderOptions(...) or {', '.join(changed)}, not "
                         "both: put every setting into the RenderOptions.")
    options = resolve_options(options, **changed)
    history = get_model_metadata(model, input_args, input_kwargs, random_seed=random_seed)
    return render_graph(history, options)
