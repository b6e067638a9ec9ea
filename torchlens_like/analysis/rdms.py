"""A container for a set of RDMs over the same stimuli.

Design decisions
----------------
* Stored as condensed vectors, one row per RDM, in scipy ``pdist`` order: half
  the memory of square matrices, and the form every comparison uses.
* Each RDM is described by a dict of lists (``descriptors``: e.g. region and
  subject), each stimulus by another (``stimulus_descriptors``: e.g. image
  file).  Both are plain data so that :meth:`RDMs.to_dict` /
  :meth:`RDMs.from_dict` round-trip through JSON, pickle or HDF5 attributes.
* The container owns a copy of its data: building it never aliases the
  caller's array, and every method returns a new container.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from .backend import as_tensor, check_finite
from .rdm import condensed_positions, n_from_condensed, square_from_condensed, upper_triangle


def _descriptor_lists(descriptors: Mapping[str, Sequence] | None, length: int, argument: str, what: str) -> dict:
    result = {}
    for key, values in (descriptors or {}).items():
        values = list(values)
        if len(values) != length:
            raise ValueError(
                f"{argument}[{key!r}] has {len(values)} entries but there are {length} {what}; "
                f"give one value per {what[:-1]}"
            )
        result[str(key)] = values
    return result


class RDMs:
    """A set of representational dissimilarity matrices over the same stimuli.

    Parameters
    ----------
    dissimilarities : numpy.ndarray or torch.Tensor, shape (n_rdms, n_pairs) or (n_pairs,)
        Condensed RDMs (upper triangles in scipy ``pdist`` order).
    measure : str, optional
        The dissimilarity measure the RDMs were computed with.
    descriptors : dict of str to sequence, optional
        One list of ``n_rdms`` values per key, e.g. ``{"region": [...]}``.
    stimulus_descriptors : dict of str to sequence, optional
        One list of ``n_stimuli`` values per key, e.g. ``{"stimulus": [...]}``.

    Attributes
    ----------
    dissimilarities : numpy.ndarray, shape (n_rdms, n_pairs)
    n_rdms, n_stimuli : int

    Examples
    --------
    >>> import numpy as np
    >>> rdms = RDMs.from_matrices(np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [2.0, 3.0, 0.0]]),
    ...                           descriptors={"region": ["V1"]})
    >>> rdms.dissimilarities
    array([[1., 2., 3.]])
    >>> RDMs.from_dict(rdms.to_dict()).labels()
    ['V1']
    """

    def __init__(self, dissimilarities, *, measure: str | None = None, descriptors=None, stimulus_descriptors=None):
        vectors = as_tensor(dissimilarities, "dissimilarities")
        if vectors.ndim == 1:
            vectors = vectors[None]
        if vectors.ndim != 2:
            raise ValueError(
                f"dissimilarities must have shape (n_rdms, n_pairs), got {tuple(vectors.shape)}; "
                "use RDMs.from_matrices for square matrices"
            )
        check_finite(vectors, "dissimilarities", "RDM")
        self.n_stimuli = n_from_condensed(vectors.shape[1], "dissimilarities")
        self.dissimilarities = vectors.cpu().numpy().copy()
        self.n_rdms = vectors.shape[0]
        self.measure = measure
        self.descriptors = _descriptor_lists(descriptors, self.n_rdms, "descriptors", "RDMs")
        self.stimulus_descriptors = _descriptor_lists(
            stimulus_descriptors, self.n_stimuli, "stimulus_descriptors", "stimuli"
        )

    @classmethod
    def from_matrices(cls, matrices, **kwargs) -> "RDMs":
        """Build from square RDMs of shape ``(n_rdms, n, n)`` or ``(n, n)``.

        Parameters
        ----------
        matrices : numpy.ndarray or torch.Tensor
            Square RDMs; only the upper triangles are kept.
        **kwargs
            ``measure``, ``descriptors``, ``stimulus_descriptors`` as for :class:`RDMs`.

        Returns
        -------
        RDMs

        Examples
        --------
        >>> import numpy as np
        >>> RDMs.from_matrices(np.zeros((2, 4, 4))).n_rdms
        2
        """
        squares = as_tensor(matrices, "matrices")
        if squares.ndim == 2:
            squares = squares[None]
        if squares.ndim != 3 or squares.shape[1] != squares.shape[2]:
            raise ValueError(f"matrices must have shape (n_rdms, n, n) or (n, n), got {tuple(squares.shape)}")
        return cls(torch.stack([upper_triangle(square) for square in squares]), **kwargs)

    def get_matrices(self) -> np.ndarray:
        """Square RDMs, shape ``(n_rdms, n_stimuli, n_stimuli)``.

        Examples
        --------
        >>> RDMs(np.array([1.0, 2.0, 3.0])).get_matrices()[0]
        array([[0., 1., 2.],
               [1., 0., 3.],
               [2., 3., 0.]])
        """
        return np.stack([square_from_condensed(torch.from_numpy(row)).numpy() for row in self.dissimilarities])

    def subset_stimuli(self, indices) -> "RDMs":
        """RDMs restricted to the stimuli at ``indices`` (in that order).

        Parameters
        ----------
        indices : sequence of int
            Stimulus positions; at least two.

        Returns
        -------
        RDMs

        Examples
        --------
        >>> RDMs(np.array([1.0, 2.0, 3.0])).subset_stimuli([2, 0]).dissimilarities
        array([[2.]])
        """
        positions = condensed_positions(indices, self.n_stimuli)
        stimulus_descriptors = {k: [v[i] for i in indices] for k, v in self.stimulus_descriptors.items()}
        return RDMs(
            self.dissimilarities[:, positions],
            measure=self.measure,
            descriptors=self.descriptors,
            stimulus_descriptors=stimulus_descriptors,
        )

    def select(self, **criteria) -> "RDMs":
        """RDMs whose descriptors equal the given values.

        Parameters
        ----------
        **criteria
            ``descriptor=value`` pairs, e.g. ``region="V1"``.

        Returns
        -------
        RDMs

        Examples
        --------
        >>> rdms = RDMs(np.ones((2, 3)), descriptors={"region": ["V1", "V4"]})
        >>> rdms.select(region="V4").labels()
        ['V4']
        """
        for key in criteria:
            if key not in self.descriptors:
                raise ValueError(f"unknown descriptor {key!r}; the descriptors are: {', '.join(self.descriptors)}")
        keep = [i for i in range(self.n_rdms) if all(self.descriptors[k][i] == v for k, v in criteria.items())]
        if not keep:
            raise ValueError(f"no RDM matches {criteria}; see .descriptors for the values present")
        return RDMs(
            self.dissimilarities[keep],
            measure=self.measure,
            descriptors={k: [v[i] for i in keep] for k, v in self.descriptors.items()},
            stimulus_descriptors=self.stimulus_descriptors,
        )

    def labels(self) -> list[str]:
        """One display name per RDM: its descriptor values joined by ``/``.

        Examples
        --------
        >>> RDMs(np.ones((1, 3)), descriptors={"region": ["V1"], "subject": [2]}).labels()
        ['V1/2']
        """
        if not self.descriptors:
            return [str(i) for i in range(self.n_rdms)]
        return ["/".join(str(values[i]) for values in self.descriptors.values()) for i in range(self.n_rdms)]

    def to_dict(self) -> dict:
        """Plain-data form: lists, strings and numbers only.

        Examples
        --------
        >>> sorted(RDMs(np.ones(3)).to_dict())
        ['descriptors', 'dissimilarities', 'measure', 'stimulus_descriptors']
        """
        return {
            "dissimilarities": self.dissimilarities.tolist(),
            "measure": self.measure,
            "descriptors": {k: list(v) for k, v in self.descriptors.items()},
            "stimulus_descriptors": {k: list(v) for k, v in self.stimulus_descriptors.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "RDMs":
        """Inverse of :meth:`to_dict`.

        Examples
        --------
        >>> RDMs.from_dict(RDMs(np.ones(3), measure="cosine").to_dict()).measure
        'cosine'
        """
        return cls(
            np.asarray(data["dissimilarities"], dtype=float),
            measure=data.get("measure"),
            descriptors=data.get("descriptors"),
            stimulus_descriptors=data.get("stimulus_descriptors"),
        )

    def __len__(self) -> int:
        return self.n_rdms

    def __repr__(self) -> str:
        return f"RDMs(n_rdms={self.n_rdms}, n_stimuli={self.n_stimuli}, measure={self.measure!r})"
