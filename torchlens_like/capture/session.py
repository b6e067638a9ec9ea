"""The capture session: intercept every tensor-returning torch call of one pass.

Design decisions
----------------
* Interception is a :class:`torch.overrides.TorchFunctionMode` entered with
  ``with`` for the duration of the forward pass. It sees ``torch.*``,
  ``torch.nn.functional.*``, Tensor methods and operators (reflected and
  in-place ones too), indexing, property getters and factory functions; it is
  thread-local, so a forward running in another thread is neither logged nor
  slowed; and ``__exit__`` restores it even when the forward raises. Calls made
  inside a handled call (``F.relu`` calling ``torch.relu``) are not seen
  again, so each user-level call is one record. What the mode cannot see or
  would change is handled by the stand-ins of :mod:`.standins`.
* Tensors are identified by ``id`` plus a weak reference (so a recycled id is
  never mistaken for a tensor of this pass), with nothing attached to the
  tensors themselves.
* Saved activations are detached aliases: no copy. Before a call that writes
  into a tensor (see :mod:`.inplace`) every saved alias of that storage is
  copied. At the end, the version counter of every remaining alias is
  compared with the one recorded at save time; a mismatch means something
  wrote into a saved tensor unseen, and is reported as a warning naming the
  op.
* Buffers become layers the first time an op reads them, saved as a copy
  (they are small and ``batch_norm`` updates running statistics in place
  inside one call). A buffer whose version moved since is read as a new
  buffer layer.
"""

from __future__ import annotations

import threading
import time
import warnings
import weakref

import torch
from torch.overrides import TorchFunctionMode

from .arguments import find_tensors
from .inplace import function_name, is_random, written_tensors
from ..graph.layer import ArgSlot
from .records import RawOp
from .rng import op_rng_state

_Tensor = torch.Tensor
_perf_counter = time.perf_counter
_local = threading.local()

def is_capturing():
    """Whether this thread is inside a logged forward pass."""
    return getattr(_local, "session", None) is not None


def _tensor_meta(tensor):
    try:
        shape = tensor.shape
    except RuntimeError:
        shape = None
    return shape, tensor.dtype, tensor.device


class CaptureSession:
    """State of one logged forward pass: raw records plus tensor bookkeeping.

    Parameters
    ----------
    params : dict
        ``id(parameter) -> address`` for the model's parameters.
    buffers : dict
        ``id(buffer) -> address`` for the model's buffers.
    save : "all", None or set of int
        Which records keep their tensor: all, none, or these record indices.
    """

    def __init__(self, params, buffers, save="all"):
        self.records = []
        self.module_stack = ()
        self.active = False
        self.thread = threading.get_ident()
        self._param_names = params
        self._buffer_names = buffers
        self._save = save
        self._table = {}
        self._aliases_by_storage = {}
        self._annotated = set()

    # ----------------------------------------------------------------- lookup
    def lookup(self, tensor):
        """Index of the record that produced ``tensor`` in this pass, or None."""
        entry = self._table.get(id(tensor))
        if entry is not None and entry[0]() is tensor:
            return entry[1]
        return None

    def _register(self, record, tensor):
        self._table[id(tensor)] = (weakref.ref(tensor), record.index)
        if self._wants(record.index):
            self._keep(record, tensor)

    def _keep(self, record, tensor):
        alias = tensor.detach()
        record.tensor = alias
        record.aliased = True
        try:
            record.saved_version = tensor._version
        except RuntimeError:
            record.saved_version = None
        try:
            storage = tensor.untyped_storage().data_ptr()
        except (RuntimeError, NotImplementedError):
            record.tensor = alias.clone()
            record.aliased = False
            return
        self._aliases_by_storage.setdefault(storage, []).append(record)

    def _protect(self, written):
        for tensor in written:
            try:
                storage = tensor.untyped_storage().data_ptr()
            except (RuntimeError, NotImplementedError):
                continue
            for record in self._aliases_by_storage.pop(storage, ()):
                if record.aliased:
                    record.tensor = record.tensor.clone()
                    record.aliased = False

    # ---------------------------------------------------------------- records
    def _new_record(self, kind, name, tensor):
        record = RawOp(len(self.records), kind, name, _tensor_meta(tensor), self.module_stack)
        self.records.append(record)
        return record

    def add_inputs(self, input_args, input_kwargs):
        """Create one input record per tensor in the model's arguments."""
        for path, tensor in find_tensors((tuple(input_args), dict(input_kwargs))):
            if self.lookup(tensor) is None:
                record = self._new_record("input", "input", tensor)
                record.source = ("args",) + path[1:] if path[0] == 0 else ("kwargs",) + path[1:]
                self._register(record, tensor)

    def add_outputs(self, output):
        """Create one output record per tensor in the model's return value."""
        for path, tensor in find_tensors(output):
            parent = self._resolve(tensor)
            record = self._new_record("output", "output", tensor)
            record.source = path
            record.module_stack = ()
            if parent.kind == "layer":
                record.parents = [parent.ref]
                record.parent_positions = {parent.ref: 0}
            if self._wants(record.index):
                record.tensor = tensor.detach()

    def _wants(self, index):
        save = self._save
        return save == "all" or (save is not None and index in save)

    def _buffer_record(self, tensor, address):
        record = self._new_record("buffer", "buffer", tensor)
        record.source = address
        record.module_stack = ()
        try:
            record.saved_version = tensor._version
        except RuntimeError:
            record.saved_version = None
        self._table[id(tensor)] = (weakref.ref(tensor), record.index)
        if self._wants(record.index):
            record.tensor = tensor.detach().clone()
        return record

    def _resolve(self, tensor):
        """The argument slot for one tensor argument of a call."""
        key = id(tensor)
        entry = self._table.get(key)
        if entry is not None and entry[0]() is tensor:
            record = self.records[entry[1]]
            if record.kind != "buffer" or _same_version(record, tensor):
                return ArgSlot("layer", entry[1])
        name = self._param_names.get(key)
        if name is not None:
            return ArgSlot("param", tensor, name)
        name = self._buffer_names.get(key)
        if name is not None:
            return ArgSlot("layer", self._buffer_record(tensor, name).index)
        return ArgSlot("const", tensor)

    def _template(self, value, path, parents, positions, params):
        if isinstance(value, _Tensor):
            slot = self._resolve(value)
            if slot.kind == "layer":
                if slot.ref not in positions:
                    parents.append(slot.ref)
                    positions[slot.ref] = path
            elif slot.kind == "param":
                params.append(slot)
            return slot
        if isinstance(value, (tuple, list)):
            if not value or not any(isinstance(v, (_Tensor, tuple, list, dict)) for v in value):
                return value
            items = [self._template(v, path + (i,) if isinstance(path, tuple) else (path, i),
                                    parents, positions, params) for i, v in enumerate(value)]
            return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
        if isinstance(value, dict):
            return {k: self._template(v, path + (k,) if isinstance(path, tuple) else (path, k),
                                      parents, positions, params) for k, v in value.items()}
        return value

    def record_call(self, func, name, args, kwargs, outputs, elapsed, rng_state):
        parents, positions, params = [], {}, []
        targs = tuple(self._template(a, i, parents, positions, params) for i, a in enumerate(args))
        tkwargs = {k: self._template(v, k, parents, positions, params) for k, v in kwargs.items()} \
            if kwargs else {}
        params = tuple(params)
        for path, tensor in outputs:
            record = self._new_record("op", name, tensor)
            record.func = func
            record.args = targs
            record.kwargs = tkwargs
            record.output_path = path
            record.parents = parents
            record.parent_positions = positions
            record.params = params
            record.func_time = elapsed
            record.rng_state = rng_state
            self._register(record, tensor)

    def record_factory(self, func, name, args, kwargs, tensor, elapsed):
        """Record a factory call the interception mode cannot see."""
        if not self.active or threading.get_ident() != self.thread:
            return
        with torch._C.DisableTorchFunction():
            self.record_call(func, name, args, kwargs, [(None, tensor)], elapsed, None)

    # ------------------------------------------------------------- reporting
    def annotate(self, exc, where):
        """Add where the forward failed to ``exc``'s message, once."""
        if id(exc) in self._annotated:
            return
        self._annotated.add(id(exc))
        stack = self.module_stack
        module = f"inside module '{stack[-1].rsplit(':', 1)[0]}'" if stack else \
            "outside any submodule"
        note = (f"[torchlens_like] The forward pass failed at {where}, {module} "
                f"(module stack: {' > '.join(stack) or 'model'}). Torch and the model were "
                "restored; the error above is the model's own.")
        if hasattr(exc, "add_note"):
            exc.add_note(note)

    def finish(self):
        """Warn about saved aliases written to by a call that was not recognised."""
        stale = []
        for record in self.records:
            if record.aliased and record.saved_version is not None:
                try:
                    changed = record.tensor._version != record.saved_version
                except RuntimeError:
                    changed = False
                if changed:
                    stale.append(f"#{record.index} {record.func_name}")
        if stale:
            warnings.warn(
                "These saved activations were modified in place by a call that was not seen, "
                f"so their saved values may be wrong: {', '.join(stale)}. Please report the "
                "model; meanwhile validate with validate_saved_activations.", RuntimeWarning,
                stacklevel=3)
        self._table.clear()
        self._aliases_by_storage.clear()


def _same_version(record, tensor):
    try:
        return tensor._version == record.saved_version
    except RuntimeError:
        return True


class CaptureMode(TorchFunctionMode):
    """Torch function mode that hands every call to a :class:`CaptureSession`."""

    def __init__(self, session):
        super().__init__()
        self.session = session

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if kwargs is None:
            kwargs = {}
        session = self.session
        name = function_name(func)
        written = written_tensors(func, name, args, kwargs)
        if written and session._aliases_by_storage:
            session._protect(written)
        rng_state = op_rng_state(_any_cuda(args)) if is_random(name) else None
        start = _perf_counter()
        try:
            out = func(*args, **kwargs)
        except Exception as exc:
            session.annotate(exc, f"call #{len(session.records)} '{name}'")
            raise
        elapsed = _perf_counter() - start
        if isinstance(out, _Tensor):
            outputs = ((None, out),)
        elif out is None and written:
            outputs = ((None, written[0]),)
        elif isinstance(out, (tuple, list)) and out and _holds_tensor(out):
            outputs = find_tensors(out)
        else:
            return out
        session.record_call(func, name, args, kwargs, outputs, elapsed, rng_state)
        return out


def _holds_tensor(seq):
    first = seq[0]
    if isinstance(first, _Tensor):
        return True
    return isinstance(first, (tuple, list)) and bool(first) and isinstance(first[0], _Tensor)


def _any_cuda(args):
    return any(isinstance(a, _Tensor) and a.is_cuda for a in args)


class active_session:
    """Context manager marking this thread as logging; refuses nesting."""

    def __init__(self, session):
        self.session = session

    def __enter__(self):
        if is_capturing():
            raise RuntimeError(
                "log_forward_pass was called from inside a forward pass that is already being "
                "logged. Call it outside the model's forward (the outer log is unaffected).")
        _local.session = self.session
        self.session.active = True
        return self.session

    def __exit__(self, *exc_info):
        self.session.active = False
        _local.session = None
        return False
