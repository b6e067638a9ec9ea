"""Sample stimuli: photographs that ship with scikit-image, written as image files.

They give the demo and the benchmark a real image folder on any machine
without a download.
"""

from __future__ import annotations

import os

PHOTOGRAPHS = ("astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry")


def write_sample_images(folder, count=None, size=None, extension=".png"):
    """Write scikit-image's photographs into ``folder`` (atomically per file); return ``folder``.

    Parameters
    ----------
    folder : str
    count : int, optional
        How many files; beyond the six photographs, each further file is a
        different crop (and mirror) of one of them. Default: the six.
    size : int, optional
        Resize each to ``size x size`` pixels; default: the original size.
    extension : str
        ``".png"`` or ``".jpg"`` (quality 90).

    Examples
    --------
    >>> import os, tempfile
    >>> folder = write_sample_images(tempfile.mkdtemp(), count=8, size=32, extension=".jpg")
    >>> sorted(os.listdir(folder))[:2], len(os.listdir(folder))
    (['astronaut.jpg', 'astronaut_006.jpg'], 8)
    """
    import numpy as np
    import skimage.data
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    count = len(PHOTOGRAPHS) if count is None else count
    for i in range(count):
        name = PHOTOGRAPHS[i % len(PHOTOGRAPHS)]
        image = Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB")
        if i >= len(PHOTOGRAPHS):
            image = _variant(image, i)
        if size is not None:
            image = image.resize((size, size), Image.BILINEAR)
        stem = name if i < len(PHOTOGRAPHS) else f"{name}_{i:03d}"
        path = os.path.join(folder, stem + extension)
        temporary = path + ".tmp" + extension
        image.save(temporary, quality=90) if extension == ".jpg" else image.save(temporary)
        os.replace(temporary, path)
    return folder


def _variant(image, i):
    import random

    from PIL import ImageOps

    rng = random.Random(i)
    width, height = image.size
    side = int(min(width, height) * rng.uniform(0.6, 0.95))
    left, top = rng.randint(0, width - side), rng.randint(0, height - side)
    crop = image.crop((left, top, left + side, top + side))
    return ImageOps.mirror(crop) if rng.random() < 0.5 else crop
