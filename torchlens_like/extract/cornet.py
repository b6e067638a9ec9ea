"""CORnet-Z, CORnet-RT and CORnet-S (Kubilius et al., 2019), built from the paper's description.

Four areas V1 -> V2 -> V4 -> IT, then a decoder (global average pool, flatten,
linear to 1000 classes). Module and parameter names follow the published
checkpoints, so their ``state_dict`` files load directly.

* **CORnet-Z**: each area is conv (V1: 7x7 stride 2; others 3x3) -> ReLU ->
  3x3 max-pool stride 2. Channels 64, 128, 256, 512.
* **CORnet-RT**: each area has an input conv (V1: 7x7 stride 4, others 3x3
  stride 2) with GroupNorm(32) and ReLU, added to the area's state from the
  previous time step, then a 3x3 conv, GroupNorm and ReLU. Five time steps:
  at step 0 only V1 sees the image (later areas start from zeros), and at each
  later step every area reads its predecessor's output from the step before.
* **CORnet-S**: V1 is two conv-BN-ReLU stages with a max-pool between them;
  V2, V4 and IT are recurrent bottleneck blocks unrolled 2, 4 and 2 times,
  with batch norms per time step and a strided skip connection on the first
  step (the 3x3 conv is strided on the first step only).

Examples
--------
>>> import torch
>>> CORnetZ()(torch.rand(2, 3, 224, 224)).shape
torch.Size([2, 1000])
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

WEIGHT_URLS = {
    "cornet_z": "https://s3.amazonaws.com/cornet-models/cornet_z-5c427c9c.pth",
    "cornet_rt": "https://s3.amazonaws.com/cornet-models/cornet_rt-933c001c.pth",
    "cornet_s": "https://s3.amazonaws.com/cornet-models/cornet_s-1d3f7974.pth",
}


def _decoder(channels):
    return nn.Sequential(OrderedDict(avgpool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(),
                              linear=nn.Linear(channels, 1000), output=nn.Identity()))


class CORblockZ(nn.Sequential):
    """conv -> ReLU -> max-pool, one CORnet-Z area."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1):
        super().__init__(OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2),
            nonlin=nn.ReLU(inplace=True),
            pool=nn.MaxPool2d(3, 2, 1),
            output=nn.Identity()))


class CORnetZ(nn.Sequential):
    """CORnet-Z: four feedforward areas and a decoder."""

    def __init__(self):
        super().__init__(OrderedDict(V1=CORblockZ(3, 64, 7, 2), V2=CORblockZ(64, 128),
                              V4=CORblockZ(128, 256), IT=CORblockZ(256, 512),
                              decoder=_decoder(512)))


class CORblockRT(nn.Module):
    """One CORnet-RT area: input conv added to the state, then conv -> GroupNorm -> ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=2):
        super().__init__()
        self.out_channels = out_channels
        self.conv_input = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                                    kernel_size // 2)
        self.norm_input = nn.GroupNorm(32, out_channels)
        self.nonlin_input = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(32, out_channels)
        self.nonlin1 = nn.ReLU(inplace=True)
        self.output = nn.Identity()

    def forward(self, inp, state):
        """``inp`` the predecessor's output (None: zeros like ``state``); returns the new state."""
        if inp is None:
            inp = torch.zeros_like(state)
        else:
            inp = self.nonlin_input(self.norm_input(self.conv_input(inp)))
        skip = inp if state is None else inp + state
        return self.output(self.nonlin1(self.norm1(self.conv1(skip))))


class CORnetRT(nn.Module):
    """CORnet-RT: four recurrent areas unrolled over ``times`` steps, then a decoder."""

    AREAS = ("V1", "V2", "V4", "IT")

    def __init__(self, times=5):
        super().__init__()
        self.times = times
        self.V1 = CORblockRT(3, 64, kernel_size=7, stride=4)
        self.V2 = CORblockRT(64, 128)
        self.V4 = CORblockRT(128, 256)
        self.IT = CORblockRT(256, 512)
        self.decoder = _decoder(512)

    def forward(self, image):
        """Step 0: V1 reads the image, V2-IT start from zeros; then each area reads its predecessor."""
        states = {"V1": self.V1(image, None)}
        size = states["V1"].shape[-1]
        for area in self.AREAS[1:]:
            size = (size + 1) // 2
            zeros = image.new_zeros(image.shape[0], getattr(self, area).out_channels, size, size)
            states[area] = getattr(self, area)(None, zeros)
        for _ in range(1, self.times):
            previous = dict(states)
            inputs = [image] + [previous[area] for area in self.AREAS[:-1]]
            for area, inp in zip(self.AREAS, inputs):
                states[area] = getattr(self, area)(inp, previous[area])
        return self.decoder(states["IT"])


class CORblockS(nn.Module):
    """One CORnet-S area: a bottleneck block (expansion 4) unrolled ``times`` times."""

    SCALE = 4

    def __init__(self, in_channels, out_channels, times=1):
        super().__init__()
        wide = out_channels * self.SCALE
        self.times = times
        self.conv_input = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.skip = nn.Conv2d(out_channels, out_channels, 1, stride=2, bias=False)
        self.norm_skip = nn.BatchNorm2d(out_channels)
        self.conv1 = nn.Conv2d(out_channels, wide, 1, bias=False)
        self.nonlin1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(wide, wide, 3, padding=1, bias=False)
        self.nonlin2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(wide, out_channels, 1, bias=False)
        self.nonlin3 = nn.ReLU(inplace=True)
        self.output = nn.Identity()
        for t in range(times):
            setattr(self, f"norm1_{t}", nn.BatchNorm2d(wide))
            setattr(self, f"norm2_{t}", nn.BatchNorm2d(wide))
            setattr(self, f"norm3_{t}", nn.BatchNorm2d(out_channels))

    def forward(self, inp):
        """Step 0 downsamples (strided 3x3 conv and skip); later steps keep the size."""
        x = self.conv_input(inp)
        for t in range(self.times):
            skip = self.norm_skip(self.skip(x)) if t == 0 else x
            x = self.nonlin1(getattr(self, f"norm1_{t}")(self.conv1(x)))
            x = F.conv2d(x, self.conv2.weight, stride=2 if t == 0 else 1, padding=1)
            x = self.nonlin2(getattr(self, f"norm2_{t}")(x))
            x = getattr(self, f"norm3_{t}")(self.conv3(x))
            x = self.output(self.nonlin3(x + skip))
        return x


class CORnetS(nn.Sequential):
    """CORnet-S: V1, three recurrent bottleneck areas (2, 4, 2 steps), decoder."""

    def __init__(self):
        v1 = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(3, 64, 7, 2, 3, bias=False), norm1=nn.BatchNorm2d(64),
            nonlin1=nn.ReLU(inplace=True), pool=nn.MaxPool2d(3, 2, 1),
            conv2=nn.Conv2d(64, 64, 3, 1, 1, bias=False), norm2=nn.BatchNorm2d(64),
            nonlin2=nn.ReLU(inplace=True), output=nn.Identity()))
        super().__init__(OrderedDict(V1=v1, V2=CORblockS(64, 128, times=2),
                              V4=CORblockS(128, 256, times=4), IT=CORblockS(256, 512, times=2),
                              decoder=_decoder(512)))


ARCHITECTURES = {"cornet_z": CORnetZ, "cornet_rt": CORnetRT, "cornet_s": CORnetS}
