"""``ModelHistory``: the logged forward pass as plain data."""

from __future__ import annotations

from ..records import ModuleCall
from ..units import format_bytes
from .lookup import LayerIndex
from .passes import lint
from .readers import reader


class ModelHistory:
    """Every layer of one forward pass in execution order, plus model-level facts.

    Index it with a layer label (``"conv2d_3_7"``), a short label
    (``"conv2d_3"``), a pass (``"conv2d_3_7:2"``), a module address
    (``"features.8"``, ``"block:2"``) or an integer position (counted over
    the saved layers when only some were saved).

    Attributes
    ----------
    layers : list of LayerEntry
        All layers (passes), in execution order.
    model_name : str
    num_params : int
        Number of parameter elements in the model.
    total_params_bytes : int
    elapsed_time : float
        Seconds taken by the logging call.
    module_types : dict
        ``{module address: class name}``.
    module_outputs : dict
        ``{"address:pass": [labels of the layers that module pass returned]}``
        (the keys are :class:`~torchlens_like.records.ModuleCall`).
    backend : str
        The capture backend that logged it (its replayer validates it).
    interventions : pandas.DataFrame or None
        For a history made by an intervention (:meth:`intervene`,
        ``tll.intervene``): one row per site with what the edit did (see
        :mod:`torchlens_like.interventions`); None for a plain logged pass.
    call_trace : object or None
        Backend information, like each layer's ``replay``: the calls of the
        pass in order, read only by the backend's lean pass (None for a
        history loaded from a file).
    grad_graph : object or None
        For a pass logged with ``save_gradients``: the live autograd graph
        of the pass (the one thing in a history that is not plain data), kept
        until :meth:`backward` has run or :meth:`release_graph` is called;
        None otherwise (and for a history loaded from a file).

    Examples
    --------
    >>> import torch, torchvision, torchlens_like as tll
    >>> history = tll.log_forward_pass(torchvision.models.alexnet(), torch.rand(1, 3, 224, 224))
    >>> history["conv2d_3"].layer_label, history["features.6"].layer_label
    ('conv2d_3_8', 'conv2d_3_8')
    >>> history[-1].layer_label
    'output_1_24'
    """

    def __init__(self, layers, *, model_name, module_types=None, module_outputs=None,
                 num_params=0, total_params_bytes=0, elapsed_time=0.0, backend="torch",
                 call_trace=None, grad_graph=None):
        self.layers = list(layers)
        self.model_name = model_name
        self.module_types = dict(module_types or {})
        self.module_outputs = {call if type(call) is ModuleCall else ModuleCall.parse(call): labels
                               for call, labels in (module_outputs or {}).items()}
        self.backend = backend
        self.num_params = num_params
        self.total_params_bytes = total_params_bytes
        self.elapsed_time = elapsed_time
        self.call_trace = call_trace
        self.grad_graph = grad_graph
        self.interventions = None
        self._lookup = None

    @property
    def _index(self):
        """The :class:`~.lookup.LayerIndex`, built at the first lookup by key.

        A history made only to be saved, walked or drawn never needs it.
        """
        index = self._lookup
        if index is None:
            index = self._lookup = LayerIndex(self.layers, self.module_outputs)
        return index

    # ---------------------------------------------------------------- access
    def __getitem__(self, key):
        if isinstance(key, bool):
            raise TypeError("Index a ModelHistory with a label, module address or int, not bool.")
        if isinstance(key, int):
            pool = self._ordinal_pool()
            try:
                return pool[key]
            except IndexError:
                raise IndexError(f"Layer position {key} is out of range: there are {len(pool)} "
                                 f"{'saved ' if pool is not self.layers else ''}layers.") from None
        if not isinstance(key, str):
            raise TypeError(f"Index a ModelHistory with a str or int, got {type(key).__name__}.")
        return self._index.get(key)

    def _ordinal_pool(self):
        saved = [layer for layer in self.layers if layer.has_saved_activation]
        if not saved or len(saved) == len(self.layers):
            return self.layers
        return saved

    def __contains__(self, key):
        return key in self._index

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    @property
    def layer_labels(self):
        return [layer.layer_label for layer in self.layers]

    @property
    def input_layers(self):
        return [layer.layer_label for layer in self.layers if layer.kind == "input"]

    @property
    def output_layers(self):
        return [layer.layer_label for layer in self.layers if layer.kind == "output"]

    @property
    def buffer_layers(self):
        return [layer.layer_label for layer in self.layers if layer.kind == "buffer"]

    @property
    def saved_layers(self):
        return [layer.layer_label for layer in self.layers if layer.has_saved_activation]

    @property
    def num_layers(self):
        return len(self.layers)

    @property
    def total_activation_bytes(self):
        """Bytes of all tensors the pass computed (saved or not)."""
        return sum(layer.tensor_fsize for layer in self.layers)

    @property
    def saved_activation_bytes(self):
        return sum(layer.tensor_fsize for layer in self.layers if layer.has_saved_activation)

    def lint(self):
        """Graph invariant problems (an empty list when the graph is sound)."""
        return lint(self.layers)

    def validate(self, verbose=False):
        """Check every saved activation by replaying each layer on its parents' saved values.

        See :mod:`torchlens_like.validate`. Needs every activation saved. With
        ``verbose=True`` a failure prints the layer, its function and the
        largest difference.

        Examples
        --------
        >>> import torch, torchlens_like as tll
        >>> history = tll.log_forward_pass(torch.nn.Linear(3, 2), torch.rand(1, 3))
        >>> history.validate()
        True
        >>> history["linear_1"].tensor_contents.mul_(2)  # doctest: +ELLIPSIS
        tensor(...)
        >>> history.validate()
        False
        """
        return reader("validate")(self, verbose=verbose)

    def intervene(self, edits):
        """A new history with ``edits`` applied, recomputing only what lies downstream of them.

        The replay engine of :mod:`torchlens_like.interventions`: each
        descendant of an edited site is re-run from saved values with the
        parameters the history was logged with, as validation replays it.
        ``edits`` maps sites (layer labels, module addresses, ``tll.select``
        selectors) to edits (``tll.edits.zero()``, ...). The result's
        :attr:`interventions` says what each edit did; this history is left
        as it was. ``tll.intervene(model, input_args, edits)`` re-runs the
        model instead, for what replay refuses.

        Examples
        --------
        >>> import torch, torchlens_like as tll
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU())
        >>> history = tll.log_forward_pass(model, torch.ones(1, 3))
        >>> edited = history.intervene({"0": tll.edits.zero()})
        >>> edited["output_1"].tensor_contents
        tensor([[0., 0., 0.]])
        >>> list(edited.interventions["fired"])
        [1]
        """
        return reader("intervene")(self, edits)

    def backward(self, loss, retain_graph=False):
        """Compute the gradient of ``loss(output)`` at every layer chosen by ``save_gradients``.

        Needs a pass logged with ``save_gradients=True`` (every layer) or a
        list of sites. Afterwards each chosen layer's :attr:`LayerEntry.grad`
        holds the gradient with respect to its activation (same shape, dtype
        and device), the inputs' layers included, and each chosen op with
        parameters has :attr:`LayerEntry.param_grads` for that pass alone.
        The model's ``.grad`` fields, ``requires_grad`` flags and the grad mode
        are left as they were. A chosen layer that gets no gradient (it does
        not reach the loss) is named in a warning.

        Parameters
        ----------
        loss : callable
            ``loss(output) -> single-element tensor``, called on what the model
            returned (``lambda out: out[:, 3].sum()``).
        retain_graph : bool
            Keep the autograd graph, so that ``backward`` can run again with
            another loss (each call replaces the gradients, it does not add to
            them). By default the graph is freed, as after
            ``loss.backward()``, and a second call raises saying so.

        See :mod:`torchlens_like.gradients`.

        Examples
        --------
        >>> import torch, torchlens_like as tll
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
        >>> history = tll.log_forward_pass(model, torch.ones(1, 3), save_gradients=True)
        >>> history.backward(lambda out: out.sum())
        >>> history["linear_1"].grad.shape, sorted(history["linear_1"].param_grads)
        (torch.Size([1, 2]), ['0.bias', '0.weight'])
        """
        return reader("backward")(self, loss, retain_graph=retain_graph)

    def release_graph(self):
        """Free the autograd graph a ``save_gradients`` pass kept, without a backward.

        Gradients already computed stay; :meth:`backward` cannot run afterwards.

        Examples
        --------
        >>> import torch, torchlens_like as tll
        >>> history = tll.log_forward_pass(torch.nn.Linear(3, 2), torch.ones(1, 3),
        ...                                save_gradients=True)
        >>> history.release_graph()
        >>> history.grad_graph is None
        True
        """
        return reader("release_graph")(self)

    def parents_by_pass(self, label):
        """``{pass_num: [parent layers]}`` for every pass of a (recurrent) layer.

        ``label`` names the layer or any of its passes (``"linear_1_3"``,
        ``"linear_1"``, ``"linear_1_3:2"``). Parents are given by their
        pass-free labels, as a rolled picture draws them; where the parents
        differ between passes, this says which pass each edge belongs to.

        Examples
        --------
        >>> import torch, torchlens_like as tll
        >>> fc = torch.nn.Linear(2, 2)
        >>> history = tll.log_forward_pass(torch.nn.Sequential(fc, fc), torch.ones(1, 2))
        >>> history.parents_by_pass("linear_1")
        {1: ['input_1_1'], 2: ['linear_1_2']}
        """
        return self._neighbours_by_pass(label, "parent_nodes")

    def children_by_pass(self, label):
        """``{pass_num: [child layers]}`` for every pass of a (recurrent) layer.

        The counterpart of :meth:`parents_by_pass`.

        Examples
        --------
        >>> import torch, torchlens_like as tll
        >>> fc = torch.nn.Linear(2, 2)
        >>> history = tll.log_forward_pass(torch.nn.Sequential(fc, fc), torch.ones(1, 2))
        >>> history.children_by_pass("linear_1_2")
        {1: ['linear_1_2'], 2: ['output_1_3']}
        """
        return self._neighbours_by_pass(label, "child_nodes")

    def _neighbours_by_pass(self, label, field):
        return {layer.pass_num: [n.layer_label_no_pass for n in getattr(layer, field)]
                for layer in self._passes_of(label)}

    def _passes_of(self, label):
        stem = label.partition(":")[0]
        passes = [layer for layer in self.layers if stem in (
            layer.layer_label_no_pass, f"{layer.layer_type}_{layer.layer_type_num}")]
        if not passes:
            layer = self[label]
            passes = [lay for lay in self.layers
                      if lay.layer_label_no_pass == layer.layer_label_no_pass]
        return passes

    # ---------------------------------------------------------------- export
    def render_graph(self, options=None, **changes):
        """Draw the graph with Graphviz; return the picture's path.

        ``options`` is a :class:`~torchlens_like.render.RenderOptions`;
        ``changes`` override its fields (``vis_opt="rolled"``,
        ``nesting_depth=2``, ``outpath=...``, ``fileformat="png"``).

        Examples
        --------
        >>> import os, tempfile, torch, torchlens_like as tll
        >>> history = tll.get_model_metadata(torch.nn.ReLU(), torch.ones(2))
        >>> path = history.render_graph(outpath=os.path.join(tempfile.mkdtemp(), "relu"))
        >>> path.endswith("relu.svg")
        True
        """
        return reader("render_graph")(self, options, **changes)

    def to_html(self, path, options=None, **changes):
        """Write a self-contained interactive HTML explorer of the graph; return its path.

        Examples
        --------
        >>> import os, tempfile, torch, torchlens_like as tll
        >>> history = tll.get_model_metadata(torch.nn.ReLU(), torch.ones(2))
        >>> history.to_html(os.path.join(tempfile.mkdtemp(), "relu.html")).endswith(".html")
        True
        """
        return reader("to_html")(self, path, options, **changes)

    def save(self, path):
        """Write the history (metadata and saved activations) to one file; return its path.

        Read it back with :func:`torchlens_like.load_history`; see
        :mod:`torchlens_like.io` for the format.

        Examples
        --------
        >>> import os, tempfile, torch, torchlens_like as tll
        >>> history = tll.log_forward_pass(torch.nn.ReLU(), torch.ones(2))
        >>> tll.load_history(history.save(os.path.join(tempfile.mkdtemp(), "run.tll"))).layer_labels
        ['input_1_1', 'relu_1_2', 'output_1_3']
        """
        return reader("save")(self, path)

    def to_pandas(self):
        """One row per layer with its metadata (no tensors).

        Examples
        --------
        >>> import torch, torchlens_like as tll
        >>> df = tll.log_forward_pass(torch.nn.ReLU(), torch.ones(2)).to_pandas()
        >>> list(df["layer_label"])
        ['input_1_1', 'relu_1_2', 'output_1_3']
        """
        import pandas as pd

        return pd.DataFrame([_row(layer) for layer in self.layers], columns=list(_COLUMNS))

    def to_networkx(self):
        """A ``networkx.DiGraph`` whose nodes are layer labels, with metadata as attributes.

        Examples
        --------
        >>> import torch, torchlens_like as tll
        >>> g = tll.log_forward_pass(torch.nn.ReLU(), torch.ones(2)).to_networkx()
        >>> list(g.edges)
        [('input_1_1', 'relu_1_2'), ('relu_1_2', 'output_1_3')]
        """
        import networkx as nx

        graph = nx.DiGraph(model_name=self.model_name)
        for layer in self.layers:
            graph.add_node(layer.layer_label, **_row(layer))
        for layer in self.layers:
            for parent, position in layer.arg_positions.items():
                graph.add_edge(parent.layer_label, layer.layer_label,
                               position=position)
        return graph

    def summary(self):
        """A printable table: one line per layer, with model totals on top.

        Examples
        --------
        >>> import torch, torchlens_like as tll
        >>> history = tll.log_forward_pass(torch.nn.ReLU(), torch.ones(2))
        >>> print(history.summary())  # doctest: +ELLIPSIS
        ReLU: 3 layers, ...
        """
        header = (f"{self.model_name}: {self.num_layers} layers, "
                  f"{format_bytes(self.total_activation_bytes)} of activations "
                  f"({format_bytes(self.saved_activation_bytes)} saved), "
                  f"{self.num_params:,} parameters ({format_bytes(self.total_params_bytes)}), "
                  f"logged in {self.elapsed_time:.3f} s")
        rows = [("layer", "function", "output shape", "size", "params", "module", "saved")]
        for layer in self.layers:
            shape = "x".join(str(s) for s in layer.tensor_shape) if layer.tensor_shape else "-"
            module = ", ".join(layer.module_outputs) or (
                layer.module_calls[-1].address if layer.module_calls else "")
            rows.append((layer.layer_label, layer.func_name or layer.kind, shape,
                         format_bytes(layer.tensor_fsize),
                         ", ".join("x".join(map(str, s)) for s in layer.param_shapes),
                         module, "yes" if layer.has_saved_activation else ""))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return header + "\n" + "\n".join(lines)

    def __str__(self):
        return self.summary()

    def _repr_html_(self):
        """Notebook display: totals, the graph as inline SVG, the layer table."""
        return reader("history_html")(self)

    def __repr__(self):
        return (f"<ModelHistory {self.model_name}: {self.num_layers} layers, "
                f"{len(self.saved_layers)} saved>")


_COLUMNS = (
    "layer_label", "layer_label_short", "layer_type", "layer_type_num", "layer_total_num",
    "pass_num", "num_passes", "kind", "func_name", "func_time", "tensor_shape", "tensor_dtype",
    "tensor_fsize", "has_saved_activation", "parent_layers", "child_layers",
    "parent_arg_positions", "distance_from_input", "distance_from_output", "has_params",
    "param_names", "param_shapes", "params_fsize", "containing_modules",
    "module_nesting_depth", "module_outputs", "is_input", "is_output", "is_buffer",
    "is_internally_generated", "in_cond_branch", "is_cond_bool", "cond_branch_start",
    "is_recurrent",
)


def _row(layer):
    return {name: getattr(layer, name) for name in _COLUMNS}
