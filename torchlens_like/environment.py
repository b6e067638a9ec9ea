"""Whether the installed torch and torchvision fit together, read from package metadata only.

A torchvision built for another torch release, or for CUDA next to a CPU-only
torch, fails on import with ``RuntimeError: operator torchvision::nms does not
exist``, which says nothing about the cause. :func:`torch_pair_problem` reads
the two packages' installed versions (``importlib.metadata``, no import of
torch, so the command line's ``--help`` stays fast) and says in one line what
is wrong and which pair to install.

Design decisions
----------------
* Two rules, both certain: torchvision ``0.(m + 15)`` is built for torch
  ``2.m`` (0.16 for 2.1 ... 0.29 for 2.14), and a CPU-only torch (``+cpu``)
  cannot load a torchvision built for a GPU (``+cu126``, ``+rocm6.2`` or a
  plain PyPI wheel, which on Linux is a CUDA build). Anything these rules
  cannot decide is accepted.
* The pair the project is tested with is named in the message and in the
  README: :data:`TESTED_PAIR`.
"""

from __future__ import annotations

import re

TESTED_PAIR = {"torch": "2.14.1", "torchvision": "0.29.1"}
"""The torch / torchvision versions the test suite runs on (``.ci/run`` installs them)."""

INSTALL_TESTED_PAIR = (f"pip install torch=={TESTED_PAIR['torch']} "
                       f"torchvision=={TESTED_PAIR['torchvision']}")
"""The command that installs exactly :data:`TESTED_PAIR` (add ``--index-url
https://download.pytorch.org/whl/cpu`` for the CPU-only builds)."""

_RELEASE = re.compile(r"^(\d+)\.(\d+)")


def installed_version(package):
    """The installed version of ``package`` from its metadata, or None when not installed.

    Examples
    --------
    >>> installed_version("torch") is not None, installed_version("no-such-package-here")
    (True, None)
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def torch_pair_problem(torch_version=None, torchvision_version=None):
    """A one-line description of what is wrong with the torch / torchvision pair, or None.

    Parameters
    ----------
    torch_version, torchvision_version : str, optional
        Versions to judge (``"2.13.0+cpu"``); default: the installed ones.

    Examples
    --------
    >>> torch_pair_problem("2.14.1", "0.29.1") is None
    True
    >>> print(torch_pair_problem("2.13.0+cpu", "0.28.0+cu126"))  # doctest: +ELLIPSIS
    torch 2.13.0+cpu is a CPU-only build but torchvision 0.28.0+cu126 is built for a GPU ...
    >>> print(torch_pair_problem("2.13.0", "0.29.1"))  # doctest: +ELLIPSIS
    torchvision 0.29.1 is built for torch 2.14, not torch 2.13.0; install the tested pair: ...
    """
    torch_version = torch_version or installed_version("torch")
    torchvision_version = torchvision_version or installed_version("torchvision")
    fix = (f"install the tested pair: {INSTALL_TESTED_PAIR} (with --index-url "
           "https://download.pytorch.org/whl/cpu on a machine without a GPU)")
    missing = [name for name, found in (("torch", torch_version),
                                         ("torchvision", torchvision_version)) if found is None]
    if missing:
        return f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed; {fix}"
    torch_release, vision_release = _RELEASE.match(torch_version), _RELEASE.match(torchvision_version)
    if torch_release and vision_release and torch_release.group(1) == "2" \
            and vision_release.group(1) == "0":
        expected_minor = int(vision_release.group(2)) - 15
        if expected_minor != int(torch_release.group(2)):
            return (f"torchvision {torchvision_version} is built for torch 2.{expected_minor}, "
                    f"not torch {torch_version}; {fix}")
    torch_build, vision_build = _build(torch_version), _build(torchvision_version)
    if torch_build == "cpu" and vision_build != "cpu":
        return (f"torch {torch_version} is a CPU-only build but torchvision {torchvision_version} "
                f"is built for a GPU (it needs torch's CUDA libraries); {fix}")
    return None


def _build(version):
    return version.partition("+")[2] or None
