"""A set of data edits in a JSON file, with its tensors in a safetensors file beside it.

``tll.edits.save(edits, "ablation.json")`` writes ``ablation.json`` (the
sites, the edits' names and arguments) and ``ablation.safetensors`` (steering
vectors, masks, index tensors, and the reference values that :func:`mean`,
:func:`resample` and :func:`patch` read), each under a temporary name first
and then moved into place. ``tll.edits.load("ablation.json")`` gives the
same ``{site: edit}`` back; a reference history is stored as the values of
the layers the site names in it (``{label: tensor}``), so the loaded edits
need no history.

Values in the JSON file: plain JSON, or a one-key object naming a type:
``{"tensor": key}`` (a tensor of the safetensors file), ``{"tuple": [...]}``,
``{"slice": [start, stop, step]}``, ``{"ellipsis": null}``, ``{"values":
{label: value}}`` (reference values). Sites: a string, ``{"position": n}``
or ``{"select": {"func": [...], "within": ...}}``.

Examples
--------
>>> import os, tempfile, torch, torchlens_like as tll
>>> path = os.path.join(tempfile.mkdtemp(), "edits.json")
>>> edits = {"layer1": tll.edits.zero(index=(slice(None), 3)),
...          tll.select(func="relu"): tll.edits.steer(torch.ones(4), alpha=2.0)}
>>> _ = tll.edits.save(edits, path)
>>> tll.edits.load(path)
{'layer1': zero(index=(:, 3)), select(func='relu'): steer(vector=tensor(shape=(4,), dtype=float32), alpha=2.0, dim=-1)}
>>> tll.edits.load(path) == edits
True
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .sites import Selector, resolve_site

FORMAT = "torchlens_like.edits"
VERSION = 1


def save(edits, path):
    """Write ``{site: edit}`` to ``path`` (JSON) and its tensors beside it; return the JSON path.

    Parameters
    ----------
    edits : dict
        Sites (labels, module addresses, positions, ``tll.select``) to data
        edits of ``tll.edits``.
    path : str or os.PathLike
        The JSON file (``.json`` is added when missing); the tensors go to
        the same name with ``.safetensors``.

    Raises
    ------
    TypeError
        For a callable edit (``replace(fn)`` or a plain function): code is
        not data; save the function's result as a :func:`patch` instead.
    """
    from .edits import as_edit

    path = Path(path)
    if path.suffix != ".json":
        path = path.with_name(path.name + ".json")
    tensors_path = path.with_suffix(".safetensors")
    tensors = {}
    records = []
    for number, (site, edit) in enumerate(_items(edits)):
        edit = as_edit(edit, site)
        if not edit.savable:
            raise TypeError(
                f"The edit for site {_site_name(site)} is {edit!r}, a callable: code cannot be "
                "saved as data. Save only data edits (zero, mean, resample, patch, steer, scale, "
                "clamp); for a function's output, save tll.edits.patch({label: tensor}).")
        params = {key: _stored_reference(value, site) if key in ("reference", "source") else value
                  for key, value in edit.params().items()}
        store = _Store(tensors, f"{number}.")
        records.append({"site": _encode_site(site), "edit": edit.name,
                        "params": store.encode(params), "index": store.encode(edit.index),
                        "mask": store.encode(edit.mask)})
    document = {"format": FORMAT, "version": VERSION, "tensors": tensors_path.name,
                "edits": records}
    _write(tensors_path, lambda temporary: save_file(tensors, temporary,
                                                     metadata={"format": FORMAT}))
    _write(path, lambda temporary: Path(temporary).write_text(json.dumps(document, indent=1)))
    return str(path)


def load(path):
    """Read a set of edits written by :func:`save`: ``{site: edit}``.

    Raises
    ------
    ValueError
        When the file is not such a set of edits, or names an unknown edit.
    FileNotFoundError
        When the JSON file or its safetensors file is missing.
    """
    from .edits import edit_class

    path = Path(path)
    document = json.loads(path.read_text())
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"{path} is not a set of edits written by tll.edits.save (no "
                         f"'format': '{FORMAT}').")
    if document.get("version") != VERSION:
        raise ValueError(f"{path} has edits format version {document.get('version')}; this "
                         f"version of torchlens_like reads version {VERSION}.")
    tensors_path = path.with_name(document["tensors"])
    if not tensors_path.exists():
        raise FileNotFoundError(f"{path} keeps its tensors in {tensors_path}, which is missing; "
                                "copy both files together.")
    tensors = load_file(str(tensors_path))
    edits = {}
    for record in document["edits"]:
        cls = edit_class(record["edit"])
        params = _decode(record["params"], tensors)
        edits[_decode_site(record["site"])] = cls(**params, index=_decode(record["index"], tensors),
                                                  mask=_decode(record["mask"], tensors))
    return edits


def _items(edits):
    if not isinstance(edits, Mapping):
        raise TypeError(f"edits must be a dict {{site: edit}}, got {type(edits).__name__}.")
    return edits.items()


def _site_name(site):
    return repr(site) if isinstance(site, Selector) else repr(str(site))


def _stored_reference(reference, site):
    """A reference run as ``{label: tensor}``: its values at the layers ``site`` names in it."""
    if isinstance(reference, Mapping):
        return dict(reference)
    layers = resolve_site(reference, site).layers
    missing = [layer.layer_label for layer in layers if not layer.has_saved_activation]
    if missing:
        raise ValueError(f"The reference history for site {_site_name(site)} did not save "
                         f"{', '.join(missing)}, so the edit cannot be saved with its values.")
    return {layer.layer_label: layer.tensor_contents for layer in layers}


class _Store:
    """Encodes values as JSON, putting tensors into ``tensors`` under ``prefix + number``."""

    def __init__(self, tensors, prefix):
        self.tensors = tensors
        self.prefix = prefix

    def encode(self, value):
        if isinstance(value, torch.Tensor):
            key = f"{self.prefix}{len([k for k in self.tensors if k.startswith(self.prefix)])}"
            self.tensors[key] = value.detach().cpu().contiguous().clone()
            return {"tensor": key}
        if isinstance(value, Mapping):
            return {"values": {str(label): self.encode(item) for label, item in value.items()}} \
                if all(isinstance(item, torch.Tensor) for item in value.values()) and value \
                else {key: self.encode(item) for key, item in value.items()}
        if isinstance(value, tuple):
            return {"tuple": [self.encode(item) for item in value]}
        if isinstance(value, list):
            return [self.encode(item) for item in value]
        if isinstance(value, slice):
            return {"slice": [value.start, value.stop, value.step]}
        if value is Ellipsis:
            return {"ellipsis": None}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"Cannot save {type(value).__name__} {value!r} in a set of edits.")


_TAGS = {
    "tensor": lambda body, tensors: tensors[body],
    "tuple": lambda body, tensors: tuple(_decode(item, tensors) for item in body),
    "slice": lambda body, tensors: slice(*body),
    "ellipsis": lambda body, tensors: Ellipsis,
    "values": lambda body, tensors: {label: _decode(item, tensors) for label, item in body.items()},
}


def _decode(value, tensors):
    if isinstance(value, list):
        return [_decode(item, tensors) for item in value]
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in _TAGS:
            tag, body = next(iter(value.items()))
            return _TAGS[tag](body, tensors)
        return {key: _decode(item, tensors) for key, item in value.items()}
    return value


def _encode_site(site):
    if isinstance(site, Selector):
        return {"select": site.to_dict()}
    if isinstance(site, int) and not isinstance(site, bool):
        return {"position": site}
    if isinstance(site, str):
        return site
    raise TypeError(f"A site is a layer label, a module address, an integer position or "
                    f"tll.select(...); got {type(site).__name__} {site!r}.")


def _decode_site(site):
    if isinstance(site, dict) and "select" in site:
        selected = site["select"]
        func = selected.get("func")
        return Selector(None if func is None else tuple(func), selected.get("within"))
    if isinstance(site, dict) and "position" in site:
        return int(site["position"])
    return site


def _write(path, write):
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(str(temporary))
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
