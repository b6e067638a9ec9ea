"""``LayerEntry``: one executed op (or one pass of a recurrent layer)."""

from __future__ import annotations

import math
import warnings
import weakref

from .readers import reader

KINDS = ("input", "buffer", "op", "output")


class ActivationNotSavedWarning(UserWarning):
    """``tensor_contents`` was read on a layer whose activation was not saved."""


class DeferredTensor:
    """A saved activation not in memory yet (e.g. still in a file); ``load()`` returns it.

    A ``LayerEntry`` whose ``tensor_contents`` is set to one calls ``load()``
    on first access and keeps the tensor.
    """

    __slots__ = ()

    def load(self):
        raise NotImplementedError


class ArgSlot:
    """Placeholder for a tensor inside a recorded call's arguments.

    ``kind`` is one of ``"layer"`` (``ref`` is the parent ``LayerEntry``),
    ``"param"`` (``ref`` is the parameter tensor and ``name`` its address) or
    ``"const"`` (``ref`` is a tensor no layer produced, kept by reference).
    """

    __slots__ = ("kind", "ref", "name")

    def __init__(self, kind, ref, name=None):
        self.kind = kind
        self.ref = ref
        self.name = name

    def __repr__(self):
        shown = self.name if self.name is not None else getattr(self.ref, "layer_label", self.ref)
        if self.kind == "const":
            shown = f"tensor{tuple(self.ref.shape)}"
        return f"<{self.kind}:{shown}>"


def tensor_nbytes(shape, dtype):
    """Bytes of a dense tensor of this shape and dtype.

    Examples
    --------
    >>> import torch
    >>> tensor_nbytes((2, 3), torch.float32)
    24
    """
    if shape is None or dtype is None:
        return 0
    return math.prod(shape) * dtype.itemsize


class ChildList:
    """A node's children, held by weak reference.

    Children hold their parents strongly (``parent_nodes`` and the argument
    placeholders), so holding children weakly keeps the graph free of
    reference cycles: a discarded history and every activation it saved are
    freed at once by reference counting, without waiting for Python's cyclic
    collector (which does not count tensor memory). Behaves like a list for
    iteration, ``len``, indexing, truth value and ``append``.

    Examples
    --------
    >>> a, b = LayerEntry("input", "input"), LayerEntry("op", "relu")
    >>> children = ChildList([b]); len(children), children[0] is b
    (1, True)
    """

    __slots__ = ("_refs",)

    def __init__(self, nodes=()):
        self._refs = [weakref.ref(node) for node in nodes] if nodes else []

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
    """One node of the logged graph.

    A small node in the spirit of ``torch.fx.Node``: a handful of plain fields
    set when the graph is built, and a free ``meta`` dict that the graph
    passes write into. Everything else in the public vocabulary is a property
    computed from these.

    ``kind`` is one of:

    ``"input"``
        a tensor passed to the model (``func`` is None);
    ``"buffer"``
        a module buffer, the first time an op read it (``func`` is None);
    ``"op"``
        one output of one torch call made during the forward pass;
    ``"output"``
        a tensor the model returned (its single parent produced it).

    Plain fields: ``kind``, ``func`` and ``args`` / ``kwargs`` (the call, with
    tensors replaced by :class:`ArgSlot`
    placeholders whose ``ref`` is the parent node), ``output_path`` (which
    element of a multi-tensor result this is), ``parent_nodes`` /
    ``child_nodes``, ``tensor_contents`` (None when not saved),
    ``tensor_shape`` / ``tensor_dtype`` / ``tensor_device``, ``params``
    (``(address, tensor)`` pairs), ``containing_modules`` (``"address:pass"``,
    outermost first), ``module_passes_output``, ``func_time``, ``rng_state``
    (the generator state before a call that drew random numbers),
    ``autocast_state`` (``((device_type, dtype), ...)`` autocast was on for
    during the call),
    ``source`` (input path, buffer address or output path), the label parts
    ``layer_type``, ``layer_type_num``, ``layer_total_num``, ``pass_num``,
    ``num_passes``, the labels built from them (``layer_label``:
    ``conv2d_3_7``, or ``conv2d_3_7:2`` for a later pass; ``layer_label_short``:
    ``conv2d_3`` / ``conv2d_3:2``; ``layer_label_no_pass``: ``conv2d_3_7`` for
    every pass), all written by
    :func:`~torchlens_like.graph.passes.assign_labels`, and ``meta``.
    ``saved_version`` and ``aliased`` are the capture's copy-on-write
    bookkeeping while the pass runs.

    ``meta`` keys: ``capture_index`` (position in the capture, written when
    the node is made) and, written by the passes, ``has_input_ancestor``,
    ``distance_from_input``, ``distance_from_output``, ``in_cond_branch``,
    ``is_cond_bool``, ``cond_branch_start``, ``op_identity``,
    ``recurrence_rule`` and ``layer_group`` (the first pass of the node's
    layer, absent on that first pass itself).

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(torch.nn.Sequential(torch.nn.ReLU()), torch.ones(1, 2))
    >>> entry = history["relu_1"]
    >>> entry.layer_label, entry.module_outputs, entry.parent_layers
    ('relu_1_2', ['0'], ['input_1_1'])
    """

    __slots__ = (
        "kind", "func", "func_name", "args", "kwargs", "output_path", "parent_nodes",
        "_children", "arg_positions", "_tensor_contents", "tensor_shape", "tensor_dtype",
        "tensor_device", "params", "containing_modules", "module_passes_output", "func_time",
        "rng_state", "autocast_state", "source", "layer_type", "layer_type_num", "layer_total_num", "pass_num",
        "num_passes", "layer_label", "layer_label_short", "layer_label_no_pass", "meta",
        "saved_version", "aliased", "__weakref__",
    )

    def __init__(self, kind, func_name, shape=None, dtype=None, device=None,
                 containing_modules=()):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.func = None
        self.func_name = func_name
        self.args = ()
        self.kwargs = {}
        self.output_path = None
        self.parent_nodes = []
        self._children = ChildList()
        self.arg_positions = {}
        self._tensor_contents = None
        self.tensor_shape = shape
        self.tensor_dtype = dtype
        self.tensor_device = device
        self.params = ()
        self.containing_modules = containing_modules
        self.module_passes_output = []
        self.func_time = 0.0
        self.rng_state = None
        self.autocast_state = None
        self.source = None
        self.layer_type = None
        self.layer_type_num = None
        self.layer_total_num = None
        self.pass_num = 1
        self.num_passes = 1
        self.layer_label = None
        self.layer_label_short = None
        self.layer_label_no_pass = None
        self.meta = {}
        self.saved_version = None
        self.aliased = False

    @property
    def child_nodes(self):
        """The nodes this one feeds (see :class:`ChildList`)."""
        return self._children

    @child_nodes.setter
    def child_nodes(self, nodes):
        self._children = nodes if isinstance(nodes, ChildList) else ChildList(nodes)

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
    def tensor_fsize(self):
        """Bytes of the output tensor (whether or not it was saved)."""
        return tensor_nbytes(self.tensor_shape, self.tensor_dtype)

    @property
    def has_saved_activation(self):
        """Whether the output tensor was saved (reading this never warns)."""
        return self._tensor_contents is not None

    # -------------------------------------------------------------- function
    @property
    def func_args(self):
        """The call's arguments that are not tensors: ``{position or keyword: value}``."""
        found = {}
        for position, value in list(enumerate(self.args)) + list(self.kwargs.items()):
            if not isinstance(value, ArgSlot) and not _holds_slot(value, ArgSlot):
                found[position] = value
        return found

    # ----------------------------------------------------------------- graph
    @property
    def parent_layers(self):
        return [node.layer_label for node in self.parent_nodes]

    @property
    def child_layers(self):
        return [node.layer_label for node in self.child_nodes]

    @property
    def parent_arg_positions(self):
        """``{parent_label: position}``; a nested argument's position is a tuple path."""
        return {node.layer_label: self.arg_positions[id(node)] for node in self.parent_nodes
                if id(node) in self.arg_positions}

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
        return [name for name, _ in self.params]

    @property
    def param_shapes(self):
        return [tuple(tensor.shape) for _, tensor in self.params]

    @property
    def params_fsize(self):
        return sum(tensor.numel() * tensor.element_size() for _, tensor in self.params)

    # --------------------------------------------------------------- modules
    @property
    def module_nesting_depth(self):
        return len(self.containing_modules)

    @property
    def module_outputs(self):
        """Addresses of the modules whose output this op's tensor is."""
        return [entry.rsplit(":", 1)[0] for entry in self.module_passes_output]

    @property
    def bottom_level_module(self):
        """Address of the innermost module if this op is that module's only op, else None."""
        return self.meta.get("bottom_level_module")

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
        shape = tuple(self.tensor_shape) if self.tensor_shape is not None else None
        return f"<LayerEntry {self.layer_label}: {self.func_name} -> {shape} ({saved})>"


def _holds_slot(value, slot_type):
    if isinstance(value, (tuple, list)):
        return any(isinstance(v, slot_type) or _holds_slot(v, slot_type) for v in value)
    if isinstance(value, dict):
        return any(isinstance(v, slot_type) or _holds_slot(v, slot_type) for v in value.values())
    return False
