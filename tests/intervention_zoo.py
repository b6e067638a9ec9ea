"""Small models for the intervention tests, each with a hand-written forward to edit by hand."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Blocks(nn.Module):
    """Two linear blocks with a functional relu between them and a residual add."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        h = h + torch.tanh(self.fc2(h))
        return self.head(h)

    def by_hand(self, x, after_relu=lambda h: h):
        """The same forward with ``after_relu`` applied to the functional relu's output."""
        h = after_relu(F.relu(F.linear(x, self.fc1.weight, self.fc1.bias)))
        h = h + torch.tanh(F.linear(h, self.fc2.weight, self.fc2.bias))
        return F.linear(h, self.head.weight, self.head.bias)


class Shared(nn.Module):
    """One linear layer applied twice (two passes of one module)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.fc = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(torch.sigmoid(self.fc(torch.relu(self.fc(x)))))


class Pair(nn.Module):
    def forward(self, x):
        return x * 2, x - 1


class TupleOut(nn.Module):
    """A submodule returning a tuple, both parts used."""

    def __init__(self):
        super().__init__()
        self.pair = Pair()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        a, b = self.pair(self.fc(x))
        return a * b


class PassThrough(nn.Module):
    """An Identity whose input also feeds another path."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.skip = nn.Identity()

    def forward(self, x):
        h = self.fc(x)
        return self.skip(h) + h.relu()


class InPlace(nn.Module):
    """An in-place relu module and an in-place add."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.fc = nn.Linear(5, 5)
        self.act = nn.ReLU(inplace=True)
        self.out = nn.Linear(5, 2)

    def forward(self, x):
        h = self.act(self.fc(x))
        h += 1
        return self.out(h)


class Dropout(nn.Module):
    """Dropout in training mode after the edited layer, and a torch.rand inside the forward."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.fc = nn.Linear(6, 6)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        h = self.drop(self.fc(x))
        return self.out(h + torch.rand(h.shape))


class Branches(nn.Module):
    """A Python branch on a tensor downstream of fc."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.fc = nn.Linear(3, 3)
        self.out = nn.Linear(3, 3)

    def forward(self, x):
        h = self.fc(x)
        if h.sum() > 0:
            h = h * 2
        return self.out(h)


def hooked(model, address, edit, *args, seed=None):
    """Run ``model`` with a forward hook on ``address`` returning ``edit(output)``; the output."""
    module = model.get_submodule(address)

    def hook(_module, _inputs, output):
        if isinstance(output, tuple):
            return tuple(edit(part) for part in output)
        return edit(output)

    handle = module.register_forward_hook(hook)
    try:
        if seed is not None:
            torch.manual_seed(seed)
        with torch.no_grad():
            return model(*args)
    finally:
        handle.remove()


def patched_by_hooks(model, address, source_input, target_input):
    """The target run's output with each call of ``address`` returning its source-run output."""
    module = model.get_submodule(address)
    stored = []
    handle = module.register_forward_hook(lambda m, i, o: stored.append(o.detach().clone()))
    with torch.no_grad():
        model(source_input)
    handle.remove()
    calls = iter(stored)
    handle = module.register_forward_hook(lambda m, i, o: next(calls))
    try:
        with torch.no_grad():
            return model(target_input)
    finally:
        handle.remove()


class UsesItsOutput(nn.Module):
    """A block that also reads its result inside before returning it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        y = self.fc(x)
        self.last_mean = y.mean()
        return y


class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.block = UsesItsOutput()
        self.out = nn.Linear(3, 2)

    def forward(self, x):
        return self.out(torch.relu(self.block(x)))


class Normed(nn.Module):
    """BatchNorm in training mode (writes its running statistics) and dropout."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(6)
        self.fc = nn.Linear(4, 4)
        self.norm = nn.BatchNorm1d(4)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.drop(self.norm(self.fc(x))))


class Residual(nn.Module):
    """One residual block: ``relu(x + fc2(relu(fc1(x))))``, the relu in place."""

    def __init__(self, width):
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.fc2(torch.relu(self.fc1(x)))
        out += x
        return self.act(out)


class Chain(nn.Module):
    """Residual blocks one after another, as resnet's stages are."""

    def __init__(self, width=6, depth=4):
        super().__init__()
        torch.manual_seed(7)
        self.blocks = nn.Sequential(*(Residual(width) for _ in range(depth)))
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        return self.head(self.blocks(x))


class ReadsANumber(nn.Module):
    """A Python number read from the input (upstream of fc) scales the output."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(8)
        self.fc = nn.Linear(4, 4)
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        k = int(x[0].argmax())
        return self.out(torch.relu(self.fc(x))) * (k + 1)
