"""Activation validation for a user's own test suite and CI.

``assert_activations_valid(model, x)`` in a pytest test, or ``tll validate``
on the command line: both log one forward pass with every activation saved,
replay every layer on its parents' saved values (see
:mod:`torchlens_like.validate`), and report the first layer that fails and
why. :func:`write_junit_xml` writes the reports in the JUnit XML format that
CI systems (GitHub Actions, GitLab, Jenkins) display.

Reads a model (through :mod:`torchlens_like.api`) and the validator's
verdict (:mod:`torchlens_like.validate`); produces reports. Nothing in the
package but the command line imports it, and it never imports capture or
the graph stage's internals.
"""

from __future__ import annotations

import os
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of validating one model's saved activations.

    Attributes
    ----------
    name : str
        What was validated (the model's class name, or the name it was given).
    num_layers : int
        Layers logged (0 when the pass failed before any were).
    failure : str or None
        Why validation failed (the layer, its function and what differed), or None.
    seconds : float
    """

    name: str
    num_layers: int
    failure: str | None
    seconds: float

    @property
    def passed(self):
        return self.failure is None

    def __str__(self):
        if self.passed:
            return f"{self.name}: all {self.num_layers} saved activations validated."
        return f"{self.name}: validation failed: {self.failure}"


def check_activations(model, input_args=None, input_kwargs=None, random_seed=None, name=None):
    """Validate every saved activation of one forward pass; return a :class:`ValidationReport`.

    Parameters
    ----------
    model, input_args, input_kwargs, random_seed
        As for :func:`~torchlens_like.log_forward_pass`.
    name : str, optional
        Name in the report; defaults to the model's class name.

    Examples
    --------
    >>> import torch
    >>> report = check_activations(torch.nn.Linear(3, 2), torch.rand(1, 3))
    >>> report.passed, str(report)
    (True, 'Linear: all 3 saved activations validated.')
    """
    from .api import check_saved_activations
    from .validate import ValidationError

    name = name or getattr(model, "__name__", type(model).__name__)
    start = time.perf_counter()
    try:
        history = check_saved_activations(model, input_args, input_kwargs, random_seed)
    except ValidationError as exc:
        return ValidationReport(name, 0, str(exc), time.perf_counter() - start)
    return ValidationReport(name, history.num_layers, None, time.perf_counter() - start)


def assert_activations_valid(model, input_args=None, input_kwargs=None, random_seed=None):
    """Raise an AssertionError carrying the report unless every saved activation validates.

    For a user's own test suite: ``def test_model(): assert_activations_valid(model, x)``.

    Returns
    -------
    ValidationReport
        When validation passed.

    Examples
    --------
    >>> import torch
    >>> assert_activations_valid(torch.nn.ReLU(), torch.randn(4)).passed
    True
    """
    report = check_activations(model, input_args, input_kwargs, random_seed)
    if not report.passed:
        raise AssertionError(str(report))
    return report


def junit_xml(reports):
    """The reports as a JUnit XML document (one test case per report).

    Examples
    --------
    >>> text = junit_xml([ValidationReport("Net", 0, "relu_1_2 differs", 0.5)])
    >>> text.startswith('<testsuite name="torchlens_like.validate" tests="1" failures="1"')
    True
    >>> text.endswith('<failure message="relu_1_2 differs">relu_1_2 differs</failure></testcase>'
    ...               '</testsuite>')
    True
    """
    suite = ET.Element("testsuite", name="torchlens_like.validate", tests=str(len(reports)),
                       failures=str(sum(not report.passed for report in reports)), errors="0",
                       time=f"{sum(report.seconds for report in reports):.3f}")
    for report in reports:
        case = ET.SubElement(suite, "testcase", classname="torchlens_like.validate",
                             name=report.name, time=f"{report.seconds:.3f}")
        if report.passed:
            ET.SubElement(case, "system-out").text = str(report)
        else:
            failure = ET.SubElement(case, "failure", message=report.failure.splitlines()[0])
            failure.text = report.failure
    return ET.tostring(suite, encoding="unicode")


def write_junit_xml(reports, path):
    """Write :func:`junit_xml` to ``path`` (through a temporary file); return the path.

    Examples
    --------
    >>> import os, tempfile, xml.etree.ElementTree as ET
    >>> path = os.path.join(tempfile.mkdtemp(), "report.xml")
    >>> ET.parse(write_junit_xml([ValidationReport("Net", 3, None, 0.1)], path)).getroot().get("failures")
    '0'
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write('<?xml version="1.0" encoding="utf-8"?>\n' + junit_xml(reports) + "\n")
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path
