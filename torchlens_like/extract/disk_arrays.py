"""Numpy-like reading of features stored in hdf5 and zarr files.

h5py datasets and zarr arrays read slices like numpy arrays, but each
refuses some numpy indexing: h5py a list of stimuli that is not increasing,
zarr a boolean mask (and ``len``). :class:`DiskArray` reads any selection of
stimuli, in the order asked, with the library's own reads: the rows asked for
are read once each, in increasing order, and then put in the asked order.
"""

from __future__ import annotations

import numpy as np


class DiskArray:
    """Features of one layer in a file, read on access; indexed like a numpy array.

    Parameters
    ----------
    stored : h5py.Dataset or zarr.Array
        The array in the file, ``(n_stimuli, ...)``.

    Attributes
    ----------
    stored : h5py.Dataset or zarr.Array
        The array in the file, for the library's own features (attributes,
        chunks).

    Examples
    --------
    >>> import numpy as np
    >>> features = DiskArray(np.arange(12.0).reshape(6, 2))  # a file's array in practice
    >>> features[[4, 1, 4]]
    array([[8., 9.],
           [2., 3.],
           [8., 9.]])
    >>> features[np.arange(6) > 3, 1], len(features), np.asarray(features).shape
    (array([ 9., 11.]), 6, (6, 2))
    """

    def __init__(self, stored):
        self.stored = stored

    @property
    def shape(self):
        return tuple(self.stored.shape)

    @property
    def dtype(self):
        return np.dtype(self.stored.dtype)

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    def __len__(self):
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        values = np.asarray(self.stored[...])
        return values if dtype is None else values.astype(dtype, copy=False)

    def __getitem__(self, index):
        first, rest = (index[0], index[1:]) if isinstance(index, tuple) and index \
            else (index, ())
        if not isinstance(first, (list, np.ndarray)):
            return np.asarray(self.stored[index])
        rows = self._stimulus_rows(np.asarray(first))
        wanted = np.unique(rows)
        values = np.asarray(self.stored[wanted]) if wanted.size else \
            np.empty((0,) + self.shape[1:], self.dtype)
        return values[(np.searchsorted(wanted, rows),) + tuple(rest)]

    def _stimulus_rows(self, selection):
        """The selection as non-negative row numbers, shaped as numpy would index with it."""
        n = len(self)
        if selection.dtype == bool:
            if selection.shape != (n,):
                raise IndexError(f"a boolean selection of stimuli needs {n} values, got "
                                 f"shape {selection.shape}")
            return np.flatnonzero(selection)
        if selection.size and not np.issubdtype(selection.dtype, np.integer):
            raise IndexError(f"stimuli are selected by integers or booleans, got "
                             f"{selection.dtype}")
        rows = selection.astype(np.int64)
        if rows.size and (rows.min() < -n or rows.max() >= n):
            raise IndexError(f"stimulus index out of range for {n} stimuli")
        return np.where(rows < 0, rows + n, rows)

    def __repr__(self):
        return f"DiskArray(shape={self.shape}, dtype={self.dtype}, stored={self.stored!r})"
