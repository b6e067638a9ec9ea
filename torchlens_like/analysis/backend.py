"""Array backend: numpy or torch in, the same kind out, torch underneath.

Every public function of :mod:`torchlens_like.analysis` accepts numpy arrays, torch
tensors and any other array-like: memory maps, the ``DiskArray`` of an hdf5 or zarr
feature file (what ``load_features`` returns), h5py datasets, anything with
``__array__``.  It converts its inputs with :func:`as_tensor`, computes with
torch on the tensor's device (or on ``device`` when the caller asks for one), and
converts the result back with :func:`as_output`, so numpy in gives numpy out and a
CUDA tensor in gives a CUDA tensor out.

Design decisions
----------------
* Conversion never copies when it does not have to (``torch.from_numpy`` shares
  memory), so nothing in this package writes into a converted input in place;
  every transformation allocates its result.  Tests check that inputs are
  unchanged after each call.
* Integer and boolean inputs are promoted to float64, half precision to float32;
  other floating dtypes are kept, so float32 activations are analysed in float32
  unless a function documents otherwise.
* Validation lives here too, so that every function reports bad input in the
  same words: the argument's name, what is wrong, and what to do.
* Work that would allocate ``n x n`` or ``n x n_targets`` buffers is split into
  blocks whose size is chosen by :func:`block_length` from a memory budget.
* Features that live in a file (a ``DiskArray``, an h5py dataset, a zarr
  array, a memory map) can be read in blocks of stimuli: :func:`row_reader`
  gives the block reader a blocked function (RDMs) uses instead of loading
  the whole array; every other function loads them through ``__array__``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..registry import lookup

BLOCK_BYTES = 256 * 2**20

FLOATING_DTYPES = {"float32": torch.float32, "float64": torch.float64}
"""Precisions a caller may ask for by name, numpy dtype or torch dtype."""


def floating_dtype(dtype, name: str = "dtype") -> torch.dtype | None:
    """The torch dtype named by ``dtype`` (a torch or numpy dtype, or its name), or None.

    Parameters
    ----------
    dtype : None, str, numpy.dtype, type or torch.dtype
        ``"float32"``, ``numpy.float64``, ``torch.float32``...
    name : str
        The argument's name, for the error message.

    Returns
    -------
    torch.dtype or None

    Examples
    --------
    >>> import numpy as np
    >>> floating_dtype(np.float64), floating_dtype("float32"), floating_dtype(None)
    (torch.float64, torch.float32, None)
    """
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype):
        key = str(dtype).removeprefix("torch.")
    else:
        try:
            key = np.dtype(dtype).name
        except TypeError:
            key = str(dtype)
    return lookup(FLOATING_DTYPES, key, name)


def as_tensor(x, name: str, *, device=None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Return ``x`` as a floating torch tensor without copying when possible.

    Parameters
    ----------
    x : array-like
        A numpy array, torch tensor, memory map, ``DiskArray``, or anything
        ``numpy.asarray`` turns into an array of numbers.
    name : str
        The argument's name, used in error messages.
    device : str or torch.device, optional
        Where to compute; default: the tensor's own device, or the CPU otherwise.
    dtype : torch.dtype, optional
        Floating dtype to compute in; default: keep float32/float64, promote
        integers and booleans to float64 and half precision to float32.

    Returns
    -------
    torch.Tensor
        A detached floating tensor that may share memory with ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> as_tensor(np.arange(3), "x").dtype
    torch.float64
    >>> as_tensor([[1, 2], [3, 4]], "x").shape
    torch.Size([2, 2])
    """
    if isinstance(x, torch.Tensor):
        tensor = x.detach()
    else:
        x = _as_numpy(x, name)
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise TypeError(
                f"{name} must hold numbers, got a numpy array of dtype {x.dtype}; "
                "convert it with numpy.asarray(..., dtype=float)"
            )
        if np.iscomplexobj(x):
            raise TypeError(f"{name} must be real-valued, got dtype {x.dtype}; pass its real part or magnitude")
        if not x.flags.writeable or any(s < 0 for s in x.strides):
            x = np.array(x)
        tensor = torch.from_numpy(x)
    if tensor.is_complex():
        raise TypeError(f"{name} must be real-valued, got dtype {tensor.dtype}; pass its real part or magnitude")
    if dtype is None:
        if tensor.dtype in (torch.float32, torch.float64):
            dtype = tensor.dtype
        elif tensor.dtype in (torch.float16, torch.bfloat16):
            dtype = torch.float32
        else:
            dtype = torch.float64
    return tensor.to(device=device if device is not None else tensor.device, dtype=dtype)


def _as_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (str, bytes, dict, set)) or x is None:
        raise TypeError(
            f"{name} must be an array (numpy, torch, a memory map, a DiskArray from "
            f"load_features, ...), got {type(x).__name__}"
        )
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be an array (numpy, torch, a memory map, a DiskArray from "
            f"load_features, ...); numpy.asarray could not read the {type(x).__name__}: {exc}"
        ) from None


def row_reader(x, name: str, *, device=None, dtype: torch.dtype | None = None):
    """For features kept in a file, a function reading blocks of stimuli; else None.

    Parameters
    ----------
    x : array-like
        Features ``(n_stimuli, ...)``. A ``DiskArray``, h5py dataset, zarr
        array or numpy memory map is read block by block; numpy arrays in
        memory and tensors are not (None is returned).
    name : str
        The argument's name, used in error messages.
    device, dtype
        As for :func:`as_tensor`; the dtype is that of the whole array.

    Returns
    -------
    callable (start, stop) -> torch.Tensor or None
        Rows ``start:stop`` as a floating ``(stop - start, n_features)``
        tensor, converted like :func:`as_tensor` converts the whole array.

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, np.arange(12).reshape(4, 3))
    >>> read = row_reader(np.load(path, mmap_mode="r"), "features")
    >>> read(1, 3)
    tensor([[3., 4., 5.],
            [6., 7., 8.]], dtype=torch.float64)
    >>> row_reader(np.zeros((4, 3)), "features") is None
    True
    """
    in_memory = isinstance(x, torch.Tensor) or (isinstance(x, np.ndarray) and not isinstance(x, np.memmap))
    if in_memory or not hasattr(x, "__getitem__") or len(getattr(x, "shape", ())) < 1:
        return None
    if dtype is None:
        dtype = as_tensor(np.zeros(1, dtype=np.dtype(x.dtype)), name).dtype

    def read(start: int, stop: int) -> torch.Tensor:
        block = as_tensor(np.asarray(x[start:stop]), name, device=device, dtype=dtype)
        return block.reshape(block.shape[0], -1)

    return read


def as_output(result: torch.Tensor, like):
    """Return ``result`` as the kind of array ``like`` is.

    Parameters
    ----------
    result : torch.Tensor
        A computed tensor.
    like : numpy.ndarray or torch.Tensor
        The caller's input that decides the output kind.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        A numpy array (on the CPU) when ``like`` is one, else ``result`` unchanged.

    Examples
    --------
    >>> import numpy as np, torch
    >>> type(as_output(torch.zeros(2), np.zeros(2))).__name__
    'ndarray'
    """
    if isinstance(like, torch.Tensor):
        return result
    return result.cpu().numpy()


def as_stimulus_matrix(x, name: str, *, min_stimuli: int = 2, device=None, dtype=None) -> torch.Tensor:
    """Flatten an ``(n_stimuli, ...)`` array to ``(n_stimuli, n_features)`` and validate it.

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor
        Array whose first axis indexes stimuli.
    name : str
        The argument's name, used in error messages.
    min_stimuli : int
        Fewest stimuli the caller's computation is defined for.
    device, dtype
        As for :func:`as_tensor`.

    Returns
    -------
    torch.Tensor
        Shape ``(n_stimuli, n_features)``, finite.

    Raises
    ------
    ValueError
        If ``x`` has fewer than two axes, too few stimuli, no features, or
        non-finite values.

    Examples
    --------
    >>> import numpy as np
    >>> as_stimulus_matrix(np.ones((4, 2, 3)), "features").shape
    torch.Size([4, 6])
    """
    tensor = as_tensor(x, name, device=device, dtype=dtype)
    if tensor.ndim < 2:
        raise ValueError(
            f"{name} must have shape (n_stimuli, n_features, ...), got shape {tuple(tensor.shape)}; "
            "for one feature per stimulus, pass x[:, None]"
        )
    n_stimuli = tensor.shape[0]
    if n_stimuli < min_stimuli:
        raise ValueError(f"{name} has {n_stimuli} stimuli, but this needs at least {min_stimuli}; pass more stimuli")
    matrix = tensor.reshape(n_stimuli, -1)
    if matrix.shape[1] == 0:
        raise ValueError(f"{name} has no features (shape {tuple(tensor.shape)}); pass a non-empty array")
    check_finite(matrix, name)
    return matrix


def check_finite(tensor: torch.Tensor, name: str, axis_name: str = "stimulus", *, offset: int = 0) -> None:
    """Raise a ValueError naming the first row of ``tensor`` that holds NaN or inf.

    A finite sum proves every entry finite in one pass; only when the sum is not
    finite (a NaN or inf, or finite values whose sum overflows) is every entry
    checked.

    Parameters
    ----------
    tensor : torch.Tensor
        Array whose first axis is reported as ``axis_name``.
    name : str
        The argument's name.
    axis_name : str
        What the first axis indexes, for the message.
    offset : int
        Index of ``tensor``'s first row among all rows (for a block of a larger array).

    Examples
    --------
    >>> import torch
    >>> check_finite(torch.ones(3, 2), "features")
    """
    if bool(torch.isfinite(tensor.sum())):
        return
    finite = torch.isfinite(tensor)
    if bool(finite.all()):
        return
    rows = (~finite).reshape(tensor.shape[0], -1).any(dim=1).nonzero().flatten() + offset
    more = " and more" if rows.numel() > 5 else ""
    raise ValueError(
        f"{name} contains NaN or infinite values at {axis_name} {rows[:5].tolist()}{more} "
        f"({rows.numel()} in all); remove those {axis_name} entries or impute the missing values first"
    )


def unit_rows(rows: torch.Tensor, name: str, *, reference: torch.Tensor | None = None, what: str = "all-zero",
              hint: str = "drop those rows", axis_name: str = "rows", offset: int = 0) -> torch.Tensor:
    """Divide each row by its L2 norm, refusing rows whose norm is (numerically) zero.

    Parameters
    ----------
    rows : torch.Tensor, shape (n, d)
    name : str
        The argument the rows came from, for the message.
    reference : torch.Tensor, shape (n,), optional
        Per-row scale: a norm at or below ``64 * eps * reference`` counts as zero
        (e.g. the norm before centring, so that a constant row is caught despite
        rounding).  Default: only exact zeros count.
    what : str
        How to describe a refused row.
    hint : str
        What the user should do, for the message.
    axis_name : str
        What a row is to the user (e.g. "columns" when the caller transposed).
    offset : int
        Index of the first row among all rows (for a block of a larger array).

    Returns
    -------
    torch.Tensor
        Rows of unit norm.

    Examples
    --------
    >>> import torch
    >>> unit_rows(torch.tensor([[3.0, 4.0]]), "features")
    tensor([[0.6000, 0.8000]])
    """
    norms = torch.linalg.vector_norm(rows, dim=1)
    limit = 0 if reference is None else 64 * torch.finfo(norms.dtype).eps * reference
    bad = (norms <= limit).nonzero().flatten() + offset
    if bad.numel():
        raise ValueError(
            f"{name} has {bad.numel()} {what} {axis_name} ({axis_name} {bad[:5].tolist()}), which have no "
            f"direction, so this measure is undefined for them; {hint}"
        )
    return rows / norms[:, None]


def check_same_stimuli(n_first: int, n_second: int, first: str, second: str) -> None:
    """Raise a ValueError when two arguments do not cover the same stimuli.

    Parameters
    ----------
    n_first, n_second : int
        Number of stimuli in each argument.
    first, second : str
        The arguments' names.

    Examples
    --------
    >>> check_same_stimuli(3, 3, "features", "responses")
    """
    if n_first != n_second:
        raise ValueError(
            f"{first} has {n_first} stimuli but {second} has {n_second}; "
            "both must list the same stimuli in the same order along their first axis"
        )


def block_length(n_total: int, bytes_per_item: int, budget: int = BLOCK_BYTES) -> int:
    """Number of items per block so that a block of ``bytes_per_item`` items fits ``budget``.

    Parameters
    ----------
    n_total : int
        Items to split.
    bytes_per_item : int
        Memory one item of a block needs.
    budget : int
        Bytes a block may use.

    Returns
    -------
    int
        Between 1 and ``n_total``.

    Examples
    --------
    >>> block_length(10_000, 8_000, budget=800_000)
    100
    """
    return int(max(1, min(n_total, budget // max(1, bytes_per_item))))
