"""Writing an RDM, or a variance partition, to an image file.

Design decisions
----------------
* A ``matplotlib.figure.Figure`` is built directly, without ``pyplot``, so
  plotting neither needs a display nor touches pyplot's global state or the
  caller's open figures.
* The matrix fills a fixed square of the figure, :data:`RDM_BOX` (fractions of
  one square figure of ``size`` inches), so a pixel of the file maps to a known
  cell of the matrix; around it go the axis labels (the stimuli, or their
  categories when the labels say so) and a colour bar saying what the colours
  mean.
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

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from ..figure_files import image_path, save_figure
from .backend import as_tensor, check_finite
from .compare import rank
from .partition import SHARED, VariancePartition
from .rdm import square_from_condensed


RDM_BOX = (0.25, 0.25, 0.58, 0.58)
"""Where :func:`plot_rdm` puts the matrix: ``(left, bottom, width, height)`` as fractions of the
figure; the colour bar goes to its right, the labels to its left and below."""

MAX_TICKS = 40
"""Above this many stimuli (or categories), the ticks are left out and only the axis label says
what the rows are."""


def plot_rdm(rdm, path, colormap: str = "cividis", dpi: int = 200, *, rank_transform: bool = True, size: float = 5.0,
             labels=None, title: str | None = None):
    """Save an RDM as an image (png, jpg, svg or pdf) with labelled axes and a colour bar.

    Parameters
    ----------
    rdm : array-like
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
    labels : sequence of str, optional
        One label per stimulus, in the RDM's order: stimulus ids
        (``features.stimulus_ids``) tick every stimulus; categories
        (``features.stimulus_labels``, runs of equal labels) tick each run at
        its middle and draw lines between runs.  Ticks are left out above
        :data:`MAX_TICKS` of them; labels longer than 20 characters are cut.
    title : str, optional
        Drawn above the matrix.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ValueError
        For an unsupported suffix, an unknown colormap, a non-square RDM,
        NaN or infinite entries, a non-positive ``dpi`` or ``size``, or
        ``labels`` of another length than the RDM.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from torchlens_like.analysis import compute_rdm
    >>> rdm = compute_rdm(np.random.default_rng(0).normal(size=(10, 5)))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     plot_rdm(rdm, f"{folder}/rdm.png", labels=["cat"] * 5 + ["dog"] * 5).name
    'rdm.png'
    """
    image_path(path)
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
    n = matrix.shape[0]
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels has {len(labels)} entries but the RDM has {n} stimuli; pass one label per stimulus")
    values = matrix.double()
    if rank_transform:
        values = 100 * (rank(values.flatten()) - 1) / max(1, values.numel() - 1)
        values = values.reshape(matrix.shape)
    figure = Figure(figsize=(size, size), dpi=dpi)
    FigureCanvasAgg(figure)
    left, bottom, width, height = RDM_BOX
    axes = figure.add_axes(RDM_BOX)
    image = axes.imshow(values.cpu().numpy(), cmap=colormap, interpolation="nearest", aspect="auto",
                        extent=(-0.5, n - 0.5, n - 0.5, -0.5))
    _label_stimuli(axes, labels, n, size)
    bar = figure.colorbar(image, cax=figure.add_axes((left + width + 0.03, bottom, 0.03, height)))
    bar.set_label("dissimilarity (percentile rank)" if rank_transform else "dissimilarity")
    if title:
        axes.set_title(title)
    return save_figure(figure, path, dpi=dpi)


def _runs(labels):
    """``[(label, first, stop), ...]`` for the runs of equal consecutive labels."""
    runs = []
    for index, label in enumerate(labels):
        if runs and runs[-1][0] == label:
            runs[-1][2] = index + 1
        else:
            runs.append([label, index, index + 1])
    return [tuple(run) for run in runs]


def _label_stimuli(axes, labels, n, size):
    runs = _runs([str(label) for label in labels]) if labels is not None else []
    categories = bool(runs) and len(runs) < n
    axis_name = "category" if categories else "stimulus"
    for set_label in (axes.set_xlabel, axes.set_ylabel):
        set_label(axis_name)
    shown = runs if runs and len(runs) <= MAX_TICKS else []
    positions = [(first + stop - 1) / 2 for _, first, stop in shown]
    names = [label if len(label) <= 20 else label[:19] + "\u2026" for label, _, _ in shown]
    font = max(3.0, min(8.0, 40 * size / max(1, len(shown))))
    axes.set_xticks(positions, names, rotation=90 if max(map(len, names), default=0) > 6 else 0,
                    fontsize=font)
    axes.set_yticks(positions, names, fontsize=font)
    if categories:
        for _, first, _ in runs[1:]:
            axes.axhline(first - 0.5, color="white", linewidth=1.5)
            axes.axvline(first - 0.5, color="white", linewidth=1.5)


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
    image_path(path)
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
    return save_figure(figure, path, dpi=dpi)
