"""Resolving the many names of a layer to the layer."""

from __future__ import annotations

import difflib


class LayerLookupError(KeyError):
    """A layer key that names no layer, or more than one; the message says what to use."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class LayerIndex:
    """Maps every valid key of a layer to it.

    Keys: full label (``conv2d_3_7``, ``conv2d_3_7:2``), short label
    (``conv2d_3``, ``conv2d_3:2``), module address (``features.8``) and module
    pass (``block:2``). A key naming several passes (a recurrent layer without
    ``:pass``, a module called more than once) is ambiguous and raises with the
    keys to use instead.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(torch.nn.Sequential(torch.nn.ReLU()), torch.ones(2))
    >>> history["relu_1"] is history["relu_1_2"] is history["0"]
    True
    """

    def __init__(self, layers, module_outputs):
        self._exact = {}
        self._passes = {}
        for layer in layers:
            self._exact[layer.layer_label] = layer
            self._exact[layer.layer_label_short] = layer
            if layer.num_passes > 1:
                for key in (layer.layer_label_no_pass,
                            f"{layer.layer_type}_{layer.layer_type_num}"):
                    self._passes.setdefault(key, []).append(layer.layer_label)
        for module_pass, labels in module_outputs.items():
            if labels:
                self._exact.setdefault(module_pass, self._exact[labels[0]])
                self._passes.setdefault(module_pass.address, []).append(module_pass)
        for address, passes in list(self._passes.items()):
            if len(passes) == 1 and address not in self._exact:
                self._exact[address] = self._exact[passes[0]]
                del self._passes[address]

    def __contains__(self, key):
        return key in self._exact

    def get(self, key):
        layer = self._exact.get(key)
        if layer is not None:
            return layer
        if key in self._passes:
            options = self._passes[key]
            raise LayerLookupError(
                f"'{key}' ran {len(options)} times; name one pass: {', '.join(options[:10])}"
                + (" ..." if len(options) > 10 else ""))
        close = difflib.get_close_matches(str(key), list(self._exact) + list(self._passes), n=5,
                                          cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise LayerLookupError(
            f"No layer '{key}'.{hint} Keys are layer labels (conv2d_3_7 or conv2d_3), module "
            "addresses (features.8, block:2) or integer positions; history.layer_labels lists "
            "them all.")
