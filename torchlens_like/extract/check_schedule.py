"""Which batches of an extraction get a check (a validated full capture of a few stimuli).

The first batch of every group is always checked. After it, ``validate_every``
says which batches are:

* an integer ``n``: every ``n``-th batch of the group;
* ``None``: none;
* ``"auto"`` (the default): a batch whenever one more check keeps the checks'
  share of the run's time within :data:`CHECK_SHARE`. A check costs about
  the same whatever the batch size (a full capture and a replay of every op
  of a few stimuli), while a batch costs what the model costs, so a fixed
  ``n`` is either too rare for a slow model or too costly where the forward
  is fast (small inputs, a GPU). The share is measured on the run itself.
"""

from __future__ import annotations

import time

CHECK_SHARE = 0.05
"""The share of an extraction's time that ``validate_every="auto"`` spends on later checks."""


class CheckSchedule:
    """Says, batch by batch, whether a check is due; learns what checks cost.

    Parameters
    ----------
    validate_every : int, None or "auto"
        See the module docstring.
    clock : callable
        Seconds as a float (``time.perf_counter``; tests pass their own).

    Examples
    --------
    >>> schedule = CheckSchedule(3)
    >>> [schedule.due(("a",)) for _ in range(7)]
    [True, False, False, True, False, False, True]
    >>> CheckSchedule("every time")
    Traceback (most recent call last):
    ...
    ValueError: validate_every must be a positive integer (check every n-th batch), None (the first batch only) or 'auto' (checks within 5 % of the run's time), got 'every time'
    """

    def __init__(self, validate_every="auto", clock=time.perf_counter):
        if not (validate_every is None or validate_every == "auto" or (
                isinstance(validate_every, int) and not isinstance(validate_every, bool)
                and validate_every >= 1)):
            raise ValueError(f"validate_every must be a positive integer (check every n-th "
                             f"batch), None (the first batch only) or 'auto' (checks within "
                             f"{CHECK_SHARE * 100:g} % of the run's time), got "
                             f"{validate_every!r}")
        self.validate_every = validate_every
        self.clock = clock
        self.started = clock()
        self.spent = 0.0
        self.last = 0.0
        self.batches = {}

    def due(self, group):
        """Whether the next batch of ``group`` (a tuple of layer keys) gets a check."""
        count = self.batches.get(group, 0)
        self.batches[group] = count + 1
        if count == 0:
            return True
        if self.validate_every == "auto":
            elapsed = self.clock() - self.started
            return self.spent + self.last <= CHECK_SHARE * (elapsed + self.last)
        return self.validate_every is not None and count % self.validate_every == 0

    def record(self, seconds):
        """Count one check that took ``seconds``."""
        self.spent += seconds
        self.last = seconds
