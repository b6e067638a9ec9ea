"""The neutral records every capture backend produces and the graph stage consumes.

A capture backend (:mod:`torchlens_like.capture`; one per framework) runs the
model once and returns a :class:`CaptureResult`. Everything in it is plain
data the graph passes, ``ModelHistory``, lookup, rendering and analysis read
without knowing which framework ran: no torch (or TensorFlow) capture state,
dtypes as strings, sizes as ints. The one exception is :attr:`LayerEntry.replay`,
an object only the backend's own replayer (validation) reads.

The records:

:class:`LayerEntry`
    One node per executed op (and per input, buffer and output); the node IR
    the graph passes work on, in the spirit of ``torch.fx.Node``.
:class:`ArgSlot`
    Stands for a tensor inside a recorded call's arguments.
:class:`ModuleCall`
    One call of one module: ``(address, pass_num)``.
:class:`Parameter`
    One parameter of the model: address, shape, bytes.
:class:`CaptureResult`
    The nodes, module calls, module types and parameters of one pass.

This module is a foundation of the package: it imports only
:mod:`torchlens_like.nested` and :mod:`torchlens_like.registry` (and no
framework itself), so a backend and the graph stage can both import it.
"""

from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from .nested import find_leaves
from .registry import reader

KINDS = ("input", "buffer", "op", "output")
_new_str = str.__new__
_NO_ARGUMENTS = MappingProxyType({})
"""The arguments and parents of an op node not connected yet (read-only, shared)."""
SLOT_KINDS = ("layer", "param", "const")


class ActivationNotSavedWarning(UserWarning):
    """``tensor_contents`` was read on a layer whose activation was not saved."""


class NoGradientWarning(UserWarning):
    """A layer has no gradient: ``.grad`` read where none was computed, or a backward left it None."""


class DeferredTensor:
    """A saved activation not in memory yet (e.g. still in a file); ``load()`` returns it.

    A ``LayerEntry`` whose ``tensor_contents`` is set to one calls ``load()``
    on first access and keeps the tensor.
    """

    __slots__ = ()

    def load(self):
        raise NotImplementedError


class ModuleCall(str):
    """One call of one module: its ``address`` and ``pass_num`` (1 for the first call).

    Made once by the backend's module tracking when the call starts. It is
    also the string ``"address:pass_num"`` (``"layer1.0:2"``), the public
    spelling in ``containing_modules`` and ``ModelHistory.module_outputs``, so
    it compares equal to that string; code reads the two fields instead of
    parsing it.

    Examples
    --------
    >>> call = ModuleCall("layer1.0", 2)
    >>> call.address, call.pass_num, call == "layer1.0:2"
    ('layer1.0', 2, True)
    >>> ModuleCall.parse("features.8:1").address
    'features.8'
    """

    def __new__(cls, address, pass_num):
        call = _new_str(cls, f"{address}:{pass_num}")
        call.address = address
        call.pass_num = pass_num
        return call

    def __getnewargs__(self):
        return self.address, self.pass_num

    @classmethod
    def parse(cls, text):
        """The call spelled ``"address:pass_num"`` (returned as is if already a ModuleCall)."""
        if isinstance(text, ModuleCall):
            return text
        address, _, pass_num = str(text).rpartition(":")
        if not pass_num.isdigit():
            raise ValueError(f"A module call is spelled 'address:pass_num' (e.g. 'layer1:2'); "
                             f"got {text!r}.")
        return cls(address, int(pass_num))


class Parameter(NamedTuple):
    """One parameter tensor of the model, as plain data.

    ``address`` is where the model holds it (``features.0.weight``; the first
    address for a tensor shared by several modules), ``shape`` its sizes and
    ``nbytes`` its size in bytes. An immutable named tuple: cheap to make
    (a capture makes one per parameter per pass), compared and hashed by value.

    Examples
    --------
    >>> Parameter("fc.weight", (2, 3), 24).numel
    6
    """

    address: str
    shape: tuple
    nbytes: int

    @property
    def numel(self):
        return math.prod(self.shape)


class ArgSlot:
    """Placeholder for a tensor inside a recorded call's arguments.

    ``kind`` is one of ``"layer"`` (``ref`` is the parent :class:`LayerEntry`),
    ``"param"`` (``ref`` is the :class:`Parameter` record, ``name`` its
    address) or ``"const"`` (a tensor no layer produced; ``name`` describes
    it). The tensor values of parameter and constant slots are not here:
    they are replay information, kept in the node's :attr:`LayerEntry.replay`
    for the backend's replayer.
    One slot stands for one tensor everywhere in a pass, so slots compare by
    identity.
    """

    __slots__ = ("kind", "ref", "name")

    def __init__(self, kind, ref=None, name=None):
        self.kind = kind
        self.ref = ref
        self.name = name

    def __repr__(self):
        shown = self.name if self.name is not None else getattr(self.ref, "layer_label", None)
        return f"<{self.kind}:{shown}>"


def is_slot(value):
    """Whether ``value`` is an :class:`ArgSlot` (the leaf test for walking call arguments)."""
    return type(value) is ArgSlot


def connect(nodes, args=(), kwargs=None):
    """Give the outputs ``nodes`` of one call their arguments, parents and parameters.

    The one place a node's parents come from (with :func:`link`, which
    takes them ready-made): they are derived here from the layer slots of the
    arguments, as ``arg_positions`` (``{parent node:
    position}``, the position an argument index, a keyword, or a tuple path
    into a nested argument; a parent read twice keeps its first position),
    and each parent lists every node as a child. ``params`` are the
    :class:`Parameter` records of the parameter slots. The ``nodes`` share
    the call's argument structure.

    Examples
    --------
    >>> a, b = LayerEntry("input", "input"), LayerEntry("input", "input")
    >>> c = LayerEntry("op", "cat")
    >>> connect([c], ([ArgSlot("layer", a), ArgSlot("layer", b)],), {"dim": 0})
    >>> [(parent is a, position) for parent, position in c.arg_positions.items()]
    [(True, (0, 0)), (False, (0, 1))]
    >>> list(a.child_nodes) == [c]
    True
    """
    kwargs = {} if kwargs is None else kwargs
    positions, params = {}, []
    for position, value in enumerate(args):
        _collect(value, position, positions, params)
    for key, value in kwargs.items():
        _collect(value, key, positions, params)
    link(nodes, args, kwargs, positions, params)


def link(nodes, args, kwargs, positions, params):
    """:func:`connect` with the parents and parameters already derived from the arguments.

    For a backend that walks the arguments once anyway (the torch capture
    resolves them before the call): ``positions`` and ``params`` must be
    what :func:`connect` would derive from ``args`` and ``kwargs``.

    Examples
    --------
    >>> a, c = LayerEntry("input", "input"), LayerEntry("op", "relu")
    >>> slot = ArgSlot("layer", a)
    >>> link([c], (slot,), {}, {a: 0}, [])
    >>> c.parent_nodes == [a], list(a.child_nodes) == [c]
    (True, True)
    """
    params = tuple(params)
    for node in nodes:
        node.args = args
        node.kwargs = kwargs
        node.arg_positions = positions
        node.params = params
        for parent in positions:
            refs = parent._children
            if refs is None:
                parent._children = [weakref.ref(node)]
            else:
                refs.append(weakref.ref(node))


def _collect(value, position, positions, params):
    if type(value) is ArgSlot:
        _collect_slot(value, position, positions, params)
    elif isinstance(value, (tuple, list, dict)):
        for path, slot in find_leaves(value, is_slot, (position,)):
            _collect_slot(slot, path, positions, params)


def _collect_slot(slot, position, positions, params):
    if slot.kind == "layer":
        if slot.ref not in positions:
            positions[slot.ref] = position
    elif slot.kind == "param":
        params.append(slot.ref)


class ChildList:
    """A node's children, held by weak reference.

    Children hold their parents strongly (``parent_nodes`` and the argument
    placeholders), so holding children weakly keeps the graph free of
    reference cycles: a discarded history and every activation it saved are
    freed at once by reference counting, without waiting for Python's cyclic
    collector (which does not count tensor memory). Behaves like a list for
    iteration, ``len``, indexing, truth value and ``append``. A node keeps
    only the list of weak references; ``child_nodes`` hands out a view of it
    (appending through the view appends to the node's list).

    Examples
    --------
    >>> a, b = LayerEntry("input", "input"), LayerEntry("op", "relu")
    >>> children = ChildList([b]); len(children), children[0] is b
    (1, True)
    """

    __slots__ = ("_refs",)

    def __init__(self, nodes=()):
        self._refs = [weakref.ref(node) for node in nodes] if nodes else []

    @classmethod
    def over(cls, refs):
        """The view of a list of weak references (shared, not copied)."""
        children = cls.__new__(cls)
        children._refs = refs
        return children

    def append(self, node):
        self._refs.append(weakref.ref(node))

    def __iter__(self):
        for ref in self._refs:
            node = ref()
            if node is not None:
                yield node

    def __len__(self):
        return sum(1 for _ in self)

    def __bool__(self):
        return any(ref() is not None for ref in self._refs)

    def __getitem__(self, index):
        return list(self)[index]

    def __eq__(self, other):
        return list(self) == list(other)

    def __repr__(self):
        return repr(list(self))


class LayerEntry:
    """One node of the logged graph: the record a backend makes per executed op.

    A small node in the spirit of ``torch.fx.Node``: a handful of plain fields
    set by the capture backend, and a free ``meta`` dict that the graph passes
    write into. Everything else in the public vocabulary is a property
    computed from these.

    ``kind`` is one of:

    ``"input"``
        a tensor passed to the model (no call);
    ``"buffer"``
        a module buffer, the first time an op read it (no call);
    ``"op"``
        one output of one call made during the forward pass;
    ``"output"``
        a tensor the model returned (its single argument is the layer that
        produced it).

    Fields a backend sets: ``kind``; ``func_name``; ``call_index`` (the
    number of the call in the pass, shared by every output of one call; None
    for inputs, buffers and outputs); ``output_path`` (which element of a
    multi-tensor result this is); the call's arguments ``args`` / ``kwargs``
    with tensors replaced by :class:`ArgSlot`, set by :func:`connect`, which
    also derives ``arg_positions`` (``{parent node: position}``, the one
    store of the parents) and keeps ``child_nodes`` in step; ``params``
    (:class:`Parameter` records); ``tensor_contents`` (the backend's array,
    None when not saved); ``tensor_shape`` (tuple of ints, None when the
    tensor has no fixed shape), ``tensor_dtype`` (``"float32"``),
    ``tensor_device`` (``"cpu"``) and ``tensor_fsize`` (bytes, an int);
    ``module_calls`` (:class:`ModuleCall`, outermost first) and
    ``module_passes_output`` (the module calls that returned this tensor);
    ``func_time`` (seconds); ``source`` (input path, buffer address or output
    path); and ``replay``, read only by the backend's replayer (for torch:
    the function, its random generator state and which arguments it writes).

    Fields the graph passes set: the label parts ``layer_type``,
    ``layer_type_num``, ``layer_total_num``, ``pass_num``, ``num_passes`` and
    the labels built from them (``layer_label``: ``conv2d_3_7``, or
    ``conv2d_3_7:2`` for a later pass; ``layer_label_short``: ``conv2d_3`` /
    ``conv2d_3:2``; ``layer_label_no_pass``: ``conv2d_3_7`` for every pass),
    all written by :func:`~torchlens_like.graph.passes.assign_labels`, and
    ``meta``.

    A field a node never sets reads its class-level default (None, ``()``,
    1 for the pass counts; an op node not connected yet has read-only empty
    ``kwargs`` and ``arg_positions``); ``child_nodes`` and
    ``module_passes_output`` are made when first asked for. A capture makes thousands of nodes per pass,
    so a node costs only the fields it sets (a slotted node setting all 28
    took three times as long).

    ``meta`` keys: ``capture_index`` (position in the capture, written when
    the node is made), ``written_later`` (a saved value a later call wrote
    into, so the saved copy was taken; set by the capture to the capture
    index of that call's first node) and, written by the passes, ``has_input_ancestor``,
    ``distance_from_input``, ``distance_from_output``, ``in_cond_branch``,
    ``is_cond_bool``, ``cond_branch_start`` (these three only where true),
    ``op_identity``, ``recurrence_rule`` and ``layer_group`` (the first pass
    of the node's layer, absent on that first pass itself and on layers of
    one pass). A backend may write
    ``to_python``: the names of the calls that turned the node's values into
    Python values (``["item"]``, ``["__bool__"]``), which a branch may have read.
    ``no_grad_reason`` and ``no_param_grad_reason`` (written by
    ``history.backward`` and ``save_gradients``) say why a layer has no
    gradient, or no parameter gradients; ``largest_grad_norm`` (written by
    ``history.backward``) is the largest gradient norm among the layers of
    that backward, the scale a layer card shades its gradient on.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(torch.nn.Sequential(torch.nn.ReLU()), torch.ones(1, 2))
    >>> entry = history["relu_1"]
    >>> entry.layer_label, entry.module_outputs, entry.parent_layers, entry.tensor_dtype
    ('relu_1_2', ['0'], ['input_1_1'], 'float32')
    """

    call_index = None
    args = ()
    output_path = None
    params = ()
    func_time = 0.0
    replay = None
    source = None
    layer_type = None
    layer_type_num = None
    layer_total_num = None
    pass_num = 1
    num_passes = 1
    layer_label = None
    layer_label_short = None
    layer_label_no_pass = None
    kwargs = _NO_ARGUMENTS
    arg_positions = _NO_ARGUMENTS
    _tensor_contents = None
    _grad = None
    _param_grads = None
    _children = None
    _module_passes_output = None

    def __init__(self, kind, func_name, shape=None, dtype=None, device=None, fsize=0,
                 module_calls=()):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.func_name = func_name
        self.tensor_shape = shape
        self.tensor_dtype = dtype
        self.tensor_device = device
        self.tensor_fsize = fsize
        self.module_calls = module_calls
        if kind != "op":
            self.kwargs = {}
            self.arg_positions = {}
        self.meta = {}

    @property
    def parent_nodes(self):
        """The nodes whose outputs this one's call read, in argument order."""
        return list(self.arg_positions)

    @property
    def child_nodes(self):
        """The nodes this one feeds (see :class:`ChildList`)."""
        refs = self._children
        if refs is None:
            refs = self._children = []
        return ChildList.over(refs)

    @child_nodes.setter
    def child_nodes(self, nodes):
        self._children = nodes._refs if isinstance(nodes, ChildList) else \
            [weakref.ref(node) for node in nodes]

    @property
    def module_passes_output(self):
        """The module calls that returned this node's tensor (a list, made when first asked for)."""
        calls = self._module_passes_output
        if calls is None:
            calls = self._module_passes_output = []
        return calls

    @module_passes_output.setter
    def module_passes_output(self, calls):
        self._module_passes_output = calls

    # ---------------------------------------------------------------- output
    @property
    def tensor_contents(self):
        """The saved output tensor; None, with an :class:`ActivationNotSavedWarning`, when not saved.

        May be set to a :class:`DeferredTensor`, loaded on first access.

        Examples
        --------
        >>> import warnings, torch, torchlens_like as tll
        >>> history = tll.log_forward_pass(torch.nn.ReLU(), torch.ones(2), layers_to_save=["relu_1"])
        >>> history["relu_1"].tensor_contents
        tensor([1., 1.])
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     history["input_1"].tensor_contents
        >>> print(caught[0].message)  # doctest: +NORMALIZE_WHITESPACE
        Layer 'input_1_1' was not saved, so its tensor_contents is None. Log the pass again with
        layers_to_save=['input_1_1', ...] (labels, module addresses or positions) or
        layers_to_save='all'.
        """
        value = self._tensor_contents
        if isinstance(value, DeferredTensor):
            value = self._tensor_contents = value.load()
        elif value is None:
            warnings.warn(
                f"Layer {self.layer_label!r} was not saved, so its tensor_contents is None. Log "
                f"the pass again with layers_to_save=[{self.layer_label!r}, ...] (labels, module "
                f"addresses or positions) or layers_to_save='all'.",
                ActivationNotSavedWarning, stacklevel=2)
        return value

    @tensor_contents.setter
    def tensor_contents(self, value):
        self._tensor_contents = value

    @property
    def has_saved_activation(self):
        """Whether the output tensor was saved (reading this never warns)."""
        return self._tensor_contents is not None

    # ------------------------------------------------------------- gradients
    @property
    def grad(self):
        """The gradient of the loss with respect to this layer's activation, after a backward.

        Set by ``history.backward(loss)`` on a pass logged with
        ``save_gradients``; same shape, dtype and device as the activation.
        None, with a :class:`NoGradientWarning` saying why, where there is
        none (the layer was not chosen, no backward ran, it does not reach
        the loss, or its value did not require grad). May be set to a
        :class:`DeferredTensor`, loaded on first access.

        Examples
        --------
        >>> import warnings, torch, torchlens_like as tll
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.ReLU())
        >>> history = tll.log_forward_pass(model, torch.ones(1, 2), save_gradients=["relu_1"])
        >>> history.backward(lambda out: 3 * out.sum())
        >>> history["relu_1"].grad
        tensor([[3.]])
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     history["linear_1"].grad
        >>> print(caught[0].message)  # doctest: +NORMALIZE_WHITESPACE
        Layer 'linear_1_2' has no gradient: it was not among the layers chosen with
        save_gradients. Log the pass with save_gradients=True (every layer) or a list of
        sites naming it, then call history.backward(loss).
        """
        value = self._grad
        if isinstance(value, DeferredTensor):
            value = self._grad = value.load()
        elif value is None:
            self._warn_no_gradient("has no gradient", "no_grad_reason")
        return value

    @grad.setter
    def grad(self, value):
        self._grad = value

    @property
    def has_grad(self):
        """Whether a gradient was computed for this layer (reading this never warns)."""
        return self._grad is not None

    @property
    def has_param_grads(self):
        """Whether per-pass parameter gradients were computed (reading this never warns)."""
        return bool(self._param_grads)

    @property
    def param_grads(self):
        """``{parameter address: gradient}`` of this op's call alone (one pass of a layer).

        The gradients of all passes of a parameter add up to the ``.grad`` a
        plain ``loss.backward()`` leaves on it. ``{}`` for a layer without
        parameters; None, with a :class:`NoGradientWarning` saying why, where
        none was computed. Every output of one call (an op returning several
        tensors) holds the same dict.

        Examples
        --------
        >>> import torch, torchlens_like as tll
        >>> fc = torch.nn.Linear(2, 2)
        >>> history = tll.log_forward_pass(torch.nn.Sequential(fc, fc), torch.ones(1, 2),
        ...                                save_gradients=True)
        >>> history.backward(lambda out: out.sum())
        >>> total = sum(history[f"linear_1_2:{k}"].param_grads["0.weight"] for k in (1, 2))
        >>> fc(fc(torch.ones(1, 2))).sum().backward()
        >>> torch.allclose(total, fc.weight.grad)
        True
        """
        value = self._param_grads
        if value is None:
            if not self.params:
                return {}
            self._warn_no_gradient("has no parameter gradients", "no_param_grad_reason")
            return None
        if any(isinstance(grad, DeferredTensor) for grad in value.values()):
            value = self._param_grads = {
                address: grad.load() if isinstance(grad, DeferredTensor) else grad
                for address, grad in value.items()}
        return dict(value)

    @param_grads.setter
    def param_grads(self, value):
        self._param_grads = value

    def _warn_no_gradient(self, what, key):
        reason = self.meta.get(key) or self.meta.get("no_grad_reason") or (
            "it was not among the layers chosen with save_gradients. Log the pass with "
            "save_gradients=True (every layer) or a list of sites naming it, then call "
            "history.backward(loss)")
        warnings.warn(f"Layer {self.layer_label!r} {what}: {reason}.", NoGradientWarning,
                      stacklevel=3)

    # -------------------------------------------------------------- function
    @property
    def func_args(self):
        """The call's arguments that are not tensors: ``{position or keyword: value}``."""
        return {position: value
                for position, value in list(enumerate(self.args)) + list(self.kwargs.items())
                if not find_leaves(value, is_slot)}

    # ----------------------------------------------------------------- graph
    @property
    def parent_layers(self):
        return [node.layer_label for node in self.arg_positions]

    @property
    def child_layers(self):
        return [node.layer_label for node in self.child_nodes]

    @property
    def parent_arg_positions(self):
        """``{parent_label: position}``; a nested argument's position is a tuple path."""
        return {node.layer_label: position for node, position in self.arg_positions.items()}

    @property
    def distance_from_input(self):
        return self.meta.get("distance_from_input")

    @property
    def distance_from_output(self):
        return self.meta.get("distance_from_output")

    # ---------------------------------------------------------------- params
    @property
    def has_params(self):
        return bool(self.params)

    @property
    def param_names(self):
        return [param.address for param in self.params]

    @property
    def param_shapes(self):
        return [param.shape for param in self.params]

    @property
    def params_fsize(self):
        return sum(param.nbytes for param in self.params)

    # --------------------------------------------------------------- modules
    @property
    def containing_modules(self):
        """The module calls this op ran inside, outermost first (``["layer1:1", "layer1.0:1"]``)."""
        return list(self.module_calls)

    @property
    def module_nesting_depth(self):
        return len(self.module_calls)

    @property
    def module_outputs(self):
        """Addresses of the modules whose output this op's tensor is."""
        return [call.address for call in self.module_passes_output]

    # ----------------------------------------------------------------- flags
    @property
    def is_input(self):
        return self.kind == "input"

    @property
    def is_output(self):
        return self.kind == "output"

    @property
    def is_buffer(self):
        return self.kind == "buffer"

    @property
    def is_internally_generated(self):
        return self.kind == "op" and not self.meta.get("has_input_ancestor", True)

    @property
    def in_cond_branch(self):
        return self.meta.get("in_cond_branch", False)

    @property
    def is_cond_bool(self):
        return self.meta.get("is_cond_bool", False)

    @property
    def cond_branch_start(self):
        return self.meta.get("cond_branch_start", False)

    @property
    def is_recurrent(self):
        return self.num_passes > 1

    # ------------------------------------------------------------------ misc
    def _repr_html_(self):
        """Notebook display: a card with the metadata and a histogram of the activation."""
        return reader("layer_html")(self)

    def __repr__(self):
        saved = "saved" if self.has_saved_activation else "not saved"
        return f"<LayerEntry {self.layer_label}: {self.func_name} -> {self.tensor_shape} ({saved})>"


@dataclass
class CaptureResult:
    """What a capture backend returns for one forward pass: neutral records only.

    Attributes
    ----------
    nodes : list of LayerEntry
        Every node in execution order (a topological order), connected by
        :func:`connect`, with ``meta["capture_index"]`` its position here.
    module_outputs : dict
        ``{ModuleCall: [nodes that call returned, in its output's order]}``
        for every module call; each of those nodes also lists the call in its
        ``module_passes_output``.
    module_types : dict
        ``{module address: class name}`` for every submodule.
    parameters : list of Parameter
        Every distinct parameter of the model.
    model_name : str
    backend : str
        The backend's name in :data:`torchlens_like.capture.BACKENDS`; the
        matching replayer validates the history.
    call_trace : object, optional
        Backend information like :attr:`LayerEntry.replay`: the calls of the
        pass in order, read only by the backend's lean pass (torch:
        :class:`torchlens_like.capture.calltrace.CallTrace`).
    gradients : object, optional
        Backend information for a pass logged with ``save_gradients``: what
        keeps the autograd graph until a backward (torch:
        :class:`torchlens_like.capture.gradients.GradientRecorder`); None otherwise.
    """

    nodes: list
    model_name: str
    backend: str
    module_outputs: dict = field(default_factory=dict)
    module_types: dict = field(default_factory=dict)
    parameters: list = field(default_factory=list)
    call_trace: object = None
    gradients: object = None
