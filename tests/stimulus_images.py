"""Images written by the extraction tests, and the transform they are read with."""

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2


SMALL_TRANSFORM = v2.Compose([v2.ToImage(), v2.Resize(40, antialias=True), v2.CenterCrop(32),
                              v2.ToDtype(torch.float32, scale=True),
                              v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])


def write_images(root, count=7):
    """``count`` images in two class folders, in several modes, sizes and formats."""
    rng = np.random.default_rng(0)
    modes = ["RGB", "L", "RGBA", "CMYK", "P", "RGB", "L"]
    paths = []
    for i in range(count):
        folder = root / ("cats" if i % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        size = (40 + 3 * i, 36 + 5 * i)
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        image = Image.fromarray(pixels).convert(modes[i % len(modes)])
        suffix = ".jpg" if image.mode in ("RGB", "L", "CMYK") else ".png"
        path = folder / f"img{i:02d}{suffix}"
        image.save(path)
        paths.append(path)
    return paths


def transformed(paths):
    """The images as the extraction must see them: RGB, then the small transform."""
    return torch.stack([SMALL_TRANSFORM(Image.open(p).convert("RGB")) for p in paths])
