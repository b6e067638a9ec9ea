"""Writing a matplotlib figure to an image file: the format from the suffix, moved into place.

Shared by the pictures of the analysis and gradients stages. matplotlib is
not imported here; the figure brings it.
"""

from __future__ import annotations

import os
from pathlib import Path

IMAGE_FORMATS = ("png", "jpg", "jpeg", "svg", "pdf")


def image_path(path):
    """``(Path, format)`` of an image file name; a name without an image suffix is refused.

    Examples
    --------
    >>> image_path("figures/rdm.PNG")
    (PosixPath('figures/rdm.PNG'), 'png')
    """
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in IMAGE_FORMATS:
        raise ValueError(
            f"path must end in one of {', '.join('.' + f for f in IMAGE_FORMATS)}, got "
            f"{str(path)!r}; add a suffix to pick the format")
    return path, suffix


def save_figure(figure, path, **options):
    """Write ``figure`` to ``path`` (missing folders made) through a temporary file; the path.

    ``options`` go to ``figure.savefig`` (``dpi``, ``bbox_inches``...). A
    failure half-way leaves no file behind and an earlier file as it was.

    Examples
    --------
    >>> import tempfile
    >>> from matplotlib.figure import Figure
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     save_figure(Figure(), f"{folder}/new/empty.svg").name
    'empty.svg'
    """
    path, suffix = image_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.part")
    try:
        figure.savefig(temporary, format=suffix, **options)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path
