"""From a backend's neutral records to a ``ModelHistory``: run the passes, collect the totals."""

from __future__ import annotations

from .history import ModelHistory


def build_history(result, passes, elapsed_time=0.0):
    """Run ``passes`` over a :class:`~torchlens_like.records.CaptureResult`; return the history.

    Parameters
    ----------
    result : CaptureResult
        What a capture backend returned (its nodes are changed in place).
    passes : sequence of callables
        The graph passes, normally :data:`torchlens_like.graph.PASSES`.
    elapsed_time : float
        Seconds the logging took, kept as ``history.elapsed_time``.

    Examples
    --------
    >>> from torchlens_like.graph import PASSES
    >>> from torchlens_like.records import ArgSlot, CaptureResult, LayerEntry, connect
    >>> x, y = LayerEntry("input", "input", (2,), "float32"), LayerEntry("output", "output")
    >>> connect([y], (ArgSlot("layer", x),))
    >>> build_history(CaptureResult([x, y], "identity", "fake"), PASSES).layer_labels
    ['input_1_1', 'output_1_2']
    """
    nodes = result.nodes
    captured = len(nodes)
    for graph_pass in passes:
        nodes = graph_pass(nodes)
    if len(nodes) == captured:
        module_outputs = {call: [node.layer_label for node in produced]
                          for call, produced in result.module_outputs.items()}
    else:
        kept = set(nodes)
        module_outputs = {call: [node.layer_label for node in produced if node in kept]
                          for call, produced in result.module_outputs.items()}
    return ModelHistory(
        nodes, model_name=result.model_name, module_types=result.module_types,
        module_outputs=module_outputs, backend=result.backend,
        num_params=sum(param.numel for param in result.parameters),
        total_params_bytes=sum(param.nbytes for param in result.parameters),
        elapsed_time=elapsed_time, call_trace=result.call_trace, grad_graph=result.gradients)
