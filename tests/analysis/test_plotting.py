"""plot_rdm: the written pixels against matplotlib's colormap applied to scipy's ranks."""

import matplotlib
import matplotlib.image
import numpy as np
import pytest
import scipy.stats
from scipy.spatial.distance import pdist, squareform

from torchlens_like.analysis import plot_rdm

SIGNATURES = {".png": b"\x89PNG", ".jpg": b"\xff\xd8\xff", ".svg": b"<svg", ".pdf": b"%PDF"}


@pytest.fixture
def rdm():
    return squareform(pdist(np.random.default_rng(0).normal(size=(6, 4)), "correlation"))


def cell_colours(path, n, size_px):
    image = matplotlib.image.imread(path)[..., :3]
    assert image.shape[:2] == (size_px, size_px)
    centres = (np.arange(n) + 0.5) * size_px / n
    return image[np.ix_(centres.astype(int), centres.astype(int))]


@pytest.mark.parametrize("rank_transform", [True, False])
def test_png_pixels_are_the_colormap_of_the_values(tmp_path, rdm, rank_transform):
    before = rdm.copy()
    path = plot_rdm(rdm, tmp_path / "nested" / "rdm.png", colormap="viridis", dpi=40, size=3,
                    rank_transform=rank_transform)
    shown = scipy.stats.rankdata(rdm).reshape(rdm.shape) if rank_transform else rdm
    expected = matplotlib.colormaps["viridis"]((shown - shown.min()) / (shown.max() - shown.min()))[..., :3]
    np.testing.assert_allclose(cell_colours(path, 6, 120), expected, atol=0.02)
    np.testing.assert_array_equal(rdm, before)


def test_condensed_input_draws_the_same_image(tmp_path, rdm):
    square = cell_colours(plot_rdm(rdm, tmp_path / "square.png", dpi=30, size=2), 6, 60)
    condensed = cell_colours(plot_rdm(squareform(rdm), tmp_path / "condensed.png", dpi=30, size=2), 6, 60)
    np.testing.assert_array_equal(square, condensed)


@pytest.mark.parametrize("suffix", sorted(SIGNATURES))
def test_each_format_is_written(tmp_path, rdm, suffix):
    path = plot_rdm(rdm, tmp_path / f"rdm{suffix}", dpi=20)
    assert SIGNATURES[suffix] in path.read_bytes()[:400]


def test_dpi_sets_the_pixel_size(tmp_path, rdm):
    assert matplotlib.image.imread(plot_rdm(rdm, tmp_path / "a.png", dpi=25, size=2)).shape[:2] == (50, 50)
    assert matplotlib.image.imread(plot_rdm(rdm, tmp_path / "b.png", dpi=50, size=2)).shape[:2] == (100, 100)


@pytest.mark.parametrize("kwargs, message", [
    ({"path": "rdm.gif"}, r"path must end in one of \.png, \.jpg, \.jpeg, \.svg, \.pdf"),
    ({"colormap": "no_such_map"}, "unknown colormap 'no_such_map'"),
    ({"dpi": 0}, "dpi and size must be positive"),
])
def test_bad_arguments(tmp_path, rdm, kwargs, message):
    kwargs = {"path": tmp_path / "rdm.png", **kwargs}
    with pytest.raises(ValueError, match=message):
        plot_rdm(rdm, **kwargs)


def test_non_square_rdm(tmp_path):
    with pytest.raises(ValueError, match=r"rdm must be square \(n, n\) or condensed, got shape \(3, 4\)"):
        plot_rdm(np.ones((3, 4)), tmp_path / "rdm.png")


def test_variance_partitioning_plot_writes_the_mean_parts(tmp_path):
    import re

    from torchlens_like.analysis import plot_variance_partitioning, variance_partitioning

    rng = np.random.default_rng(0)
    signal = rng.normal(size=(90, 4))
    y = signal[:, :1] + rng.normal(size=(90, 12))
    partition = variance_partitioning({"signal": signal, "noise": rng.normal(size=(90, 30))}, y, folds=3)
    chosen = [0, 2, 5]
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        path = plot_variance_partitioning(partition, tmp_path / "out" / "partition.svg", targets=chosen)
    svg = path.read_text()
    means = partition.parts.iloc[chosen].mean()
    assert (means < 0).any() and (means > 0).any()
    for part, value in means.items():
        text = f"{value:.3f}"
        assert text in svg, part
        style = re.search(r'<text[^>]*style="([^"]*)"[^>]*>' + re.escape(text) + "<", svg).group(1)
        assert ("#ff0000" in style) == (value < 0), part
    assert "over 3 targets" in svg
    assert sorted(p.name for p in path.parent.iterdir()) == ["partition.svg"]
    png = plot_variance_partitioning(partition, tmp_path / "partition.png", dpi=50, size=(6, 3))
    assert matplotlib.image.imread(png).shape[:2] == (150, 300)
    with pytest.raises(ValueError, match="targets selects no targets"):
        plot_variance_partitioning(partition, tmp_path / "none.png", targets=np.zeros(12, dtype=bool))
    with pytest.raises(ValueError, match="path must end in one of"):
        plot_variance_partitioning(partition, tmp_path / "partition.txt")
