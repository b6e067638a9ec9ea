"""Stimulus sets: image folders, lists of paths, datasets and data loaders, in a fixed order.

Design decisions
----------------
* Every kind of input becomes a :class:`StimulusSet`: a fixed number of
  stimuli, an id and a label per stimulus, and ``batches(start, stop, size)``
  yielding ``(first_index, tensor)`` for any range of stimulus indices. The
  extraction is a loop over such ranges, so a resumed run (or one rank of a
  distributed one) asks only for the range it still has to do.
* Items of :class:`ImageList` and :class:`ImageFolder` are ``(image,
  class_index)``, as torchvision's ``ImageFolder`` gives them, so they
  collate with torch's default collate in a user's own ``DataLoader``.
  Extraction reads them through :meth:`ImageList.read` instead, which
  returns a read error rather than raising it.
* Images are decoded in ``DataLoader`` workers. A file that cannot be read
  does not raise inside the worker (where the error would come back as a
  traceback string); the worker returns the error, and the main process
  raises :class:`StimulusError` naming the file, or skips it when asked to.
* The workers the extraction starts ignore Ctrl-C (SIGINT, which the
  terminal sends to every process of the group): the main process alone
  stops, and shuts its workers down, instead of each worker printing a
  traceback and dying in the middle of handing over a batch.
* Images are converted to RGB whatever their mode (grayscale, RGBA, CMYK,
  palette) before the transform.
* An existing ``DataLoader`` is used as it is (it cannot be cut into ranges):
  batches before the asked range are loaded and dropped. One that shuffles is
  refused, since the order of stimuli must be fixed.
"""

from __future__ import annotations

import itertools
import multiprocessing.resource_sharer
import os

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, RandomSampler, Subset

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff",
                    ".webp")


class StimulusError(RuntimeError):
    """A stimulus could not be read."""


class ImageList(Dataset):
    """Images from a list of paths, each converted to RGB and transformed.

    Items are ``(image, class_index)`` like those of torchvision's
    ``ImageFolder`` (``classes[class_index]`` is the label), so a
    ``DataLoader`` with the default collate batches them. An unreadable file
    raises :class:`StimulusError` naming it; :meth:`read` returns the error
    instead (what extraction uses).

    Parameters
    ----------
    paths : list of str
        Image files, in the order the stimuli are to have.
    transform : callable, optional
        PIL image -> tensor (``load_model`` returns the right one). Without
        it images become float tensors in [0, 1].
    root : str, optional
        Folder the stimulus ids are relative to.
    labels : list of str, optional
        One label per path.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), "grey.png")
    >>> Image.fromarray(np.zeros((8, 6), np.uint8)).save(path)
    >>> image, class_index = ImageList([path])[0]
    >>> tuple(image.shape), class_index
    ((3, 8, 6), 0)
    """

    def __init__(self, paths, transform=None, root=None, labels=None):
        self.paths = [os.fspath(p) for p in paths]
        self.transform = transform if transform is not None else _to_tensor
        self.root = os.fspath(root) if root is not None else None
        self.labels = list(labels) if labels is not None else [""] * len(self.paths)
        self.classes = sorted(set(self.labels))
        self.class_to_idx = {label: i for i, label in enumerate(self.classes)}
        self.targets = [self.class_to_idx[label] for label in self.labels]

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        """``(image tensor, class index)``; an unreadable file raises :class:`StimulusError`."""
        image, error = self.read(index)
        if error is not None:
            raise StimulusError(error)
        return image, self.targets[index]

    def read(self, index):
        """``(image tensor, None)``, or ``(None, message naming the file)`` when it cannot be read.

        Examples
        --------
        >>> ImageList(["missing.png"]).read(0)[1]
        "cannot read image 'missing.png': FileNotFoundError: [Errno 2] No such file or directory: 'missing.png'"
        """
        from PIL import Image

        path = self.paths[index]
        try:
            with Image.open(path) as image:
                return self.transform(image.convert("RGB")), None
        except Exception as exc:  # any decoding failure is reported with the file's name
            return None, f"cannot read image {path!r}: {type(exc).__name__}: {exc}"

    @property
    def ids(self):
        """Stimulus ids: paths relative to ``root`` (or as given)."""
        if self.root is None:
            return list(self.paths)
        return [os.path.relpath(p, self.root) for p in self.paths]


class ImageFolder(ImageList):
    """Every image under ``root`` (recursively, sorted by relative path); subfolders are labels.

    Parameters
    ----------
    root : str
        The folder. Files with the usual image extensions (any case) are
        taken; ``root/cat/1.jpg`` gets label ``"cat"``, ``root/1.jpg`` label ``""``.
    transform : callable, optional
        PIL image -> tensor.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from PIL import Image
    >>> root = tempfile.mkdtemp()
    >>> for name in ("dog/b.png", "cat/a.JPG", "notes.txt"):
    ...     os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
    ...     Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(os.path.join(root, name), "png")
    >>> folder = ImageFolder(root)
    >>> folder.ids, folder.labels, folder.classes
    (['cat/a.JPG', 'dog/b.png'], ['cat', 'dog'], ['cat', 'dog'])
    >>> images, targets = next(iter(torch.utils.data.DataLoader(folder, batch_size=2)))
    >>> tuple(images.shape), targets.tolist()
    ((2, 3, 4, 4), [0, 1])
    """

    def __init__(self, root, transform=None):
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"ImageFolder: {root!r} is not a folder")
        found = []
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            found += [os.path.relpath(os.path.join(folder, f), root) for f in files
                      if f.lower().endswith(IMAGE_EXTENSIONS)]
        found.sort()
        if not found:
            raise FileNotFoundError(f"ImageFolder: no image files ({', '.join(IMAGE_EXTENSIONS)})"
                                    f" under {root!r}")
        labels = [rel.split(os.sep)[0] if os.sep in rel else "" for rel in found]
        super().__init__([os.path.join(root, rel) for rel in found], transform, root, labels)


def _to_tensor(image):
    import numpy as np

    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)


class StimulusSet:
    """A fixed, ordered set of stimuli that yields batches of any index range.

    Build it with :func:`as_stimulus_set`.
    """

    def __init__(self, dataset=None, loader=None, ids=None, labels=None, num_workers=0):
        self.dataset = dataset
        self.loader = loader
        self.num_workers = num_workers
        size = len(dataset) if dataset is not None else len(loader.dataset)
        self.ids = [str(i) for i in (ids if ids is not None else range(size))]
        self.labels = list(labels) if labels is not None else [""] * size

    def __len__(self):
        return len(self.ids)

    def batches(self, start, stop, batch_size):
        """Yield ``(first_index, inputs, errors)`` for stimuli ``start:stop`` in order.

        ``errors`` lists ``(index, message)`` of stimuli that could not be
        read (their rows in ``inputs`` are absent).
        """
        if self.loader is not None:
            yield from self._loader_batches(start, stop)
            return
        loader = DataLoader(Subset(self.dataset, range(start, stop)), batch_size=batch_size,
                            shuffle=False, num_workers=self.num_workers,
                            collate_fn=_collate_with_errors,
                            worker_init_fn=_prepare_worker if self.num_workers else None,
                            generator=torch.Generator().manual_seed(0))
        first = start
        for inputs, count, errors in loader:
            yield first, inputs, errors
            first += count

    def leading_batches(self, batch_size):
        """Yield ``(first_index, inputs, errors)`` from the start, read in this process.

        For a look at the first stimuli (the layer probe): no worker process
        is started and nothing is read ahead. A user's ``DataLoader`` is read
        through its dataset, sampler order and collate function; one over an
        iterable dataset is iterated.

        Examples
        --------
        >>> import torch
        >>> data = torch.utils.data.TensorDataset(torch.arange(5.0))
        >>> loader = torch.utils.data.DataLoader(data, batch_size=2, num_workers=2)
        >>> [(first, x.tolist()) for first, x, _ in as_stimulus_set(loader).leading_batches(3)]
        [(0, [0.0, 1.0, 2.0]), (3, [3.0, 4.0])]
        """
        if self.loader is not None and isinstance(self.loader.dataset, IterableDataset):
            yield from self._loader_batches(0, len(self))
            return
        order = itertools.chain.from_iterable(self.loader.batch_sampler) \
            if self.loader is not None else iter(range(len(self)))
        first = 0
        while indices := list(itertools.islice(order, batch_size)):
            if self.loader is None:
                inputs, count, errors = _collate_with_errors([self.dataset[i] for i in indices])
            else:
                inputs = _inputs_of(self.loader.collate_fn([self.loader.dataset[i]
                                                            for i in indices]))
                count, errors = len(indices), []
            yield first, inputs, errors
            first += count

    def _loader_batches(self, start, stop):
        first = 0
        for batch in self.loader:
            inputs = _inputs_of(batch)
            count = len(inputs)
            low, high = max(start, first), min(stop, first + count)
            if low < high:
                yield low, inputs[low - first:high - first], []
            first += count
            if first >= stop:
                return


def _prepare_worker(worker_id):
    """Leave Ctrl-C to the main process, and keep a worker quiet when it stops.

    A batch's memory is handed to the main process through a helper thread
    of the worker; when an interrupt stops the main process half-way through
    taking one, that thread's broken connection is part of the interrupt, not
    an error to print beside the command's one line.
    """
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.excepthook = _quiet_about_broken_handovers(sys.excepthook)


def _quiet_about_broken_handovers(report):
    def excepthook(exc_type, exc, traceback):
        if not (issubclass(exc_type, (EOFError, OSError)) and _raised_in_handover(traceback)):
            report(exc_type, exc, traceback)

    return excepthook


def _raised_in_handover(traceback):
    serve = multiprocessing.resource_sharer._ResourceSharer._serve.__code__
    while traceback is not None:
        if traceback.tb_frame.f_code is serve:
            return True
        traceback = traceback.tb_next
    return False


def _inputs_of(item):
    return item[0] if isinstance(item, (tuple, list)) else item


def _collate_with_errors(items):
    errors = [(index, error) for image, index, error in items if error is not None]
    images = [image for image, _, error in items if error is None]
    inputs = torch.stack(images) if images else None
    return inputs, len(items), errors


class _ImageItems(Dataset):
    """Items of an :class:`ImageList` as ``(image or None, index, error or None)``."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        image, error = self.dataset.read(index)
        return image, index, error


class _DatasetItems(Dataset):
    """Items of a user dataset as ``(input, index, None)``, the first element when a tuple."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return _inputs_of(self.dataset[index]), index, None


def as_stimulus_set(stimuli, transform=None, num_workers=None):
    """Turn any accepted kind of stimuli into a :class:`StimulusSet`.

    Parameters
    ----------
    stimuli : ImageList, ImageFolder, str, list of paths, Dataset or DataLoader
        A folder path becomes an :class:`ImageFolder`; a list of paths an
        :class:`ImageList` (both with ``transform``). A dataset's items are
        inputs or tuples whose first element is the input.
    transform : callable, optional
        For folders and path lists given as plain values.
    num_workers : int, optional
        DataLoader workers decoding images (default: up to 4, one per CPU).

    Examples
    --------
    >>> import torch
    >>> data = torch.utils.data.TensorDataset(torch.rand(5, 3), torch.arange(5))
    >>> stimuli = as_stimulus_set(data, num_workers=0)
    >>> [(first, tuple(x.shape)) for first, x, _ in stimuli.batches(1, 5, 3)]
    [(1, (3, 3)), (4, (1, 3))]
    """
    if num_workers is None:
        num_workers = min(4, os.cpu_count() or 1)
    if isinstance(stimuli, (str, os.PathLike)):
        stimuli = ImageFolder(stimuli, transform)
    elif isinstance(stimuli, (list, tuple)) and all(isinstance(p, (str, os.PathLike))
                                                    for p in stimuli):
        stimuli = ImageList(stimuli, transform)
    if isinstance(stimuli, DataLoader):
        if isinstance(stimuli.sampler, RandomSampler):
            raise ValueError("the DataLoader shuffles (shuffle=True); features must come out in "
                             "a fixed stimulus order. Pass a DataLoader with shuffle=False, or "
                             "the dataset itself.")
        if stimuli.batch_sampler is None:
            raise ValueError("the DataLoader does not batch (batch_size=None), so its items are "
                             "single stimuli without a stimulus axis. Pass a DataLoader with a "
                             "batch_size, or the dataset itself.")
        return StimulusSet(loader=stimuli)
    if isinstance(stimuli, ImageList):
        return StimulusSet(_ImageItems(stimuli), ids=stimuli.ids, labels=stimuli.labels,
                           num_workers=num_workers)
    if isinstance(stimuli, Dataset):
        return StimulusSet(_DatasetItems(stimuli), num_workers=num_workers)
    raise TypeError(f"stimuli must be an ImageFolder, a folder path, a list of image paths, a "
                    f"torch Dataset or a DataLoader, got {type(stimuli).__name__}")
