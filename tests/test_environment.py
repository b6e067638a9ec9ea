"""The torch / torchvision pair: read from package metadata, judged against torchvision's own
requirement, named in the README and .ci/run, and reported in one line by tll and the package."""

import importlib.metadata
import pathlib
import re
import subprocess
import sys

import pytest

from torchlens_like import cli, environment
from torchlens_like.environment import TESTED_PAIR, torch_pair_problem

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_installed_pair_fits_and_agrees_with_torchvisions_own_requirement():
    assert torch_pair_problem() is None
    vision = importlib.metadata.version("torchvision")
    (requirement,) = [r for r in importlib.metadata.requires("torchvision")
                      if re.match(r"torch\b", r) and "extra" not in r]
    required_minor = int(re.search(r"2\.(\d+)", requirement).group(1))
    assert torch_pair_problem(f"2.{required_minor}.0", vision) is None
    assert torch_pair_problem(f"2.{required_minor - 1}.0", vision) is not None
    assert torch_pair_problem(f"2.{required_minor + 1}.0", vision) is not None


@pytest.mark.parametrize("torch_version, vision_version, fits", [
    ("2.13.0+cpu", "0.28.0+cu126", False),   # the broken install of the report
    ("2.13.0+cpu", "0.28.0", False),         # PyPI's Linux torchvision is a CUDA build
    ("2.13.0", "0.29.1", False),
    ("2.14.1+cpu", "0.29.1+cpu", True),
    ("2.14.1", "0.29.1", True),
    ("2.14.1+cu126", "0.29.1+cu126", True),
    ("2.14.1", "0.29.1+cpu", True),          # a CPU torchvision runs on a CUDA torch
])
def test_pairs(torch_version, vision_version, fits):
    problem = torch_pair_problem(torch_version, vision_version)
    assert (problem is None) == fits
    if not fits:
        assert "\n" not in problem and environment.INSTALL_TESTED_PAIR in problem


def test_readme_and_ci_name_the_tested_pair_and_the_command():
    pins = f"torch=={TESTED_PAIR['torch']} torchvision=={TESTED_PAIR['torchvision']}"
    assert pins in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert f"pip install {pins} --index-url https://download.pytorch.org/whl/cpu" in readme
    assert f"pip install {pins}\n" in readme


def test_a_broken_pair_is_one_line_from_tll_before_anything_is_imported(monkeypatch, capsys):
    versions = {"torch": "2.13.0+cpu", "torchvision": "0.28.0+cu126"}
    monkeypatch.setattr(environment, "installed_version", versions.get)
    monkeypatch.setattr(cli, "build_model", lambda *a, **k: pytest.fail("model built"))
    assert cli.main(["layers", "alexnet"]) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "torch 2.13.0+cpu" in err and "torchvision 0.28.0+cu126" in err
    assert environment.INSTALL_TESTED_PAIR in err


def test_the_check_reads_metadata_without_importing_torch():
    code = ("import sys, torchlens_like.environment as e\n"
            "print(e.torch_pair_problem(), 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    assert done.stdout.split() == ["None", "False"]


PACKAGE_USE = """
import warnings, torchlens_like.environment as e
e.installed_version = {'torch': '2.13.0+cpu', 'torchvision': '0.28.0+cu126'}.get
import torchlens_like as tll
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    try:
        tll.log_forward_pass
    except ImportError as exc:
        print('ImportError:', exc)
print(*[f'{w.category.__name__}: {w.message}' for w in caught], sep='\\n')
"""


@pytest.mark.parametrize("torch_imports", [True, False], ids=["torch imports", "torch fails"])
def test_the_package_names_the_pair_on_first_use(torch_imports, tmp_path):
    if not torch_imports:
        (tmp_path / "torch").mkdir()
        (tmp_path / "torch" / "__init__.py").write_text(
            "raise RuntimeError('operator torchvision::nms does not exist')\n")
    done = subprocess.run([sys.executable, "-c", PACKAGE_USE], capture_output=True, text=True,
                          env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": ""}, cwd=tmp_path)
    lines = [line for line in done.stdout.splitlines() if line]
    assert len(lines) == 1, done.stdout + done.stderr
    kind = "UserWarning" if torch_imports else "ImportError"
    assert lines[0].startswith(f"{kind}: torch 2.13.0+cpu is a CPU-only build"), lines
