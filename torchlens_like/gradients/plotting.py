"""``tll.plot_attribution``: an input (or spatial layer) attribution over the image it explains."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..figure_files import save_figure


def attribution_map(values, size=None, example=0, batched=False):
    """The ``(height, width)`` map drawn over the image: ``|attribution|`` summed over channels.

    Parameters
    ----------
    values : tensor or array
        ``(channels, height, width)`` or ``(height, width)``; with
        ``batched``, the same with a batch axis first.
    size : (int, int), optional
        Resized to this (bilinear), e.g. a layer's map to the image's size.
    example : int
        Which example of a batch.
    batched : bool
        Whether ``values`` has a batch axis (an attribution from ``tll.attribute`` has).

    Examples
    --------
    >>> attribution_map(torch.tensor([[[1.0, -2.0]], [[3.0, 0.0]]])).tolist()
    [[4.0, 2.0]]
    """
    values = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor)
                             else values.detach()).double().cpu()
    shape = tuple(values.shape)
    if values.dim() - batched not in (2, 3):
        raise ValueError("plot_attribution needs an attribution shaped (batch, channels, height, "
                         "width) or (batch, height, width) (values: (channels, height, width) or "
                         f"(height, width)); got shape {shape}. Attribute at the input or a "
                         "convolutional layer.")
    if batched:
        values = values[example]
    values = values.abs().sum(0) if values.dim() == 3 else values.abs()
    if size is not None and tuple(values.shape) != tuple(size):
        values = F.interpolate(values[None, None], size=tuple(size), mode="bilinear",
                               align_corners=False)[0, 0]
    return values.numpy()


def image_array(image, example=0):
    """An image as an ``(height, width, 3)`` float array in [0, 1] (min-max scaled if outside).

    Takes a tensor ``(batch, 3, H, W)`` / ``(3, H, W)`` / ``(1, H, W)``, an array
    ``(H, W, 3)`` / ``(H, W)`` (``uint8`` is divided by 255) or a PIL image.

    Examples
    --------
    >>> image_array(torch.zeros(1, 3, 2, 4)).shape
    (2, 4, 3)
    """
    if isinstance(image, torch.Tensor):
        array = image.detach().cpu().double()
        if array.dim() == 4:
            array = array[example]
        if array.dim() == 3 and array.shape[0] in (1, 3):
            array = array.permute(1, 2, 0)
        array = array.numpy()
    else:
        array = np.asarray(image)
        array = array / 255.0 if array.dtype == np.uint8 else array.astype(np.float64)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise ValueError(f"plot_attribution: the image must be (3, H, W), (H, W, 3) or "
                         f"(H, W); got shape {array.shape}.")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    low, high = array.min(), array.max()
    if low < 0 or high > 1:
        array = (array - low) / (high - low) if high > low else np.zeros_like(array)
    return array


def plot_attribution(attr, image, path=None, *, example=0, layer=None, alpha=0.5,
                     colormap="inferno", title=None):
    """Draw an attribution over the image it explains; optionally save the figure.

    The map is ``|attribution|`` summed over channels (:func:`attribution_map`),
    resized to the image when it comes from a smaller convolutional layer,
    drawn with ``colormap`` at opacity ``alpha`` over the image, with a
    colour bar.

    Parameters
    ----------
    attr : Attribution, tensor or array
        From ``tll.attribute`` (at the input, or a layer with a spatial map),
        or the values themselves.
    image : tensor, array or PIL image
        The image (see :func:`image_array`), e.g. the input ``x`` itself.
    path : str, optional
        Save the figure there (png, svg, pdf ...); missing folders are made.
    example : int
        Which example of a batch.
    layer : str, optional
        For a site with several layers: which one (a label of ``attr.values``).
    alpha : float
        Opacity of the map.
    colormap : str
        A matplotlib colormap name.
    title : str, optional
        Default: the method and site.

    Returns
    -------
    matplotlib.figure.Figure
        ``figure.axes[0].images`` are the image and the map, in that order.

    Examples
    --------
    >>> import torch, torchvision, torchlens_like as tll
    >>> model, x = torchvision.models.resnet18().eval(), torch.rand(1, 3, 64, 64)
    >>> attr = tll.attribute(model, x, "input_1", method="grad_x_activation", target=3)
    >>> figure = tll.plot_attribution(attr, x)
    >>> [image.get_array().shape for image in figure.axes[0].images]
    [(64, 64, 3), (64, 64)]
    """
    import matplotlib
    from matplotlib.figure import Figure

    if colormap not in matplotlib.colormaps:
        raise ValueError(f"unknown colormap {colormap!r}; pass a name from "
                         "matplotlib.colormaps, e.g. 'inferno'")
    values, name = _values(attr, layer)
    picture = image_array(image, example)
    heat = attribution_map(values, picture.shape[:2], example,
                           batched=isinstance(getattr(attr, "values", None), dict))
    figure = Figure(figsize=(4, 4))
    axes = figure.add_subplot()
    axes.imshow(picture)
    shown = axes.imshow(heat, cmap=colormap, alpha=alpha)
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04, label="|attribution|")
    axes.set_axis_off()
    axes.set_title(title if title is not None else name)
    if path is not None:
        save_figure(figure, path, bbox_inches="tight")
    return figure


def _values(attr, layer):
    values = getattr(attr, "values", None)
    if not isinstance(values, dict):
        return attr, "attribution"
    name = f"{attr.method} at {attr.site}"
    if layer is None:
        if len(values) != 1:
            raise ValueError(f"Site '{attr.site}' has several layers ({', '.join(values)}): "
                             "pass layer= to choose one.")
        return next(iter(values.values())), name
    if layer not in values:
        raise KeyError(f"No layer {layer!r} in this attribution; its layers: "
                       f"{', '.join(values)}.")
    return values[layer], f"{name} ({layer})"
