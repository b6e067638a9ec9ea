"""Every example in README.md runs, in order, as a newcomer would paste it.

Python blocks run one after another in one interpreter (later blocks use the names earlier
ones made); each command of a shell block runs in a shell-like subprocess and must exit 0.
Installing (``pip``, ``apt-get``) and the test suite itself (``python -m pytest``) are the only
commands not run.
"""

import pathlib
import re
import shlex
import subprocess
import sys

README = pathlib.Path(__file__).parents[1] / "README.md"
NOT_RUN = ("pip ", "apt-get ", "brew ", "python -m pytest", "bash .ci/run", "torchrun ")
"""Commands that install software, run this test suite, or need GPUs or several machines
(``torchrun``; tests/extract/test_distributed_launch.py runs it on CPU)."""


def blocks():
    """``[(language, code)]`` of the fenced blocks, in document order."""
    return re.findall(r"^```(\w+)\n(.*?)^```", README.read_text(), re.S | re.M)


def commands(code):
    for line in code.replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0].strip()
        if line.startswith("#"):
            continue
        for command in filter(None, (part.strip() for part in line.split("&&"))):
            yield command


def test_readme_has_examples_of_both_kinds():
    languages = [language for language, _ in blocks()]
    assert languages.count("python") >= 4 and languages.count("bash") >= 3
    assert set(languages) <= {"python", "bash"}


def test_every_readme_example_runs(tmp_path):
    driver = ["import subprocess, sys", "namespace = {}"]
    ran = []
    for language, code in blocks():
        if language == "python":
            driver.append(f"exec(compile({code!r}, 'README.md', 'exec'), namespace)")
            continue
        for command in commands(code):
            if command.startswith(NOT_RUN):
                continue
            argv = shlex.split(command)
            assert argv[0] in ("tll", "python"), f"README command not understood: {command}"
            if argv[0] == "tll":
                argv = [sys.executable, "-m", "torchlens_like.cli"] + argv[1:]
            else:
                argv = [sys.executable] + argv[1:]
            ran.append(command)
            driver.append(f"print({command!r}, flush=True)")
            driver.append(f"subprocess.run({argv!r}, check=True)")
    (tmp_path / "readme_examples.py").write_text("\n".join(driver))
    done = subprocess.run([sys.executable, "readme_examples.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert any(command.startswith("tll demo") for command in ran)
    assert (tmp_path / "pictures" / "alexnet.svg").exists()
    assert (tmp_path / "reports" / "validation.xml").exists()
    assert (tmp_path / "figures" / "rdm_layer3.png").exists()
