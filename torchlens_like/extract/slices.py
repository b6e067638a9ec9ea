"""Per-slice files: what each rank of a distributed extraction has finished.

Each rank writes the features of every batch it finishes as one file,
``slices/<start>-<stop>-<layers tag>.npz`` (numpy's uncompressed zip of ``.npy`` members,
one per layer, plus the stimuli that could not be read). The file is written
under a temporary name and moved into place, so its presence is the
completion record of that stimulus range, and the zip's own CRC-32 of every
member is checked when it is read back.

Design decisions
----------------
* Records are keyed by stimulus range, not by rank: a relaunch with any
  number of processes sees what is done and splits only what is not.
* Every rank writes only its own files, never a shared one, so the scheme
  holds on a filesystem shared between nodes (no concurrent writes to one
  file, no locks). Rank 0 assembles the final output from the slices.
* Member names are positions (``layer0``, ``layer1``...); the layer keys are
  stored in the ``meta`` member, so any key (``"block:2"``, ``"-1"``) works.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import zipfile
import zlib

import numpy as np

FOLDER = "slices"
_NAME = re.compile(r"^(\d+)-(\d+)-[0-9a-f]{8}\.npz$")


@dataclasses.dataclass(frozen=True)
class SliceRecord:
    """One finished slice: stimuli ``start:stop`` of the layers ``keys``."""

    start: int
    stop: int
    keys: tuple
    path: str


class SliceStore:
    """The ``slices/`` folder of an output directory.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> store = SliceStore(tempfile.mkdtemp())
    >>> store.write(0, 2, {"fc": np.ones((2, 3), np.float32)}, skipped={1: "bad file"})
    >>> [(r.start, r.stop, r.keys) for r in store.records()], store.covered("fc")
    ([(0, 2, ('fc',))], [(0, 2)])
    >>> values, skipped = store.read(store.records()[0])
    >>> values["fc"].shape, skipped
    ((2, 3), {1: 'bad file'})
    """

    def __init__(self, output_dir):
        self.directory = os.path.join(os.fspath(output_dir), FOLDER)

    def path(self, start, stop, keys):
        """One file per range and set of layers (layer groups share ranges)."""
        tag = zlib.crc32(json.dumps(list(keys)).encode())
        return os.path.join(self.directory, f"{start:012d}-{stop:012d}-{tag:08x}.npz")

    def write(self, start, stop, values, skipped=None):
        """Store ``values`` (layer key -> ``(stop - start, ...)`` array) for stimuli ``start:stop``.

        ``skipped``: stimulus index -> why it could not be read.
        """
        for key, array in values.items():
            if len(array) != stop - start:
                raise ValueError(f"slice {start}:{stop} of layer {key!r} has {len(array)} rows, "
                                 f"not {stop - start}")
        os.makedirs(self.directory, exist_ok=True)
        keys = list(values)
        meta = json.dumps({"start": start, "stop": stop, "keys": keys,
                           "skipped": {str(k): v for k, v in (skipped or {}).items()}})
        members = {f"layer{i}": np.ascontiguousarray(values[key]) for i, key in enumerate(keys)}
        path = self.path(start, stop, keys)
        temporary = os.path.join(self.directory, f".{os.path.basename(path)}.tmp{os.getpid()}")
        try:
            with open(temporary, "wb") as file:
                np.savez(file, meta=np.array(meta), **members)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)

    def records(self):
        """The finished slices, in stimulus order (temporaries of killed ranks are ignored)."""
        if not os.path.isdir(self.directory):
            return []
        found = []
        for name in sorted(os.listdir(self.directory)):
            match = _NAME.match(name)
            if match is None:
                continue
            path = os.path.join(self.directory, name)
            meta, _ = _load(path, with_values=False)
            found.append(SliceRecord(int(match.group(1)), int(match.group(2)),
                                     tuple(meta["keys"]), path))
        return found

    def read(self, record):
        """``(values, skipped)`` of one slice; a damaged member raises naming the file."""
        meta, values = _load(record.path, with_values=True)
        return values, {int(k): v for k, v in meta["skipped"].items()}

    def covered(self, key):
        """Stimulus ranges of layer ``key`` held in slices, merged, in order."""
        merged = []
        for record in self.records():
            if key not in record.keys:
                continue
            if merged and merged[-1][1] >= record.start:
                merged[-1] = (merged[-1][0], max(merged[-1][1], record.stop))
            else:
                merged.append((record.start, record.stop))
        return merged

    def clear(self):
        """Remove the folder (after the slices have been assembled)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def _load(path, with_values):
    try:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            values = ({key: data[f"layer{i}"] for i, key in enumerate(meta["keys"])}
                      if with_values else None)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ValueError(f"slice file {path!r} is damaged ({exc}); delete it and run again to "
                         "extract its stimuli anew") from exc
    return meta, values
