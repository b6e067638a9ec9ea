"""The ``tll`` command line.

Subcommands live in :data:`COMMANDS` (name -> (help, add_arguments, run)), so
each feature adds its own without touching the others.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch


def load_torchvision_model(name, weights=None, seed=0):
    """Build a torchvision model by name: random init, or weights from a file or a tag.

    Parameters
    ----------
    name : str
        A name from ``torchvision.models.list_models()``, e.g. ``"resnet18"``.
    weights : str, optional
        A path to a ``state_dict`` file, or a torchvision weights tag such as
        ``"DEFAULT"`` or ``"IMAGENET1K_V1"`` (downloaded by torchvision).
    seed : int
        Seed of the random initialisation, drawn from a forked generator so
        the caller's random state is left as it was.

    Examples
    --------
    >>> load_torchvision_model("alexnet").__class__.__name__
    'AlexNet'
    """
    import torchvision

    available = torchvision.models.list_models()
    if name not in available:
        import difflib

        close = difflib.get_close_matches(name, available, n=5)
        raise SystemExit(f"tll: unknown torchvision model '{name}'. "
                         f"{'Did you mean: ' + ', '.join(close) + '? ' if close else ''}"
                         "`python -c 'import torchvision; print(torchvision.models.list_models())'`"
                         " lists them.")
    if weights is None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return torchvision.models.get_model(name, weights=None).eval()
    if os.path.exists(weights):
        model = torchvision.models.get_model(name, weights=None)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return model.eval()
    return torchvision.models.get_model(name, weights=weights).eval()


def _add_model_arguments(parser):
    parser.add_argument("model", help="torchvision model name, e.g. resnet18")
    parser.add_argument("--weights", help="state_dict file or torchvision weights tag "
                                          "(default: random init)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=1)


def _example_input(args):
    generator = torch.Generator().manual_seed(0)
    return torch.rand(args.batch_size, 3, args.image_size, args.image_size, generator=generator)


def _run_layers(args):
    from .api import get_model_metadata

    model = load_torchvision_model(args.model, args.weights)
    print(get_model_metadata(model, _example_input(args)).summary())


def _add_render_arguments(parser, default_out):
    _add_model_arguments(parser)
    parser.add_argument("--out", default=default_out, help=f"output file (default {default_out})")
    parser.add_argument("--vis-opt", choices=("unrolled", "rolled"), default="unrolled")
    parser.add_argument("--nesting-depth", type=int, default=1000,
                        help="module levels drawn as boxes; deeper modules become one node")


def _render_options(args, **fields):
    from .render import RenderOptions

    return RenderOptions(vis_opt=args.vis_opt, nesting_depth=args.nesting_depth, **fields)


def _run_html(args):
    from .api import get_model_metadata

    model = load_torchvision_model(args.model, args.weights)
    history = get_model_metadata(model, _example_input(args))
    print(history.to_html(args.out, _render_options(args)))


def _run_graph(args):
    from .api import get_model_metadata

    model = load_torchvision_model(args.model, args.weights)
    history = get_model_metadata(model, _example_input(args))
    fileformat = os.path.splitext(args.out)[1].lstrip(".") or "svg"
    print(history.render_graph(_render_options(args, outpath=args.out, fileformat=fileformat)))


SAMPLE_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry")


def sample_images(size=224):
    """Real photographs shipped with scikit-image, as a normalized batch.

    Returns a float tensor of shape (6, 3, size, size), resized (shorter side
    to ``size``, then center-cropped) and normalized with ImageNet statistics.

    Examples
    --------
    >>> sample_images(64).shape
    torch.Size([6, 3, 64, 64])
    """
    import skimage.data
    from torchvision.transforms import v2

    transform = v2.Compose([
        v2.ToImage(), v2.Resize(size, antialias=True), v2.CenterCrop(size),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    return torch.stack([transform(getattr(skimage.data, name)()) for name in SAMPLE_IMAGES])


def _add_demo_arguments(parser):
    parser.add_argument("--model", default="resnet18", help="torchvision model name")
    parser.add_argument("--weights", help="state_dict file or torchvision weights tag "
                                          "(default: random init)")
    parser.add_argument("--layers", nargs="*", default=["layer2", "layer4", "avgpool", "fc"],
                        help="layers to save: labels, module addresses or positions")
    parser.add_argument("--out", default="outputs/demo", help="folder for the results")


def _run_demo(args):
    import numpy as np

    from .api import log_forward_pass

    model = load_torchvision_model(args.model, args.weights)
    history = log_forward_pass(model, sample_images(), layers_to_save=args.layers,
                               random_seed=0)
    print(history.summary())
    os.makedirs(args.out, exist_ok=True)
    features = {label: history[label].tensor_contents.flatten(1).numpy()
                for label in history.saved_layers}
    path = os.path.join(args.out, "features.npz")
    np.savez(path, images=np.array(SAMPLE_IMAGES), **features)
    print(f"\n{len(SAMPLE_IMAGES)} scikit-image photographs through {args.model}: saved "
          + ", ".join(f"{k} {v.shape}" for k, v in features.items()) + f" to {path}")


COMMANDS = {
    "demo": ("log a torchvision model on scikit-image's sample photographs and save features",
             _add_demo_arguments, _run_demo),
    "layers": ("print the layer table of a torchvision model", _add_model_arguments, _run_layers),
    "html": ("write an interactive HTML explorer of a torchvision model's graph",
             lambda parser: _add_render_arguments(parser, "graph.html"), _run_html),
    "graph": ("draw a torchvision model's graph (svg, pdf or png, from --out's extension)",
              lambda parser: _add_render_arguments(parser, "graph.svg"), _run_graph),
}


def main(argv=None):
    """Entry point of the ``tll`` console script.

    Examples
    --------
    >>> main(["layers", "alexnet", "--image-size", "64"])  # doctest: +ELLIPSIS
    AlexNet: 24 layers, ...
    """
    parser = argparse.ArgumentParser(prog="tll", description="torchlens_like command line")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        add_arguments(command)
        command.set_defaults(run=run)
    args = parser.parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
