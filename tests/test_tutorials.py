"""Every tutorial (script or notebook) runs to the end as a newcomer would run it."""

import pathlib
import subprocess
import sys

import pytest

TUTORIALS = sorted((pathlib.Path(__file__).parents[1] / "tutorials").glob("*.py"))


@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_runs(script, tmp_path):
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip()


NOTEBOOKS = sorted((pathlib.Path(__file__).parents[1] / "tutorials").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_shows_pictures(notebook, tmp_path):
    import xml.etree.ElementTree as ET

    import nbformat
    from nbclient import NotebookClient

    book = nbformat.read(notebook, as_version=4)
    NotebookClient(book, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    shown = [output.get("data", {}) for cell in book.cells if cell.cell_type == "code"
             for output in cell.get("outputs", [])]
    pictures = [data["image/svg+xml"] for data in shown if "image/svg+xml" in data]
    pages = [data["text/html"] for data in shown if "text/html" in data]
    assert pictures and all(ET.fromstring(svg).tag.endswith("svg") for svg in pictures)
    assert any("<svg" in page for page in pages)
