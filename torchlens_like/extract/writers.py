"""Storage formats: one writer per format, in a registry, all writing slices in place.

Design decisions
----------------
* Every writer preallocates one array per layer, shaped ``(n_stimuli, ...)``,
  and writes each batch as the slice ``[start:start + len(batch)]``. Work is
  therefore any set of stimulus ranges in any order, which is what resuming
  (and distributed extraction, where ranks write disjoint slices) needs.
* ``npy``: one ``.npy`` per layer. The header is written once; each batch is
  written through a memory map of just its slice, unmapped after the write,
  so resident memory does not grow with the number of stimuli.
* ``hdf5``: one chunked dataset per layer with every chunk allocated when the
  file is made. After that, writes touch only raw chunk data, never the
  file's metadata, so a run killed mid-write leaves a readable file. Chunks
  are not filled when allocated (the file stays sparse until written, and an
  unwritten row reads as zeros): filling would write the whole feature set
  once more.
* ``zarr``: one array per layer in a zarr group (one file per chunk).
* ``hdf5`` and ``zarr`` features are read back as :class:`.DiskArray`, so
  they are indexed like the numpy arrays of the other formats.
* ``mat``, ``pt``, ``txt``: formats that cannot be written in slices are
  staged as ``.npy`` files and converted when the extraction completes (the
  final file is written under a temporary name and moved into place).
* ``memory``: plain numpy arrays, for extraction without an output folder.
* Identical runs give byte-identical files in every format: nothing written
  holds a time. HDF5 objects are made without modification times, and the
  text of a ``.mat`` header (where ``scipy.io.savemat`` writes the time) is
  fixed.
"""

from __future__ import annotations

import os

import numpy as np

from .disk_arrays import DiskArray

STAGING = "partial"
MAT_HEADER_TEXT = b"MATLAB 5.0 MAT-file, written by torchlens_like".ljust(116)
"""The descriptive text of a ``.mat`` header, in place of scipy's, which holds the time of writing."""


def layer_file_stem(key):
    """A file-system-safe name for a layer key.

    Examples
    --------
    >>> layer_file_stem("block:2"), layer_file_stem("layer3.0.conv1"), layer_file_stem("-1")
    ('block-2', 'layer3.0.conv1', 'position-1')
    """
    safe = "".join(c if c.isalnum() or c in "._" else "-" for c in key)
    return "position" + safe if safe.startswith("-") else safe


def replace_atomically(path, write):
    """Call ``write(temporary_path)``, then move the result onto ``path``."""
    temporary = f"{path}.tmp{os.getpid()}"
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


class MemoryWriter:
    """Arrays in memory (no output folder)."""

    name = "memory"

    def __init__(self, directory, layouts, n_stimuli):
        self.layouts = layouts
        self.n_stimuli = n_stimuli
        self.arrays = {}

    def create(self):
        self.arrays = {key: _empty(self.n_stimuli, shape, dtype)
                       for key, (shape, dtype) in self.layouts.items()}

    def open(self):
        self.create()

    def write(self, key, start, values):
        self.arrays[key][start:start + len(values)] = values

    def read_slice(self, key, start, stop):
        return np.asarray(self.arrays[key][start:stop])

    def flush(self):
        pass

    def finalize(self):
        pass

    def read(self, key):
        return self.arrays[key]


def _empty(n, shape, dtype):
    return np.zeros((n,) + tuple(shape), dtype=dtype)


class NpyWriter:
    """One ``.npy`` file per layer, batches written through a map of their slice."""

    name = "npy"
    suffix = ".npy"

    def __init__(self, directory, layouts, n_stimuli):
        self.directory = directory
        self.layouts = layouts
        self.n_stimuli = n_stimuli
        self._offsets = {}

    def path(self, key):
        return os.path.join(self.directory, layer_file_stem(key) + self.suffix)

    def create(self):
        for key, (shape, dtype) in self.layouts.items():
            path = self.path(key)
            replace_atomically(path, lambda tmp, s=shape, d=dtype: np.lib.format.open_memmap(
                tmp, mode="w+", dtype=d, shape=(self.n_stimuli,) + tuple(s)).flush())
        self.open()

    def open(self):
        for key in self.layouts:
            array = np.load(self.path(key), mmap_mode="r")
            self._offsets[key] = (array.offset, array.dtype, array.shape)
            del array

    def write(self, key, start, values):
        offset, dtype, shape = self._offsets[key]
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        region = np.memmap(self.path(key), dtype=dtype, mode="r+",
                           offset=offset + start * row_bytes, shape=(len(values),) + shape[1:])
        region[:] = values
        region.flush()
        del region

    def read_slice(self, key, start, stop):
        return np.array(np.load(self.path(key), mmap_mode="r")[start:stop])

    def flush(self):
        pass

    def finalize(self):
        pass

    def read(self, key):
        return np.load(self.path(key), mmap_mode="r")


class SingleStoreWriter:
    """A writer whose layers all live in one store named ``filename`` in the output folder."""

    filename = None

    def __init__(self, directory, layouts, n_stimuli):
        self.directory = directory
        self.layouts = layouts
        self.n_stimuli = n_stimuli
        self.handle = None

    @property
    def path(self):
        return os.path.join(self.directory, self.filename)


class Hdf5Writer(SingleStoreWriter):
    """``features.h5``: one chunked dataset per layer, every chunk allocated up front."""

    name = "hdf5"
    filename = "features.h5"

    def create(self):
        import h5py

        def make(tmp):
            with h5py.File(tmp, "w") as file:
                for key, (shape, dtype) in self.layouts.items():
                    _allocated_dataset(file, key, (self.n_stimuli,) + tuple(shape), dtype)

        replace_atomically(self.path, make)
        self.open()

    def open(self):
        import h5py

        self.handle = h5py.File(self.path, "r+")

    def write(self, key, start, values):
        self.handle[key][start:start + len(values)] = values

    def read_slice(self, key, start, stop):
        return self.handle[key][start:stop]

    def flush(self):
        self.handle.flush()

    def finalize(self):
        self.handle.close()
        self.handle = None

    def read(self, key):
        import h5py

        return DiskArray(h5py.File(self.path, "r")[key])


def _allocated_dataset(file, key, shape, dtype):
    import h5py

    row = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
    rows_per_chunk = max(1, min(shape[0], (1 << 20) // max(row, 1)))
    chunks = (rows_per_chunk,) + tuple(shape[1:])
    space = h5py.h5s.create_simple(shape)
    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    plist.set_chunk(chunks)
    plist.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    plist.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    plist.set_obj_track_times(False)
    h5py.h5d.create(file.id, key.encode(), h5py.h5t.py_create(np.dtype(dtype)), space, plist)


class ZarrWriter(SingleStoreWriter):
    """``features.zarr``: one array per layer, chunked by stimuli."""

    name = "zarr"
    filename = "features.zarr"

    def create(self):
        import zarr

        group = zarr.open_group(self.path, mode="w")
        for key, (shape, dtype) in self.layouts.items():
            row = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            rows = max(1, min(self.n_stimuli, (1 << 22) // max(row, 1)))
            group.create_array(layer_file_stem(key), shape=(self.n_stimuli,) + tuple(shape),
                               dtype=dtype, chunks=(rows,) + tuple(shape), fill_value=0)
        self.open()

    def open(self):
        import zarr

        self.handle = zarr.open_group(self.path, mode="r+")

    def write(self, key, start, values):
        self.handle[layer_file_stem(key)][start:start + len(values)] = values

    def read_slice(self, key, start, stop):
        return self.handle[layer_file_stem(key)][start:stop]

    def flush(self):
        pass

    def finalize(self):
        pass

    def read(self, key):
        import zarr

        return DiskArray(zarr.open_group(self.path, mode="r")[layer_file_stem(key)])


class StagedWriter(NpyWriter):
    """Stage ``.npy`` slices under ``partial/``, convert to the final format at the end."""

    def __init__(self, directory, layouts, n_stimuli):
        super().__init__(os.path.join(directory, STAGING), layouts, n_stimuli)
        self.output_directory = directory

    def create(self):
        os.makedirs(self.directory, exist_ok=True)
        super().create()

    def final_path(self, key):
        return os.path.join(self.output_directory, layer_file_stem(key) + self.final_suffix)

    def finalize(self):
        for key in self.layouts:
            values = np.load(super().path(key))
            replace_atomically(self.final_path(key), lambda tmp: self.convert(tmp, values))
        for key in self.layouts:
            os.remove(super().path(key))
        os.rmdir(self.directory)

    def read(self, key):
        return self.load(self.final_path(key))


class MatWriter(StagedWriter):
    """One MATLAB ``.mat`` file per layer (variable ``features``)."""

    name = "mat"
    final_suffix = ".mat"

    @staticmethod
    def convert(path, values):
        import scipy.io

        with open(path, "wb") as file:
            scipy.io.savemat(file, {"features": values})
            file.seek(0)
            file.write(MAT_HEADER_TEXT)

    @staticmethod
    def load(path):
        import scipy.io

        return scipy.io.loadmat(path)["features"]


class PtWriter(StagedWriter):
    """One ``torch.save`` file per layer (a tensor)."""

    name = "pt"
    final_suffix = ".pt"

    @staticmethod
    def convert(path, values):
        import torch

        torch.save(torch.from_numpy(values), path)

    @staticmethod
    def load(path):
        import torch

        return torch.load(path, weights_only=True).numpy()


class TxtWriter(StagedWriter):
    """One text file per layer: a row per stimulus, features flattened (``numpy.savetxt``)."""

    name = "txt"
    final_suffix = ".txt"

    @staticmethod
    def convert(path, values):
        np.savetxt(path, values.reshape(len(values), -1), fmt="%.9g")

    def read(self, key):
        shape, dtype = self.layouts[key]
        values = np.loadtxt(self.final_path(key), ndmin=2, dtype=dtype)
        return values.reshape((self.n_stimuli,) + tuple(shape))


WRITERS = {writer.name: writer for writer in
           (NpyWriter, Hdf5Writer, ZarrWriter, MatWriter, PtWriter, TxtWriter)}


def get_writer(name):
    """The writer class of a format; an unknown format lists the valid ones.

    Examples
    --------
    >>> get_writer("hdf5").__name__
    'Hdf5Writer'
    """
    try:
        return WRITERS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; valid formats: "
                         f"{', '.join(WRITERS)}") from None
