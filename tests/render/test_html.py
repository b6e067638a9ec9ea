"""The HTML explorer: self-contained, and working in a real headless Chromium.

The browser test needs Debian's ``chromium`` and the ``playwright`` package
(installed by ``.ci/run``); it drives the system browser, never a downloaded one.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest
import torch
import torchvision

import torchlens_like as tll
from torchlens_like.cli import main

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    model = torchvision.models.resnet18().eval()
    history = tll.get_model_metadata(model, torch.rand(1, 3, 64, 64))
    path = history.to_html(tmp_path_factory.mktemp("html") / "resnet18.html")
    return history, path


def test_single_self_contained_file(resnet):
    history, path = resnet
    text = open(path, encoding="utf-8").read()
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", text)
    assert "@import" not in text and "url(http" not in text
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", text))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    svg_titles = re.findall(r'<g id="n\d+" class="node">\s*<title>([^<]+)</title>', text)
    assert sorted(svg_titles) == sorted(history.layer_labels)
    payload = json.loads(re.search(r'id="graph-data">(.*?)</script>', text, re.S).group(1))
    assert set(payload["layers"]) == set(history.layer_labels)


def test_cli_writes_explorer(tmp_path, capsys):
    out = tmp_path / "alexnet.html"
    assert main(["html", "alexnet", "--image-size", "64", "--out", str(out),
                 "--nesting-depth", "1"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    text = out.read_text(encoding="utf-8")
    assert "<svg" in text and 'class="node"' in text and "module features:1" in text


def _expected_hits(history, query):
    return {layer.layer_label for layer in history.layers
            if query in layer.layer_label or any(query in call for call in
                                                 layer.containing_modules
                                                 + layer.module_passes_output)}


def test_explorer_in_headless_chromium(resnet):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    history, path = resnet
    remote = []
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("request", lambda request: remote.append(request.url)
                    if not request.url.startswith("file:") else None)
            page.goto(f"file://{os.path.abspath(path)}")

            query = "layer4.1"
            page.fill("#search", query)
            expected = _expected_hits(history, query)
            assert page.inner_text("#count") == f"{len(expected)} matches"
            shown = [item.split(" ")[0] for item in page.locator("#results li").all_inner_texts()]
            assert set(shown) == expected
            assert page.locator("g.node.hit").count() == len(expected)

            page.press("#search", "Enter")
            first = shown[0]
            page.click("g.node.selected")
            assert page.inner_text("#meta-title") == first
            layer = history[first]
            table = page.locator(f'table.layer-meta[data-label="{first}"]')
            cell = lambda key: table.locator(f'tr[data-key="{key}"] td.value').inner_text()
            assert json.loads(cell("tensor_shape")) == list(layer.tensor_shape)
            assert json.loads(cell("parent_layers")) == layer.parent_layers
            assert json.loads(cell("param_shapes")) == [list(s) for s in layer.param_shapes]
            assert cell("func_name") == layer.func_name

            page.click("#zoom-fit")
            before = page.get_attribute("svg", "viewBox")
            page.mouse.move(500, 400)
            page.mouse.wheel(0, -400)
            zoomed = page.get_attribute("svg", "viewBox")
            assert float(zoomed.split()[2]) < float(before.split()[2])
            page.mouse.down()
            page.mouse.move(600, 500, steps=4)
            page.mouse.up()
            panned = page.get_attribute("svg", "viewBox")
            assert panned.split()[:2] != zoomed.split()[:2]
            assert panned.split()[2:] == zoomed.split()[2:]

            page.click("#zoom-fit")
            output = history.output_layers[0]
            node_id = page.evaluate(
                "label => [...document.querySelectorAll('g.node')].find("
                "g => g.querySelector('title').textContent === label).id", output)
            page.click(f"g#{node_id}", force=True)
            assert page.inner_text("#meta-title") == output
            assert errors == []
        finally:
            browser.close()
    assert remote == []
