"""The manifest of an output folder: what was asked, what is done, and checksums.

``manifest.json`` records the extraction's identity (model, source, weights,
transform, layers and their resolved labels, reductions, format, stimuli),
the layout of every layer (shape per stimulus, dtype, file), versions, and
for every layer the stimulus ranges completed so far, each with a running
CRC-32 of the values handed to the writer for that range (computed in memory,
so a resumed run that reads the file back checks it against what was meant
to be written, not against an earlier read of the same file). It is rewritten after every batch
under a temporary name and moved into place, so it is never half-written.

Design decisions
----------------
* Progress is kept per layer as a list of ``[start, stop, crc32]`` entries,
  one per written batch, not as one counter: a resumed run verifies them
  and fills the gaps, ranks of a distributed run each add their own, and
  damage found later (rows changed behind the manifest's back) is named by
  rows and only the damaged batches are extracted again.
* Recording a batch costs one pass over its bytes in memory; checking a
  finished output costs one read of every file (:meth:`Manifest.damaged`).
* ``validation`` lists the checks of the extraction's lean passes (see
  :mod:`.extraction`): per check the stimuli, the layers, the result and the
  library version.
* Arguments that change what is written (the identity) must match an
  existing manifest exactly; the error names the first one that differs.
  Arguments that only change how the work is done (batch size, workers,
  memory limit, early stop) may differ between a run and its resumption.
* The transform is identified by :func:`describe_transform`, which gives the
  same text in every process: a resumed run is a new process, where a plain
  function's ``repr`` (its memory address) would differ.
"""

from __future__ import annotations

import json
import os
import re
import types
import zlib

import numpy as np

from .writers import replace_atomically

FILENAME = "manifest.json"
VERIFY_ROWS = 256


_MEMORY_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def describe_transform(transform):
    """A description of ``transform`` that is the same in every process that builds it alike.

    A function is named by its module and qualified name; anything else by
    its ``repr`` with memory addresses (``at 0x7f...``) removed, so a
    torchvision ``Compose`` lists its steps and their settings. To tell
    apart transforms that this describes alike (two lambdas of one scope,
    objects without a ``repr`` of their own), give the transform's class a
    ``__repr__`` that says what differs.

    Examples
    --------
    >>> import json
    >>> from torchvision import transforms
    >>> describe_transform(json.dumps)
    'json.dumps'
    >>> describe_transform(transforms.Compose([transforms.CenterCrop(8)]))
    'Compose(\\n    CenterCrop(size=(8, 8))\\n)'
    >>> describe_transform(object())
    '<object object>'
    """
    if transform is None:
        return None
    if isinstance(transform, (types.FunctionType, types.BuiltinFunctionType)):
        return f"{transform.__module__}.{transform.__qualname__}"
    return _MEMORY_ADDRESS.sub("", repr(transform))


class ManifestMismatch(ValueError):
    """An output folder holds an extraction made with different arguments."""


class Manifest:
    """Identity, layouts and per-layer progress of one output folder.

    Examples
    --------
    >>> import tempfile
    >>> manifest = Manifest(tempfile.mkdtemp(), {"model": "m"}, {"a": {"shape": [2]}}, 10)
    >>> manifest.record("a", 0, 4, np.zeros((4, 2))); manifest.record("a", 4, 6, np.ones((2, 2)))
    >>> manifest.done("a"), manifest.missing("a", 0, 10)
    (6, [(6, 10)])
    """

    def __init__(self, directory, identity, layers, n_stimuli, versions=None):
        self.directory = directory
        self.identity = identity
        self.layers = layers
        self.n_stimuli = n_stimuli
        self.versions = versions or {}
        self.progress = {key: [] for key in layers}
        self.skipped = {}
        self.world_sizes = []
        self.validation = []
        self.complete = False

    @property
    def path(self):
        return os.path.join(self.directory, FILENAME)

    def to_dict(self):
        """The JSON content."""
        return {"identity": self.identity, "n_stimuli": self.n_stimuli, "layers": self.layers,
                "versions": self.versions, "progress": self.progress,
                "skipped": {str(k): v for k, v in sorted(self.skipped.items())},
                "world_sizes": self.world_sizes, "validation": self.validation,
                "complete": self.complete}

    @classmethod
    def load(cls, directory):
        """Read ``directory/manifest.json``."""
        with open(os.path.join(directory, FILENAME)) as file:
            data = json.load(file)
        manifest = cls(directory, data["identity"], data["layers"], data["n_stimuli"],
                       data["versions"])
        manifest.progress = {k: [list(r) for r in v] for k, v in data["progress"].items()}
        manifest.skipped = {int(k): v for k, v in data.get("skipped", {}).items()}
        manifest.world_sizes = list(data.get("world_sizes", []))
        manifest.validation = list(data.get("validation", []))
        manifest.complete = data["complete"]
        return manifest

    def save(self):
        """Write the manifest under a temporary name and move it into place."""
        text = json.dumps(self.to_dict(), indent=1)

        def write(tmp):
            with open(tmp, "w") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())

        replace_atomically(self.path, write)

    def check_identity(self, identity, n_stimuli):
        """Raise :class:`ManifestMismatch` naming the first argument that differs."""
        for key in sorted(set(identity) | set(self.identity)):
            old, new = self.identity.get(key), identity.get(key)
            if old != new:
                raise ManifestMismatch(
                    f"{self.directory!r} holds an extraction made with {key}={old!r}, not "
                    f"{new!r}. Use another output_dir, or delete this one to start over.")
        if n_stimuli != self.n_stimuli:
            raise ManifestMismatch(f"{self.directory!r} holds features of {self.n_stimuli} "
                                   f"stimuli, not {n_stimuli}. Use another output_dir.")

    def record(self, key, start, stop, values):
        """Mark ``key``'s stimuli ``start:stop`` as written; ``values`` their rows, as written."""
        self.progress[key].append([start, stop, _crc(values)])
        self.progress[key].sort()

    def done(self, key):
        """How many stimuli of ``key`` are written."""
        return sum(stop - start for start, stop, _ in self.progress[key])

    def covers(self, key, start, stop):
        """Whether stimuli ``start:stop`` of ``key`` are all written already."""
        return not self.missing(key, start, stop)

    def missing(self, key, start, stop):
        """The ranges of ``start:stop`` not yet written for ``key``."""
        gaps, position = [], start
        for low, high, _ in self.progress[key]:
            if low > position:
                gaps.append((position, min(low, stop)))
            position = max(position, high)
        if position < stop:
            gaps.append((position, stop))
        return [(a, b) for a, b in gaps if a < b]

    def damaged(self, key, read_slice):
        """The ``(start, stop)`` batches of ``key`` whose rows on disk no longer match their CRC.

        ``read_slice(start, stop)`` reads rows from the file.
        """
        found = []
        for start, stop, crc in self.progress[key]:
            computed = 0
            for low in range(start, stop, VERIFY_ROWS):
                computed = _crc(read_slice(low, min(stop, low + VERIFY_ROWS)), computed)
            if computed != crc:
                found.append((start, stop))
        return found

    def verify(self, key, read_slice):
        """Drop the batches of ``key`` found :meth:`damaged`, so they are extracted again.

        Returns the dropped ``(start, stop)`` batches.
        """
        dropped = self.damaged(key, read_slice)
        self.progress[key] = [entry for entry in self.progress[key]
                              if (entry[0], entry[1]) not in dropped]
        return dropped


def _crc(values, crc=0):
    """CRC-32 of an array's bytes in C order, continuing ``crc``."""
    return zlib.crc32(np.ascontiguousarray(values), crc)
