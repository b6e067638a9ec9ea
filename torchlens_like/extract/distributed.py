"""Extraction split over the processes of a ``torchrun`` launch (``torch.distributed``).

``torchrun`` starts the processes and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; ``torch.distributed``
carries the coordination: NCCL as the default backend on GPUs, gloo on CPUs,
and always a gloo group for the small control messages (status flags,
Python objects, the monitored barrier). Without those variables
:func:`detect_launch` returns None and extraction runs as a single process,
untouched by anything here.

Design decisions
----------------
* Work is cut into batches aligned on multiples of ``batch_size`` counted
  from stimulus 0, exactly the batches a single uninterrupted process would
  run, so every stimulus goes through the model in the same company and the
  features come out byte-identical whatever the number of ranks.
* The batches still to do are split between ranks contiguously (each rank
  one block, read sequentially; the default) or strided (batch ``i`` to rank
  ``i % world_size``; better balanced when the cost per stimulus drifts
  along the set), chosen by name from :data:`SPLITS` through the
  ``TLL_DISTRIBUTED_SPLIT`` environment variable.
* Ranks move in lockstep: after each batch (and each other stage) every rank
  all-reduces a flag. A rank that raised reports it; every rank then prints
  and raises :class:`RankFailure` naming the failed rank, the stage and its
  error, instead of waiting for a partner that will never come. The message
  is printed on every rank before any of them exits, since ``torchrun``
  terminates the others as soon as one process ends with an error.
* A rank that hangs or disappears without reporting (killed, out of memory)
  makes the next collective fail, or time out after ``timeout`` seconds.
  Every rank notes what it is doing in the launch's key-value store before
  each collective, so the error names the rank that did not come and what
  it was last doing.
* Layers are resolved by rank 0 and shared; every rank checks that its own
  graph has the same layers at the same places (label, function, shape,
  dtype) and a difference raises :class:`PlanMismatch` on every rank, naming
  the rank and the layer.
* Finishing: a monitored barrier (which names ranks that do not arrive) so
  that every rank's slices are complete, then rank 0 alone assembles the
  output, then a last stage so that every rank returns only once it exists.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import sys

import torch

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
TIMEOUT_VARIABLE = "TLL_DISTRIBUTED_TIMEOUT"
SPLIT_VARIABLE = "TLL_DISTRIBUTED_SPLIT"
DEFAULT_TIMEOUT_S = 1800.0


class RankFailure(RuntimeError):
    """Another rank (or this one) failed; the message names the rank and what it was doing."""


class PlanMismatch(RuntimeError):
    """A rank's graph does not have the layers rank 0 resolved."""


@dataclasses.dataclass(frozen=True)
class Launch:
    """Where this process stands in a ``torchrun`` launch."""

    rank: int
    world_size: int
    local_rank: int


def detect_launch(environ=None):
    """The :class:`Launch` described by ``torchrun``'s environment variables, or None.

    Parameters
    ----------
    environ : mapping, optional
        Defaults to ``os.environ``.

    Examples
    --------
    >>> detect_launch({})
    >>> detect_launch({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1",
    ...                "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"})
    Launch(rank=1, world_size=2, local_rank=1)
    """
    environ = os.environ if environ is None else environ
    present = [name for name in LAUNCH_VARIABLES if name in environ]
    if not present:
        return None
    missing = [name for name in LAUNCH_VARIABLES if name not in environ]
    if missing:
        raise RuntimeError(f"the environment sets {', '.join(present)} but not "
                           f"{', '.join(missing)}: start distributed extraction with torchrun "
                           "(it sets all of them), or unset them for a single process.")
    return Launch(int(environ["RANK"]), int(environ["WORLD_SIZE"]), int(environ["LOCAL_RANK"]))


def timeout_from_environment(environ=None):
    """Seconds a rank waits for the others: ``TLL_DISTRIBUTED_TIMEOUT`` or 1800.

    Examples
    --------
    >>> timeout_from_environment({}), timeout_from_environment({"TLL_DISTRIBUTED_TIMEOUT": "60"})
    (1800.0, 60.0)
    """
    environ = os.environ if environ is None else environ
    text = environ.get(TIMEOUT_VARIABLE)
    if text is None:
        return DEFAULT_TIMEOUT_S
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{TIMEOUT_VARIABLE}={text!r} is not a number of seconds") from None


def split_from_environment(environ=None):
    """How batches are split between ranks: ``TLL_DISTRIBUTED_SPLIT`` or ``"contiguous"``.

    Examples
    --------
    >>> split_from_environment({}), split_from_environment({"TLL_DISTRIBUTED_SPLIT": "strided"})
    ('contiguous', 'strided')
    """
    environ = os.environ if environ is None else environ
    return environ.get(SPLIT_VARIABLE, "contiguous")


def aligned_batches(ranges, batch_size):
    """Cut stimulus ranges into batches aligned on multiples of ``batch_size``.

    Examples
    --------
    >>> aligned_batches([(0, 5), (7, 12)], 4)
    [(0, 4), (4, 5), (7, 8), (8, 12)]
    """
    batches = []
    for start, stop in ranges:
        position = start
        while position < stop:
            end = min(stop, (position // batch_size + 1) * batch_size)
            batches.append((position, end))
            position = end
    return batches


def split_contiguous(batches, world_size):
    """One block of consecutive batches per rank, sizes differing by at most one.

    Examples
    --------
    >>> split_contiguous(list("abcde"), 2)
    [['a', 'b', 'c'], ['d', 'e']]
    """
    size, extra = divmod(len(batches), world_size)
    shares, start = [], 0
    for rank in range(world_size):
        stop = start + size + (rank < extra)
        shares.append(list(batches[start:stop]))
        start = stop
    return shares


def split_strided(batches, world_size):
    """Batch ``i`` to rank ``i % world_size``.

    Examples
    --------
    >>> split_strided(list("abcde"), 2)
    [['a', 'c', 'e'], ['b', 'd']]
    """
    return [list(batches[rank::world_size]) for rank in range(world_size)]


SPLITS = {"contiguous": split_contiguous, "strided": split_strided}


def split_work(ranges, batch_size, world_size, split="contiguous"):
    """Every rank's batches of the stimulus ranges still to do.

    Parameters
    ----------
    ranges : list of (int, int)
        Stimulus ranges ``[start, stop)`` not yet extracted, in order.
    batch_size : int
    world_size : int
    split : {"contiguous", "strided"}

    Returns
    -------
    list of list of (int, int)
        ``shares[rank]``: that rank's batches in stimulus order.

    Examples
    --------
    >>> split_work([(0, 10)], 3, 2)
    [[(0, 3), (3, 6)], [(6, 9), (9, 10)]]
    >>> split_work([(0, 10)], 3, 2, split="strided")
    [[(0, 3), (6, 9)], [(3, 6), (9, 10)]]
    """
    try:
        chooser = SPLITS[split]
    except KeyError:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}") from None
    return chooser(aligned_batches(ranges, batch_size), world_size)


def runs_of(batches, batch_size):
    """Group a rank's batches into runs a stimulus set can yield with the same boundaries.

    A run starts at a multiple of ``batch_size`` (or is a single batch), so
    ``stimuli.batches(start, stop, batch_size)`` cuts it into exactly these batches.

    Examples
    --------
    >>> runs_of([(2, 4), (4, 8), (8, 12), (16, 20)], 4)
    [(2, 4), (4, 12), (16, 20)]
    """
    runs = []
    for start, stop in batches:
        if runs and runs[-1][1] == start and runs[-1][0] % batch_size == 0:
            runs[-1] = (runs[-1][0], stop)
        else:
            runs.append((start, stop))
    return runs


def plan_differences(reference, plans, describe=repr):
    """The first layer where ``plans`` differ from ``reference``, as a sentence, or None.

    Examples
    --------
    >>> plan_differences([("a", 1)], [("a", 2)])
    "layer 0: ('a', 2) instead of ('a', 1)"
    """
    if len(plans) != len(reference):
        return f"{len(plans)} layers instead of {len(reference)}"
    for index, (expected, found) in enumerate(zip(reference, plans)):
        if found != expected:
            return f"layer {index}: {describe(found)} instead of {describe(expected)}"
    return None


def _whereabouts_store():
    """A client of the launch's key-value store (torchrun's, at ``MASTER_ADDR:MASTER_PORT``).

    Each rank writes there what it is doing, so that a rank whose collective
    times out can name the rank that did not come. None when it cannot be
    reached (the errors then name no rank).
    """
    import torch.distributed as dist

    try:
        store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                              is_master=False, timeout=datetime.timedelta(seconds=30))
    except (KeyError, ValueError, RuntimeError):
        return None
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    DistributedRun.opened += 1
    return dist.PrefixStore(f"torchlens_like/{restart}/{DistributedRun.opened}/", store)


class DistributedRun:
    """The process group of one ``torchrun`` launch, as used by one extraction.

    Parameters
    ----------
    launch : Launch
        From :func:`detect_launch`.
    timeout : float, optional
        Seconds to wait for the other ranks at any step (default
        :func:`timeout_from_environment`).
    backend : str, optional
        Default: ``"nccl"`` when CUDA is available, else ``"gloo"``.

    Use it as a context manager: it joins the process group (or uses the one
    the script already made) and leaves it as found.

    Examples
    --------
    >>> run = DistributedRun(Launch(0, 1, 0), backend="gloo")
    >>> run.device
    device(type='cpu')
    """

    opened = 0
    """How many runs this process has opened (same count on every rank: a key prefix)."""

    def __init__(self, launch, timeout=None, backend=None):
        self.launch = launch
        self.rank = launch.rank
        self.world_size = launch.world_size
        self.timeout_s = timeout_from_environment() if timeout is None else float(timeout)
        self.backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        self.device = (torch.device("cuda", launch.local_rank) if self.backend == "nccl"
                       else torch.device("cpu"))
        self._created = False
        self._control = None
        self._whereabouts = None
        self._collectives = 0

    @property
    def is_main(self):
        return self.rank == 0

    def __enter__(self):
        import torch.distributed as dist

        timeout = datetime.timedelta(seconds=self.timeout_s)
        if not dist.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group(self.backend, timeout=timeout,
                                    device_id=self.device if self.device.type == "cuda" else None)
            self._created = True
        elif dist.get_world_size() != self.world_size or dist.get_rank() != self.rank:
            raise RuntimeError(f"the process group already made has rank {dist.get_rank()} of "
                               f"{dist.get_world_size()}, but torchrun's environment says rank "
                               f"{self.rank} of {self.world_size}")
        if dist.get_backend() == "gloo":
            self._control = dist.group.WORLD
        else:
            self._control = dist.new_group(backend="gloo", timeout=timeout)
        self._whereabouts = _whereabouts_store()
        return self

    def __exit__(self, *exc_info):
        import torch.distributed as dist

        if self._control is not dist.group.WORLD and self._control is not None:
            dist.destroy_process_group(self._control)
        self._control = None
        self._whereabouts = None
        if self._created:
            dist.destroy_process_group()
            self._created = False
        return False

    def _note(self, **fields):
        """Tell the other ranks where this one is (read when a collective fails)."""
        if self._whereabouts is not None:
            for name, value in fields.items():
                self._whereabouts.set(f"{name}/{self.rank}", str(value))

    def _missing_ranks(self):
        """``"rank 1 (last seen extracting stimuli 6:8)"`` for ranks not at this collective."""
        store, missing = self._whereabouts, []
        if store is None:
            return missing
        try:
            for rank in range(self.world_size):
                arrived = (int(store.get(f"arrived/{rank}"))
                           if store.check([f"arrived/{rank}"]) else 0)
                if rank != self.rank and arrived < self._collectives:
                    doing = (store.get(f"doing/{rank}").decode()
                             if store.check([f"doing/{rank}"]) else "starting")
                    missing.append(f"rank {rank} (last seen {doing})")
        except RuntimeError:
            return []
        return missing

    def _collective(self, what, call, *args, **kwargs):
        self._collectives += 1
        self._note(arrived=self._collectives, doing=f"waiting for the others after {what}")
        try:
            return call(*args, group=self._control, **kwargs)
        except RuntimeError as exc:
            if isinstance(exc, RankFailure):
                raise
            missing = self._missing_ranks()
            who = ", ".join(missing) if missing else "a rank"
            raise RankFailure(
                f"rank {self.rank}: lost {who} while {what}: it hangs (no answer within "
                f"{self.timeout_s:g} s) or stopped without reporting (killed, out of memory; "
                f"torchrun's summary names the process): {exc}") from exc

    @contextlib.contextmanager
    def stage(self, what):
        """Run the body on every rank, then raise on every rank if any rank's body raised.

        ``what`` (e.g. ``"extracting stimuli 0:32"``) goes into the error. A
        :class:`RankFailure` names every rank that failed with its error; on
        the failed rank it is chained to the original exception.
        """
        import torch.distributed as dist

        error = None
        self._note(doing=what)
        try:
            yield
        except Exception as exc:  # reported to every rank, re-raised below
            error = exc
        flags = torch.zeros(self.world_size, dtype=torch.int32)
        flags[self.rank] = error is not None
        self._collective(what, dist.all_reduce, flags)
        if not flags.any():
            return
        own = None if error is None else f"{what}: {type(error).__name__}: {error}"
        messages = [None] * self.world_size
        self._collective(what, dist.all_gather_object, messages, own)
        failed = [f"rank {rank} failed while {message}" for rank, message in enumerate(messages)
                  if message is not None]
        failure = RankFailure("; ".join(failed) + f" (reported on rank {self.rank})")
        print(f"[rank {self.rank}] {type(failure).__name__}: {failure}", file=sys.stderr,
              flush=True)
        self._collective(what, dist.barrier)
        raise failure from error

    def broadcast(self, value, what="sharing rank 0's result"):
        """Rank 0's ``value`` on every rank."""
        import torch.distributed as dist

        box = [value if self.is_main else None]
        self._collective(what, dist.broadcast_object_list, box, src=0)
        return box[0]

    def gather(self, value, what="gathering from every rank"):
        """Every rank's ``value``, in rank order, on every rank."""
        import torch.distributed as dist

        values = [None] * self.world_size
        self._collective(what, dist.all_gather_object, values, value)
        return values

    def max(self, count, what="agreeing on the number of steps"):
        """The largest ``count`` over all ranks."""
        import torch.distributed as dist

        value = torch.tensor([count], dtype=torch.int64)
        self._collective(what, dist.all_reduce, value, op=dist.ReduceOp.MAX)
        return int(value)

    def check_plans(self, plans, describe=repr):
        """Rank 0's ``plans``; raise :class:`PlanMismatch` on every rank if any rank's differ.

        Parameters
        ----------
        plans : list
            This rank's resolution of the requested layers (comparable values).
        describe : callable
            One plan -> text for the error message.
        """
        every = self.gather(plans, "comparing the resolved layers")
        reference = every[0]
        differences = [f"rank {rank}: {difference}" for rank, difference in
                       ((r, plan_differences(reference, p, describe)) for r, p in enumerate(every))
                       if difference is not None]
        if differences:
            raise PlanMismatch(
                "the model's graph differs between ranks, so they would not write the same "
                "layers (rank 0 resolved them): " + "; ".join(differences) + ". Give every rank "
                "the same model, weights and stimulus transform.")
        return reference

    def run_share(self, batches, batch_iterator, work):
        """Process this rank's ``batches`` (from ``batch_iterator``) in lockstep with the others.

        Parameters
        ----------
        batches : list of (int, int)
            This rank's stimulus ranges, one per batch, in order.
        batch_iterator : iterator
            Yields this rank's batches in the same order (whatever ``work`` needs).
        work : callable
            Called with each item of ``batch_iterator``.
        """
        steps = self.max(len(batches))
        for step in range(steps):
            what = (f"extracting stimuli {batches[step][0]}:{batches[step][1]}"
                    if step < len(batches) else "waiting for the other ranks' batches")
            with self.stage(what):
                if step < len(batches):
                    work(next(batch_iterator))

    def finish(self, assemble):
        """Once every rank is done, ``assemble()`` on rank 0; every rank returns once it is.

        The barrier is monitored: a rank that does not arrive within the
        timeout is named in the error.
        """
        import torch.distributed as dist

        self._collective("waiting for every rank to finish its slices", dist.monitored_barrier,
                         timeout=datetime.timedelta(seconds=self.timeout_s), wait_all_ranks=True)
        with self.stage("assembling the output (rank 0)"):
            if self.is_main:
                assemble()
