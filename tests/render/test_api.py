"""Entry points, output formats, option checking, and the missing-Graphviz error."""

from __future__ import annotations

import os
import subprocess

import pytest
import torch
from torch import nn

import torchlens_like as tll
from torchlens_like.render import GraphvizNotFoundError, RenderOptions
from torchlens_like.render import draw as render_draw
from torchlens_like.render.view import build_view, layout_span

MAGIC = {"svg": b"<?xml", "pdf": b"%PDF", "png": b"\x89PNG"}


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))


@pytest.mark.parametrize("fileformat", ["svg", "pdf", "png"])
def test_show_model_graph_writes_each_format_says_where_and_leaves_no_source(tmp_path,
                                                                           fileformat, capsys):
    path = tll.show_model_graph(_model(), torch.rand(1, 4), outpath=str(tmp_path / "net"),
                                fileformat=fileformat)
    assert path == str(tmp_path / f"net.{fileformat}")
    with open(path, "rb") as handle:
        assert handle.read(8).startswith(MAGIC[fileformat])
    assert os.listdir(tmp_path) == [f"net.{fileformat}"]
    assert capsys.readouterr().out == f"graph written to {path}\n"


def test_the_dot_source_is_kept_when_asked(tmp_path):
    history = tll.get_model_metadata(_model(), torch.rand(1, 4))
    path = history.render_graph(outpath=str(tmp_path / "net"), keep_source=True)
    assert sorted(os.listdir(tmp_path)) == ["net.gv", "net.svg"]
    rendered = subprocess.run(["dot", "-Tsvg", str(tmp_path / "net.gv")], capture_output=True,
                              text=True, check=True).stdout
    assert rendered == open(path).read()


def test_log_forward_pass_renders_in_the_same_call(tmp_path):
    options = RenderOptions(outpath=str(tmp_path / "logged"), vis_opt="rolled")
    history = tll.log_forward_pass(_model(), torch.rand(1, 4), render=options)
    svg = (tmp_path / "logged.svg").read_text()
    assert history["linear_1"].tensor_contents is not None
    for label in history.layer_labels:
        assert f"<title>{label}</title>" in svg


def test_render_true_uses_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tll.log_forward_pass(_model(), torch.rand(1, 4), render=True)
    assert os.listdir(tmp_path) == ["graph.svg"]


def test_options_are_checked():
    with pytest.raises(ValueError, match="vis_opt must be one of 'unrolled', 'rolled'"):
        RenderOptions(vis_opt="folded")
    with pytest.raises(ValueError, match="nesting_depth must be an int >= 1"):
        RenderOptions(nesting_depth=0)
    with pytest.raises(ValueError, match="not both"):
        tll.show_model_graph(_model(), torch.rand(1, 4), vis_opt="rolled",
                             options=RenderOptions())
    with pytest.raises(TypeError, match="RenderOptions"):
        tll.log_forward_pass(_model(), torch.rand(1, 4), render="yes")


def test_missing_graphviz_says_how_to_install_and_keeps_dot_source(tmp_path, monkeypatch):
    history = tll.get_model_metadata(_model(), torch.rand(1, 4))
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    real_path = os.environ["PATH"]
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(GraphvizNotFoundError) as raised:
        history.render_graph(outpath=str(tmp_path / "nodot"), fileformat="png")
    message = str(raised.value)
    for hint in ("apt-get install graphviz", "conda install graphviz", "brew install graphviz",
                 str(tmp_path / "nodot.gv")):
        assert hint in message
    assert not (tmp_path / "nodot.png").exists()
    monkeypatch.setenv("PATH", real_path)
    rendered = subprocess.run(["dot", "-Tsvg", str(tmp_path / "nodot.gv")], capture_output=True,
                              text=True, check=True).stdout
    for label in history.layer_labels:
        assert f"<title>{label}</title>" in rendered


def test_cli_graph_command(tmp_path, capsys):
    from torchlens_like.cli import main

    out = tmp_path / "alex.png"
    main(["graph", "alexnet", "--image-size", "64", "--out", str(out), "--vis-opt", "rolled"])
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_bytes().startswith(MAGIC["png"])


class Dense(nn.Module):
    """Every step also reads the input: edges of growing length, no module to fold them."""

    def __init__(self, steps):
        super().__init__()
        self.steps = steps

    def forward(self, x):
        h = x
        for _ in range(self.steps):
            h = torch.sin(h) + x
        return h


def test_layout_span_counts_ranks_crossed():
    steps = 10
    view = build_view(tll.get_model_metadata(Dense(steps), torch.rand(3)), RenderOptions())
    # input -> sin_1, sin_k -> add_k, add_k -> sin_k+1, add_n -> output: one rank each;
    # input -> add_k crosses 2k ranks.
    assert layout_span(view) == 1 + steps + (steps - 1) + 1 + sum(2 * k for k in range(1, steps + 1))


def test_warns_before_a_slow_layout(tmp_path, recwarn, monkeypatch):
    monkeypatch.setattr(render_draw, "SLOW_LAYOUT_SPAN", 100)
    history = tll.get_model_metadata(_model(), torch.rand(1, 4))
    history.render_graph(outpath=str(tmp_path / "quick"))
    assert not [w for w in recwarn if "many long edges" in str(w.message)]
    dense = tll.get_model_metadata(Dense(10), torch.rand(3))
    with pytest.warns(UserWarning, match="many long edges"):
        path = dense.render_graph(outpath=str(tmp_path / "dense"))
    assert os.path.exists(path)
