"""Feature transforms: centring, normalising, relative representations.

Design decisions
----------------
* ``center_features`` and ``normalize_features`` do what THINGSvision's
  functions of the same names do (subtract each feature's mean over stimuli;
  divide each stimulus's feature vector by its L2 norm) but return new arrays
  instead of changing the caller's array in place.
* Feature arrays of shape ``(n_stimuli, ...)`` are flattened per stimulus and
  returned flat, the shape every downstream function uses.
* ``relative_representations`` follows Moschella et al. (2023) as used in the
  DeepJuice tutorial: each embedding is re-expressed by its cosine similarity
  to a set of anchor embeddings.
"""

from __future__ import annotations

from .backend import as_output, as_stimulus_matrix, unit_rows


def center_features(features):
    """Subtract each feature's mean over stimuli.

    Parameters
    ----------
    features : numpy.ndarray or torch.Tensor, shape (n_stimuli, ...)

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (n_stimuli, n_features)
        Columns with zero mean; same kind and device as ``features``.

    Examples
    --------
    >>> import numpy as np
    >>> center_features(np.array([[1.0, 10.0], [3.0, 20.0]]))
    array([[-1., -5.],
           [ 1.,  5.]])
    """
    x = as_stimulus_matrix(features, "features", min_stimuli=1)
    return as_output(x - x.mean(dim=0, keepdim=True), features)


def normalize_features(features):
    """Scale each stimulus's feature vector to unit L2 norm.

    Parameters
    ----------
    features : numpy.ndarray or torch.Tensor, shape (n_stimuli, ...)

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (n_stimuli, n_features)
        Rows of norm 1; same kind and device as ``features``.

    Raises
    ------
    ValueError
        If a stimulus's feature vector is all zeros.

    Examples
    --------
    >>> import numpy as np
    >>> normalize_features(np.array([[3.0, 4.0], [0.0, 2.0]]))
    array([[0.6, 0.8],
           [0. , 1. ]])
    """
    x = as_stimulus_matrix(features, "features", min_stimuli=1)
    return as_output(unit_rows(x, "features", hint="drop those stimuli before normalising"), features)


def relative_representations(embeddings, anchors):
    """Cosine similarity of every embedding to every anchor embedding.

    Parameters
    ----------
    embeddings : numpy.ndarray or torch.Tensor, shape (n_stimuli, ...)
        E.g. image embeddings.
    anchors : numpy.ndarray or torch.Tensor, shape (n_anchors, ...)
        Embeddings in the same space, e.g. of text queries.

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (n_stimuli, n_anchors)
        Same kind as ``embeddings``, computed on its device.

    Raises
    ------
    ValueError
        If the two have different numbers of features or a row is all zeros.

    Examples
    --------
    >>> import numpy as np
    >>> relative_representations(np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[2.0, 0.0]])).round(3)
    array([[1.   ],
           [0.707]])
    """
    x = as_stimulus_matrix(embeddings, "embeddings", min_stimuli=1)
    a = as_stimulus_matrix(anchors, "anchors", min_stimuli=1, device=x.device, dtype=x.dtype)
    if a.shape[1] != x.shape[1]:
        raise ValueError(
            f"anchors have {a.shape[1]} features but embeddings have {x.shape[1]}; "
            "embed the anchors with the same model and layer as the stimuli"
        )
    return as_output(unit_rows(x, "embeddings") @ unit_rows(a, "anchors").T, embeddings)
