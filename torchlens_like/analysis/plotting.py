"""Writing an RDM to an image file.

Design decisions
----------------
* A ``matplotlib.figure.Figure`` is built directly, without ``pyplot``, so
  plotting neither needs a display nor touches pyplot's global state or the
  caller's open figures.
* The image fills the whole figure (no axes, ticks or margins), one square
  figure of ``size`` inches, so a pixel of the file maps to a known cell of the
  matrix.
* As in THINGSvision, the matrix is shown as percentile ranks by default
  (``rank=True``), which spreads the colour map evenly over the
  dissimilarities; ``rank=False`` shows the values themselves.
* The file format comes from the file name's suffix, checked against a fixed
  set so that a typo is an error rather than a surprise.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .backend import as_tensor, check_finite
from .compare import rank
from .rdm import square_from_condensed

IMAGE_FORMATS = ("png", "jpg", "jpeg", "svg", "pdf")


def plot_rdm(rdm, path, colormap: str = "cividis", dpi: int = 200, *, rank_transform: bool = True, size: float = 5.0):
    """Save an RDM as an image (png, jpg, svg or pdf).

    Parameters
    ----------
    rdm : numpy.ndarray or torch.Tensor
        Square RDM ``(n, n)`` or its condensed upper triangle.
    path : str or pathlib.Path
        Output file; its suffix picks the format.  Missing folders are created.
    colormap : str
        A matplotlib colormap name.
    dpi : int
        Resolution: the image is ``size * dpi`` pixels square.
    rank_transform : bool
        Show percentile ranks of the dissimilarities (0 to 100) instead of the
        values.
    size : float
        Width and height of the image in inches.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ValueError
        For an unsupported suffix, an unknown colormap, a non-square RDM,
        NaN or infinite entries, or a non-positive ``dpi`` or ``size``.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from torchlens_like.analysis import compute_rdm
    >>> rdm = compute_rdm(np.random.default_rng(0).normal(size=(10, 5)))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     plot_rdm(rdm, f"{folder}/rdm.png").name
    'rdm.png'
    """
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in IMAGE_FORMATS:
        raise ValueError(
            f"path must end in one of {', '.join('.' + f for f in IMAGE_FORMATS)}, got {str(path)!r}; "
            "add a suffix to pick the format"
        )
    if colormap not in matplotlib.colormaps:
        raise ValueError(f"unknown colormap {colormap!r}; pass a name from matplotlib.colormaps, e.g. 'cividis'")
    if not dpi > 0 or not size > 0:
        raise ValueError(f"dpi and size must be positive, got dpi={dpi!r}, size={size!r}")
    matrix = as_tensor(rdm, "rdm")
    if matrix.ndim == 1:
        matrix = square_from_condensed(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"rdm must be square (n, n) or condensed, got shape {tuple(matrix.shape)}")
    check_finite(matrix, "rdm", "row")
    values = matrix.double()
    if rank_transform:
        values = 100 * (rank(values.flatten()) - 1) / max(1, values.numel() - 1)
        values = values.reshape(matrix.shape)
    figure = Figure(figsize=(size, size), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.imshow(values.cpu().numpy(), cmap=colormap, interpolation="nearest", aspect="auto")
    axes.set_axis_off()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    return path
