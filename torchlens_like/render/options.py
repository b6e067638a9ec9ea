"""``RenderOptions``: every choice a picture needs, grouped in one value.

A frozen dataclass instead of a long list of ``vis_*`` keyword arguments: the
same options object can be passed to :func:`~torchlens_like.show_model_graph`,
``ModelHistory.render_graph`` and ``log_forward_pass(render=...)``, and each
value is checked once, here, with an error naming the valid choices.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..registry import lookup
from .styles import SHADES

VIS_OPTS = ("unrolled", "rolled")
FILE_FORMATS = ("svg", "pdf", "png")
DIRECTIONS = ("TB", "BT", "LR", "RL")


@dataclass(frozen=True)
class RenderOptions:
    """How to draw a model's graph.

    Parameters
    ----------
    vis_opt : {"unrolled", "rolled"}
        ``"unrolled"``: one node per pass of a recurrent layer (``linear_1_3:2``);
        ``"rolled"``: one node per layer, marked ``(×N)``, with the passes an
        edge belongs to written next to it where they differ.
    nesting_depth : int
        Module levels to draw as boxes. Modules deeper than this are
        collapsed, one node per module call; ``1`` shows only the top-level
        modules, each as a single node.
    outpath : str or os.PathLike
        Where to write; the format's extension is added when missing.
    fileformat : {"svg", "pdf", "png"}
    direction : {"TB", "BT", "LR", "RL"}
        Graphviz ``rankdir``: top to bottom by default.
    show_header : bool
        Draw the model name and totals in the top-left corner.
    show_buffers : bool
        Draw buffer tensors (e.g. BatchNorm running statistics) as light
        gray nodes.
    shade_by : str, optional
        Fill layers from white to orange by a size, a name of
        :data:`~torchlens_like.render.styles.SHADES` (``"change"``: how much
        an intervention changed each layer).
    keep_source : bool
        Also keep Graphviz's DOT source next to the picture (``.gv``);
        otherwise only the picture is written.

    Examples
    --------
    >>> RenderOptions(vis_opt="rolled", nesting_depth=2).fileformat
    'svg'
    >>> RenderOptions(fileformat="jpg")
    Traceback (most recent call last):
    ...
    ValueError: fileformat must be one of 'svg', 'pdf', 'png'; got 'jpg'.
    """

    vis_opt: str = "unrolled"
    nesting_depth: int = 1000
    outpath: str = "graph"
    fileformat: str = "svg"
    direction: str = "TB"
    show_header: bool = True
    show_buffers: bool = True
    shade_by: str | None = None
    keep_source: bool = False

    def __post_init__(self):
        for name, allowed in (("vis_opt", VIS_OPTS), ("fileformat", FILE_FORMATS),
                              ("direction", DIRECTIONS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; "
                                 f"got {value!r}.")
        if self.shade_by is not None:
            lookup(SHADES, self.shade_by, "shade_by")
        if (not isinstance(self.nesting_depth, int) or isinstance(self.nesting_depth, bool)
                or self.nesting_depth < 1):
            raise ValueError(f"nesting_depth must be an int >= 1 (1 = top-level modules "
                             f"only); got {self.nesting_depth!r}.")

    def replace(self, **changes):
        """A copy with some fields changed.

        Examples
        --------
        >>> RenderOptions().replace(vis_opt="rolled").vis_opt
        'rolled'
        """
        return dataclasses.replace(self, **changes)


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
