"""A ``ModelHistory`` as one JSON document plus named tensors, and back.

Only the graph's public data is read: layer fields and properties (the
gradients of a pass logged with ``save_gradients`` too, stored beside the
activations as ``grad/{label}`` and ``param_grad/{label}/{address}``), the
recorded call with :class:`~torchlens_like.graph.ArgSlot` placeholders, the
``meta`` dict the passes wrote, and the model-level facts. What exists only
for replaying a call (the function object, random generator states) and the
parameter values themselves are not kept: a loaded history can be indexed,
summarised, drawn, exported and compared, not validated (that needs the model).
"""

from __future__ import annotations

import math

from ..graph import LayerEntry, ModelHistory
from ..records import ModuleCall, Parameter
from .lazy import StoredTensor
from .tensors import to_stored
from .values import decode, dtype_from_name, encode

FORMAT = "torchlens_like.history"
SCHEMA_VERSION = 2
"""Version of the document layout; bumped whenever a reader of the old one would misread it."""

PLAIN_FIELDS = (
    "kind", "func_name", "layer_label", "layer_label_short", "layer_label_no_pass",
    "layer_type", "layer_type_num", "layer_total_num", "pass_num", "num_passes", "func_time",
    "call_index", "tensor_dtype", "tensor_device",
)
"""Layer fields stored as they are (strings, numbers, None)."""

ENCODED_FIELDS = ("output_path", "source", "args", "kwargs", "meta")
"""Layer fields that may hold tuples, dtypes, layers and the like (see :mod:`.values`)."""


class HistoryFormatError(ValueError):
    """A file is not a saved history this version can read."""


def history_to_records(history):
    """``(document, tensors)``: JSON-ready metadata and ``{key: tensor}`` activations.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(torch.nn.ReLU(), torch.ones(2))
    >>> document, tensors = history_to_records(history)
    >>> [layer["layer_label"] for layer in document["layers"]], sorted(tensors)
    (['input_1_1', 'relu_1_2', 'output_1_3'], ['input_1_1', 'output_1_3', 'relu_1_2'])
    """
    tensors, storages, first_of_call = {}, set(), {}
    layers = []
    for layer in history.layers:
        record = {name: getattr(layer, name) for name in PLAIN_FIELDS}
        record["containing_modules"] = [str(call) for call in layer.module_calls]
        record["module_passes_output"] = [str(call) for call in layer.module_passes_output]
        record.update({name: encode(getattr(layer, name)) for name in ENCODED_FIELDS})
        record["tensor_shape"] = _listed(layer.tensor_shape)
        record["tensor_fsize"] = layer.tensor_fsize
        record["children"] = layer.child_layers
        record["parent_arg_positions"] = [[label, encode(position)] for label, position
                                          in layer.parent_arg_positions.items()]
        record["params"] = [[param.address, list(param.shape), param.nbytes]
                            for param in layer.params]
        record["same_call_as"] = first_of_call.setdefault(layer.call_index, layer.layer_label) \
            if layer.call_index is not None else layer.layer_label
        record["activation"] = None
        if layer.has_saved_activation:
            record["activation"] = _store(tensors, storages, layer.layer_label,
                                          layer.tensor_contents, "activation", layer.layer_label)
        if layer.has_grad:
            record["grad"] = _store(tensors, storages, f"grad/{layer.layer_label}", layer.grad,
                                    "gradient", layer.layer_label)
        if layer.has_param_grads:
            record["param_grads"] = {
                address: _store(tensors, storages, f"param_grad/{layer.layer_label}/{address}",
                                grad, "parameter gradient", layer.layer_label)
                for address, grad in layer.param_grads.items()}
        layers.append(record)
    document = {
        "format": FORMAT, "schema_version": SCHEMA_VERSION,
        "model_name": history.model_name, "backend": history.backend,
        "module_types": history.module_types,
        "module_outputs": history.module_outputs, "num_params": history.num_params,
        "total_params_bytes": history.total_params_bytes,
        "elapsed_time": history.elapsed_time, "layers": layers,
    }
    return document, tensors


def _store(tensors, storages, key, tensor, what, label):
    """Put one tensor into ``tensors`` under ``key`` (a copy if its storage is there already)."""
    try:
        stored, info = to_stored(tensor)
    except TypeError as exc:
        raise TypeError(f"Cannot save the {what} of layer {label!r}: {exc} Log the pass again "
                        "without saving it (layers_to_save lists the layers to keep).") from None
    storage = (stored.device, stored.untyped_storage().data_ptr())
    if storage in storages:
        stored = stored.clone()
    storages.add(storage)
    tensors[key] = stored
    return info


def check_document(document, where):
    """Raise :class:`HistoryFormatError` unless ``document`` is a history this version reads.

    Examples
    --------
    >>> check_document({"format": FORMAT, "schema_version": 99}, "run.tll")
    Traceback (most recent call last):
    ...
    torchlens_like.io.records.HistoryFormatError: run.tll was saved by a newer torchlens_like (history schema 99; this version reads up to 2). Upgrade: pip install -U torchlens_like.
    """
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise HistoryFormatError(f"{where} is not a saved torchlens_like history (it has no "
                                 f"'{FORMAT}' document); save one with history.save(path).")
    version = document.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise HistoryFormatError(
            f"{where} was saved by a newer torchlens_like (history schema {version}; this "
            f"version reads up to {SCHEMA_VERSION}). Upgrade: pip install -U torchlens_like.")


def records_to_history(document, store):
    """The ``ModelHistory`` a document describes, each activation read from ``store`` when used.

    ``store`` has ``get_tensor(key)`` (a ``safetensors.safe_open`` handle, or
    a :class:`~torchlens_like.io.lazy.TensorDict`).

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> from torchlens_like.io.lazy import TensorDict
    >>> document, tensors = history_to_records(tll.log_forward_pass(torch.nn.ReLU(), -torch.ones(2)))
    >>> records_to_history(document, TensorDict(tensors))["relu_1"].tensor_contents
    tensor([0., 0.])
    """
    records = document["layers"]
    layers = {}
    for record in records:
        shape = None if record["tensor_shape"] is None else tuple(record["tensor_shape"])
        layer = LayerEntry(record["kind"], record["func_name"], shape,
                           module_calls=tuple(map(ModuleCall.parse, record["containing_modules"])))
        for name in PLAIN_FIELDS:
            setattr(layer, name, record.get(name))
        layer.module_passes_output = [ModuleCall.parse(call)
                                      for call in record["module_passes_output"]]
        layer.tensor_fsize = record.get("tensor_fsize", _fsize(shape, layer.tensor_dtype))
        layer.params = tuple(Parameter(address, tuple(shape), _param_bytes(shape, size))
                             for address, shape, size in record["params"])
        if record["activation"] is not None:
            layer.tensor_contents = StoredTensor(store, record["layer_label"], record["activation"])
        if record.get("grad") is not None:
            layer.grad = StoredTensor(store, f"grad/{record['layer_label']}", record["grad"])
        if record.get("param_grads"):
            layer.param_grads = {
                address: StoredTensor(store, f"param_grad/{record['layer_label']}/{address}", info)
                for address, info in record["param_grads"].items()}
        layers[record["layer_label"]] = layer
    for record in records:
        layer = layers[record["layer_label"]]
        params = {param.address: param for param in layer.params}
        layer.child_nodes = [layers[label] for label in record["children"]]
        layer.arg_positions = {layers[label]: decode(position)
                               for label, position in record["parent_arg_positions"]}
        first = layers[record["same_call_as"]]
        if first is not layer:
            layer.args, layer.kwargs = first.args, first.kwargs
        else:
            layer.args = decode(record["args"], layers, params)
            layer.kwargs = decode(record["kwargs"], layers, params)
        layer.output_path = decode(record["output_path"], layers, params)
        layer.source = decode(record["source"], layers, params)
        layer.meta = decode(record["meta"], layers, params)
    return ModelHistory(
        layers.values(), model_name=document["model_name"],
        module_types=document["module_types"], module_outputs=document["module_outputs"],
        num_params=document["num_params"], total_params_bytes=document["total_params_bytes"],
        elapsed_time=document["elapsed_time"], backend=document.get("backend", "torch"))


def _listed(shape):
    return None if shape is None else list(shape)


def _fsize(shape, dtype):
    """Bytes of a dense tensor (for documents of schema 1, which did not store them)."""
    return 0 if shape is None or dtype is None else math.prod(shape) * _itemsize(dtype)


def _param_bytes(shape, size):
    """Schema 2 stores a parameter's bytes, schema 1 its dtype name."""
    return size if isinstance(size, int) else math.prod(shape) * _itemsize(size)


def _itemsize(dtype):
    return dtype_from_name(dtype).itemsize
