"""save_figure: the format from the suffix, read back by matplotlib; a failed write leaves the old file."""

import matplotlib.image
import numpy as np
import pytest
from matplotlib.figure import Figure

from torchlens_like.figure_files import save_figure


def _figure(value):
    figure = Figure(figsize=(1, 1))
    figure.add_axes((0, 0, 1, 1)).imshow(np.full((4, 4, 3), value))
    return figure


def test_a_figure_is_written_in_the_suffix_format_in_a_new_folder(tmp_path):
    path = save_figure(_figure(0.0), tmp_path / "new" / "black.png", dpi=10)
    pixels = matplotlib.image.imread(path)
    assert pixels.shape == (10, 10, 4) and pixels[..., :3].max() == 0.0


def test_a_name_without_an_image_suffix_is_refused_naming_it(tmp_path):
    with pytest.raises(ValueError, match="figure.txt"):
        save_figure(_figure(0.0), tmp_path / "figure.txt")


def test_a_write_that_fails_half_way_leaves_the_earlier_file_and_no_part(tmp_path):
    path = save_figure(_figure(1.0), tmp_path / "white.png", dpi=10)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        save_figure(_figure(0.0), path, dpi=10, not_an_option=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["white.png"]
