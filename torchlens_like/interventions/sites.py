"""Sites: where an intervention acts, named as ``history[...]`` names layers, or selected.

A site is a layer label (``conv2d_3_7``, ``conv2d_3``, ``linear_1_3:2``),
a module address (``layer1.0.conv1``, ``block:2`` for one call), an integer
position, or a :class:`Selector` from :func:`select` matching several ops.
As a site, and only there, a label or address of a layer or module that ran
several times, written without ``:pass``, means every pass (``history[...]``
refuses such a key as ambiguous).

Every site is resolved against a logged graph (:func:`resolve_site`) before
anything runs. A key that names nothing raises a ``KeyError`` naming the
closest keys. Layer labels win over module addresses, as in ``history[...]``.

Module sites keep their calls: a module site edits what each call returned
(every tensor of a tuple or dict output), as a forward hook returning a new
output would.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from ..graph import LayerLookupError


@dataclass(frozen=True)
class Selector:
    """Matches every op whose function is ``func`` and that ran inside module ``within``.

    Made by :func:`select`; hashable, so it can key a dict of edits.

    Examples
    --------
    >>> select(func="relu", within="layer2")
    select(func='relu', within='layer2')
    """

    func: tuple = None
    within: str = None

    def __repr__(self):
        parts = []
        if self.func is not None:
            func = self.func[0] if len(self.func) == 1 else list(self.func)
            parts.append(f"func={func!r}")
        if self.within is not None:
            parts.append(f"within={self.within!r}")
        return f"select({', '.join(parts)})"

    def to_dict(self):
        """The selector as plain data (for saving a set of edits).

        Examples
        --------
        >>> select(func=["relu", "gelu"]).to_dict()
        {'func': ['relu', 'gelu'], 'within': None}
        """
        return {"func": None if self.func is None else list(self.func), "within": self.within}

    def matches(self, layer):
        """Whether the op ``layer`` is selected."""
        if layer.kind != "op":
            return False
        if self.func is not None and layer.func_name not in self.func \
                and layer.layer_type not in self.func:
            return False
        if self.within is not None:
            return any(call == self.within or call.address == self.within
                       for call in layer.module_calls)
        return True

    def resolve(self, history):
        """The matching layers of ``history``, in execution order; ``KeyError`` if none."""
        layers = [layer for layer in history.layers if self.matches(layer)]
        if layers:
            return layers
        hints = []
        if self.func is not None:
            names = sorted({name for layer in history.layers if layer.kind == "op"
                            for name in (layer.func_name, layer.layer_type)})
            close = sorted({c for f in self.func for c in difflib.get_close_matches(f, names, 3)})
            hints.append(f"functions that ran: {', '.join(close or names[:12])}")
        if self.within is not None:
            modules = sorted({call.address for call in history.module_outputs})
            close = difflib.get_close_matches(self.within, modules, 5, 0.5)
            hints.append(f"modules: {', '.join(close or modules[:12])}")
        raise LayerLookupError(f"{self!r} matches no op of {history.model_name}; "
                               + "; ".join(hints) + ".")


def select(func=None, within=None):
    """A selector: every op calling ``func`` (and) inside module ``within``.

    Parameters
    ----------
    func : str or list of str, optional
        Function names (``"relu"``, ``"conv2d"``) or layer types (``"add"``
        for ``x + y``); an op matches one of them.
    within : str, optional
        A module address (every call, every nesting depth inside it) or one
        call (``"layer2:1"``).

    Returns
    -------
    Selector

    Examples
    --------
    >>> import torch, torchvision, torchlens_like as tll
    >>> history = tll.get_model_metadata(torchvision.models.resnet18(), torch.rand(1, 3, 64, 64))
    >>> [layer.layer_label for layer in tll.select(func="relu", within="layer2.1").resolve(history)]
    ['relu_8_49', 'relu_9_55']
    """
    if func is None and within is None:
        raise ValueError("select() needs func=, within= or both, e.g. "
                         "tll.select(func='relu', within='layer2').")
    if func is not None:
        func = (func,) if isinstance(func, str) else func
        if not isinstance(func, (list, tuple)) or not func or not all(
                isinstance(f, str) for f in func):
            raise TypeError(f"select(func=...) takes a function name or a list of them, "
                            f"got {func!r}.")
        func = tuple(func)
    if within is not None and not isinstance(within, str):
        raise TypeError(f"select(within=...) takes a module address, got {within!r}.")
    return Selector(func, within)


@dataclass(frozen=True)
class Site:
    """One resolved site.

    Attributes
    ----------
    key : str, int or Selector
        What the caller wrote.
    kind : {"layer", "module"}
    layers : tuple of LayerEntry
        The layers the edit replaces, in execution order: the matched layers,
        or every tensor each module call returned.
    calls : tuple of ModuleCall
        For a module site, the calls it covers (``()`` for a layer site).
    """

    key: object
    kind: str
    layers: tuple
    calls: tuple = ()

    @property
    def name(self):
        """The site as written (``"layer1"``, ``"select(func='relu')"``)."""
        return repr(self.key) if isinstance(self.key, Selector) else str(self.key)

    def call_outputs(self, history):
        """``{ModuleCall: [layers it returned]}`` of a module site."""
        return {call: [history[label] for label in history.module_outputs[call]]
                for call in self.calls}


def resolve_site(history, key):
    """The :class:`Site` that ``key`` names in ``history``.

    Raises
    ------
    KeyError
        When it names nothing (the message lists the closest keys).

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> fc = torch.nn.Linear(2, 2)
    >>> history = tll.get_model_metadata(torch.nn.Sequential(fc, torch.nn.ReLU(), fc), torch.ones(1, 2))
    >>> site = resolve_site(history, "0")
    >>> site.kind, [str(call) for call in site.calls], [l.layer_label for l in site.layers]
    ('module', ['0:1', '0:2'], ['linear_1_2:1', 'linear_1_2:2'])
    >>> [l.layer_label for l in resolve_site(history, "linear_1_2:2").layers]
    ['linear_1_2:2']
    >>> resolve_site(history, "relu_2")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    LayerLookupError: No layer 'relu_2'. Did you mean: relu_1, ...
    """
    if isinstance(key, Selector):
        return Site(key, "layer", tuple(key.resolve(history)))
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise TypeError(f"A site is a layer label, a module address, an integer position or "
                        f"tll.select(...); got {type(key).__name__} {key!r}.")
    if isinstance(key, int):
        return Site(key, "layer", (history[key],))
    layers = _layers_named(history, key)
    if layers:
        return Site(key, "layer", tuple(layers))
    calls = tuple(call for call in history.module_outputs
                  if (call == key or call.address == key) and history.module_outputs[call])
    if calls:
        outputs = {}
        for call in calls:
            for label in history.module_outputs[call]:
                outputs.setdefault(label, history[label])
        return Site(key, "module", tuple(sorted(outputs.values(), key=_position(history))), calls)
    history[key]
    raise LayerLookupError(f"'{key}' names no layer or module call with a tensor output.")


def _layers_named(history, key):
    return [layer for layer in history.layers
            if key in (layer.layer_label, layer.layer_label_short, layer.layer_label_no_pass,
                       f"{layer.layer_type}_{layer.layer_type_num}")]


def _position(history):
    order = {id(layer): i for i, layer in enumerate(history.layers)}
    return lambda layer: order[id(layer)]
