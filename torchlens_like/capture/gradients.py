"""What a ``save_gradients`` pass keeps of the autograd graph, so a backward can run later.

Design decisions
----------------
* Each node keeps its gradient edge: the ``grad_fn`` and output number its
  tensor had when the node was made (a
  :class:`torch.autograd.graph.GradientEdge`). A later in-place op
  (``ReLU(inplace=True)``, ``+=``) gives the tensor object a new ``grad_fn``,
  but the kept edge still names the value the node recorded, so the gradient
  at a node is the derivative with respect to that value, as a tensor hook
  registered before the write would see it. Nothing is attached to the
  tensors themselves (no hooks), and no activation is kept attached: the
  edges and the model's return value hold the graph.
* The caller's floating-point input tensors are never touched: the model
  runs on copies requiring grad, so the input has a gradient and a model
  writing into its input writes into the copy. Inputs sharing memory share
  one copy (:func:`copy_storages`), so the graph and values are those of
  the pass without gradients.
* Per-call parameter gradients: a call reading a parameter that requires
  grad (with grad enabled) reads a per-call view of it
  (``param.view_as(param)``): the same values and storage, one autograd node
  per call. The gradient reaching that view is this call's share, and the
  shares of all calls sum to the parameter's gradient. The call's arguments
  are resolved before the swap, so the recorded graph names the parameter,
  as without gradients. A call that returns the parameter itself
  (``w.to(w.dtype)``, ``w.contiguous()``) makes its node stand for the
  parameter from then on, as without gradients; reads of the parameter
  through that node are then not split per call (the parameter is listed in
  :attr:`GradientRecorder.unsplit`), as are parameters the model returns.
  A parameter read with grad disabled inside a grad-enabled pass (the
  forward of a custom ``torch.autograd.Function``) gets no view; it is
  listed in :attr:`GradientRecorder.read_without_grad`, and the backward
  compares its whole gradient with the sum of its per-call ones.
* The model's return value is kept, attached, for the loss; everything is
  dropped by :meth:`GradientRecorder.release` (after a backward, or when
  asked), which frees the autograd graph.
* Saved activations are settled at the end of the pass as in any pass (see
  :mod:`.aliases`): the graph holds most of their storage, so most are
  copied, and no later write (the model, the loss, a backward writing into
  what it saved) reaches them.
"""

from __future__ import annotations

import torch
from torch.autograd.graph import GradientEdge, get_gradient_edge

from ..model_state import storage_address
from ..nested import find_tensors, map_nested

_Tensor = torch.Tensor
BY_IDENTITY = frozenset({torch.autograd.grad, torch.autograd.backward, _Tensor.backward,
                         _Tensor.register_hook, _Tensor.retain_grad, _Tensor.requires_grad_,
                         _Tensor.register_post_accumulate_grad_hook})
"""Calls that use a parameter as the object it is, not its value: never given a view."""


class GradientRecorder:
    """The autograd edges of one logged pass, by capture index and by call.

    Attributes
    ----------
    edges : dict
        ``{capture index: GradientEdge}`` of every node whose tensor required
        grad when it was made.
    param_edges : dict
        ``{call index: [(parameter address, GradientEdge of its per-call view), ...]}``.
    output : object
        What the model returned (attached to the graph), None once released.
    grad_enabled : bool
        Whether grad mode was on when the pass started.
    unsplit : set of str
        Addresses of parameters whose gradient is not wholly split per call:
        a call returned them unchanged, an autograd call read them, or the
        model returned them (see the module docstring).
    rebased : set of int
        Capture indices of nodes made for a view of memory that an in-place
        call wrote into during the pass: autograd may have given the view a
        new path (its recorded edge then gets no gradient).
    read_without_grad : dict
        ``{address: GradientEdge of the parameter}`` for parameters requiring
        grad that a call read with grad disabled inside the pass (the forward
        of a custom ``torch.autograd.Function``, a ``torch.no_grad()`` block):
        no per-call view is made there, so what reaches the parameter through
        such a call is found only by comparing its whole gradient with the
        per-call ones.

    Examples
    --------
    >>> from torchlens_like.capture.run import capture_forward
    >>> fc = torch.nn.Linear(2, 2)
    >>> result = capture_forward(torch.nn.Sequential(fc, fc), (torch.ones(1, 2),), {}, None,
    ...                          gradients=True)
    >>> recorder = result.gradients
    >>> sorted(recorder.edges), {call: [a for a, _ in edges]
    ...                          for call, edges in recorder.param_edges.items()}
    ([0, 1, 2, 3], {0: ['0.weight', '0.bias'], 1: ['0.weight', '0.bias']})
    >>> recorder.release(); recorder.output is None
    True
    """

    def __init__(self):
        self.edges = {}
        self.param_edges = {}
        self.output = None
        self.grad_enabled = torch.is_grad_enabled()
        self.unsplit = set()
        self.read_without_grad = {}
        self.rebased = set()
        self.released = False
        self._views = {}

    def copy_inputs(self, args, kwargs):
        """``(args, kwargs)`` with each floating-point tensor replaced by a copy requiring grad.

        Tensors sharing memory keep sharing it: a tensor given twice becomes
        one copy, and views of one storage become views of one copy (see
        :func:`copy_storages`), so writes through one are seen through the
        others as without the copy.

        Examples
        --------
        >>> x = torch.ones(2)
        >>> (copy,), _ = GradientRecorder().copy_inputs((x,), {})
        >>> copy.requires_grad, copy is x, x.requires_grad
        (True, False, False)
        """
        if not self.grad_enabled:
            return args, kwargs
        floats = [t for _, t in find_tensors((tuple(args), dict(kwargs)))
                  if t.is_floating_point() or t.is_complex()]
        copies = copy_storages(floats)
        return map_nested((tuple(args), dict(kwargs)),
                          lambda tensor, path: copies.get(id(tensor), tensor))

    def note(self, index, tensor):
        """Keep the gradient edge of the node at capture index ``index`` made for ``tensor``."""
        if tensor.requires_grad:
            fn = tensor.grad_fn
            self.edges[index] = get_gradient_edge(tensor) if fn is None \
                else GradientEdge(fn, tensor.output_nr)
            if tensor._base is not None:
                storage = storage_address(tensor)
                if storage is not None:
                    self._views[index] = storage

    def note_writes(self, storages):
        """At the end of the pass: the views among the nodes whose memory was written in place."""
        self.rebased = {index for index, storage in self._views.items() if storage in storages}
        self._views = {}

    def swap_parameters(self, func, args, kwargs, parameters, written):
        """The call's arguments with each parameter requiring grad read through a per-call view.

        ``parameters`` maps ``id(tensor)`` to the model's
        :class:`~torchlens_like.records.Parameter` records. Returns ``(args,
        kwargs, views)``, ``views`` being ``[(parameter, view), ...]`` (empty
        when nothing was swapped, and then the arguments are returned as
        they were). An autograd call (:data:`BY_IDENTITY`) keeps its
        parameters, which are listed in :attr:`unsplit`.
        """
        if not torch.is_grad_enabled():
            if self.grad_enabled:
                self._note_read_without_grad(args, kwargs, parameters)
            return args, kwargs, ()
        try:
            by_identity = func in BY_IDENTITY
        except TypeError:
            by_identity = False
        views = {}
        skip = {id(tensor) for tensor in written}

        def swap(tensor, path):
            key = id(tensor)
            if key not in parameters or key in skip or not tensor.requires_grad:
                return tensor
            if by_identity:
                self.unsplit.add(parameters[key].address)
                return tensor
            view = views.get(key)
            if view is None:
                view = views[key] = (tensor, tensor.view_as(tensor))
            return view[1]

        args, kwargs = map_nested((args, kwargs), swap)
        return args, kwargs, list(views.values())

    def _note_read_without_grad(self, args, kwargs, parameters):
        for _, tensor in find_tensors((args, kwargs)):
            record = parameters.get(id(tensor))
            if record is not None and tensor.requires_grad \
                    and record.address not in self.read_without_grad:
                self.read_without_grad[record.address] = get_gradient_edge(tensor)

    def note_returned_parameter(self, address):
        """The model returned the parameter at ``address`` itself (no call's share)."""
        self.unsplit.add(address)

    def note_call(self, call_index, views, parameters):
        """Keep the edges of one call's parameter views (``views`` from :meth:`swap_parameters`)."""
        self.param_edges[call_index] = [(parameters[id(param)].address, get_gradient_edge(view))
                                        for param, view in views]

    def keep_output(self, output):
        """Keep the model's return value (attached) until :meth:`release`."""
        self.output = output

    def release(self):
        """Drop the output and every edge: the autograd graph of the pass is freed."""
        self.output = None
        self.edges = {}
        self.param_edges = {}
        self.released = True


def copy_storages(tensors):
    """``{id(tensor): copy}``: copies requiring grad that share memory as ``tensors`` do.

    Tensors are grouped by storage. In a group holding one tensor that is
    not a view (``_base`` is None), that tensor is copied with its strides
    and the others become views of the copy with the same sizes, strides and
    offsets; a group of views only becomes views of one copy of the span of
    memory they cover (so, as for the originals, their base is no tensor of
    the pass). A group these rules cannot rebuild (several non-views, mixed
    dtypes, a view reaching outside its base) is copied tensor by tensor.

    Examples
    --------
    >>> x = torch.zeros(2, 3)
    >>> view = x[:, 1:]
    >>> copies = copy_storages([x, view])
    >>> a, b = copies[id(x)], copies[id(view)]
    >>> _ = a.detach().add_(1)
    >>> b._base is a, b.stride() == view.stride(), bool(b.eq(1).all()), bool(x.eq(0).all())
    (True, True, True, True)
    """
    groups = {}
    for tensor in tensors:
        storage = storage_address(tensor)
        key = (tensor.device, storage) if storage is not None else ("alone", id(tensor))
        groups.setdefault(key, {})[id(tensor)] = tensor
    copies = {}
    for group in groups.values():
        copies.update(_copy_group(list(group.values())) or
                      {id(t): t.detach().requires_grad_(True).clone() for t in group.values()})
    return copies


def _copy_group(group):
    """Copies of one storage's tensors sharing one copy, or None if it cannot be rebuilt."""
    if len(group) == 1 and group[0]._base is None:
        return None
    if len({t.dtype for t in group}) > 1:
        return None
    roots = [t for t in group if t._base is None]
    if len(roots) > 1:
        return None
    if roots:
        (root,) = roots
        start, end = root.storage_offset(), _end(root)
        if any(t.storage_offset() < start or _end(t) > end for t in group):
            return None
        leaf = root.detach().requires_grad_(True)
        shared = torch.empty_strided(root.shape, root.stride(), dtype=root.dtype,
                                     device=root.device).copy_(leaf)
    else:
        start = min(t.storage_offset() for t in group)
        end = max(_end(t) for t in group)
        span = torch.empty(0, dtype=group[0].dtype, device=group[0].device)
        with torch.no_grad():
            span.set_(group[0].untyped_storage(), start, (end - start,), (1,))
        shared = span.requires_grad_(True).clone()
    return {id(t): shared if roots and t is roots[0]
            else shared.as_strided(t.shape, t.stride(), t.storage_offset() - start
                                   + shared.storage_offset())
            for t in group}


def _end(tensor):
    """One past the last storage element ``tensor`` reads."""
    if tensor.numel() == 0:
        return tensor.storage_offset()
    return tensor.storage_offset() + 1 + sum((n - 1) * s for n, s in zip(tensor.shape,
                                                                         tensor.stride()))
