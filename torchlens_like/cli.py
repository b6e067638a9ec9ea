"""The ``tll`` command line.

Subcommands live in :data:`COMMANDS` (name -> (help, add_arguments, run)), so
each feature adds its own without touching the others.

The outermost layer: reads the command line, calls the entry points of
:mod:`torchlens_like.api` and the readers; nothing in the package imports it.

Design decisions
----------------
* Nothing heavy is imported at start: ``tll --help`` and ``tll --version``
  answer without loading torch; each command imports what it needs.
* Before a command runs, the installed torch / torchvision pair is checked
  from package metadata (:mod:`torchlens_like.environment`); a pair that
  cannot work is one line naming the pair to install, not torchvision's
  ``operator torchvision::nms does not exist`` traceback.
* A mistake in what was typed (unknown model or layer, missing weights file,
  an output path that cannot be written, a format that does not exist) is a
  :class:`CommandError`: one line on stderr saying what to do, exit status 2,
  no traceback (``--debug`` shows it). Whatever can be checked before the
  model is built is checked first.
* Models are found by name through :func:`build_model`, the one place that
  asks the model zoo (:mod:`torchlens_like.extract`) for them.
* Ctrl-C is a normal way to stop: one line saying what is done and how to go
  on (``tll extract``: how many stimuli are written and that the same
  command resumes), exit status 130, at any moment. An interrupt that lands
  where Python cannot raise it (a weakref callback during garbage
  collection, which would print "Exception ignored in ..." and carry on) is
  raised again in the main thread, and a second Ctrl-C while stopping is
  ignored.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

from .version import VERSION

EXIT_USER_ERROR = 2
EXIT_VALIDATION_FAILED = 1
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """A mistake in the command's arguments; the message says what to do instead."""


# ------------------------------------------------------------------ models
def build_model(name, weights=None, seed=0, with_transform=False):
    """A model by name from the model zoo (:func:`torchlens_like.load_model`), in eval mode.

    Parameters
    ----------
    name : str
        A zoo name: torchvision (``"resnet18"``), timm (``"convnext_atto"``),
        open_clip, CORnet; ``"SOURCE/NAME"`` picks the source
        (``"timm/resnet18"``). A name several sources know follows the rule of
        :func:`torchlens_like.load_model` (the first source of
        ``torchlens_like.extract.zoo.LOOKUP_ORDER``), and a note on stderr
        names the others.
    weights : str, optional
        A ``state_dict`` file, or a weights tag to download (``"DEFAULT"``,
        ``"IMAGENET1K_V1"``); random init (seeded by ``seed``) without.
    seed : int
        Seed of the random initialisation (the caller's random state is kept).
    with_transform : bool
        Return ``(model, transform)``, the transform turning one image into
        the model's input.

    Raises
    ------
    CommandError
        Unknown name, source or tag (with what to use), missing or unfitting
        weights file, or a download that failed (offline).

    Examples
    --------
    >>> build_model("alexnet").__class__.__name__
    'AlexNet'
    >>> build_model("timm/resnet10t").__class__.__name__
    'ResNet'
    """
    _weights_file(weights)
    from .extract import WeightsDownloadError, load_model
    from .extract.sources import SOURCES
    from .extract.zoo import sources_knowing

    source, _, name = name.rpartition("/")
    if source and source not in SOURCES:
        raise CommandError(f"Unknown model source {source!r}; use one of "
                           f"{', '.join(SOURCES)} (e.g. timm/{name}).")
    if not source:
        holders = sources_knowing(name)
        if len(holders) > 1:
            print(f"tll: note: {name} is taken from {holders[0]}; "
                  + ", ".join(holders[1:]) + " also know it (e.g. "
                  + f"{holders[1]}/{name} or --source {holders[1]})", file=sys.stderr)
    try:
        made = load_model(name, source=source or None, weights=weights, seed=seed)
        return made if with_transform else made[0]
    except (ValueError, ImportError) as exc:
        raise CommandError(str(exc)) from exc
    except Exception as exc:
        if weights is not None and (isinstance(exc, WeightsDownloadError)
                                    or _is_download_error(exc)):
            raise CommandError(
                f"Downloading the weights {weights!r} of {name} needs the internet, which this "
                "machine cannot reach. Offline, pass a state_dict file instead: "
                "--weights path/to/weights.pt") from exc
        raise


def _weights_file(weights):
    """A weights argument that names a file must name one that exists."""
    if weights is None:
        return
    looks_like_path = (os.sep in weights or os.path.splitext(weights)[1].lower()
                       in (".pt", ".pth", ".bin", ".ckpt"))
    if looks_like_path and not os.path.isfile(weights):
        raise CommandError(f"The weights file {weights!r} does not exist; give the path of a "
                           "saved state_dict, or leave out --weights for random weights.")


def _is_download_error(exc):
    import urllib.error

    network = (urllib.error.URLError, ConnectionError, TimeoutError)
    module = type(exc).__module__
    return isinstance(exc, network) or module.startswith(("huggingface_hub", "requests",
                                                          "urllib3", "httpx"))


# -------------------------------------------------------------- arguments
def _add_model_arguments(parser):
    parser.add_argument("model", help="torchvision or timm model name (e.g. resnet18, "
                                      "timm/convnext_atto), or a history saved with "
                                      "history.save")
    _add_weights_argument(parser)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=1)


def _add_weights_argument(parser):
    parser.add_argument("--weights", help="state_dict file, or a weights tag to download "
                                          "(DEFAULT, IMAGENET1K_V1, ...); default: random init")


def _history(args):
    """The history a layer/graph/html command shows: a saved file, or a metadata-only pass."""
    if os.path.isfile(args.model):
        from .io import load_history

        return load_history(args.model)
    model = build_model(args.model, args.weights)
    from .api import get_model_metadata

    return get_model_metadata(model, _example_input(args.batch_size, args.image_size))


def _example_input(batch_size, image_size):
    import torch

    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch_size, 3, image_size, image_size, generator=generator)


def checked_output(path, formats):
    """``(path, format)`` for an output file, or a :class:`CommandError` saying what is wrong.

    The format comes from the extension and must be one of ``formats``; the
    path must not be a folder, and its folder must be writable (missing
    folders are made later).

    Examples
    --------
    >>> checked_output("out/graph.svg", ("svg", "png"))
    ('out/graph.svg', 'svg')
    >>> checked_output("graph.jpg", ("svg", "png"))
    Traceback (most recent call last):
    ...
    torchlens_like.cli.CommandError: Cannot write 'graph.jpg': the format 'jpg' is not one of svg, png; end the file name with .svg or .png.
    """
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if extension not in formats:
        choices = " or ".join(f".{name}" for name in formats)
        raise CommandError(f"Cannot write {path!r}: the format {extension!r} is not one of "
                           f"{', '.join(formats)}; end the file name with {choices}.")
    if os.path.isdir(path):
        raise CommandError(f"Cannot write {path!r}: it is a folder; give a file name.")
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise CommandError(f"Cannot write {path!r}: {folder!r} is not a writable folder.")
    return path, extension


def _layer_keys(keys):
    """``--layers`` values: integers are positions, everything else labels or addresses."""
    def parse(key):
        try:
            return int(key)
        except ValueError:
            return key

    return [parse(key) for key in keys]


# --------------------------------------------------------------- commands
def _run_layers(args):
    print(_history(args).summary())


def _add_render_arguments(parser, default_out, keep_source=True):
    _add_model_arguments(parser)
    parser.add_argument("--out", default=default_out, help=f"output file (default {default_out})")
    parser.add_argument("--vis-opt", choices=("unrolled", "rolled"), default="unrolled")
    parser.add_argument("--nesting-depth", type=int, default=1000,
                        help="module levels drawn as boxes; deeper modules become one node")
    if keep_source:
        parser.add_argument("--keep-source", action="store_true",
                            help="also keep the Graphviz DOT source next to the picture (.gv)")


def _render_options(args, **fields):
    from .render import RenderOptions

    try:
        return RenderOptions(vis_opt=args.vis_opt, nesting_depth=args.nesting_depth, **fields)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _run_html(args):
    out, _ = checked_output(args.out, ("html",))
    options = _render_options(args)
    print(_history(args).to_html(out, options))


def _run_graph(args):
    from .render.options import FILE_FORMATS

    out, fileformat = checked_output(args.out, FILE_FORMATS)
    options = _render_options(args, outpath=out, fileformat=fileformat,
                              keep_source=args.keep_source)
    picture = _history(args).render_graph(options)
    if os.path.abspath(picture) != os.path.abspath(out):  # an extension in capitals
        os.replace(picture, out)
    if args.keep_source:
        print(os.path.splitext(picture)[0] + ".gv")
    print(out)


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
    import torch
    from torchvision.transforms import v2

    transform = v2.Compose([
        v2.ToImage(), v2.Resize(size, antialias=True), v2.CenterCrop(size),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    return torch.stack([transform(getattr(skimage.data, name)()) for name in SAMPLE_IMAGES])


def _add_demo_arguments(parser):
    parser.add_argument("--model", default="resnet18", help="model name (`tll models` lists them)")
    _add_weights_argument(parser)
    parser.add_argument("--layers", nargs="*", default=["layer2", "add_8", "avgpool", "fc"],
                        help="layers to extract: labels (add_8, conv2d_3), module addresses "
                             "(layer4) or integer positions (0 is the first layer, -1 the last)")
    parser.add_argument("--format", default="hdf5", choices=_writer_names(),
                        help="storage format of the features (default hdf5)")
    parser.add_argument("--out", default="outputs/demo",
                        help="folder for the photographs (images/) and their features (features/)")


def _writer_names():
    return ("npy", "hdf5", "zarr", "mat", "pt", "txt")


def _run_demo(args):
    writable_folder(args.out)
    import skimage.data
    from PIL import Image

    from .api import get_model_metadata
    from .extract import ImageFolder, load_features
    from .extract.samples import write_sample_images
    from .extract.zoo import provenance

    model = build_model(args.model, args.weights)
    transform = provenance(model)["transform"]
    layers = _layer_keys(args.layers)
    first = transform(Image.fromarray(skimage.data.astronaut()))[None]
    _check_layers(get_model_metadata(model, first), layers, args.model)
    folder = ImageFolder(write_sample_images(os.path.join(args.out, "images")), transform)
    features_dir = os.path.join(args.out, "features")
    shutil.rmtree(features_dir, ignore_errors=True)  # each demo run starts afresh
    _extract(model, folder, layers, output_dir=features_dir, format=args.format, batch_size=3,
             num_workers=0)
    features = load_features(features_dir)
    print(f"{len(features.stimulus_ids)} scikit-image photographs ({folder.root}) through "
          f"{args.model}, written to {features_dir} ({args.format}) and read back:")
    for key, values in features.items():
        print(f"  {key:>10} = {features.layer_labels[key]:<24} {tuple(values.shape)}")


def _extract(model, stimuli, layers, **options):
    """``extract_features`` with the user's mistakes (unknown layer, unreadable image,
    an output made with other arguments, a graph that changes) and, under ``torchrun``, a
    rank that failed or resolved other layers, as :class:`CommandError` (one line per rank),
    in the command line's spelling."""
    from .extract import (ExtractionValidationError, GraphChangedError, StimulusError,
                          extract_features)
    from .extract.distributed import PlanMismatch, RankFailure

    try:
        return extract_features(model, stimuli, layers, **options)
    except (PlanMismatch, RankFailure) as exc:
        raise CommandError(cli_spelling(f"{type(exc).__name__}: {exc}")) from exc
    except (ValueError, StimulusError, GraphChangedError, ExtractionValidationError) as exc:
        raise CommandError(cli_spelling(str(exc))) from exc


OPTION_FLAGS = {"on_error": "--on-error", "output_dir": "--out", "batch_size": "--batch-size",
                "memory_limit": "--memory-limit", "reduction": "--reduce",
                "reductions": "--reduce", "format": "--format", "layers": "--layers",
                "weights": "--weights", "source": "--source", "num_workers": "--workers",
                "early_stop=False": "--no-early-stop", "dry_run=True": "--dry-run",
                "validate_every": "--validate-every"}
"""Python argument -> the ``tll extract`` option that sets it, for messages of the library."""


def cli_spelling(message):
    """A message of the Python API with its arguments written as ``tll extract`` options.

    Examples
    --------
    >>> cli_spelling("pass on_error='skip' to skip it; use another output_dir")
    'pass --on-error skip to skip it; use another --out'
    >>> cli_spelling("made with format='npy', not 'hdf5'. Or pass early_stop=False")
    "made with --format npy, not 'hdf5'. Or pass --no-early-stop"
    """
    import re

    words = sorted(OPTION_FLAGS, key=len, reverse=True)
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")(=('([\w.-]*)'|\S*))?")

    def flag(match):
        name, assigned, quoted, word = match.group(1, 2, 3, 4)
        if name in OPTION_FLAGS and "=" in name:
            return OPTION_FLAGS[name]
        value = word if word is not None else (quoted or "")
        return OPTION_FLAGS[name] + (f" {value}" if assigned else "")

    return pattern.sub(flag, message)


def writable_folder(path, option="--out"):
    """Refuse an output folder that cannot be written, before anything is built.

    The folder (or the nearest folder above it that exists) gets a temporary
    file, removed at once: a real write, which also catches read-only file
    systems that permission bits do not show.

    Examples
    --------
    >>> import tempfile
    >>> writable_folder(tempfile.mkdtemp() + "/new/features")
    >>> writable_folder("/proc/features")
    Traceback (most recent call last):
    ...
    torchlens_like.cli.CommandError: --out '/proc/features': cannot write in '/proc' (FileNotFoundError); choose a folder you can write to.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise CommandError(f"{option} {path!r} is a file; give a folder for the results.")
    folder = os.path.abspath(path)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    try:
        if not os.path.isdir(folder):
            raise NotADirectoryError(folder)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise CommandError(f"{option} {path!r}: cannot write in {folder!r} "
                           f"({type(exc).__name__}); choose a folder you can write to.") from None


def _add_extract_arguments(parser):
    parser.add_argument("model", help="zoo model name (`tll models` lists them)")
    parser.add_argument("images", help="folder of images (searched recursively; subfolders "
                                       "are class labels)")
    parser.add_argument("--layers", nargs="+", required=True,
                        help="labels (add_16), module addresses (layer3, block:2) or integer "
                             "positions (-1 the last)")
    parser.add_argument("--out", required=True, help="output folder; run again to resume")
    parser.add_argument("--source", help="where the model name is looked up: torchvision, timm, "
                                          "... (`tll models` lists them; default: first found)")
    _add_weights_argument(parser)
    parser.add_argument("--format", default="npy", choices=_writer_names())
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--memory-limit", help="e.g. 2GB: extract the layers in groups that fit")
    parser.add_argument("--reduce", help="flatten, spatial_mean, class_token, token_mean or srp")
    parser.add_argument("--flatten", action="store_true", help="store (n_stimuli, features)")
    parser.add_argument("--device", help="e.g. cuda")
    parser.add_argument("--workers", type=int, help="image-decoding workers (default: up to 4)")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="an unreadable image stops the run (raise) or is skipped")
    parser.add_argument("--no-early-stop", action="store_true",
                        help="run every forward pass to the end")
    parser.add_argument("--dry-run", action="store_true",
                        help="print shapes, sizes and the plan; extract nothing")
    parser.add_argument("--validate-every", type=_validate_every, default="auto",
                        help="which batches get a validated full capture of their first "
                             "stimuli besides the first: auto (within 5%% of the run's time), "
                             "N (every N-th) or none")


def _validate_every(text):
    if text in ("auto", "none"):
        return None if text == "none" else text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, none or a whole number, got {text!r}") \
            from None


def validation_summary(records):
    """One line on an extraction's checks, for ``tll extract`` to print.

    Examples
    --------
    >>> validation_summary([{"stimuli": [0, 2], "result": "passed", "pass": "ops"},
    ...                     {"stimuli": [64, 66], "result": "passed", "pass": "ops"}])
    'validated 2 batches (stimuli 0-1, 64-65) with a full capture: passed; batches ran the ops pass'
    """
    spans = ", ".join(f"{r['stimuli'][0]}-{r['stimuli'][1] - 1}" for r in records)
    failed = [r["result"] for r in records if r["result"] != "passed"]
    passes = sorted({r["pass"] for r in records if "pass" in r})
    return (f"validated {len(records)} batch{'es' * (len(records) != 1)} (stimuli {spans}) with "
            f"a full capture: {failed[0] if failed else 'passed'}; batches ran the "
            f"{' / '.join(passes)} pass")


def _run_extract(args):
    from .extract import ImageFolder
    from .extract.zoo import provenance

    writable_folder(args.out)
    spec = f"{args.source}/{args.model}" if args.source else args.model
    model = build_model(spec, args.weights)
    if args.device:
        model = model.to(args.device)
    folder = ImageFolder(args.images, provenance(model)["transform"])
    features = _extract(model, folder, _layer_keys(args.layers), batch_size=args.batch_size,
                        output_dir=args.out, format=args.format, flatten=args.flatten,
                        device=args.device, memory_limit=args.memory_limit,
                        dry_run=args.dry_run, reduction=args.reduce,
                        early_stop=not args.no_early_stop, on_error=args.on_error,
                        num_workers=args.workers, validate_every=args.validate_every)
    if not args.dry_run and os.environ.get("RANK", "0") == "0":
        print(f"{len(features.stimulus_ids)} stimuli in {args.out}: " + ", ".join(
            f"{key} ({features.layer_labels[key]}) {tuple(v.shape)}"
            for key, v in features.items()))
        if features.validation:
            print(validation_summary(features.validation))
        if features.skipped:
            print(f"{len(features.skipped)} unreadable image(s) skipped (their rows are NaN; "
                  "the manifest lists them too):")
            for index, reason in sorted(features.skipped.items()):
                print(f"  {features.stimulus_ids[index]}: {reason}")


def _extract_progress(out):
    """One line on how far the extraction into ``out`` got, for an interrupted ``tll extract``."""
    from .extract.manifest import FILENAME, Manifest

    try:
        manifest = Manifest.load(out)
    except (OSError, ValueError, KeyError):
        return f"no features written to {out} yet; run the same command again to start over"
    n = manifest.n_stimuli
    missing = [gap for key in manifest.layers for gap in manifest.missing(key, 0, n)]
    todo = len({i for start, stop in missing for i in range(start, stop)})
    if manifest.complete:
        return f"all {n} stimuli are done in {out}"
    return (f"{n - todo} of {n} stimuli are done in {out} ({FILENAME} records them); run the same "
            "command again to resume")


INTERRUPT_PROGRESS = {"extract": lambda args: _extract_progress(args.out)}
"""Per command, what an interrupted run says it left behind (the others say only that
they were interrupted)."""


def _check_layers(history, keys, model_name):
    for key in keys:
        try:
            history[key]
        except (KeyError, IndexError) as exc:
            message = exc.args[0] if exc.args else str(exc)
            raise CommandError(f"--layers {key}: {message} (`tll layers {model_name}` lists "
                               "the layers).") from None


def _add_validate_arguments(parser):
    parser.add_argument("spec", help="a model name (resnet18, timm/convnext_atto) or "
                                     "package.module:factory, a function returning the model "
                                     "or (model, example_input)")
    _add_weights_argument(parser)
    parser.add_argument("--input-shape", default="1,3,224,224",
                        help="shape of the random example input when the factory returns "
                             "only a model (default 1,3,224,224)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the pass")
    parser.add_argument("--junit-xml", metavar="PATH", help="also write a JUnit XML report")


def _run_validate(args):
    from .testing import check_activations, write_junit_xml

    if args.junit_xml:
        checked_output(args.junit_xml, ("xml",))
    shape = _input_shape(args.input_shape)
    model, example = _model_from_spec(args.spec, args.weights)
    if example is None:
        import torch

        example = torch.rand(shape, generator=torch.Generator().manual_seed(args.seed))
    report = check_activations(model, example, random_seed=args.seed, name=args.spec)
    print(report)
    if args.junit_xml:
        print(write_junit_xml([report], args.junit_xml))
    return 0 if report.passed else EXIT_VALIDATION_FAILED


def _input_shape(text):
    try:
        shape = tuple(int(size) for size in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise CommandError(f"--input-shape {text!r}: give positive sizes separated by commas, "
                           "e.g. 1,3,224,224.")
    return shape


def _model_from_spec(spec, weights):
    """``(model, example input or None)`` for a zoo name or ``package.module:factory``."""
    if ":" not in spec:
        return build_model(spec, weights), None
    import importlib

    module_name, _, factory_name = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise
        raise CommandError(f"Cannot import {module_name!r} (from {spec!r}): run tll from the "
                           "folder that holds it, or install its package.") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise CommandError(f"{module_name} has no function {factory_name!r}; SPEC is "
                           "package.module:function, a function returning the model or "
                           "(model, example_input).")
    made = factory()
    if isinstance(made, tuple) and len(made) == 2:
        return made
    return made, None


PATCH_METRICS = {
    "logit": lambda output, target: output[:, target].sum(),
    "prob": lambda output, target: output.softmax(-1)[:, target].sum(),
}
"""``tll patch --metric``: ``{name: metric(output, target class)}``."""


def _add_patch_arguments(parser):
    parser.add_argument("model", help="model name (resnet18, timm/convnext_atto)")
    _add_weights_argument(parser)
    parser.add_argument("--clean", required=True, help="the clean image")
    parser.add_argument("--corrupt", required=True, help="the corrupted image")
    parser.add_argument("--sites", nargs="+", required=True,
                        help="layer labels or module addresses to patch, one at a time")
    parser.add_argument("--metric", default="logit", help=f"one of {', '.join(PATCH_METRICS)} "
                                                          "of the target class (default logit)")
    parser.add_argument("--target", type=int,
                        help="class index (default: the clean image's top class)")
    parser.add_argument("--direction", default="clean_to_corrupt",
                        choices=("clean_to_corrupt", "corrupt_to_clean"),
                        help="patch clean values into the corrupted run (default) or back")
    parser.add_argument("--out", help="write the table to this CSV file instead of printing it")


def _run_patch(args):
    from .registry import lookup

    try:
        score = lookup(PATCH_METRICS, args.metric, "--metric")
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    for image in (args.clean, args.corrupt):
        if not os.path.isfile(image):
            raise CommandError(f"The image {image!r} does not exist; give the path of an image "
                               "file (png, jpg, ...).")
    if args.out:
        checked_output(args.out, ("csv",))
    import torch

    from .extract import ImageList, StimulusError
    from .interventions import patching_sweep

    model, transform = build_model(args.model, args.weights, with_transform=True)
    try:
        clean, corrupt = (ImageList([path], transform)[0][0].unsqueeze(0)
                          for path in (args.clean, args.corrupt))
    except StimulusError as exc:
        raise CommandError(str(exc)) from None
    target = args.target
    if target is None:
        with torch.no_grad():
            target = int(model(clean).argmax(-1)[0])
    try:
        table = patching_sweep(model, clean, corrupt, lambda out: float(score(out, target)),
                               sites=args.sites, direction=args.direction)
    except KeyError as exc:
        raise CommandError(f"--sites: {exc.args[0] if exc.args else exc} (`tll layers "
                           f"{args.model}` lists the layers).") from None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.out:
        temporary = f"{args.out}.tmp"
        table.to_csv(temporary, index=False)
        os.replace(temporary, args.out)
        print(args.out)
        return 0
    print(f"{args.metric} of class {target}: clean {table.attrs['clean_metric']:.4g}, "
          f"corrupt {table.attrs['corrupt_metric']:.4g} ({args.direction})")
    print(table.to_string(index=False))
    return 0
MODELS_COLUMNS = ("source", "model", "family", "task", "num_params", "input_size")
"""The columns ``tll models`` prints by default (``--columns`` chooses others)."""

MODELS_FORMATS = {
    "csv": lambda table: table.to_csv(index=False),
    "json": lambda table: table.to_json(orient="records", indent=1) + "\n",
}
"""``--format`` of ``tll models`` other than the terminal table: the full table."""


def _add_models_arguments(parser):
    for column in ("source", "family", "model", "task", "training_data"):
        parser.add_argument(f"--{column.replace('_', '-')}", dest=column,
                            help=f"keep rows whose {column} contains this text")
    parser.add_argument("--columns", nargs="+", metavar="COLUMN",
                        help=f"columns to print (default: {' '.join(MODELS_COLUMNS)}; also "
                             "training_data, weights)")
    parser.add_argument("--limit", type=int, help="print at most this many rows (default 50 "
                                                  "for the terminal table; 0: all)")
    parser.add_argument("--format", choices=("table",) + tuple(MODELS_FORMATS), default="table",
                        help="table for the terminal; csv or json: every column and row")


def _run_models(args):
    from .extract import list_models
    from .extract.zoo import TABLE_COLUMNS

    columns = args.columns or (MODELS_COLUMNS if args.format == "table" else TABLE_COLUMNS)
    unknown = [c for c in columns if c not in TABLE_COLUMNS]
    if unknown:
        raise CommandError(f"--columns {' '.join(unknown)}: not a column; choose from "
                           f"{' '.join(TABLE_COLUMNS)}.")
    if args.limit is not None and args.limit < 0:
        raise CommandError(f"--limit {args.limit}: give 0 (all rows) or a positive number.")
    filters = {k: v for k, v in vars(args).items()
               if k in ("source", "family", "model", "task", "training_data") and v}
    table = list_models(**filters)
    limit = args.limit if args.limit is not None else (50 if args.format == "table" else 0)
    shown = table[list(columns)].head(limit or len(table))
    if args.format != "table":
        sys.stdout.write(MODELS_FORMATS[args.format](shown))
        return
    print(_terminal_table(shown))
    counted = f"{len(table)} model{'s' * (len(table) != 1)} match"
    if len(shown) < len(table):
        counted += (f"; the first {len(shown)} are shown (--limit 0 shows all, --format csv "
                    "the full table)")
    print(counted)
    if "num_params" in columns and shown.num_params.isna().any():
        empty = sorted(set(shown.source[shown.num_params.isna()]))
        print(f"num_params is empty where the metadata has no count ({', '.join(empty)}); "
              "tll.list_models(count_params=True) builds those models to count")


def _terminal_table(table, longest=30):
    """``table`` as terminal text: integers as integers, long text cut to ``longest`` characters.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"model": ["a"], "num_params": pd.array([1234567], "Int64"),
    ...                       "task": ["x" * 40]})
    >>> print(_terminal_table(table, longest=10))
    model num_params       task
        a  1,234,567 xxxxxxx...
    """
    import pandas as pd

    def text(value, uncut):
        if pd.isna(value):
            return ""
        if isinstance(value, int) or (hasattr(value, "dtype") and value.dtype.kind in "iu"):
            return f"{int(value):,}"
        value = str(value)
        return value if uncut or len(value) <= longest else value[:longest - 3] + "..."

    cells = {column: [text(value, column in ("source", "model")) for value in table[column]]
             for column in table.columns}
    return pd.DataFrame(cells, columns=table.columns).to_string(index=False)


COMMANDS = {
    "demo": ("extract features of a model over scikit-image's photographs, to disk and back",
             _add_demo_arguments, _run_demo),
    "extract": ("extract layers of a zoo model over an image folder to disk (resumable)",
                _add_extract_arguments, _run_extract),
    "models": ("print the model zoo (filter with --source, --family, --model ...)",
               _add_models_arguments, _run_models),
    "layers": ("print the layer table of a model (or a saved history)", _add_model_arguments,
               _run_layers),
    "html": ("write an interactive HTML explorer of a model's graph",
             lambda parser: _add_render_arguments(parser, "graph.html", keep_source=False),
             _run_html),
    "graph": ("draw a model's graph (svg, pdf or png, from --out's extension)",
              lambda parser: _add_render_arguments(parser, "graph.svg"), _run_graph),
    "validate": ("check every saved activation of a model (exit 0 valid, 1 invalid)",
                 _add_validate_arguments, _run_validate),
    "patch": ("activation patching: patch each site from the clean image into the corrupted "
              "one and print the metric", _add_patch_arguments, _run_patch),
}


def user_errors():
    """The exception types that are the user's mistake, not a bug: one line, exit 2.

    Examples
    --------
    >>> CommandError in user_errors()
    True
    """
    found = [CommandError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
             PermissionError]
    for module, name in (("torchlens_like.graph", "LayerLookupError"),
                         ("torchlens_like.io", "HistoryFormatError"),
                         ("torchlens_like.render", "GraphvizNotFoundError")):
        loaded = sys.modules.get(module)
        if loaded is not None:
            found.append(getattr(loaded, name))
    return tuple(found)


def _parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    parser = argparse.ArgumentParser(prog="tll", description="torchlens_like command line",
                                     parents=[common])
    parser.add_argument("--version", action="version", version=f"tll {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        add_arguments(command)
        command.set_defaults(run=run)
    return parser


def main(argv=None):
    """Entry point of the ``tll`` console script; returns the exit status.

    Examples
    --------
    >>> main(["layers", "alexnet", "--image-size", "64"])  # doctest: +ELLIPSIS
    AlexNet: 24 layers, ...
    0
    """
    args = _parser().parse_args(argv)
    from .environment import torch_pair_problem

    problem = torch_pair_problem()
    if problem is not None:
        print(f"tll: error: {problem}", file=sys.stderr)
        return EXIT_USER_ERROR
    with _InterruptWatch() as watch:
        try:
            return args.run(args) or 0
        except KeyboardInterrupt:
            return _interrupted(args)
        except user_errors() as exc:
            if watch.seen:
                return _interrupted(args)
            if getattr(args, "debug", False):
                raise
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            print(f"tll: error: {' '.join(message.split())}", file=sys.stderr)
            return EXIT_USER_ERROR
        except Exception:
            if watch.seen:
                return _interrupted(args)
            raise


class _InterruptWatch:
    """Notes a Ctrl-C that Python could not raise where it landed, and raises it again.

    A ``KeyboardInterrupt`` raised inside a weakref callback or a ``__del__``
    is "unraisable": Python prints ``Exception ignored in ...`` and goes on,
    so the interrupt is lost and the command fails later in a confusing way.
    While the watch is on, such an interrupt is recorded (``seen``) and raised
    again in the main thread, and any error after it counts as the interrupt.
    """

    def __init__(self):
        self.seen = False
        self._previous = None

    def __enter__(self):
        self._previous = sys.unraisablehook
        sys.unraisablehook = self._hook
        return self

    def __exit__(self, *exc_info):
        sys.unraisablehook = self._previous
        return False

    def _hook(self, unraisable):
        if not issubclass(unraisable.exc_type, KeyboardInterrupt):
            self._previous(unraisable)
            return
        self.seen = True
        import _thread
        import threading

        # From another thread: raised in the main thread once this hook has returned (a call
        # from the hook itself would be raised inside the hook, and be unraisable again).
        later = threading.Timer(0.01, _thread.interrupt_main)
        later.daemon = True
        later.start()


def _interrupted(args):
    """The one line an interrupted command prints; exit status 130."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C while stopping
    progress = INTERRUPT_PROGRESS.get(args.command)
    detail = progress(args) if progress is not None else None
    print(f"tll: interrupted{'; ' + detail if detail else ''}.", file=sys.stderr)
    return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
