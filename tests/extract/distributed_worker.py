"""The script the distributed tests launch with torchrun: one extraction, as a user would run it.

``python distributed_worker.py IMAGES OUT [--kill|--fail|--hang RANK:INDEX] [--differ RANK]``:
rank RANK (``*``: every rank) SIGKILLs itself, raises or sleeps for an hour
when it loads stimulus INDEX; ``--differ`` gives rank RANK a model with one
more op in front (so its graph differs from the others').
"""

import argparse
import os
import signal
import time

import torch
from torch import nn

import torchlens_like as tll

LAYERS = ["features.1", "features.4", "head"]


def small_model(extra_op=False):
    """A small convolutional net, the same random weights in every process."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2),
                                 nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        model = nn.Sequential()
        if extra_op:
            model.add_module("extra", nn.Hardtanh(-1e9, 1e9))
        model.add_module("features", features)
        model.add_module("flatten", nn.Flatten())
        model.add_module("head", nn.Linear(64, 5))
    return model.eval()


class Transform:
    """PIL image -> 24 x 24 float tensor (with a repr that is the same in every process)."""

    def __call__(self, image):
        import numpy as np

        return torch.from_numpy(np.asarray(image.resize((24, 24)), dtype=np.float32) / 255
                                ).permute(2, 0, 1)

    def __repr__(self):
        return "Transform(24)"


class Images(tll.ImageFolder):
    """The image folder, with a planted failure on one rank."""

    def __init__(self, root, event=None):
        super().__init__(root, Transform())
        self.event = event

    def read(self, index):
        if self.event is not None:
            kind, rank, at = self.event
            if index == at and rank in ("*", os.environ.get("RANK")):
                if kind == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                if kind == "hang":
                    time.sleep(3600)
                raise ValueError(f"planted failure at stimulus {index}")
        return super().read(index)


def _event(kind):
    def parse(text):
        rank, index = text.split(":")
        return kind, rank, int(index)
    return parse


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("images")
    parser.add_argument("out")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--format", default="npy")
    parser.add_argument("--memory-limit")
    parser.add_argument("--kill", type=_event("kill"))
    parser.add_argument("--fail", type=_event("fail"))
    parser.add_argument("--hang", type=_event("hang"))
    parser.add_argument("--differ", type=int)
    parser.add_argument("--device")
    args = parser.parse_args()
    model = small_model(extra_op=args.differ == int(os.environ.get("RANK", -1)))
    stimuli = Images(args.images, args.kill or args.fail or args.hang)
    tll.extract_features(model, stimuli, LAYERS, batch_size=args.batch_size, output_dir=args.out,
                         format=args.format, device=args.device, memory_limit=args.memory_limit,
                         progress=False, num_workers=0)


if __name__ == "__main__":
    main()
