"""The ``tll`` command line.

Subcommands live in :data:`COMMANDS` (name -> (help, add_arguments, run)), so
each feature adds its own without touching the others.
"""

from __future__ import annotations

import argparse
import sys

import torch


def load_torchvision_model(name, weights=None):
    """Build a torchvision model by name: random init, or weights from a file or a tag.

    Parameters
    ----------
    name : str
        A name from ``torchvision.models.list_models()``, e.g. ``"resnet18"``.
    weights : str, optional
        A path to a ``state_dict`` file, or a torchvision weights tag such as
        ``"DEFAULT"`` or ``"IMAGENET1K_V1"`` (downloaded by torchvision).

    Examples
    --------
    >>> load_torchvision_model("alexnet").__class__.__name__
    'AlexNet'
    """
    import os

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


COMMANDS = {
    "layers": ("print the layer table of a torchvision model", _add_model_arguments, _run_layers),
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
