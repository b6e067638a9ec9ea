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
  again, so each user-level call is one layer. What the mode cannot see or
  would change is handled by the stand-ins of :mod:`.standins`.
* The capture writes :class:`~torchlens_like.graph.layer.LayerEntry` nodes
  directly, in execution order, linked to their parents as they are made; the
  graph passes then work on that list.
* Tensors are identified by ``id`` plus a weak reference (so a recycled id is
  never mistaken for a tensor of this pass), with nothing attached to the
  tensors themselves.
* Saved activations are detached aliases: no copy. Before a call that writes
  into a tensor (see :mod:`.inplace`) every saved alias of that storage is
  copied. At the end, the version counter of every remaining alias is
  compared with the one recorded at save time; a mismatch means something
  wrote into a saved tensor unseen, and is reported as a warning naming the
  op. Then every alias whose storage is still held outside the history (the
  caller's input, a view of a parameter or buffer, a tensor the model kept)
  is copied, so writes after the pass cannot reach the history either.
* A write into a view (``x[0].add_(1)``, ``x[:, :3].copy_(y)``) changes its
  base too: the base then gets a node of its own, computed as
  ``torch.as_strided_scatter(old base, written view, ...)``, and every other
  live view of that base made earlier in the pass gets a node
  ``torch.as_strided(base after the write, ...)``; so ops reading the storage
  afterwards, through any alias, have the write among their ancestors
  (:meth:`CaptureSession.after_write`).
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

from ..graph.layer import ArgSlot, LayerEntry
from ..model_state import active_pass, refuse_inside_logged_pass, set_active_pass
from ..nested import find_tensors
from .inplace import call_traits
from .rng import autocast_state, calls_that_drew, op_rng_state

_Tensor = torch.Tensor
_ATOMS = frozenset({int, float, bool, str, type(None), torch.dtype, torch.device, torch.Size,
                    torch.layout, torch.memory_format, slice, type(Ellipsis)})
_perf_counter = time.perf_counter


class ForwardStopped(BaseException):
    """Raised inside the forward pass once every node asked for is saved.

    A ``BaseException``, so a model's own ``except Exception`` cannot swallow it.
    """


def current_session():
    """The :class:`CaptureSession` logging in this thread, or None."""
    capture = active_pass()
    return capture if isinstance(capture, CaptureSession) else None


def _shape(tensor):
    try:
        return tensor.shape
    except RuntimeError:
        return None


class CaptureSession:
    """State of one logged forward pass: the nodes so far plus tensor bookkeeping.

    Parameters
    ----------
    save : "all", None or set of int
        Which nodes keep their tensor: all, none, or these capture indices
        (positions in :attr:`nodes`).
    stop_when_saved : bool
        With a set ``save``: raise :class:`ForwardStopped` as soon as the last
        of those nodes is saved, so the rest of the forward pass never runs.
    """

    def __init__(self, save="all", stop_when_saved=False):
        self.nodes = []
        self._unsaved = len(save) if stop_when_saved and isinstance(save, (set, frozenset)) \
            else None
        self.module_stack = ()
        self.active = False
        self.thread = threading.get_ident()
        self._param_names = {}
        self._buffer_names = {}
        self._save = save
        self._table = {}
        self._aliases_by_storage = {}
        self._views = {}
        self._param_slots = {}
        self._foreign_storages = set()
        self._annotated = set()
        self._failure_stacks = {}

    def set_model_tensors(self, params, buffers):
        """Tell the session the model's parameters and buffers (``id -> address``)."""
        self._param_names = params
        self._buffer_names = buffers

    # ----------------------------------------------------------------- lookup
    def lookup(self, tensor):
        """The node that produced ``tensor`` in this pass, or None."""
        entry = self._table.get(id(tensor))
        if entry is not None and entry[0]() is tensor:
            return entry[1]
        return None

    def _wants(self, index):
        save = self._save
        return save == "all" or (save is not None and index in save)

    def _new_node(self, kind, name, tensor, stack):
        node = LayerEntry(kind, name, _shape(tensor), tensor.dtype, tensor.device, stack)
        node.meta["capture_index"] = len(self.nodes)
        self.nodes.append(node)
        return node

    def _register(self, node, tensor):
        ref = weakref.ref(tensor)
        self._table[id(tensor)] = (ref, node, ArgSlot("layer", node))
        base = tensor._base
        if base is not None:
            self._views.setdefault(id(base), {})[id(tensor)] = ref
        if self._wants(node.meta["capture_index"]):
            self._keep(node, tensor)
            self._count_saved()

    def _count_saved(self):
        if self._unsaved is not None:
            self._unsaved -= 1
            if not self._unsaved:
                raise ForwardStopped

    def _keep(self, node, tensor):
        alias = tensor.detach()
        node.tensor_contents = alias
        node.aliased = True
        try:
            node.saved_version = tensor._version
        except RuntimeError:
            node.saved_version = None
        try:
            storage = tensor.untyped_storage().data_ptr()
        except (RuntimeError, NotImplementedError):
            node.tensor_contents = alias.clone()
            node.aliased = False
            return
        self._aliases_by_storage.setdefault(storage, []).append(node)

    def before_write(self, written):
        """Get ready for a call that writes into ``written``.

        A buffer not read before gets its layer now, holding the value from
        before the write; saved aliases of the written storage are copied.
        """
        for tensor in written:
            if id(tensor) in self._buffer_names:
                self._resolve(tensor)
        if self._aliases_by_storage:
            self._protect(written)

    def _protect(self, written):
        for tensor in written:
            try:
                storage = tensor.untyped_storage().data_ptr()
            except (RuntimeError, NotImplementedError):
                continue
            for node in self._aliases_by_storage.pop(storage, ()):
                if node.aliased:
                    node.tensor_contents = node.tensor_contents.clone()
                    node.aliased = False

    # ------------------------------------------------------------------ nodes
    def add_inputs(self, input_args, input_kwargs):
        """Create one input node per tensor in the model's arguments."""
        for path, tensor in find_tensors((tuple(input_args), dict(input_kwargs))):
            if self.lookup(tensor) is None:
                node = self._new_node("input", "input", tensor, ())
                node.source = ("args",) + path[1:] if path[0] == 0 else ("kwargs",) + path[1:]
                self._register(node, tensor)

    def add_outputs(self, output):
        """Create one output node per tensor in the model's return value."""
        for path, tensor in find_tensors(output):
            slot = self._resolve(tensor)
            node = self._new_node("output", "output", tensor, ())
            node.source = path
            if slot.kind == "layer":
                node.parent_nodes.append(slot.ref)
                node.arg_positions[id(slot.ref)] = 0
                slot.ref.child_nodes.append(node)
            if self._wants(node.meta["capture_index"]):
                self._keep(node, tensor)

    def _buffer_node(self, tensor, address):
        node = self._new_node("buffer", "buffer", tensor, ())
        node.source = address
        try:
            node.saved_version = tensor._version
        except RuntimeError:
            node.saved_version = None
        slot = ArgSlot("layer", node)
        self._table[id(tensor)] = (weakref.ref(tensor), node, slot)
        if self._wants(node.meta["capture_index"]):
            node.tensor_contents = tensor.detach().clone()
            self._count_saved()
        return slot

    def _resolve(self, tensor):
        """The argument slot for one tensor argument of a call (shared, never modified)."""
        key = id(tensor)
        entry = self._table.get(key)
        if entry is not None and entry[0]() is tensor:
            if entry[1].kind != "buffer" or _same_version(entry[1], tensor):
                return entry[2]
        slot = self._param_slots.get(key)
        if slot is not None:
            return slot
        name = self._param_names.get(key)
        if name is not None:
            slot = self._param_slots[key] = ArgSlot("param", tensor, name)
            return slot
        name = self._buffer_names.get(key)
        if name is not None:
            return self._buffer_node(tensor, name)
        return ArgSlot("const", tensor)

    def _template(self, value, path, parents, positions, params):
        if isinstance(value, _Tensor):
            slot = self._resolve(value)
            if slot.kind == "layer":
                if id(slot.ref) not in positions:
                    parents.append(slot.ref)
                    positions[id(slot.ref)] = path
            elif slot.kind == "param":
                params.append((slot.name, slot.ref))
            return slot
        if isinstance(value, (tuple, list)):
            for item in value:
                if type(item) not in _ATOMS:
                    break
            else:
                return value
            items = [self._template(v, path + (i,) if isinstance(path, tuple) else (path, i),
                                    parents, positions, params) for i, v in enumerate(value)]
            return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
        if isinstance(value, dict):
            return {k: self._template(v, path + (k,) if isinstance(path, tuple) else (path, k),
                                      parents, positions, params) for k, v in value.items()}
        return value

    def resolve_call(self, args, kwargs):
        """Before a call runs: its arguments with tensors swapped for slots, and its parents.

        Resolving before the call means a buffer the call writes into is
        read as it was, and parents are the values the call consumed.
        Returns ``(args, kwargs, parents, positions, params)``.
        """
        parents, positions, params = [], {}, []
        targs = list(args)
        table = self._table
        for i, arg in enumerate(targs):
            if type(arg) in _ATOMS:
                continue
            if isinstance(arg, _Tensor):
                entry = table.get(id(arg))
                if entry is not None and entry[0]() is arg and entry[1].kind != "buffer":
                    node = entry[1]
                    targs[i] = entry[2]
                    if id(node) not in positions:
                        parents.append(node)
                        positions[id(node)] = i
                    continue
            targs[i] = self._template(arg, i, parents, positions, params)
        tkwargs = {k: self._template(v, k, parents, positions, params)
                   for k, v in kwargs.items()} if kwargs else {}
        return tuple(targs), tkwargs, parents, positions, tuple(params)

    def record_call(self, func, name, call, outputs, elapsed, replay_state=(None, None)):
        """Add one node per output tensor of a call resolved by :meth:`resolve_call`.

        ``replay_state`` is ``(generator state, autocast state)`` from just
        before the call (see :mod:`.rng`).
        """
        rng_state, autocast = replay_state
        targs, tkwargs, parents, positions, params = call
        stack = self.module_stack
        several = len(outputs) > 1
        for path, tensor in outputs:
            node = self._new_node("op", name, tensor, stack)
            node.func = func
            node.args = targs
            node.kwargs = tkwargs
            node.output_path = path
            node.params = params
            node.func_time = elapsed
            node.rng_state = rng_state
            node.autocast_state = autocast
            node.parent_nodes = list(parents) if several else parents
            node.arg_positions = positions
            for parent in parents:
                parent.child_nodes.append(node)
            self._register(node, tensor)

    def after_write(self, written):
        """After a call wrote into ``written``: later reads of its storage see the write.

        A write into a view (``x[0].add_(1)``, ``x[:, :3].copy_(y)``) changes
        its base too: the base gets a node of its own, computed as
        ``torch.as_strided_scatter(old base, written view, ...)``. Every other
        view of the same base made earlier in the pass (``v1`` after
        ``v2.fill_(0)`` where both view ``y``) gets a node reading the base
        after the write, ``torch.as_strided(base, ...)``, so ops reading
        through any alias link to the state after the write.
        """
        base = written._base
        root = written if base is None else base
        if self.lookup(root) is None:
            return
        if base is not None:
            self._record_view_write(written, base)
        if root.storage_offset() != 0:
            return
        views = self._views.get(id(root), {})
        for key, ref in list(views.items()):
            view = ref()
            if view is None:
                del views[key]
            elif view is not written and self.lookup(view) is not None:
                self._record_alias_read(root, view)

    def _record_view_write(self, view, base):
        entry = self._table[id(base)]
        if entry[1].kind == "buffer":
            # The buffer node holds the value from before this write: the old base.
            entry[1].saved_version = base._version
        args = (base, view, tuple(view.shape), view.stride(),
                view.storage_offset() - base.storage_offset())
        self.record_call(torch.as_strided_scatter, "as_strided_scatter",
                         self.resolve_call(args, {}), ((None, base),), 0.0)

    def _record_alias_read(self, root, view):
        args = (root, tuple(view.shape), view.stride(), view.storage_offset())
        self.record_call(torch.as_strided, "as_strided", self.resolve_call(args, {}),
                         ((None, view),), 0.0)

    def record_factory(self, func, name, args, kwargs, tensor, elapsed):
        """Record a factory call the interception mode cannot see.

        Its tensor wraps memory torch does not own (a NumPy array, a buffer),
        so saved aliases of it are copied when the pass ends.
        """
        if not self.active or threading.get_ident() != self.thread:
            return
        with torch._C.DisableTorchFunction():
            self.record_call(func, name, self.resolve_call(args, kwargs), [(None, tensor)],
                             elapsed)
            try:
                self._foreign_storages.add(tensor.untyped_storage().data_ptr())
            except (RuntimeError, NotImplementedError):
                pass

    # ------------------------------------------------------------- reporting
    def note_failure(self, exc):
        """Remember the module stack where ``exc`` was first seen leaving a module."""
        self._failure_stacks.setdefault(id(exc), (exc, self.module_stack))

    def annotate(self, exc, where):
        """Add where the forward failed to ``exc``'s message, once."""
        if id(exc) in self._annotated:
            return
        self._annotated.add(id(exc))
        stack = self._failure_stacks.get(id(exc), (exc, self.module_stack))[1]
        module = f"inside module '{stack[-1].rsplit(':', 1)[0]}'" if stack else \
            "outside any submodule"
        note = (f"[torchlens_like] The forward pass failed at {where}, {module} "
                f"(module stack: {' > '.join(stack) or 'model'}). Torch and the model were "
                "restored; the error above is the model's own.")
        if hasattr(exc, "add_note"):
            exc.add_note(note)

    def finish(self):
        """Close the pass: check and settle the saved aliases, drop bookkeeping.

        Call it once the model's output is no longer referenced, so that
        only what outlives the pass still holds the tensors' storage.
        """
        stale = []
        for node in self.nodes:
            node.containing_modules = list(node.containing_modules)
            if node.aliased and node.saved_version is not None:
                try:
                    changed = node.tensor_contents._version != node.saved_version
                except RuntimeError:
                    changed = False
                if changed:
                    stale.append(f"#{node.meta['capture_index']} {node.func_name}")
        if stale:
            warnings.warn(
                "These saved activations were modified in place by a call that was not seen, "
                f"so their saved values may be wrong: {', '.join(stale)}. Please report the "
                "model; meanwhile validate with validate_saved_activations.", RuntimeWarning,
                stacklevel=3)
        self._copy_storage_held_outside()
        self._keep_rng_states_of_drawing_calls()
        for node in self.nodes:
            node.aliased = False
            node.saved_version = None
        self._table.clear()
        self._aliases_by_storage.clear()

    def _keep_rng_states_of_drawing_calls(self):
        """Drop the generator states of calls that did not draw (most of them)."""
        states = list({id(node.rng_state): node.rng_state for node in self.nodes
                       if node.rng_state is not None}.values())
        after = op_rng_state(any("cuda" in state for state in states))
        idle = {id(state) for state, drew in zip(states, calls_that_drew(states, after))
                if not drew}
        for node in self.nodes:
            if id(node.rng_state) in idle:
                node.rng_state = None

    def _copy_storage_held_outside(self):
        """Copy the saved aliases whose storage something outside the history still holds.

        Once the pass is over, a saved alias shares its storage only with other
        saved aliases, unless the storage belongs to the caller's input, a
        parameter or buffer (also through a view such as ``token.expand``), or
        a tensor the model kept. A later write there (an optimizer step, an
        input buffer reused for the next batch) would change the saved value,
        so those aliases become copies. Holders are counted with the storage's
        reference count (one per tensor, plus the storage object asked for it);
        memory torch does not own (``from_numpy``, ``frombuffer``,
        ``from_dlpack``) is always held outside. A raw ``UntypedStorage``
        object kept by the model is not seen.
        """
        use_count = getattr(torch._C, "_storage_Use_Count", None)
        for storage, nodes in self._aliases_by_storage.items():
            held = [node for node in nodes if node.aliased]
            if not held:
                continue
            if storage in self._foreign_storages:
                holders = len(held) + 1
            elif use_count is None:
                continue
            else:
                try:
                    holders = use_count(held[0].tensor_contents.untyped_storage()._cdata) - 1
                except (RuntimeError, NotImplementedError, AttributeError):
                    continue
            if holders > len(held):
                for node in held:
                    node.tensor_contents = node.tensor_contents.clone()
                    node.aliased = False


def _same_version(node, tensor):
    try:
        return tensor._version == node.saved_version
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
        name, writes, no_tensor = call_traits(func)
        if no_tensor:
            return func(*args, **kwargs)
        session = self.session
        written = writes(args, kwargs) if writes is not None else ()
        if kwargs and "out" in kwargs:
            written = tuple(written) + tuple(t for _, t in find_tensors(kwargs["out"]))
        if written:
            session.before_write(written)
        call = session.resolve_call(args, kwargs)
        replay_state = (op_rng_state(_any_cuda(args)), autocast_state())
        start = _perf_counter()
        try:
            out = func(*args, **kwargs)
        except Exception as exc:
            session.annotate(exc, f"call #{len(session.nodes)} '{name}'")
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
        session.record_call(func, name, call, outputs, elapsed, replay_state)
        for tensor in written:
            session.after_write(tensor)
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
        refuse_inside_logged_pass("log_forward_pass")
        set_active_pass(self.session)
        self.session.active = True
        return self.session

    def __exit__(self, *exc_info):
        self.session.active = False
        set_active_pass(None)
        return False
