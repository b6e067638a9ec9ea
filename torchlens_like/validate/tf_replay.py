"""The TensorFlow replayer: replay every op's ``NodeDef`` on saved values.

Reads only the history (the replay information the TensorFlow capture put
in each op node's ``func``) and TensorFlow itself.

Design decisions
----------------
* Every op node is replayed from its own ``NodeDef`` (op type and
  attributes as traced, with the graph's function library for ``While`` /
  ``If`` bodies), its inputs rewired to placeholders fed with the parents'
  saved values, the parameters' current values (validate before changing
  weights) and the recorded constants. All replays go into one graph and run
  in one execution, so validating costs about one forward pass.
* Perturbation, as the torch validator does it: the same graph holds a
  second copy of each op per floating-point parent, fed random values in
  that parent's place; the output must change, unless it cannot: a
  shape-only op (:data:`INSENSITIVE`), a discrete output, or a constant one
  (every element equal: multiplication by zero, a saturated clip). A random
  stateful op is compared by shape only.
* Tolerances as for torch: exact for integers and booleans, by dtype for
  floating point (:data:`TOLERANCES`).
"""

from __future__ import annotations

import numpy as np
from ..tf_runtime.loader import tf

from .errors import ValidationError, parent_insensitive, replay_differs

TOLERANCES = {"float64": (1e-7, 1e-9), "float32": (1e-4, 1e-5), "float16": (1e-2, 1e-3),
              "bfloat16": (2e-2, 1e-2)}
"""``{dtype name: (rtol, atol)}``; the absolute part scales with the largest magnitude."""

INSENSITIVE = frozenset({"Shape", "ShapeN", "Size", "Rank", "ZerosLike", "OnesLike",
                         "BroadcastArgs", "BroadcastGradientArgs", "TensorListReserve"})
"""Op types whose output depends on their inputs' shapes only."""

PERTURBATION_SEED = 73_912_845


def not_replayed(layers):
    """Every op is replayed from its ``NodeDef``: none is left out (``{}``)."""
    return {}


def replay_layers(layers):
    """Replay every op of a TensorFlow history; raise :class:`ValidationError` on a failure.

    Returns ``{}``: no op is left out. Called by :func:`~.backends.validate_history`.

    Examples
    --------
    >>> import numpy as np, keras, torchlens_like as tll
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc")])
    >>> history = tll.log_forward_pass(model, np.ones((1, 3), "float32"))
    >>> replay_layers(history.layers)
    {}
    >>> history["fc"].tensor_contents += 1
    >>> replay_layers(history.layers)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ValidationError: output_1_4: ...
    """
    for node in layers:
        if node.kind == "output" and node.parent_nodes:
            parent = node.parent_nodes[0]
            same, difference = matches(node.tensor_contents, parent.tensor_contents)
            if not same:
                raise ValidationError(
                    f"{node.layer_label}: output differs: the saved output differs from the "
                    f"value of {parent.layer_label} that produced it (largest difference "
                    f"{difference})", node, "output differs")
    ops = [node for node in layers if node.kind == "op"]
    if not ops:
        return {}
    replays = _ReplayGraph(ops)
    results = replays.run()
    for node in reversed(ops):
        replayed, perturbed = results[id(node)]
        if _is_random(node):
            same = tuple(replayed.shape) == tuple(np.shape(node.tensor_contents))
            difference = "shape"
        else:
            same, difference = matches(replayed, node.tensor_contents)
        if not same:
            raise replay_differs(node, difference, "replaying its NodeDef")
        for parent, value in perturbed:
            if _unchanged(value, node.tensor_contents) and not _constant(node.tensor_contents):
                raise parent_insensitive(
                    node, parent, "so the saved value does not rest on that parent")
    return {}


class _ReplayGraph:
    """One graph holding a replay of every op, and a perturbed copy per float parent."""

    def __init__(self, ops):
        self.graph_def = tf.compat.v1.GraphDef()
        self.graph_def.library.CopyFrom(ops[0].replay.library)
        self.feeds = []
        self.fetches = {}
        self.rng = np.random.default_rng(PERTURBATION_SEED)
        copies = {}
        for node in ops:
            replay = node.replay
            name = f"replay_{len(copies)}"
            inputs = [self._feed(f"{name}/in{p}", slot, replay, p)
                      for p, slot in enumerate(node.args)]
            self._copy(f"{name}/replay", replay, inputs)
            perturbations = []
            for parent, position in node.arg_positions.items():
                if not _perturbable(parent.tensor_contents) or _insensitive(node):
                    continue
                noisy = list(inputs)
                noisy[position] = self._placeholder(
                    f"{name}/noise{position}", self._noise(parent.tensor_contents),
                    replay.input_dtypes[position])
                self._copy(f"{name}/perturb{position}", replay, noisy)
                perturbations.append((parent, f"{name}/perturb{position}"))
            copies[id(node)] = (f"{name}/replay", replay.output_index, perturbations)
        self.copies = copies

    def _feed(self, name, slot, replay, position):
        dtype = replay.input_dtypes[position]
        if slot.kind == "layer":
            value = slot.ref.tensor_contents
        elif slot.kind == "param":
            variable = replay.values[slot]
            value = variable.handle() if dtype == tf.resource else variable.value()
        else:
            value = replay.values.get(slot)
        return self._placeholder(name, value, dtype)

    def _placeholder(self, name, value, dtype):
        node = self.graph_def.node.add()
        node.name = name
        node.op = "Placeholder"
        node.attr["dtype"].type = tf.as_dtype(dtype).as_datatype_enum
        self.feeds.append((f"{name}:0", tf.convert_to_tensor(value, dtype=dtype)))
        return name

    def _copy(self, name, replay, inputs):
        node = self.graph_def.node.add()
        node.CopyFrom(replay.node_def)
        node.name = name
        node.device = ""
        del node.input[:]
        node.input.extend(inputs)

    def _noise(self, like):
        value = np.asarray(like)
        return self.rng.standard_normal(value.shape).astype(value.dtype) * (
            float(np.abs(value).max()) + 1.0)

    def run(self):
        fetch_names = []
        for replay_name, index, perturbations in self.copies.values():
            fetch_names.append(f"{replay_name}:{index}")
            fetch_names.extend(f"{p}:{index}" for _, p in perturbations)
        feed_names = [name for name, _ in self.feeds]
        graph_def = self.graph_def

        def imported():
            tf.compat.v1.import_graph_def(graph_def, name="")

        wrapped = tf.compat.v1.wrap_function(imported, [])
        graph = wrapped.graph
        function = wrapped.prune([graph.get_tensor_by_name(n) for n in feed_names],
                                 [graph.get_tensor_by_name(n) for n in fetch_names])
        values = function(*[value for _, value in self.feeds])
        by_name = dict(zip(fetch_names, values))
        results = {}
        for key, (replay_name, index, perturbations) in self.copies.items():
            results[key] = (_numpy(by_name[f"{replay_name}:{index}"]),
                            [(parent, _numpy(by_name[f"{p}:{index}"]))
                             for parent, p in perturbations])
        return results


def _numpy(value):
    return value.numpy() if value.dtype.is_numpy_compatible else value


def _is_random(node):
    """A stateful random op: replaying it draws new numbers (stateless ones are compared)."""
    name = node.func_name
    return not name.startswith("Stateless") and (
        "Random" in name or name in ("Multinomial", "TruncatedNormal"))


def _insensitive(node):
    dtype = tf.as_dtype(node.tensor_dtype)
    return node.func_name in INSENSITIVE or not (dtype.is_floating or dtype.is_complex)


def _constant(value):
    """A value whose elements are all equal (a product with zeros, a saturated clip)."""
    flat = np.asarray(value).ravel()
    return flat.size == 0 or bool(np.all(flat == flat[0]))


def _perturbable(value):
    return isinstance(value, np.ndarray) and value.dtype.kind in "fc" and value.size > 0


def _unchanged(actual, expected):
    """Bit for bit the same: any change, however small, shows a dependence."""
    return not isinstance(expected, np.ndarray) or np.array_equal(np.asarray(actual), expected)


def matches(actual, expected):
    """``(same, largest difference)`` of two values, with the tolerance of their dtype.

    Examples
    --------
    >>> matches(np.float32([1.0, 2.0]), np.float32([1.0, 2.5]))
    (False, 0.5)
    >>> matches(np.int32([1, 2]), np.int32([1, 2]))
    (True, 0)
    """
    if not isinstance(expected, np.ndarray):
        return True, 0.0
    actual = np.asarray(actual)
    if actual.shape != expected.shape or actual.dtype != expected.dtype:
        return False, f"shape/dtype {actual.shape} {actual.dtype} vs {expected.shape} " \
                      f"{expected.dtype}"
    if expected.dtype.kind not in "fc":
        same = np.array_equal(actual, expected)
        return same, 0 if same else "values"
    rtol, atol = TOLERANCES.get(expected.dtype.name, (0.13, 0.13))
    scale = float(np.nanmax(np.abs(expected))) if expected.size else 0.0
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    same = np.allclose(a, e, rtol=rtol, atol=atol * max(scale, 1.0), equal_nan=True)
    difference = float(np.nanmax(np.abs(a - e))) if expected.size else 0.0
    return bool(same), difference
