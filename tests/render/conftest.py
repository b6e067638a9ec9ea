"""Fixtures for the rendering tests.

Graphs are read back through Graphviz itself (``dot -Tjson0``), so the tests check what
Graphviz understood, not the text the renderer meant to write."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass

import pytest

from torchlens_like.render import render_graph


@dataclass
class Parsed:
    nodes: dict      # name -> attributes, plus "text": the label's lines without tags
    edges: list      # (tail name, head name, attributes with "text")
    clusters: dict   # name -> {"label": str, "nodes": set of names, "parent": name | None}
    label: str


def parse(gv_path):
    done = subprocess.run(["dot", "-Tjson0", gv_path], capture_output=True, text=True,
                          check=True)
    data = json.loads(done.stdout)
    objects = data.get("objects", [])
    by_id = {obj["_gvid"]: obj for obj in objects}
    nodes = {obj["name"]: obj for obj in objects if "nodes" not in obj}
    for obj in list(nodes.values()) + data.get("edges", []):
        obj["text"] = plain(obj.get("label", ""))
    clusters = {}
    for obj in objects:
        if "nodes" in obj or obj["name"].startswith("cluster"):
            clusters[obj["name"]] = {"label": plain(obj.get("label", "")),
                                     "nodes": {by_id[i]["name"] for i in obj.get("nodes", [])},
                                     "parent": None}
    for obj in objects:
        for child in obj.get("subgraphs", []):
            clusters[by_id[child]["name"]]["parent"] = obj["name"]
    edges = [(by_id[e["tail"]]["name"], by_id[e["head"]]["name"], e)
             for e in data.get("edges", [])]
    return Parsed(nodes, edges, clusters, plain(data.get("label", "")))


def plain(html_label):
    """The lines of a Graphviz HTML-like label without tags."""
    text = re.sub(r"<br\s*/?>", "\n", html_label)
    text = re.sub(r"<[^>]+>", "", text)
    return text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")


@pytest.fixture
def draw(tmp_path):
    """``draw(history, **options) -> (Parsed, picture path)``: render, then read back the DOT."""
    counter = iter(range(10_000))

    def run(history, **options):
        out = tmp_path / f"graph{next(counter)}"
        path = render_graph(history, outpath=str(out), **{"keep_source": True, **options})
        return parse(str(out) + ".gv"), path

    return run
