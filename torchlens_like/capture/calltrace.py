"""The call trace of a captured pass: which function each op called, where modules started.

A full capture records, besides its nodes, the sequence of intercepted calls
that made nodes (the called function and the node's ``call_index``) and, for
every module call, the address and the number of such calls made before it
started. A later pass over an input of the same kind can then be checked
against the known graph op by op and module call by module call without
making any node (:mod:`.lean`). Calls the capture adds itself (the
``as_strided_scatter`` / ``as_strided`` nodes of writes into views) are not in
the trace: a plain forward never makes them.

Like the nodes' replay records, the trace is backend information: only the
torch backend's lean pass reads it.
"""

from __future__ import annotations


class CallTrace:
    """The intercepted calls and module calls of one captured pass, in execution order.

    Attributes
    ----------
    funcs : list
        The function of every intercepted call that made nodes.
    call_indices : list of int
        ``call_index`` of that call's nodes (parallel to ``funcs``).
    module_starts : list of (int, str)
        ``(number of calls in funcs made before it, module address)`` for each
        module call, in the order the calls started.

    Examples
    --------
    >>> import torch
    >>> trace = CallTrace(); trace.add_call(torch.relu, 0); trace.add_module(1, "block")
    >>> trace.ordinal_of(0), trace.module_starts
    (0, [(1, 'block')])
    """

    __slots__ = ("funcs", "call_indices", "module_starts", "_ordinals")

    def __init__(self):
        self.funcs = []
        self.call_indices = []
        self.module_starts = []
        self._ordinals = None

    def add_call(self, func, call_index):
        self.funcs.append(func)
        self.call_indices.append(call_index)

    def add_module(self, calls_before, address):
        self.module_starts.append((calls_before, address))

    def ordinal_of(self, call_index):
        """Position in :attr:`funcs` of the call that made nodes ``call_index``, or None.

        None for the nodes the capture added itself (writes into views).
        """
        if self._ordinals is None:
            self._ordinals = {index: i for i, index in enumerate(self.call_indices)}
        return self._ordinals.get(call_index)
