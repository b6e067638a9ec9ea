"""Gradients at every logged op, and attributions at any site.

A reader stage: it reads the graph, resolves sites with
:mod:`torchlens_like.interventions.sites`, and uses the autograd edges a
``save_gradients`` pass kept (:mod:`torchlens_like.capture.gradients`).

* :mod:`.backward`: ``tll.log_forward_pass(model, x, save_gradients=True)``
  (or a list of sites), then ``history.backward(loss)``: ``layer.grad`` at
  every chosen layer and ``layer.param_grads`` per pass.
* :mod:`.attribution`: ``tll.attribute(model, x, site, method=...)`` with
  saliency, gradient x activation and integrated gradients (the rules of
  :mod:`.integration`) at op and module sites.
* :mod:`.plotting`: ``tll.plot_attribution(attr, image)``.

Registers ``history.backward`` and ``history.release_graph`` in the reader
registry. TensorFlow histories raise ``NotImplementedError`` saying what is
supported (:data:`SUPPORTED`).
"""

from ..graph.readers import register_reader
from ..records import NoGradientWarning
from .attribution import METHODS, Attribution, attribute
from .backward import (SUPPORTED, GradientGraph, attach_gradients, backward_history,
                       compute_gradients, normalize_gradient_sites, release_graph)
from .plotting import plot_attribution

register_reader("backward", backward_history)
register_reader("release_graph", release_graph)

__all__ = ["Attribution", "GradientGraph", "METHODS", "NoGradientWarning", "SUPPORTED",
           "attach_gradients", "attribute", "backward_history", "compute_gradients",
           "normalize_gradient_sites", "plot_attribution", "release_graph"]
