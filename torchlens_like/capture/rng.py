"""Generator state of the calls that draw random numbers, recorded so they can be replayed.

Design decisions
----------------
* Reading the generator state copies it (about 5 KB for the CPU generator,
  plus the CUDA generator's for GPU inputs); doing that before every call
  cost more than everything else a call records. So the state is read only
  around calls that can draw (:func:`draw_rule`): those known by name
  (:data:`DRAWING_NAMES`, every torch operator whose schema takes a
  ``Generator``, and names with a part of :data:`DRAWING_PARTS`: dropout,
  attention, recurrent layers...), and, once per process, the first call of
  any other function, to learn whether it draws (one that did is treated as
  drawing from then on).
* Which calls draw cannot be fully told from their names (a composite call
  drawing under a flag the rules do not know), so the log checks itself: the
  state read before a call is compared with the one read after the previous
  call that was read (the *checkpoint*), and the state when the pass ends
  with the last checkpoint. A difference means a call in between drew
  (:attr:`DrawLog.unexplained`). The capture then gives every call of that
  window the window's starting state (exact when one of them drew: a call
  that draws nothing ignores the state it is replayed with), treats their
  functions as drawing from then on, and warns when the window held more than
  one call (a later drawing call there may replay differently). Never
  silently wrong; exact again from the next pass.
* A call's state is kept only when the state after it differs (the call
  drew), so replay sets the generator only for calls that need it.
* Calls returning no tensor make no node and are not read; a window's
  draws are attributed to the calls that made nodes. Setting the generator
  inside the forward (``torch.manual_seed``), or another thread drawing from
  the same process-wide generator during the pass, reads as an unexplained
  draw: a warning, never a wrong replay of a call that was read.
"""

from __future__ import annotations

import torch

NEVER, ALWAYS, UNSEEN = 0, 1, 2
"""Values of :func:`draw_rule`: never read, read around every call, read around the first call."""

DRAWING_NAMES = frozenset({
    "bernoulli", "bernoulli_", "multinomial", "normal", "normal_", "uniform_", "random_",
    "exponential_", "geometric_", "log_normal_", "cauchy_", "poisson", "binomial",
    "_standard_gamma", "_sample_dirichlet", "rrelu", "rrelu_", "gumbel_softmax",
    "lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell",
})
"""Functions known to draw random numbers (for some arguments), besides those of the schemas."""

DRAWING_PARTS = ("rand", "dropout", "attention", "fractional_max_pool", "uniform", "normal_")
"""A function whose name contains one of these may draw (``randn``, ``feature_alpha_dropout``,
``scaled_dot_product_attention`` with ``dropout_p``, ``kaiming_uniform_``...)."""

_schema_names = []


def _generator_operators():
    """Names of the torch operators whose schema takes a ``Generator`` (read once)."""
    if not _schema_names:
        names = set()
        for schema in torch._C._jit_get_all_schemas():
            if any("Generator" in str(argument.type) for argument in schema.arguments):
                names.add(schema.name.rpartition("::")[2])
        _schema_names.append(frozenset(names))
    return _schema_names[0]


def draw_rule(name):
    """Whether calls of a function called ``name`` may draw: :data:`ALWAYS` or :data:`UNSEEN`.

    The capture reads the state around the first call of an :data:`UNSEEN`
    function in the process, and from then on treats the function as
    :data:`ALWAYS` (it drew) or :data:`NEVER`.

    Examples
    --------
    >>> draw_rule("dropout") == ALWAYS, draw_rule("randn_like") == ALWAYS
    (True, True)
    >>> draw_rule("conv2d") == UNSEEN
    True
    """
    if name in DRAWING_NAMES or name in _generator_operators():
        return ALWAYS
    if any(part in name for part in DRAWING_PARTS):
        return ALWAYS
    return UNSEEN


def read_state(cuda):
    """The generator state a call is about to consume: ``{"torch": ..., "cuda": ...}``.

    Examples
    --------
    >>> import torch
    >>> state = read_state(False); a = torch.rand(1)
    >>> torch.set_rng_state(state["torch"]); bool(torch.rand(1) == a)
    True
    """
    state = {"torch": torch.get_rng_state()}
    if cuda:
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def same_state(first, second):
    """Whether two :func:`read_state` results are equal on every generator both read."""
    if not torch.equal(first["torch"], second["torch"]):
        return False
    cuda = first.get("cuda")
    return cuda is None or "cuda" not in second or torch.equal(cuda, second["cuda"])


class DrawLog:
    """The generator states of one pass: around the calls that may draw, and the checks between.

    Made when the pass starts (its first checkpoint is the state then). The
    session numbers its calls; :meth:`before` and :meth:`after` are called
    around a call that may draw, :meth:`close` when the pass ends.

    Attributes
    ----------
    unexplained : list of (int, int, dict)
        ``(first call, end call, state)``: the calls numbered ``first`` to
        ``end - 1`` drew random numbers that no read accounts for; ``state``
        is the state before the first of them.

    Examples
    --------
    >>> import torch
    >>> log = DrawLog()
    >>> state = log.before(False, 0); _ = torch.rand(1); log.after(state, 1) is state
    True
    >>> _ = torch.randn(1)  # call 1, not read
    >>> log.close(2); [(first, end) for first, end, _ in log.unexplained]
    [(1, 2)]
    """

    __slots__ = ("unexplained", "_last", "_first", "_cuda")

    def __init__(self):
        self._cuda = torch.cuda.is_initialized()
        self._last = read_state(self._cuda)
        self._first = 0
        self.unexplained = []

    def before(self, on_cuda, index):
        """Read the state before call number ``index``; return it (kept by :meth:`after`)."""
        if on_cuda and not self._cuda and torch.cuda.is_initialized():
            self._cuda = True
        state = read_state(self._cuda)
        if self._first < index and not same_state(state, self._last):
            self.unexplained.append((self._first, index, self._last))
        return state

    def after(self, before, next_index):
        """After the call read by :meth:`before`: ``before`` if the call drew, else None.

        The state now is the next checkpoint; ``next_index`` is the number the
        next call will get.
        """
        self._last = state = read_state("cuda" in before)
        self._first = next_index
        return None if same_state(before, state) else before

    def close(self, end_index):
        """At the end of the pass: check the calls since the last checkpoint."""
        if self._first < end_index and not same_state(read_state(self._cuda), self._last):
            self.unexplained.append((self._first, end_index, self._last))
