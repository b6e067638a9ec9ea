"""The capture session: build one node per tensor-returning torch call of one pass.

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
* The session makes neutral :class:`~torchlens_like.records.LayerEntry`
  records directly, in execution order, connected to their parents as they
  are made (:func:`~torchlens_like.records.connect`); the graph passes then
  work on that list. Three jobs, three classes: the session builds nodes,
  :class:`~.resolve.ArgumentResolver` says which node, parameter or constant
  each tensor argument is, :class:`~.aliases.AliasGuard` keeps saved aliases
  from being overwritten.
* A write into a view (``x[0].add_(1)``, ``x[:, :3].copy_(y)``) changes its
  base too: the base then gets a node of its own, computed as
  ``torch.as_strided_scatter(old base, written view, ...)``, and every other
  live view of that base made earlier in the pass gets a node
  ``torch.as_strided(base after the write, ...)``; so ops reading the storage
  afterwards, through any alias, have the write among their ancestors
  (:meth:`CaptureSession.after_write`).
* Per call, only what the node needs is done, once: what is known of a
  function (name, which arguments it writes, whether it may draw random
  numbers) is looked up in one cache; the arguments are walked once
  (:meth:`.ArgumentResolver.resolve_call` yields the parents and parameters
  too); the generator state is read only around calls that may draw (see
  :mod:`.rng`); calls of one function that drew nothing and ran without
  autocast share one replay record.
"""

from __future__ import annotations

import threading
import time
import warnings
import weakref

import torch
from torch.overrides import TorchFunctionMode

from ..model_state import (active_pass, autocast_state, refuse_inside_logged_pass,
                           set_active_pass, storage_address)
from ..nested import find_leaves, find_tensors
from ..records import ArgSlot, LayerEntry, connect, link
from .aliases import AliasGuard
from .calltrace import CallTrace
from .inplace import call_traits
from .replay import TorchReplay
from .resolve import ArgumentResolver
from .rng import ALWAYS, NEVER, UNSEEN, DrawLog, draw_rule

_Tensor = torch.Tensor
_perf_counter = time.perf_counter
_any_autocast = getattr(torch._C, "_is_any_autocast_enabled", lambda: True)
TO_PYTHON = frozenset({"item", "tolist", "numpy", "__bool__", "__int__", "__float__",
                       "__index__", "__complex__", "__array__"})
"""Calls that turn a tensor's values into Python values (a branch may read them)."""
_dtype_names = {}
_device_names = {}
_calls = {}


class ForwardStopped(BaseException):
    """Raised inside the forward pass once every node asked for is saved.

    A ``BaseException``, so a model's own ``except Exception`` cannot swallow it.
    """


def current_session():
    """The session intercepting torch calls in this thread (a full or a lean pass), or None."""
    capture = active_pass()
    return capture if getattr(capture, "intercepts_torch", False) else None


class CaptureSession:
    """One logged forward pass: the nodes so far, made in execution order.

    Parameters
    ----------
    save : "all", None or set of int
        Which nodes keep their tensor: all, none, or these capture indices
        (positions in :attr:`nodes`).
    parameters : dict
        ``{id(tensor): Parameter}`` for the model's parameters.
    buffers : dict
        ``{id(tensor): address}`` for the model's buffers.
    stop_when_saved : bool
        With a set ``save``: raise :class:`ForwardStopped` as soon as the last
        of those nodes is saved, so the rest of the forward pass never runs.

    ``edit_hook`` (None unless set) changes values as the pass runs (the
    re-run engine of interventions): ``edit_hook.after_op(position, name,
    out, outputs, written) -> (out, outputs)`` sees each call's result before
    its nodes are made (``position`` is the capture index its first node will
    get) and ``edit_hook.after_module(session, call, output) -> output`` each
    module call's return value.

    ``gradients`` (None unless set) is a :class:`~.gradients.GradientRecorder`
    keeping each node's autograd edge and each call's parameter views (a
    ``save_gradients`` pass).
    """

    intercepts_torch = True

    def __init__(self, save="all", parameters=None, buffers=None, stop_when_saved=False):
        self.nodes = []
        self._unsaved = len(save) if stop_when_saved and isinstance(save, (set, frozenset)) \
            else None
        self.module_stack = ()
        self.active = False
        self.thread = threading.get_ident()
        self.resolver = ArgumentResolver(parameters or {}, buffers or {}, self._add_buffer)
        self.aliases = AliasGuard()
        self.written_storages = set()
        self._save = save
        self._save_all = save == "all"
        self._save_some = save if save is not None and not self._save_all else None
        self._calls = 0
        self._views = {}
        self._annotated = set()
        self._failure_stacks = {}
        self._replays = {}
        self.draws = DrawLog()
        self.trace = CallTrace()
        self.edit_hook = None
        self.gradients = None

    def lookup(self, tensor):
        """The node that produced ``tensor`` in this pass, or None."""
        return self.resolver.lookup(tensor)

    def replace_output(self, node, tensor):
        """Make ``tensor`` the value of ``node`` from now on (an edit replaced its output).

        Later calls reading ``tensor`` read ``node``; a saved node keeps ``tensor``.
        """
        self.resolver.register(node, tensor)
        if self.gradients is not None:
            self.gradients.note(node.meta["capture_index"], tensor)
        if self._wants(node.meta["capture_index"]):
            self.aliases.keep(node, tensor)

    def _wants(self, index):
        save = self._save
        return save == "all" or (save is not None and index in save)

    def _new_node(self, kind, name, tensor, stack):
        device = tensor.device
        device_name = _device_names.get(device)
        if device_name is None:
            device_name = _device_names[device] = str(device)
        try:
            shape = tuple(tensor.shape)
        except RuntimeError:
            shape = None
        try:
            nbytes = tensor.nbytes
        except RuntimeError:
            nbytes = 0
        dtype = tensor.dtype
        dtype_name = _dtype_names.get(dtype)
        if dtype_name is None:
            dtype_name = _dtype_names[dtype] = str(dtype).removeprefix("torch.")
        nodes = self.nodes
        node = LayerEntry(kind, name, shape, dtype_name, device_name, nbytes, stack)
        node.meta["capture_index"] = len(nodes)
        nodes.append(node)
        return node

    def _register(self, node, tensor):
        self.resolver.register(node, tensor)
        if self.gradients is not None:
            self.gradients.note(node.meta["capture_index"], tensor)
        if tensor._base is not None:
            self._views.setdefault(id(tensor._base), {})[id(tensor)] = weakref.ref(tensor)
        if self._save_all or (self._save_some is not None
                              and node.meta["capture_index"] in self._save_some):
            self.aliases.keep(node, tensor)
            self._count_saved()

    def _count_saved(self):
        if self._unsaved is not None:
            self._unsaved -= 1
            if not self._unsaved:
                raise ForwardStopped

    def _add_buffer(self, tensor, address):
        node = self._new_node("buffer", "buffer", tensor, ())
        node.source = address
        self.resolver.register(node, tensor)
        if self.gradients is not None:
            self.gradients.note(node.meta["capture_index"], tensor)
        if self._wants(node.meta["capture_index"]):
            node.tensor_contents = tensor.detach().clone()
            self._count_saved()

    def before_write(self, written):
        """Get ready for a call that writes into ``written``.

        A buffer not read before gets its layer now, holding the value from
        before the write; saved aliases of the written storage are copied;
        the storage is noted in ``written_storages``.
        """
        storages = []
        for tensor in written:
            if id(tensor) in self.resolver.buffers:
                self.resolver.slot(tensor)
            storages.append(storage_address(tensor))
        self.written_storages.update(storages)
        self.aliases.protect(storages, len(self.nodes))

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
            slot = self.resolver.slot(tensor)
            node = self._new_node("output", "output", tensor, ())
            node.source = path
            if slot.kind == "layer":
                connect([node], (slot,))
            if self.gradients is not None:
                self.gradients.note(node.meta["capture_index"], tensor)
                param = self.resolver.parameters.get(id(tensor))
                if param is not None and tensor.requires_grad:
                    self.gradients.note_returned_parameter(param.address)
            if self._wants(node.meta["capture_index"]):
                self.aliases.keep(node, tensor)

    def resolve_call(self, args, kwargs):
        """Before a call runs: its arguments resolved by :meth:`.ArgumentResolver.resolve_call`."""
        return self.resolver.resolve_call(args, kwargs)

    def record_call(self, func, name, call, outputs, elapsed, rng_state=None, autocast=None,
                    writes=None):
        """Add one node per output tensor of a call resolved by :meth:`resolve_call`.

        ``rng_state`` is the generator state the call consumed when it drew
        random numbers (see :mod:`.rng`), ``autocast`` the autocast state it
        ran under (None when off).
        """
        replay = None
        if rng_state is None and autocast is None:
            try:
                replay = self._replays.get(func)
                if replay is None:
                    replay = self._replays[func] = TorchReplay(func, None, None, writes,
                                                               self.resolver.values)
            except TypeError:
                pass
        if replay is None:
            replay = TorchReplay(func, rng_state, autocast, writes, self.resolver.values)
        stack = self.module_stack
        index = self._calls
        self._calls = index + 1
        nodes = []
        for path, tensor in outputs:
            node = self._new_node("op", name, tensor, stack)
            node.call_index = index
            if path is not None:
                node.output_path = path
            node.func_time = elapsed
            node.replay = replay
            nodes.append(node)
        link(nodes, *call)
        for node, (_, tensor) in zip(nodes, outputs):
            self._register(node, tensor)

    def note_parameter_views(self, call_index, first, views, outputs):
        """Keep a call's parameter views (a ``save_gradients`` pass; see :mod:`.gradients`).

        An output that is one of the views (a call returning the parameter
        unchanged) makes its node stand for the parameter from then on, as
        the node of the parameter itself would without the swap.
        """
        parameters = self.resolver.parameters
        self.gradients.note_call(call_index, views, parameters)
        for k, (_, tensor) in enumerate(outputs):
            for param, view in views:
                if tensor is view:
                    self.resolver.register(self.nodes[first + k], param)
                    self.gradients.unsplit.add(parameters[id(param)].address)

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
        views = self._views.get(id(root))
        if not views or root.storage_offset() != 0:
            return
        for key, ref in list(views.items()):
            view = ref()
            if view is None:
                del views[key]
            elif view is not written and self.lookup(view) is not None:
                self._record_alias_read(root, view)

    def _record_view_write(self, view, base):
        self.resolver.keep_buffer_value(base)
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
            self.trace.add_call(func, self._calls)
            self.record_call(func, name, self.resolve_call(args, kwargs), [(None, tensor)],
                             elapsed)
            self.aliases.add_foreign(tensor)

    def note_conversion(self, name, call):
        """Mark the nodes whose values a call turned into Python values (``item``, ``bool``...).

        ``call`` is the call's arguments, raw or resolved; each argument
        tensor produced by a node of this pass adds ``name`` to that node's
        ``meta["to_python"]``, so a reader that changes values (the replay
        engine of interventions) knows a Python branch may have read them.
        """
        for _, value in find_leaves(call, _is_tensor_or_slot):
            node = value.ref if type(value) is ArgSlot else self.lookup(value)
            if node is not None and (type(value) is not ArgSlot or value.kind == "layer"):
                names = node.meta.setdefault("to_python", [])
                if name not in names:
                    names.append(name)

    # ------------------------------------------------------------- reporting
    def note_failure(self, exc):
        """Remember the module stack where ``exc`` was first seen leaving a module.

        The early stop (:class:`ForwardStopped`) is no failure and is not kept:
        the session holding an exception whose traceback holds the session
        would be a reference cycle keeping the pass's tensors alive.
        """
        if not isinstance(exc, ForwardStopped) and id(exc) not in self._annotated:
            self._failure_stacks.setdefault(id(exc), (exc, self.module_stack))

    def annotate(self, exc, where):
        """Add where the forward failed to ``exc``'s message, once; then forget the failures.

        Forgetting them breaks the cycle session -> exception -> traceback ->
        frames -> session, so the pass's tensors are freed with the exception.
        """
        if id(exc) in self._annotated:
            return
        self._annotated.add(id(exc))
        stack = self._failure_stacks.get(id(exc), (exc, self.module_stack))[1]
        self._failure_stacks.clear()
        module = f"inside module '{stack[-1].address}'" if stack else "outside any submodule"
        note = (f"[torchlens_like] The forward pass failed at {where}, {module} "
                f"(module stack: {' > '.join(stack) or 'model'}). Torch and the model were "
                "restored; the error above is the model's own.")
        if hasattr(exc, "add_note"):
            exc.add_note(note)

    def weights_written(self):
        """The parameter and constant slots of the pass whose memory one of its calls wrote into."""
        written = self.written_storages - {None}
        if not written:
            return frozenset()
        return frozenset(slot for slot, tensor in self.resolver.values.items()
                         if storage_address(tensor) in written)

    def finish(self):
        """Close the pass: settle the saved aliases (:meth:`.AliasGuard.settle`), drop bookkeeping.

        Call it once the model's output is no longer referenced, so that
        only what outlives the pass still holds the tensors' storage (in a
        ``save_gradients`` pass the autograd graph does too, so most saved
        values are copied).
        """
        self.aliases.settle()
        if self.gradients is not None:
            self.gradients.note_writes(self.written_storages)
        self.draws.close(self._calls)
        if self.draws.unexplained:
            self._attribute_unexplained_draws()
        self.resolver.clear()
        self._views.clear()
        self._replays.clear()

    def _attribute_unexplained_draws(self):
        """Give the calls of each window with unexplained draws the state it started from.

        See :mod:`.rng`: exact when one call of the window drew; their
        functions are read around every call from now on; a window of several
        calls is reported.
        """
        nodes = [node for node in self.nodes if node.call_index is not None]
        unclear = []
        for first, end, state in self.draws.unexplained:
            window = [node for node in nodes if first <= node.call_index < end]
            replays = {}
            for node in window:
                old = node.replay
                if old.rng_state is not None:
                    continue
                if node.call_index not in replays:
                    replays[node.call_index] = TorchReplay(old.func, state, old.autocast_state,
                                                           old.writes, old.values)
                node.replay = replays[node.call_index]
                _learn_draws(old.func, ALWAYS)
            if len(replays) > 1:
                unclear.append(sorted({node.func_name for node in window}))
        if unclear:
            names = "; ".join(", ".join(names) for names in unclear)
            warnings.warn(
                "Random numbers were drawn during the logged pass by a call that was not expected "
                f"to draw, among: {names}. Replaying (validation) gives each of those calls the "
                "generator state from before the first of them, which is right for the first "
                "call that drew and may not be for later ones. These functions are now watched: "
                "logging the pass again records the state of each call exactly.",
                RuntimeWarning, stacklevel=4)

class CaptureMode(TorchFunctionMode):
    """Torch function mode that hands every call to a :class:`CaptureSession`."""

    def __init__(self, session):
        super().__init__()
        self.session = session

    def __torch_function__(self, func, types, args=(), kwargs=None):
        try:
            name, writes, no_tensor, draws = _calls[func]
        except (KeyError, TypeError):
            name, writes, no_tensor, draws = _call_info(func)
        if no_tensor:
            if name in TO_PYTHON:
                self.session.note_conversion(name, args)
            return func(*args, **kwargs) if kwargs else func(*args)
        if kwargs is None:
            kwargs = {}
        session = self.session
        written = writes(args, kwargs) if writes is not None else ()
        if kwargs and "out" in kwargs:
            written = tuple(written) + tuple(t for _, t in find_tensors(kwargs["out"]))
        if written:
            session.before_write(written)
        call = session.resolver.resolve_call(args, kwargs)
        views = None
        if call[3] and session.gradients is not None:
            args, kwargs, views = session.gradients.swap_parameters(
                func, args, kwargs, session.resolver.parameters, written)
        rng_state = session.draws.before(_any_cuda(args), session._calls) \
            if draws != NEVER else None
        autocast = autocast_state() if _any_autocast() else None
        start = _perf_counter()
        try:
            out = func(*args, **kwargs)
        except Exception as exc:
            session.annotate(exc, f"call #{len(session.nodes)} '{name}'")
            raise
        elapsed = _perf_counter() - start
        outputs = ((None, out),) if type(out) is _Tensor else tensor_outputs(out, written)
        if rng_state is not None:
            rng_state = session.draws.after(
                rng_state, session._calls + (outputs is not None))
            if draws == UNSEEN:
                _learn_draws(func, NEVER if rng_state is None else ALWAYS)
        if outputs is None:
            if out is not None and (name in TO_PYTHON or type(out) in _PYTHON_SCALARS):
                session.note_conversion(name, call[:2])
            return out
        if session.edit_hook is not None:
            out, outputs = session.edit_hook.after_op(len(session.nodes), name, out, outputs,
                                                      written)
        session.trace.add_call(func, session._calls)
        if views:
            call_index, first = session._calls, len(session.nodes)
        session.record_call(func, name, call, outputs, elapsed, rng_state, autocast, writes)
        if views:
            session.note_parameter_views(call_index, first, views, outputs)
        for tensor in written:
            session.after_write(tensor)
        return out


def _call_info(func):
    """``[name, writes, no_tensor, draws]`` of an intercepted callable, cached by function.

    ``draws`` is the :mod:`.rng` rule, updated as the capture learns.
    """
    name, writes, no_tensor = call_traits(func)
    info = [name, writes, no_tensor, NEVER if no_tensor else draw_rule(name)]
    try:
        _calls[func] = info
    except TypeError:
        info[3] = ALWAYS
    return info


def _learn_draws(func, rule):
    try:
        _calls[func][3] = rule
    except (KeyError, TypeError):
        pass


def tensor_outputs(out, written):
    """``((path, tensor), ...)`` of a call's result, or None for a call that makes no node.

    The one rule, shared by the full and the lean pass, for which calls are
    ops of the graph: those returning a tensor, a sequence of tensors, or
    nothing after writing into a tensor (then that tensor is the output).
    """
    if isinstance(out, _Tensor):
        return ((None, out),)
    if out is None and written:
        return ((None, written[0]),)
    if isinstance(out, (tuple, list)) and out and _holds_tensor(out):
        return find_tensors(out)
    return None


_PYTHON_SCALARS = frozenset({bool, int, float, complex})


def _is_tensor_or_slot(value):
    return isinstance(value, _Tensor) or type(value) is ArgSlot


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
