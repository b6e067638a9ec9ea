"""One history, one file: a safetensors file whose header carries the JSON document.

Why safetensors and not HDF5: its header is plain JSON and its body raw
tensor bytes, so reading it runs no code (unlike pickle), any language can
read it, bfloat16 and float8 are native (HDF5 has no bfloat16), and
``safe_open`` memory-maps the file, which makes reading one activation at a
time cheap. The history's metadata document (see :mod:`.records`) is the
header's ``__metadata__["history"]`` string; each saved activation is the
tensor named by its layer label. The file is written under a temporary name
next to the target and moved into place, so a failure leaves any earlier
file intact.
"""

from __future__ import annotations

import json
import os
import tempfile

from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes
from safetensors.torch import save_file

from .lazy import TensorDict
from .records import HistoryFormatError, check_document, history_to_records, records_to_history

HEADER_KEY = "history"


def save_history(history, path):
    """Write a history (metadata and saved activations) to one file; return its path.

    Parameters
    ----------
    history : ModelHistory
    path : str or os.PathLike
        The file to write (any name, e.g. ``run.tll``); missing folders are made.

    Returns
    -------
    str

    Examples
    --------
    >>> import os, tempfile, torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(torch.nn.Linear(3, 2), torch.ones(1, 3))
    >>> path = history.save(os.path.join(tempfile.mkdtemp(), "run.tll"))
    >>> loaded = tll.load_history(path)
    >>> torch.equal(loaded["linear_1"].tensor_contents, history["linear_1"].tensor_contents)
    True
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"Cannot save the history to {path!r}: it is a folder. Give a "
                                f"file name, e.g. {os.path.join(path, 'run.tll')!r}.")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    document, tensors = history_to_records(history)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                                         suffix=".tmp")
    os.close(handle)
    try:
        save_file(tensors, temporary, metadata=_header(document))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def load_history(path):
    """Read a history saved with ``history.save``; activations are read when first used.

    The metadata is read at once; each layer's ``tensor_contents`` is read
    from the (memory-mapped) file the first time it is accessed. No model is
    needed: the result can be indexed, summarised, drawn and exported like
    the original.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    ModelHistory

    Raises
    ------
    FileNotFoundError
        When there is no such file.
    HistoryFormatError
        When the file is not a saved history, or was saved by a newer version.

    Examples
    --------
    >>> import os, tempfile, torch, torchlens_like as tll
    >>> path = os.path.join(tempfile.mkdtemp(), "relu.tll")
    >>> _ = tll.log_forward_pass(torch.nn.ReLU(), -torch.ones(2)).save(path)
    >>> tll.load_history(path)["relu_1"].tensor_contents
    tensor([0., 0.])
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No saved history at {path!r}" + (
            " (it is a folder)." if os.path.isdir(path) else "."))
    try:
        store = safe_open(path, framework="pt")
    except (SafetensorError, OSError, ValueError) as exc:
        raise HistoryFormatError(f"{path!r} is not a saved torchlens_like history: cannot read "
                                 f"it as a safetensors file ({exc}). Histories are written by "
                                 "history.save(path).") from None
    return records_to_history(_document(store.metadata(), repr(path)), store)


def history_to_bytes(history):
    """The bytes of the file :func:`save_history` writes.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> data = history_to_bytes(tll.log_forward_pass(torch.nn.ReLU(), torch.ones(2)))
    >>> history_from_bytes(data).layer_labels
    ['input_1_1', 'relu_1_2', 'output_1_3']
    """
    document, tensors = history_to_records(history)
    return save_bytes(tensors, metadata=_header(document))


def history_from_bytes(data):
    """The history :func:`history_to_bytes` wrote (activations already in memory).

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> data = history_to_bytes(tll.log_forward_pass(torch.nn.ReLU(), -torch.ones(2)))
    >>> history_from_bytes(data)["relu_1"].tensor_contents
    tensor([0., 0.])
    """
    with_metadata = header_metadata(data)
    return records_to_history(_document(with_metadata, "these bytes"),
                              TensorDict(load_bytes(data)))


def header_metadata(data):
    """The ``__metadata__`` dict of a safetensors file's bytes (its JSON header).

    Examples
    --------
    >>> from safetensors.torch import save
    >>> header_metadata(save({}, metadata={"a": "b"}))
    {'a': 'b'}
    """
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + length]).get("__metadata__") or {}


def _header(document):
    return {HEADER_KEY: json.dumps(document, separators=(",", ":"), allow_nan=False)}


def _document(metadata, where):
    text = (metadata or {}).get(HEADER_KEY)
    document = json.loads(text) if text else None
    check_document(document, where)
    return document
