"""plot_rdm: the written pixels against matplotlib's colormap applied to scipy's ranks; axis
labels and the colour bar read back from the SVG."""

import matplotlib
import matplotlib.image
import numpy as np
import pytest
import scipy.stats
from scipy.spatial.distance import pdist, squareform

from torchlens_like.analysis import plot_rdm
from torchlens_like.analysis.plotting import RDM_BOX

SIGNATURES = {".png": b"\x89PNG", ".jpg": b"\xff\xd8\xff", ".svg": b"<svg", ".pdf": b"%PDF"}


@pytest.fixture
def rdm():
    return squareform(pdist(np.random.default_rng(0).normal(size=(6, 4)), "correlation"))


def cell_colours(path, n, size_px):
    """The colour at the centre of each cell of the matrix, which fills RDM_BOX of the image."""
    image = matplotlib.image.imread(path)[..., :3]
    assert image.shape[:2] == (size_px, size_px)
    left, bottom, width, height = RDM_BOX
    columns = (left + (np.arange(n) + 0.5) * width / n) * size_px
    rows = (1 - bottom - height + (np.arange(n) + 0.5) * height / n) * size_px
    return image[np.ix_(rows.astype(int), columns.astype(int))]


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


def _svg_texts(path):
    import re

    return re.findall(r"<text[^>]*>([^<]*)</text>", path.read_text())


@pytest.mark.parametrize("rank_transform, bar", [(True, "dissimilarity (percentile rank)"),
                                                 (False, "dissimilarity")])
def test_stimulus_ids_tick_every_stimulus_and_the_colour_bar_says_what_it_shows(
        tmp_path, rdm, rank_transform, bar):
    ids = [f"img{i:02d}.jpg" for i in range(6)]
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        path = plot_rdm(rdm, tmp_path / "rdm.svg", labels=ids, rank_transform=rank_transform,
                        title="layer3")
    texts = _svg_texts(path)
    assert texts.count("stimulus") == 2 and bar in texts and "layer3" in texts
    assert all(texts.count(name) == 2 for name in ids)
    ticks = [float(t) for t in texts if t.replace(".", "", 1).isdigit()]
    top = 100 if rank_transform else rdm.max()
    assert min(ticks) >= 0 and max(ticks) <= top and len(ticks) >= 3


def test_categories_tick_each_run_once_and_are_separated(tmp_path, rdm):
    categories = ["cats"] * 3 + ["dogs"] * 2 + ["owls"]
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        texts = _svg_texts(plot_rdm(rdm, tmp_path / "rdm.svg", labels=categories))
    assert texts.count("category") == 2
    assert [texts.count(name) for name in ("cats", "dogs", "owls")] == [2, 2, 2]
    plain = plot_rdm(rdm, tmp_path / "plain.png", dpi=100, size=3)
    split = plot_rdm(rdm, tmp_path / "split.png", dpi=100, size=3, labels=categories)
    boundary = (1 - RDM_BOX[1] - RDM_BOX[3] + 3 / 6 * RDM_BOX[3]) * 300  # between cats and dogs
    rows = slice(int(boundary) - 1, int(boundary) + 2)
    columns = slice(int(RDM_BOX[0] * 300) + 5, int((RDM_BOX[0] + RDM_BOX[2]) * 300) - 5)
    brightness = [matplotlib.image.imread(p)[rows, columns, :3].mean(axis=(1, 2)).max()
                  for p in (plain, split)]
    assert brightness[1] > brightness[0] + 0.1, "a light line between the categories"
    with pytest.raises(ValueError, match="labels has 5 entries but the RDM has 6 stimuli"):
        plot_rdm(rdm, tmp_path / "bad.png", labels=categories[:5])
