"""The lean pass: a repeated forward over a known graph that keeps a few layers and records nothing.

Extraction runs one full capture on its first stimuli and then the same graph
batch after batch. A lean pass needs none of the records a full capture
makes: it checks every call against the known graph (the
:class:`~.calltrace.CallTrace` of a full capture) and keeps the outputs of the
wanted layers, nothing else.

Design decisions
----------------
* Two paths, chosen once per plan (:attr:`LeanPlan.path`):

  ``"module_outputs"``
      every wanted layer is what some module call returned. No torch call
      is intercepted; the module-forward wrappers of :mod:`.modules` (cheaper
      than ``register_forward_hook`` and taking the output before any hook
      of the user's, as the full capture does) check that the module calls
      come in the known order and keep the wanted outputs.
  ``"ops"``
      some wanted layer is an op inside a module (a residual ``add``, a
      functional ``relu``). A :class:`~torch.overrides.TorchFunctionMode`
      counts the calls that make nodes (the rule of
      :func:`.session.tensor_outputs`), compares each one's function with the
      known graph's (identity, or equality for bound method wrappers) and
      each module call with the known one, at the same position.

* The check is by function and module call, so an ``if``/``else`` choosing
  between two modules of the same type is caught. The first call that
  differs stops the pass (:class:`GraphDeparted` names it); the caller logs
  that batch with a full capture instead.
* Kept outputs are aliases. In the ops path a call that writes into a kept
  tensor's storage copies it first, as the full capture's alias guard does;
  in the module-outputs path, where calls are not seen, a kept output is
  copied when the full capture saw a later call write into it
  (``meta["written_later"]``). A kept tensor whose version counter moved
  unseen ends the pass as a departure, never as a silently wrong value.
* With ``stop_early`` the forward is cut short once every wanted layer is
  kept (:class:`~.session.ForwardStopped`).
* Like a full capture, the pass marks the thread as logging, holds the
  cyclic collector off (the module wrappers are reference cycles; a full
  collection over the process costs milliseconds), and leaves torch and the
  model as they were, also on error. The ops path installs the capture's
  stand-ins (so ``nn.MultiheadAttention`` takes the same fast path under the
  mode and ``torch.from_numpy`` is counted); the module-outputs path
  intercepts nothing, so it needs none.
* Wrapping the modules is the fixed cost of a pass (microseconds per
  module); :meth:`LeanPlan.held` keeps the wrappers across a loop of passes.
"""

from __future__ import annotations

import contextlib
import threading

import torch
from torch.overrides import TorchFunctionMode

from ..model_state import refuse_inside_logged_pass, set_active_pass, storage_address
from ..nested import find_tensors
from .gc_pause import cyclic_gc_paused
from .inplace import call_traits
from .modules import ModuleTracker
from .session import ForwardStopped, tensor_outputs
from .standins import standins

_Tensor = torch.Tensor


class GraphDeparted(RuntimeError):
    """A lean pass ran a call that is not the known graph's call at that position."""


class LeanUnavailable(ValueError):
    """A wanted layer that a lean pass cannot keep (the caller logs full passes instead)."""


class _Departure(BaseException):
    """Raised inside the forward at the first differing call; a model's ``except`` cannot catch it."""


class LeanPlan:
    """What a lean pass needs from a full capture of the same graph: built once, run per batch.

    Parameters
    ----------
    history : ModelHistory
        A full capture by the torch backend (it keeps a ``call_trace``). For
        the module-outputs path, the wanted layers should have been saved
        in it, so that it knows which were written into later.
    positions : iterable of int
        Capture positions (``layer.meta["capture_index"]``) of the wanted layers.
    model : torch.nn.Module or callable
        The model as the backend runs it (``TorchBackend.prepare(model)``).

    Raises
    ------
    LeanUnavailable
        When a wanted layer is not an op of the trace (an input, a buffer, an
        output node, or a node the capture added for a write into a view).

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
    >>> x = torch.rand(2, 3)
    >>> history = tll.log_forward_pass(model, x)
    >>> plan = LeanPlan(history, [history["0"].meta["capture_index"]], model)
    >>> plan.path
    'module_outputs'
    >>> kept = plan.run((x,), {})
    >>> torch.equal(kept[history["0"].meta["capture_index"]], model[0](x))
    True
    """

    def __init__(self, history, positions, model):
        trace = history.call_trace
        if trace is None:
            raise LeanUnavailable("the history keeps no call trace (it was not captured by the "
                                  "torch backend in this process)")
        self.runner = model
        self.funcs = list(trace.funcs)
        self.module_starts = list(trace.module_starts)
        self.addresses = ModuleTracker(model).addresses
        by_position = {layer.meta["capture_index"]: layer for layer in history.layers}
        layers = []
        for position in positions:
            layer = by_position.get(position)
            ordinal = trace.ordinal_of(layer.call_index) if layer is not None \
                and layer.kind == "op" else None
            if ordinal is None:
                shown = layer.layer_label if layer is not None else f"position {position}"
                raise LeanUnavailable(f"layer {shown} is not an op of the traced calls")
            layers.append((position, ordinal, layer))
        self.by_ordinal = {}
        for position, ordinal, layer in layers:
            self.by_ordinal.setdefault(ordinal, []).append((layer.output_path, position))
        self.by_module_start = _module_targets(history, trace, layers)
        self.path = "module_outputs" if self.by_module_start is not None else "ops"
        self.count = len(layers)
        self._held = None

    def run(self, args, kwargs, stop_early=False):
        """One forward of ``runner(*args, **kwargs)`` keeping the wanted layers.

        Returns ``{position: tensor}`` (detached). Raises :class:`GraphDeparted`
        naming the first call that differs from the known graph.
        """
        refuse_inside_logged_pass("a lean pass")
        session = _LeanSession(self, stop_early)
        with self.held():
            tracker = self._held
            tracker.session = session
            set_active_pass(session)
            try:
                with cyclic_gc_paused():
                    tracker.activate()
                    if self.path == "ops":
                        with standins(), _LeanMode(session):
                            self._forward(args, kwargs)
                    else:
                        self._forward(args, kwargs)
            except ForwardStopped:
                pass
            except _Departure as departure:
                raise GraphDeparted(str(departure)) from None
            else:
                session.check_complete()
            finally:
                session.active = False
                tracker.deactivate()
                set_active_pass(None)
        session.check_versions()
        return session.kept

    @contextlib.contextmanager
    def held(self):
        """Keep the module wrappers in place across the :meth:`run` calls inside.

        Wrapping every module costs microseconds per module; a loop of passes
        pays it once. Outside a run the wrappers call the plain forward, and
        the model is as it was once the block is left, also on error.

        Examples
        --------
        >>> import torch, torchlens_like as tll
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
        >>> history = tll.log_forward_pass(model, torch.rand(2, 3))
        >>> plan = LeanPlan(history, [history["1"].meta["capture_index"]], model)
        >>> with plan.held():
        ...     kept = [plan.run((torch.rand(2, 3),), {}) for _ in range(3)]
        >>> "forward" in model[0].__dict__
        False
        """
        if self._held is not None:
            yield self
            return
        tracker = _LeanTracker(self)
        with cyclic_gc_paused():
            tracker.wrap()
        self._held = tracker
        try:
            yield self
        finally:
            self._held = None
            tracker.unwrap()

    def _forward(self, args, kwargs):
        self.runner(*args, **kwargs)


def _module_targets(history, trace, layers):
    """``{module start index: [(tensor index, tensor count, position, copy)]}``, or None.

    None when some wanted layer is no module call's output.
    """
    starts = {}
    counts = {}
    for index, (_, address) in enumerate(trace.module_starts):
        counts[address] = counts.get(address, 0) + 1
        starts[(address, counts[address])] = index
    targets = {}
    for position, _, layer in layers:
        found = None
        for call in layer.module_passes_output:
            labels = history.module_outputs.get(call, [])
            index = starts.get((call.address, call.pass_num))
            if index is not None and layer.layer_label in labels:
                found = (index, labels.index(layer.layer_label), len(labels))
                break
        if found is None:
            return None
        index, tensor_index, count = found
        targets.setdefault(index, []).append(
            (tensor_index, count, position, bool(layer.meta.get("written_later"))))
    return targets


class _LeanSession:
    """The state of one lean pass: how far it got and what it kept."""

    intercepts_torch = True

    def __init__(self, plan, stop_early):
        self.plan = plan
        self.funcs = plan.funcs
        self.n_funcs = len(plan.funcs)
        self.starts = plan.module_starts
        self.position = 0
        self.module_index = 0
        self.kept = {}
        self.versions = {}
        self.kept_storages = {}
        self.remaining = plan.count if stop_early else None
        self.active = True
        self.thread = threading.get_ident()

    # -------------------------------------------------------------- checks
    def depart(self, what):
        raise _Departure(what)

    def check_call(self, func, name):
        i = self.position
        if i >= self.n_funcs:
            self.depart(f"op #{i} '{name}' runs after the last op of the known graph "
                        f"({self.n_funcs} ops)")
        expected = self.funcs[i]
        if func is not expected and func != expected:
            self.depart(f"op #{i} is '{name}' where the known graph has "
                        f"'{_name_of(expected)}'")
        self.position = i + 1
        return i

    def check_module(self, address, check_position):
        k = self.module_index
        if k >= len(self.starts):
            self.depart(f"module call #{k} '{address}' runs after the last module call of the "
                        f"known graph")
        calls_before, expected = self.starts[k]
        if expected != address or (check_position and calls_before != self.position):
            where = f" after op #{self.position}" if check_position else ""
            self.depart(f"module call #{k} is '{address}'{where} where the known graph has "
                        f"'{expected}' after op #{calls_before}")
        self.module_index = k + 1
        return k

    def check_complete(self):
        if self.plan.path == "ops" and self.position != self.n_funcs:
            raise GraphDeparted(f"the pass ran {self.position} ops where the known graph has "
                                f"{self.n_funcs}")
        if self.module_index != len(self.starts):
            raise GraphDeparted(f"the pass made {self.module_index} module calls where the "
                                f"known graph has {len(self.starts)}")

    def check_versions(self):
        for position, version in self.versions.items():
            if self.kept[position]._version != version:
                raise GraphDeparted(f"the kept value at position {position} was changed in "
                                    "place by a call the pass did not see")

    # ------------------------------------------------------------- keeping
    def keep(self, position, tensor, copy=False):
        alias = tensor.detach()
        if copy:
            alias = alias.clone()
        else:
            self.versions[position] = alias._version
            storage = storage_address(alias)
            if storage is not None:
                self.kept_storages.setdefault(storage, []).append(position)
        self.kept[position] = alias
        if self.remaining is not None:
            self.remaining -= 1

    def stop_if_done(self):
        if self.remaining == 0:
            raise ForwardStopped

    def protect(self, written):
        """Copy the kept aliases of the storages ``written`` is about to write into."""
        for tensor in written:
            for position in self.kept_storages.pop(storage_address(tensor), ()):
                self.kept[position] = self.kept[position].clone()
                self.versions.pop(position, None)

    def record_factory(self, func, name, args, kwargs, tensor, elapsed):
        """A factory call the interception mode cannot see (``from_numpy`` & co.) is an op too."""
        if not self.active or threading.get_ident() != self.thread or self.plan.path != "ops":
            return
        self.after_call(func, name, tensor, None)

    def after_call(self, func, name, out, outputs):
        """Check a call that made an op; keep its wanted outputs.

        ``outputs`` is ``tensor_outputs(out, ...)``, or None when ``out`` is the one tensor.
        """
        targets = self.plan.by_ordinal.get(self.check_call(func, name))
        if targets is not None:
            if outputs is None:
                outputs = ((None, out),)
            for path, position in targets:
                self.keep(position, _output_at(outputs, path))
            self.stop_if_done()


def _output_at(outputs, path):
    for output_path, tensor in outputs:
        if output_path == path:
            return tensor
    raise _Departure(f"the output {path} of a kept op is missing")



def _name_of(func):
    return call_traits(func)[0]


class _LeanMode(TorchFunctionMode):
    """Counts and checks every call that makes a node; keeps the wanted outputs."""

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
        if written and session.kept_storages:
            session.protect(written)
        out = func(*args, **kwargs)
        if isinstance(out, _Tensor):
            outputs = None
        else:
            outputs = tensor_outputs(out, written)
            if outputs is None:
                return out
        session.after_call(func, name, out, outputs)
        return out


class _LeanTracker(ModuleTracker):
    """Module-forward wrappers that check module calls and keep wanted module outputs.

    ``session`` is the pass running now (set by :meth:`LeanPlan.run`).
    """

    def __init__(self, plan):
        self.session = None
        self.addresses = plan.addresses
        self._installed = []
        self.check_positions = plan.path == "ops"
        self.targets = plan.by_module_start

    def call(self, address, forward, args, kwargs):
        session = self.session
        k = session.check_module(address, self.check_positions)
        output = forward(*args, **kwargs)
        targets = self.targets.get(k) if self.targets is not None else None
        if targets is not None:
            found = ((None, output),) if isinstance(output, _Tensor) else find_tensors(output)
            for tensor_index, count, position, copy in targets:
                if len(found) != count:
                    session.depart(f"module call #{k} '{address}' returned {len(found)} "
                                   f"tensors where the known graph has {count}")
                session.keep(position, found[tensor_index][1], copy)
            session.stop_if_done()
        return output
