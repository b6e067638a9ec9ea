"""Edits: what an intervention does to the value at a site, as data with a readable repr.

``tll.edits`` is this module. Each edit is an object made by one of the
functions below (the registry :data:`EDITS` maps its name to its class);
applied to a site's value it returns the new value, of the same shape, dtype
and device (the engines check, naming the site). Any plain callable
``fn(activation, layer) -> tensor`` is an edit too (as :func:`replace`).

``index=`` restricts an edit to part of the value, as ``value[index]`` reads
it (``index=(slice(None), 5)``: channel or unit 5 of every item;
``index=(slice(None), slice(3, 5))``: token positions 3 and 4 of a
``(batch, tokens, features)`` value); ``mask=`` to the elements where a
boolean tensor broadcast to the value's shape is true. Elsewhere the value
is kept.

Edits that read another run (:func:`mean`, :func:`resample`, :func:`patch`)
take that run as a ``ModelHistory`` of the same model, or as
``{layer label: tensor}``; they read the value of the layer with the same
label as the site's, which must be the same function.

A set of data edits saves to JSON with its tensors in a safetensors file
beside it (:func:`save`, :func:`load`); callables cannot be saved.

Examples
--------
>>> import torch, torchlens_like as tll
>>> tll.edits.zero(index=(slice(None), 1))
zero(index=(:, 1))
>>> tll.edits.zero(index=(slice(None), 1))(torch.ones(2, 3), None)
tensor([[1., 0., 1.],
        [1., 0., 1.]])
>>> tll.edits.steer(torch.tensor([1.0, 0.0, -1.0]), alpha=2.0)(torch.zeros(1, 3), None)
tensor([[ 2.,  0., -2.]])
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ..registry import lookup


class Edit:
    """Base of the edits: ``edit(value, layer) -> new value``.

    A subclass sets ``name`` (its key in :data:`EDITS`), implements
    :meth:`compute` (the edit on the whole value) and :meth:`params` (its
    arguments as data, for the repr, equality and saving).
    """

    name = None
    savable = True

    def __init__(self, index=None, mask=None):
        if index is not None and mask is not None:
            raise ValueError(f"{self.name}(): give index= or mask=, not both.")
        if mask is not None:
            mask = torch.as_tensor(mask)
            if mask.dtype != torch.bool:
                raise TypeError(f"{self.name}(mask=...) must be a boolean tensor, got "
                                f"{mask.dtype}.")
        self.index = index
        self.mask = mask

    def compute(self, value, layer):
        raise NotImplementedError

    def params(self):
        return {}

    def __call__(self, value, layer):
        """The edited value: :meth:`compute`, kept only where ``index`` / ``mask`` say."""
        edited = self.compute(value, layer)
        if self.index is not None:
            if not isinstance(edited, torch.Tensor):
                return edited
            restricted = value.clone()
            restricted[self.index] = edited[self.index].to(restricted.dtype)
            return restricted
        if self.mask is not None and isinstance(edited, torch.Tensor):
            return torch.where(self.mask.to(value.device), edited, value)
        return edited

    def __repr__(self):
        shown = [f"{key}={_show(value)}" for key, value in self.params().items()]
        if self.index is not None:
            shown.append(f"index={_show_index(self.index)}")
        if self.mask is not None:
            shown.append(f"mask={_show(self.mask)}")
        return f"{self.name}({', '.join(shown)})"

    def __eq__(self, other):
        return (type(self) is type(other)
                and _same(self.params(), other.params())
                and _same(self.index, other.index) and _same(self.mask, other.mask))

    __hash__ = object.__hash__


class Zero(Edit):
    name = "zero"

    def compute(self, value, layer):
        return torch.zeros_like(value)


class Scale(Edit):
    name = "scale"

    def __init__(self, k, index=None, mask=None):
        super().__init__(index, mask)
        self.k = _number(k, "scale", "k")

    def compute(self, value, layer):
        return value * self.k

    def params(self):
        return {"k": self.k}


class Clamp(Edit):
    name = "clamp"

    def __init__(self, lo=None, hi=None, index=None, mask=None):
        super().__init__(index, mask)
        if lo is None and hi is None:
            raise ValueError("clamp() needs lo=, hi= or both.")
        self.lo = None if lo is None else _number(lo, "clamp", "lo")
        self.hi = None if hi is None else _number(hi, "clamp", "hi")

    def compute(self, value, layer):
        return value.clamp(self.lo, self.hi)

    def params(self):
        return {"lo": self.lo, "hi": self.hi}


class Steer(Edit):
    name = "steer"

    def __init__(self, vector, alpha=1.0, dim=-1, index=None, mask=None):
        super().__init__(index, mask)
        self.vector = torch.as_tensor(vector).detach()
        self.alpha = _number(alpha, "steer", "alpha")
        if not isinstance(dim, int) or isinstance(dim, bool):
            raise TypeError(f"steer(dim=...) must be an int, got {dim!r}.")
        self.dim = dim

    def compute(self, value, layer):
        vector = self.vector.to(device=value.device, dtype=value.dtype)
        if vector.dim() == 1:
            dim = self.dim % value.dim() if value.dim() else 0
            if value.dim() == 0 or value.shape[dim] != vector.numel():
                raise ValueError(
                    f"steer: the vector has {vector.numel()} elements but the value "
                    f"{tuple(value.shape)} has {value.shape[dim] if value.dim() else 0} along "
                    f"dim={self.dim}.")
            shape = [1] * value.dim()
            shape[dim] = vector.numel()
            vector = vector.view(shape)
        return value + self.alpha * vector

    def params(self):
        return {"vector": self.vector, "alpha": self.alpha, "dim": self.dim}


class Mean(Edit):
    name = "mean"

    def __init__(self, reference, axis=0, index=None, mask=None):
        super().__init__(index, mask)
        self.reference = _check_reference(reference, "mean")
        self.axis = axis

    def compute(self, value, layer):
        reference = reference_value(self.reference, layer, "mean")
        return reference.mean(dim=self.axis, keepdim=True).to(value.device).expand_as(value)

    def params(self):
        return {"reference": self.reference, "axis": self.axis}


class Resample(Edit):
    name = "resample"

    def __init__(self, reference, seed=0, index=None, mask=None):
        super().__init__(index, mask)
        self.reference = _check_reference(reference, "resample")
        self.seed = int(seed)

    def compute(self, value, layer):
        reference = reference_value(self.reference, layer, "resample").to(value.device)
        if reference.dim() == 0 or value.dim() == 0 or reference.shape[1:] != value.shape[1:]:
            raise ValueError(
                f"resample: the reference value {tuple(reference.shape)} and the site's value "
                f"{tuple(value.shape)} must agree beyond the first (item) axis.")
        count = reference.shape[0]
        if count < 2:
            raise ValueError("resample needs a reference with at least 2 items along the first "
                             f"axis, so each item can draw another; it has {count}.")
        generator = torch.Generator().manual_seed(self.seed)
        drawn = []
        for item in range(value.shape[0]):
            if item < count:
                other = int(torch.randint(count - 1, (), generator=generator))
                drawn.append(other + (other >= item))
            else:
                drawn.append(int(torch.randint(count, (), generator=generator)))
        return reference[torch.tensor(drawn, dtype=torch.long, device=reference.device)]

    def params(self):
        return {"reference": self.reference, "seed": self.seed}


class Patch(Edit):
    name = "patch"

    def __init__(self, source, index=None, mask=None):
        super().__init__(index, mask)
        self.source = _check_reference(source, "patch")

    def compute(self, value, layer):
        patched = reference_value(self.source, layer, "patch")
        if patched.shape != value.shape:
            raise ValueError(
                f"patch: the source value of {layer.layer_label} has shape "
                f"{tuple(patched.shape)}, the site's value {tuple(value.shape)}; they must match "
                "(patch between runs on inputs of the same shape).")
        return patched.to(value.device)

    def params(self):
        return {"source": self.source}


class Replace(Edit):
    name = "replace"
    savable = False

    def __init__(self, fn, index=None, mask=None):
        super().__init__(index, mask)
        if not callable(fn):
            raise TypeError(f"replace(fn) takes a callable fn(activation, layer) -> tensor, "
                            f"got {type(fn).__name__}.")
        self.fn = fn

    def compute(self, value, layer):
        return self.fn(value.clone(), layer)

    def params(self):
        return {"fn": self.fn}


EDITS = {cls.name: cls for cls in (Zero, Mean, Resample, Patch, Steer, Scale, Clamp, Replace)}
"""``{name: edit class}``; :func:`load` rebuilds saved edits through it."""


def zero(index=None, mask=None):
    """Set the value to zero (ablation).

    Examples
    --------
    >>> import torch
    >>> zero(mask=torch.tensor([True, False]))(torch.ones(2, 2), None)
    tensor([[0., 1.],
            [0., 1.]])
    """
    return Zero(index, mask)


def mean(reference, axis=0, index=None, mask=None):
    """Replace the value by the site's mean over ``axis`` in a reference run (mean ablation).

    ``reference`` is a ``ModelHistory`` of the same model (its value at the
    site's layer label is averaged) or ``{label: tensor}``.

    Examples
    --------
    >>> import torch
    >>> from torchlens_like.records import LayerEntry
    >>> layer = LayerEntry("op", "relu"); layer.layer_label = "relu_1_2"
    >>> mean({"relu_1_2": torch.tensor([[1.0, 2.0], [3.0, 4.0]])})(torch.zeros(1, 2), layer)
    tensor([[2., 3.]])
    """
    return Mean(reference, axis, index, mask)


def resample(reference, seed=0, index=None, mask=None):
    """Replace each item by the site's value for a randomly drawn other item of a reference run.

    Items lie along the first axis. Item ``i`` draws from the reference's
    items other than ``i`` (so with the same batch as reference, no item
    keeps its own value); ``seed`` fixes the draws.

    Examples
    --------
    >>> import torch
    >>> from torchlens_like.records import LayerEntry
    >>> layer = LayerEntry("op", "relu"); layer.layer_label = "relu_1_2"
    >>> values = torch.tensor([[0.0], [1.0]])
    >>> resample({"relu_1_2": values}, seed=3)(values, layer)
    tensor([[1.],
            [0.]])
    """
    return Resample(reference, seed, index, mask)


def patch(source, index=None, mask=None):
    """Replace the value by the same site's value in a run on another input (activation patching).

    Examples
    --------
    >>> import torch
    >>> from torchlens_like.records import LayerEntry
    >>> layer = LayerEntry("op", "relu"); layer.layer_label = "relu_1_2"
    >>> patch({"relu_1_2": torch.ones(1, 3)}, index=(slice(None), 0))(torch.zeros(1, 3), layer)
    tensor([[1., 0., 0.]])
    """
    return Patch(source, index, mask)


def steer(vector, alpha=1.0, dim=-1, index=None, mask=None):
    """Add ``alpha * vector`` along ``dim`` (a steering vector; broadcast over the other axes).

    Examples
    --------
    >>> import torch
    >>> steer([1.0, 2.0], alpha=0.5, dim=1)(torch.zeros(1, 2, 2), None)
    tensor([[[0.5000, 0.5000],
             [1.0000, 1.0000]]])
    """
    return Steer(vector, alpha, dim, index, mask)


def scale(k, index=None, mask=None):
    """Multiply the value by ``k``.

    Examples
    --------
    >>> import torch
    >>> scale(3)(torch.ones(2), None)
    tensor([3., 3.])
    """
    return Scale(k, index, mask)


def clamp(lo=None, hi=None, index=None, mask=None):
    """Clamp the value into ``[lo, hi]`` (either bound may be None).

    Examples
    --------
    >>> import torch
    >>> clamp(hi=0.5)(torch.tensor([0.0, 1.0]), None)
    tensor([0.0000, 0.5000])
    """
    return Clamp(lo, hi, index, mask)


def replace(fn, index=None, mask=None):
    """Replace the value by ``fn(activation, layer)`` (an autoencoder's reconstruction, a lesion).

    ``activation`` is a copy of the value (``fn`` may write into it);
    ``layer`` is the site's :class:`~torchlens_like.LayerEntry` in the clean
    graph. Callables cannot be saved with :func:`save`.

    Examples
    --------
    >>> import torch
    >>> replace(lambda a, layer: a.flip(-1))(torch.tensor([1.0, 2.0]), None)
    tensor([2., 1.])
    """
    return Replace(fn, index, mask)


def as_edit(edit, site="?"):
    """``edit`` as an :class:`Edit`: an edit as is, a plain callable as :func:`replace`.

    Examples
    --------
    >>> as_edit(zero()), as_edit(lambda a, layer: a).name
    (zero(), 'replace')
    >>> as_edit("zero", "layer1")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    TypeError: The edit for site 'layer1' is the str 'zero'; ...
    """
    if isinstance(edit, Edit):
        return edit
    if callable(edit) and not isinstance(edit, type):
        return Replace(edit)
    raise TypeError(
        f"The edit for site '{site}' is the {type(edit).__name__} {edit!r}; give an edit of "
        f"tll.edits ({', '.join(f'{name}()' for name in EDITS)}) or a callable "
        "fn(activation, layer) -> tensor, e.g. {'layer1': tll.edits.zero()}.")


def edit_class(name):
    """The class of the edit called ``name`` (a ``ValueError`` listing the edits otherwise).

    Examples
    --------
    >>> edit_class("zero").__name__
    'Zero'
    """
    return lookup(EDITS, name, "edit")


def reference_value(reference, layer, edit):
    """The value of ``layer``'s label in a reference run (a history or ``{label: tensor}``)."""
    label = layer.layer_label
    if isinstance(reference, Mapping):
        if label not in reference:
            raise KeyError(f"{edit}: the reference values hold no layer {label!r} (they hold "
                           f"{', '.join(list(reference)[:8])}).")
        return reference[label]
    if label not in reference:
        raise KeyError(f"{edit}: the reference history of {reference.model_name} has no layer "
                       f"{label!r}: it must be a run of the same model, whose graph matches.")
    entry = reference[label]
    if entry.func_name != layer.func_name:
        raise ValueError(
            f"{edit}: layer {label} is {layer.func_name} here but {entry.func_name} in the "
            "reference run: the two runs took different paths through the model.")
    if not entry.has_saved_activation:
        raise ValueError(f"{edit}: the reference history did not save {label}; log it with "
                         f"layers_to_save='all' or including {label!r}.")
    return entry.tensor_contents


def _check_reference(reference, edit):
    if isinstance(reference, Mapping):
        if not all(isinstance(v, torch.Tensor) for v in reference.values()):
            raise TypeError(f"{edit}(...): reference values must be tensors, keyed by label.")
        return reference
    if hasattr(reference, "layers") and hasattr(reference, "model_name"):
        return reference
    raise TypeError(f"{edit}(...) takes a ModelHistory of the same model or "
                    f"{{layer label: tensor}}, got {type(reference).__name__}.")


def _number(value, edit, argument):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{edit}({argument}=...) must be a finite number, got {value!r}.")
    return value


def _show(value):
    if isinstance(value, torch.Tensor):
        return f"tensor(shape={tuple(value.shape)}, dtype={str(value.dtype)[6:]})"
    if isinstance(value, Mapping):
        return f"<values of {len(value)} layers>"
    if hasattr(value, "model_name") and hasattr(value, "layers"):
        return f"<history of {value.model_name}>"
    if callable(value):
        return getattr(value, "__qualname__", None) or repr(value)
    return repr(value)


def _show_index(index):
    if isinstance(index, tuple):
        return "(" + ", ".join(_show_index(i) for i in index) + ("," if len(index) == 1 else "") \
            + ")"
    if isinstance(index, slice):
        parts = ["" if part is None else str(part) for part in (index.start, index.stop)]
        return ":".join(parts) + ("" if index.step is None else f":{index.step}")
    if index is Ellipsis:
        return "..."
    return _show(index)


def _same(a, b):
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.shape == b.shape and a.dtype == b.dtype and torch.equal(a.cpu(), b.cpu()))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return a is b or a == b


from .storage import load, save  # noqa: E402  (storage reads the registry above)

__all__ = ["EDITS", "Edit", "as_edit", "clamp", "edit_class", "load", "mean", "patch",
           "replace", "resample", "save", "scale", "steer", "zero"]
