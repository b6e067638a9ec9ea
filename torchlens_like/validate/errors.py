"""The validation error and the words it uses to say where and what failed."""

from __future__ import annotations

FAILURE_KINDS = {
    "replay differs": "re-running the layer's function on its parents' saved values does not "
                      "reproduce its saved value",
    "parent insensitive": "the layer's output does not change when a parent is replaced by "
                          "random values, and no rule explains why",
    "replay failed": "re-running the layer's function raised an error or wrote into an input",
    "output differs": "the logged model outputs differ from a plain forward's",
}
"""``{kind: meaning}`` of :attr:`ValidationError.kind`. "replay differs" and "output
differs" point at a wrong saved value or graph link (a capture error); "parent insensitive"
may also be a case the validator's rules do not know yet."""


class ValidationError(Exception):
    """One layer failed validation; the message starts with the layer and says the kind.

    Attributes
    ----------
    layer : str or None
        Label of the failing layer.
    kind : str or None
        One of :data:`FAILURE_KINDS`.
    """

    def __init__(self, message, node=None, kind=None):
        super().__init__(message)
        self.layer = None if node is None else node.layer_label
        self.kind = kind


def where(node):
    """``"relu_3_9 (relu) in module 'layer1.0'"``: a layer, its function and innermost module.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(torch.nn.Sequential(torch.nn.ReLU()), torch.ones(2))
    >>> where(history["relu_1"])
    "relu_1_2 (relu) in module '0'"
    """
    calls = node.module_calls
    module = f"in module '{calls[-1].address}'" if calls else "outside any submodule"
    return f"{node.layer_label} ({node.func_name}) {module}"


def replay_differs(node, difference, how="re-running it"):
    """The :class:`ValidationError` of a layer its replay does not reproduce.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(torch.nn.Sequential(torch.nn.ReLU()), torch.ones(2))
    >>> replay_differs(history["relu_1"], 0.5).kind
    'replay differs'
    """
    return ValidationError(
        f"{where(node)}: replay differs: {how} on the saved values of its parents "
        f"{node.parent_layers} does not reproduce its saved value (largest difference "
        f"{difference}); the saved value of this layer or of a parent is wrong",
        node, "replay differs")


def parent_insensitive(node, parent, reason):
    """The :class:`ValidationError` of a layer whose output ignores a random parent.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(torch.nn.Sequential(torch.nn.ReLU()), torch.ones(2))
    >>> relu = history["relu_1"]
    >>> parent_insensitive(relu, relu.parent_nodes[0], "no rule allows it").kind
    'parent insensitive'
    """
    return ValidationError(
        f"{where(node)}: parent insensitive: its output does not change (largest difference "
        f"0.0) when its parent {parent.layer_label} is replaced by random values, {reason}",
        node, "parent insensitive")
