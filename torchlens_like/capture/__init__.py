"""Capture: run a model once and record every operation as neutral records.

Reads the user's model and inputs; produces a
:class:`~torchlens_like.records.CaptureResult` (see :mod:`torchlens_like.records`).
Must never import the graph stage, the readers (validate, render, io,
analysis, extract) or :mod:`torchlens_like.api`; it may import only the
foundation modules (:mod:`torchlens_like.nested`,
:mod:`torchlens_like.model_state`, :mod:`torchlens_like.records`).

Backends
--------
:data:`BACKENDS` maps a name to a backend; :func:`backend_for` picks the one
whose ``accepts(model)`` is true. A backend is an object with:

``name``
    Its key in :data:`BACKENDS`, also written into ``CaptureResult.backend``
    (the validator picks the matching replayer by it).
``accepts(model) -> bool``
    Whether it handles this kind of model (without importing a framework
    the user has not imported: look at ``type(model).__module__``).
``prepare(model) -> runner``
    The object to run (unwrapping wrappers), or a ``TypeError`` saying what
    to pass instead.
``capture(runner, args, kwargs, save, stop_when_saved=False) -> CaptureResult``
    Run ``runner(*args, **kwargs)`` once. ``save`` is ``"all"``, ``None``
    or a set of capture indices whose tensors to keep; with
    ``stop_when_saved`` the forward is cut short once the last of those is
    saved (the nodes then end there, without output nodes). The torch backend
    also takes ``edit_hook``, which changes values as the ops run (the
    re-run engine of :mod:`torchlens_like.interventions`; see
    :class:`~.session.CaptureSession`) and ``gradients=True`` (keep the
    autograd graph for a later backward: :mod:`.gradients`; the backend then
    has ``supports_gradients = True``). The backend marks the
    thread with :func:`torchlens_like.model_state.set_active_pass` for the
    duration (and refuses to start inside another logged pass with
    :func:`~torchlens_like.model_state.refuse_inside_logged_pass`), and
    leaves the framework and the model exactly as before, also on error.
``seed_note``
    None when ``random_seed`` is honoured (the entry points seed torch's,
    NumPy's and Python's generators), else the sentence saying why it is not.
``keep_state(runner, args, kwargs) -> restore()``
    Copies what a forward may write into (torch: buffers and input tensors)
    and returns the function putting it back, so two runs start alike.
``plain_outputs(runner, args, kwargs) -> {path: array}``
    The model's own outputs from one plain call, the ground truth of validation.
``lean_plan(runner, history, positions)`` (optional)
    For repeated passes over the graph of ``history`` (a capture by this
    backend): an object whose ``run(args, kwargs, stop_early=False)``
    returns ``{position: tensor}`` of the wanted layers and raises
    :class:`~.lean.GraphDeparted` at the first call that differs; its ``path``
    says how it runs. Raises :class:`~.lean.LeanUnavailable` when a wanted
    layer cannot be kept that way.
``trace(runner, args, kwargs)`` (optional)
    For a backend that knows the graph before running it: an object with
    ``result`` (the :class:`~torchlens_like.records.CaptureResult`, values not
    yet computed) and ``run(save)`` (one run that fills in the values of the
    nodes at the capture positions ``save``). A list of layers to save then
    costs one run instead of two passes.

What ``capture`` must produce (the contract the graph stage relies on):

* ``nodes``: :class:`~torchlens_like.records.LayerEntry` records in
  execution order, ``meta["capture_index"]`` their position. One ``"input"``
  node per tensor of the model's inputs (``source``: ``("args", i, ...)`` or
  ``("kwargs", name, ...)``); one ``"op"`` node per output tensor of each
  executed operation; a ``"buffer"`` node for a non-trainable state tensor the
  first time an op reads it (``source``: its address); one ``"output"`` node
  per tensor the model returns (``source``: its path in the return value),
  connected to the node that produced it with ``connect([node], (slot,))``.
* Every node: ``func_name`` (``"conv2d"``, ``"add"``; the layer type is
  derived from it), ``tensor_shape`` (tuple of ints), ``tensor_dtype``
  (``"float32"``: numpy/torch spelling), ``tensor_device`` (a string),
  ``tensor_fsize`` (bytes, int), ``tensor_contents`` (the array when saved,
  else None), ``module_calls`` (tuple of
  :class:`~torchlens_like.records.ModuleCall` the op ran inside, outermost
  first; the same tuple object may be shared).
* Op nodes: ``call_index`` (one number per executed call, shared by all its
  outputs), ``output_path`` (None for a single output, else the path in the
  result), ``func_time`` (seconds), ``replay`` (anything the backend's
  replayer needs; nothing else reads it; may be shared by calls), and
  arguments set with :func:`~torchlens_like.records.connect`
  ``(outputs_of_the_call, args, kwargs)`` (or
  :func:`~torchlens_like.records.link`, given the parents and parameters
  a backend derived while walking the arguments): every tensor argument
  replaced by an
  :class:`~torchlens_like.records.ArgSlot` (``"layer"`` with the producing
  node, ``"param"`` with the :class:`~torchlens_like.records.Parameter`, or
  ``"const"``), one slot object per tensor for the whole pass; non-tensor
  arguments as they are. ``connect`` / ``link`` set parents, argument
  positions, parameters and children; nothing else may set them.
* ``module_outputs``: ``{ModuleCall: [nodes that call returned]}``, and each
  such node lists the call in ``module_passes_output``; ``module_types``:
  ``{address: class name}``; ``parameters``: every distinct
  :class:`~torchlens_like.records.Parameter`; ``model_name``; ``backend``.

The TensorFlow backend (:mod:`.tensorflow`) traces Keras models,
``tf.Module`` and ``tf.function`` into one graph; it imports TensorFlow only
when a TensorFlow model is passed.

The torch backend
-----------------
Modules: ``run`` (:class:`~.run.TorchBackend`, one captured pass),
``session`` (the interception mode; builds nodes), ``resolve`` (which node,
parameter or constant each tensor argument is), ``aliases`` (saved values
kept safe from in-place writes), ``modules`` (module entry/exit, model
unwrapping), ``standins`` (torch attributes replaced during a pass),
``inplace`` (which calls write into tensors),
``calltrace`` (the calls of a pass, in order), ``lean`` (repeated passes of
a known graph that keep a few layers and record nothing),
``gradients`` (the autograd edges a ``save_gradients`` pass keeps),
``replay`` (the replay record), ``rng`` (generator state of the calls that draw),
``gc_pause`` (the cyclic collector held off during a pass).
"""

from .lean import GraphDeparted, LeanUnavailable
from .modules import refuse_non_models
from .run import TorchBackend
from .tensorflow import TensorflowBackend

BACKENDS = {TensorflowBackend.name: TensorflowBackend, TorchBackend.name: TorchBackend}
"""``{name: backend}``; see the module docstring for what a backend is."""


def backend_for(model):
    """The backend of :data:`BACKENDS` that handles ``model``.

    Examples
    --------
    >>> import torch
    >>> backend_for(torch.nn.ReLU()).name
    'torch'
    >>> backend_for(3)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    TypeError: No capture backend handles a int ...
    """
    refuse_non_models(model)
    for backend in BACKENDS.values():
        if backend.accepts(model):
            return backend
    raise TypeError(
        f"No capture backend handles a {type(model).__name__} (backends: "
        f"{', '.join(BACKENDS)}). Pass a torch.nn.Module or a callable doing torch calls "
        "(e.g. log_forward_pass(torchvision.models.resnet18(), x)), or a Keras model, "
        "tf.Module or tf.function.")


__all__ = ["BACKENDS", "GraphDeparted", "LeanUnavailable", "TensorflowBackend", "TorchBackend", "backend_for"]
