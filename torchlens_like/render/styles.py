"""The paper's visual code: fill colours, shapes, outlines and node text.

One function per decision, each a pure function of a view node, so the tests
can compare a picture against the rules without reading this module:

- fill: a site an intervention edited purple, input green, output red,
  ``if`` boolean yellow, layer with parameters gray, buffer light gray,
  anything else white. When several apply the order above wins (an output
  that also has parameters is red). With ``shade_by`` (:data:`SHADES`),
  the layers that are not edited, inputs or outputs are filled from white
  to orange by their size on that scale (the largest in the picture is
  full orange): how much an edit changed them, their gradient's size, or
  their gradient x activation attribution;
- text: an edited site's node also says its edit (``edit: zero()``);
- shape: a box for a bottom-level module's op and for a collapsed module,
  an ellipse for every other op;
- outline: dashed for internally generated tensors (no input ancestor).
"""

from __future__ import annotations

from html import escape

from ..units import format_bytes

INPUT_COLOR = "#98FB98"
OUTPUT_COLOR = "#FF9999"
COND_BOOL_COLOR = "#FFFF66"
PARAMS_COLOR = "#BEBEBE"
BUFFER_COLOR = "#EDEDED"
PLAIN_COLOR = "#FFFFFF"
EDIT_COLOR = "#C39BD3"
SHADE_COLOR = (255, 140, 0)

def gradient_size(layer):
    """L2 norm of the layer's gradient (after ``history.backward``), or None without one.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(torch.nn.ReLU(), torch.ones(2), save_gradients=True)
    >>> history.backward(lambda out: 3 * out.sum())
    >>> round(gradient_size(history["relu_1"]), 4)
    4.2426
    """
    if not layer.has_grad:
        return None
    return float(layer.grad.detach().double().norm())


def attribution_size(layer):
    """Sum of ``|gradient x activation|`` at the layer (its gradient x activation attribution).

    None without a gradient or a saved activation.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> history = tll.log_forward_pass(torch.nn.ReLU(), torch.tensor([1.0, -2.0, 3.0]),
    ...                                save_gradients=True)
    >>> history.backward(lambda out: out.sum())
    >>> attribution_size(history["input_1"])
    4.0
    """
    if not layer.has_grad or not layer.has_saved_activation:
        return None
    return float((layer.grad.detach().double() * layer.tensor_contents.double()).abs().sum())


SHADES = {
    "change": lambda layer: layer.meta.get("change"),
    "grad": gradient_size,
    "attribution": attribution_size,
}
"""``RenderOptions(shade_by=...)``: ``{name: layer -> size or None}``. ``"change"``: how much
an intervention changed the layer (L2 norm of edited minus clean; replay results);
``"grad"``: the L2 norm of the layer's gradient (:func:`gradient_size`); ``"attribution"``:
the size of its gradient x activation attribution (:func:`attribution_size`). The last two
need a history logged with ``save_gradients`` and a ``history.backward``."""


def shade_sizes(layers, shade_by):
    """``{id(layer): size}`` of the layers with a size on the ``shade_by`` scale."""
    size = SHADES[shade_by]
    return {id(layer): value for layer in layers if (value := size(layer)) is not None}


def shade_color(fraction):
    """White (0) to orange (1).

    Examples
    --------
    >>> shade_color(0.0), shade_color(1.0)
    ('#FFFFFF', '#FF8C00')
    """
    fraction = min(max(fraction, 0.0), 1.0)
    return "#" + "".join(f"{round(255 - (255 - c) * fraction):02X}" for c in SHADE_COLOR)


def fill_color(node, sizes=None):
    """Fill colour of a view node, from its layers' kinds and flags.

    ``sizes`` (from :func:`shade_sizes`) shades plain layers by their size.

    Examples
    --------
    >>> import torch, torchlens_like as tll
    >>> from torchlens_like.render.view import build_view
    >>> from torchlens_like.render import RenderOptions
    >>> history = tll.get_model_metadata(torch.nn.Linear(2, 2), torch.rand(1, 2))
    >>> [fill_color(n) for n in build_view(history, RenderOptions()).nodes.values()]
    ['#98FB98', '#BEBEBE', '#FF9999']
    """
    layers = node.layers
    if any(layer.meta.get("intervention") for layer in layers):
        return EDIT_COLOR
    if any(layer.is_input for layer in layers):
        return INPUT_COLOR
    if any(layer.is_output for layer in layers):
        return OUTPUT_COLOR
    if sizes:
        found = [sizes[id(layer)] for layer in layers if id(layer) in sizes]
        if found:
            largest = max(sizes.values())
            return shade_color(max(found) / largest if largest else 0.0)
    if any(layer.is_cond_bool for layer in layers):
        return COND_BOOL_COLOR
    if any(layer.has_params for layer in layers):
        return PARAMS_COLOR
    if all(layer.is_buffer for layer in layers):
        return BUFFER_COLOR
    return PLAIN_COLOR


def shape(node):
    """``"box"`` for a bottom-level module's op or a collapsed module, else ``"ellipse"``."""
    return "box" if node.kind == "module" or node.boxed else "ellipse"


def outline(node):
    """``"dashed"`` when every layer of the node is internally generated, else ``"solid"``."""
    return "dashed" if all(layer.is_internally_generated for layer in node.layers) else "solid"


def format_shape(shape):
    """``(1, 3, 224, 224)`` -> ``"1x3x224x224"``; a scalar is ``"scalar"``."""
    if shape is None:
        return "-"
    return "x".join(str(s) for s in shape) if len(shape) else "scalar"


def node_lines(node, module_types, calls_per_module):
    """The text lines of a node (plain strings, first one the title).

    Layer nodes: label (``(×N)`` when rolled over passes), output shape and
    size, parameter shapes, module address. Module nodes: address, class,
    number of ops inside, output shape and parameter count.
    """
    first = node.layers[0]
    if node.kind == "module":
        address = node.module
        passes = sorted(node.passes)
        title = address if calls_per_module.get(address, 1) == 1 or len(passes) > 1 \
            else f"{address}:{passes[0]}"
        if len(passes) > 1:
            title += f" (×{len(passes)})"
        ops = [layer for layer in node.layers if layer.kind == "op"]
        per_call = len(ops) // len(passes)
        output = next((layer for layer in reversed(node.layers)
                       if address in layer.module_outputs), node.layers[-1])
        params = {name for layer in node.layers for name in layer.param_names}
        lines = [title, f"({module_types.get(address, 'module')}, {per_call} ops)",
                 f"{format_shape(output.tensor_shape)} ({format_bytes(output.tensor_fsize)})"]
        if params:
            lines.append(f"{len(params)} param tensors")
        return lines
    title = first.layer_label_no_pass if len(node.passes) > 1 else first.layer_label
    if len(node.passes) > 1:
        title += f" (×{len(node.passes)})"
    lines = [title, f"{format_shape(first.tensor_shape)} ({format_bytes(first.tensor_fsize)})"]
    if first.param_shapes:
        lines.append("params: " + ", ".join(format_shape(s) for s in first.param_shapes))
    address = module_address(first, calls_per_module, with_pass=len(node.passes) == 1)
    if address:
        lines.append(f"@{address}")
    edits = dict.fromkeys(edit for layer in node.layers for edit in layer.meta.get(
        "intervention", ()))
    lines.extend(f"edit: {edit}" for edit in edits)
    return lines


def module_address(layer, calls_per_module, with_pass=True):
    """The address to print on a layer's node: its deepest module output, if any.

    A bottom-level op is the output of its module, so this is its module's
    address; an op inside a larger module that is not its output shows none
    (its box label says where it is). The call number is added
    (``block.fc:2``) for a module called more than once.
    """
    if not layer.module_passes_output:
        return None
    call = max(layer.module_passes_output, key=lambda c: c.address.count("."))
    return call if with_pass and calls_per_module.get(call.address, 1) > 1 else call.address


def html_label(lines, bold_first=True):
    """A Graphviz HTML-like label: first line bold, the rest plain."""
    parts = [escape(line) for line in lines]
    if bold_first:
        parts[0] = f"<b>{parts[0]}</b>"
    return "<" + "<br/>".join(parts) + ">"
