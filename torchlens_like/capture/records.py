"""Raw records written while a forward pass runs.

One :class:`RawOp` per tensor produced during the pass: an input tensor, a
buffer read for the first time, one output of an intercepted torch call, or a
model output. Records are plain data in execution order; the graph passes in
:mod:`torchlens_like.graph` turn them into :class:`~torchlens_like.graph.LayerEntry`
objects. Nothing here refers to a label: records point at each other by index.
"""

from __future__ import annotations


class RawOp:
    """One tensor produced during the forward pass.

    ``kind`` is one of ``"input"``, ``"buffer"``, ``"op"`` or ``"output"``.
    ``parents`` lists producing-record indices in argument order (no repeats);
    ``parent_positions`` maps each parent index to its argument position (an
    int, a keyword name, or a tuple path into a nested argument).
    """

    __slots__ = (
        "index", "kind", "func", "func_name", "args", "kwargs", "output_path",
        "parents", "parent_positions", "params", "tensor", "shape", "dtype",
        "device", "module_stack", "module_outputs", "func_time", "rng_state",
        "saved_version", "aliased", "source",
    )

    def __init__(self, index, kind, func_name, tensor_meta, module_stack):
        self.index = index
        self.kind = kind
        self.func = None
        self.func_name = func_name
        self.args = ()
        self.kwargs = {}
        self.output_path = None
        self.parents = []
        self.parent_positions = {}
        self.params = ()
        self.tensor = None
        self.shape, self.dtype, self.device = tensor_meta
        self.module_stack = module_stack
        self.module_outputs = []
        self.func_time = 0.0
        self.rng_state = None
        self.saved_version = None
        self.aliased = False
        self.source = None

    def __repr__(self):
        return f"RawOp({self.index}, {self.kind}, {self.func_name}, parents={self.parents})"
