"""Writing an RDM, or a variance partition, to an image file.

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
  set so that a typo is an error rather than a surprise.  The image is written
  to a temporary name next to the target and moved into place, so a failed
  write never leaves half a file under the requested name.
* :func:`plot_variance_partitioning` draws the mean over targets of each Venn
  part twice: written into the regions of a Venn diagram of equal circles
  (their areas are not to scale), and as bars with the standard error over
  targets.  Negative parts are drawn below zero, hatched and in red, and their
  numbers are red in the diagram.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from .backend import as_tensor, check_finite
from .compare import rank
from .partition import SHARED, VariancePartition
from .rdm import square_from_condensed

IMAGE_FORMATS = ("png", "jpg", "jpeg", "svg", "pdf")


def _image_path(path) -> tuple[Path, str]:
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in IMAGE_FORMATS:
        raise ValueError(
            f"path must end in one of {', '.join('.' + f for f in IMAGE_FORMATS)}, got {str(path)!r}; "
            "add a suffix to pick the format"
        )
    return path, suffix


def _save(figure: Figure, path: Path, suffix: str, dpi: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.part")
    try:
        figure.savefig(temporary, dpi=dpi, format=suffix)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


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
    path, suffix = _image_path(path)
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
    return _save(figure, path, suffix, dpi)


VENN_LAYOUTS = {
    2: {
        "centres": [(-0.55, 0.0), (0.55, 0.0)],
        "radius": 1.0,
        "labels": {(0,): (-0.95, 0.0), (1,): (0.95, 0.0), (0, 1): (0.0, 0.0)},
        "names": [(-0.95, 1.1), (0.95, 1.1)],
    },
    3: {
        "centres": [(-0.5, 0.35), (0.5, 0.35), (0.0, -0.5)],
        "radius": 0.9,
        "labels": {(0,): (-0.85, 0.6), (1,): (0.85, 0.6), (2,): (0.0, -0.95), (0, 1): (0.0, 0.75),
                   (0, 2): (-0.55, -0.3), (1, 2): (0.55, -0.3), (0, 1, 2): (0.0, 0.1)},
        "names": [(-1.15, 1.35), (1.15, 1.35), (0.0, -1.6)],
    },
}
"""Venn diagram geometry by number of sets: circle centres, radius, where each part's number goes."""


def _draw_venn(axes, names, means: dict[tuple, float]) -> None:
    layout = VENN_LAYOUTS[len(names)]
    colours = matplotlib.colormaps["tab10"].colors
    for centre, colour, name, spot in zip(layout["centres"], colours, names, layout["names"]):
        axes.add_patch(Circle(centre, layout["radius"], facecolor=colour, alpha=0.25, edgecolor=colour, lw=1.5))
        axes.text(*spot, name, ha="center", va="center", fontsize=11, fontweight="bold", color=colour)
    for members, spot in layout["labels"].items():
        value = means[tuple(names[i] for i in members)]
        axes.text(*spot, f"{value:.3f}", ha="center", va="center", fontsize=9,
                  color="red" if value < 0 else "black")
    axes.set_xlim(-2.0, 2.0)
    axes.set_ylim(-1.9, 1.7)
    axes.set_aspect("equal")
    axes.set_axis_off()


def plot_variance_partitioning(partition: VariancePartition, path, *, targets=None, dpi: int = 150,
                               size: tuple[float, float] = (10.0, 4.0), title: str | None = None):
    """Save a Venn diagram and a bar chart of the mean variance parts over targets.

    Parameters
    ----------
    partition : VariancePartition
        From :func:`~torchlens_like.analysis.variance_partitioning`.
    path : str or pathlib.Path
        Output file (png, jpg, svg or pdf by suffix); missing folders are created.
    targets : sequence of int or boolean mask, optional
        Targets (rows of ``partition.parts``) to average, e.g. one region's
        voxels; default all.
    dpi : int
        Resolution.
    size : (float, float)
        Width and height in inches.
    title : str, optional
        Figure title; default names the number of targets.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ValueError
        For an unsupported suffix, no targets selected, or non-positive
        ``dpi``.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from torchlens_like.analysis import variance_partitioning
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(2, 90, 4))
    >>> partition = variance_partitioning({"A": a, "B": b}, a[:, :2] + rng.normal(size=(90, 2)), folds=3)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     plot_variance_partitioning(partition, f"{folder}/partition.png").name
    'partition.png'
    """
    if not isinstance(partition, VariancePartition):
        raise TypeError(f"partition must be a VariancePartition, got {type(partition).__name__}")
    path, suffix = _image_path(path)
    if not dpi > 0:
        raise ValueError(f"dpi must be positive, got {dpi!r}")
    parts = partition.parts
    if targets is not None:
        selected = np.asarray(targets)
        parts = parts.iloc[np.flatnonzero(selected) if selected.dtype == bool else selected]
    if len(parts) == 0:
        raise ValueError("targets selects no targets; pass indices or a mask of at least one row of partition.parts")
    names = list(partition.names)
    means = parts.mean()
    sem = parts.std(ddof=1) / np.sqrt(len(parts)) if len(parts) > 1 else means * 0
    figure = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(figure)
    venn, bars = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
    _draw_venn(venn, names, {tuple(column.split(SHARED)): float(means[column]) for column in parts.columns})
    negative = means.to_numpy() < 0
    drawn = bars.bar(range(len(means)), means.to_numpy(), yerr=sem.to_numpy(), capsize=3,
                     color=["tab:red" if n else "tab:blue" for n in negative])
    for bar, is_negative in zip(drawn, negative):
        if is_negative:
            bar.set_hatch("//")
    bars.axhline(0, color="black", lw=0.8)
    bars.set_xticks(range(len(means)), [column.replace(SHARED, " &\n") for column in parts.columns], fontsize=8)
    bars.set_ylabel("held-out R² (mean over targets)")
    figure.suptitle(title or f"Variance partitioning over {len(parts)} targets")
    figure.tight_layout()
    return _save(figure, path, suffix, dpi)
