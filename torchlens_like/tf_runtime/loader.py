"""Import TensorFlow for the backend, after Triton when Triton is installed.

Triton (which ``torch.compile`` imports) crashes the process with a
segmentation fault when it is first imported after TensorFlow, as both
load their own copies of native libraries; imported before TensorFlow it
works. So every module of this backend takes TensorFlow from here, and
Triton, when present, is imported first (about 0.3 s, once).

Examples
--------
>>> from torchlens_like.tf_runtime.loader import tf
>>> tf.executing_eagerly()
True
"""

from __future__ import annotations

import importlib.util
import sys

if "tensorflow" not in sys.modules and importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401

import tensorflow as tf  # noqa: E402

__all__ = ["tf"]
