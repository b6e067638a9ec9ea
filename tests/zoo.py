"""The edge-case model zoo shared by the capture, validation and rendering tests.

Each case is a small model plus its inputs, chosen to exercise one thing the
logger must get right. ``CASES`` maps a name to a builder returning a
:class:`Case`; builders take no arguments and seed their own weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


@dataclass
class Case:
    model: object
    args: tuple
    kwargs: dict = field(default_factory=dict)
    seed: int | None = None
    train: bool = False


def _seeded(build):
    def wrapper():
        torch.manual_seed(0)
        case = build()
        if isinstance(case.model, nn.Module):
            case.model.train(case.train)
        return case
    wrapper.__name__ = build.__name__
    return wrapper


class InplaceOps(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.fc(x)
        y = self.act(y)
        y += 1
        y.mul_(2)
        y[:, 0] = 0.5
        z = torch.sigmoid(y)
        z.add_(y)
        return z


class InternalTensors(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        ones = torch.ones(x.shape[0], 4)
        noise = torch.rand(x.shape[0], 4)
        table = torch.tensor([1.0, 2.0, 3.0, 4.0])
        from_np = torch.from_numpy(np.arange(4, dtype=np.float32))
        unused = torch.zeros(3) * 2  # feeds nothing: trimmed
        del unused
        return self.fc(x) + ones * noise + table - from_np


class Buffers(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(5)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, 5))

    def forward(self, x):
        return self.bn(x) * self.scale


class Branching(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.c = nn.Linear(8, 2)

    def forward(self, x):
        left = torch.tanh(self.a(x))
        right = torch.relu(self.b(x))
        return self.c(torch.cat([left, right], dim=1)), left - right


class SharedBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.relu(self.fc(x))


class SharedModules(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = SharedBlock()
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        return self.head(self.block(self.block(self.block(x))))


class FunctionalParams(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 5))
        self.bias = nn.Parameter(torch.randn(3))

    def forward(self, x):
        return F.linear(x, self.weight, self.bias) @ self.weight


class NestedIO(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, pair, mapping, scale=1.0, flag=None, extra=None):
        a, (b, c) = pair
        out = self.fc(a) + b * c + mapping["u"] * scale
        result = {"sum": out, "parts": [a * 2, (c - 1, "tag")], "n": 3}
        if extra is not None:
            result["extra"] = extra.exp()
        return result


class Recurrents(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(4, 5, batch_first=True)
        self.lstm = nn.LSTM(5, 6, num_layers=2, batch_first=True)
        self.gru = nn.GRU(6, 3, batch_first=True)

    def forward(self, x):
        x, _ = self.rnn(x)
        x, (h, c) = self.lstm(x)
        x, h2 = self.gru(x)
        return x, h, c, h2


class Cells(nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = nn.LSTMCell(3, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        h = x.new_zeros(x.shape[1], 4)
        c = x.new_zeros(x.shape[1], 4)
        for step in x:
            h, c = self.cell(step, (h, c))
        return self.out(h)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x):
        out, weights = self.attn(x, x, x)
        return out, weights


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

    def forward(self, x):
        return self.encoder(x)


class Indexing(nn.Module):
    def forward(self, x):
        y = x[:, 1:3] * 2
        z = torch.einsum("bi,bj->bij", y, y)
        w = torch.where(z > 0.1, z, torch.zeros_like(z))
        idx = torch.argsort(x, dim=1)
        g = torch.gather(x, 1, idx)
        s = torch.zeros_like(x).scatter(1, idx, g)
        s[:, 0] = w.sum(dim=(1, 2))
        return s + (2 - x) + x.T.T / 3


class NoGradInside(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        with torch.no_grad():
            stats = x.mean(dim=0, keepdim=True)
        return self.fc(x - stats)


class DropoutTrain(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return F.dropout(self.drop(self.fc(x)), 0.3, training=self.training) + torch.randn_like(x)


class _Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * x * grad


class CustomFunction(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        return _Square.apply(self.fc(x)) + 1


class Packed(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)

    def forward(self, x, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.lstm(packed)
        padded, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
        return padded


class ChannelsLast(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.conv(x))


class Conditional(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if torch.mean(x - 5) > 3:
            return self.fc(x) * 2
        return self.fc(x) + 1


class ViewMutation(nn.Module):
    def forward(self, x):
        y = x * 1
        row = y[0]
        first = row * 1
        row.add_(10)
        y.transpose(0, 1)[0].zero_()
        return y + first


@_seeded
def inplace_ops():
    return Case(InplaceOps(), (torch.randn(3, 6),))


@_seeded
def internal_tensors():
    return Case(InternalTensors(), (torch.randn(2, 4),), seed=3)


@_seeded
def buffers_eval():
    return Case(Buffers(), (torch.randn(4, 5),))


@_seeded
def buffers_train():
    return Case(Buffers(), (torch.randn(4, 5),), train=True)


@_seeded
def branching():
    return Case(Branching(), (torch.randn(2, 4),))


@_seeded
def shared_modules():
    return Case(SharedModules(), (torch.randn(2, 4),))


@_seeded
def functional_params():
    return Case(FunctionalParams(), (torch.randn(2, 5),))


@_seeded
def nested_io():
    args = ((torch.randn(2, 3), (torch.randn(2, 3), torch.randn(2, 3))), {"u": torch.randn(2, 3)})
    return Case(NestedIO(), args, {"scale": 0.5, "flag": "x", "extra": torch.randn(2)})


@_seeded
def recurrents():
    return Case(Recurrents(), (torch.randn(2, 5, 4),))


@_seeded
def cells():
    return Case(Cells(), (torch.randn(4, 2, 3),))


@_seeded
def attention():
    return Case(Attention(), (torch.randn(2, 5, 8),))


@_seeded
def transformer_encoder():
    return Case(Encoder(), (torch.randn(2, 5, 8),))


@_seeded
def indexing():
    return Case(Indexing(), (torch.randn(3, 4),))


@_seeded
def no_grad_inside():
    return Case(NoGradInside(), (torch.randn(3, 4),))


@_seeded
def dropout_train():
    return Case(DropoutTrain(), (torch.randn(4, 6),), seed=7, train=True)


@_seeded
def custom_function():
    return Case(CustomFunction(), (torch.randn(2, 3),))


@_seeded
def packed_sequence():
    return Case(Packed(), (torch.randn(3, 5, 3), torch.tensor([5, 2, 4])))


@_seeded
def channels_last():
    x = torch.randn(2, 3, 8, 8).to(memory_format=torch.channels_last)
    return Case(ChannelsLast().to(memory_format=torch.channels_last), (x,))


@_seeded
def conditional():
    return Case(Conditional(), (torch.randn(2, 4) + 10,))


@_seeded
def view_mutation():
    return Case(ViewMutation(), (torch.randn(3, 3),))


@_seeded
def plain_function():
    return Case(lambda a, b: torch.relu(a) * b.sum(), (torch.randn(3), torch.randn(2)))


CASES = {build.__name__: build for build in (
    inplace_ops, internal_tensors, buffers_eval, buffers_train, branching, shared_modules,
    functional_params, nested_io, recurrents, cells, attention, transformer_encoder, indexing,
    no_grad_inside, dropout_train, custom_function, packed_sequence, channels_last, conditional,
    view_mutation, plain_function,
)}


# ---- recurrence, conditions and containment cases (graph passes and validation) ----

class ParamLoop(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        for _ in range(3):
            x = torch.relu(self.fc(x))
        return self.out(x)


class PaperFig4A(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        x = self.fc(torch.cos(x)) + 1
        x = torch.sin(x)
        return self.fc(torch.cos(x)) + 1


class NestedLoops(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(4, 4)
        self.outer = nn.Linear(4, 4)

    def forward(self, x):
        for _ in range(2):
            for _ in range(3):
                x = torch.tanh(self.inner(x))
            x = self.outer(x)
        return x


class VaryingLoops(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        for steps in (1, 2, 3):
            for _ in range(steps):
                x = torch.relu(self.fc(x))
            x = x * 0.5
        return x


def _xyz(x):
    return torch.cos(x).relu() * 2


class ParamFreeRepeats(nn.Module):
    def forward(self, x):
        for _ in range(3):
            x = _xyz(x)
        return x


class SeparatedRepeats(nn.Module):
    def forward(self, x):
        return _xyz(torch.sigmoid(_xyz(torch.tan(_xyz(x)))))


class RepeatThenSeparate(nn.Module):
    def forward(self, x):
        return _xyz(torch.tan(_xyz(_xyz(x))))


class RecurrentCells(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRUCell(3, 4)
        self.rnn = nn.RNNCell(4, 4)
        self.lstm = nn.LSTM(4, 4, batch_first=True)

    def forward(self, x):
        h = torch.zeros(x.shape[1], 4)
        g = torch.zeros(x.shape[1], 4)
        for step in x:
            h = self.gru(step, h)
            g = self.rnn(h, g)
        seq, _ = self.lstm(g.unsqueeze(1))
        seq, _ = self.lstm(seq)
        return seq


class NestedConditions(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if (x.mean() > 0) & (x.std() < 10):
            x = self.fc(x)
            if torch.max(x - 1) > -100:
                x = x * 2
        flag = x.sum() > 1e6
        del flag
        return torch.where(x.sum() > 0, x, -x)


class Init(nn.Module):
    def forward(self, x):
        return torch.zeros(x.shape[0], 4)


class OnesBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x, h):
        ones = torch.ones(x.shape[0], 4)
        return self.fc(x) + ones * h


class InternalInModules(nn.Module):
    def __init__(self):
        super().__init__()
        self.init = Init()
        self.block = OnesBlock()
        self.norm = nn.BatchNorm1d(4)

    def forward(self, x):
        return self.norm(self.block(x, self.init(x)))


@_seeded
def param_loop():
    return Case(ParamLoop(), (torch.randn(2, 4),))


@_seeded
def paper_fig4a():
    return Case(PaperFig4A(), (torch.randn(2, 4),))


@_seeded
def nested_loops():
    return Case(NestedLoops(), (torch.randn(2, 4),))


@_seeded
def varying_loops():
    return Case(VaryingLoops(), (torch.randn(2, 4),))


@_seeded
def param_free_repeats():
    return Case(ParamFreeRepeats(), (torch.randn(2, 4),))


@_seeded
def separated_repeats():
    return Case(SeparatedRepeats(), (torch.randn(2, 4),))


@_seeded
def repeat_then_separate():
    return Case(RepeatThenSeparate(), (torch.randn(2, 4),))


@_seeded
def recurrent_cells():
    return Case(RecurrentCells(), (torch.randn(3, 2, 3),))


@_seeded
def nested_conditions():
    return Case(NestedConditions(), (torch.randn(2, 4) + 1,))


@_seeded
def internal_in_modules():
    return Case(InternalInModules(), (torch.randn(3, 4),))


CASES.update({build.__name__: build for build in (
    param_loop, paper_fig4a, nested_loops, varying_loops, param_free_repeats, separated_repeats,
    repeat_then_separate, recurrent_cells, nested_conditions, internal_in_modules,
)})


# ---- validation failure classes: each model is honest, so validation must pass ----

class SdpaDropout(nn.Module):
    """Class 1: a fused call that draws random numbers internally (attention dropout)."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(8, 24)

    def forward(self, x):
        q, k, v = (t.unflatten(-1, (2, 4)).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        return F.scaled_dot_product_attention(q, k, v, dropout_p=0.3).transpose(1, 2).flatten(2)


class TransformerTrain(nn.Module):
    """Class 1: encoder and decoder layers whose attention draws dropout masks inside."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.2, batch_first=True)
        self.decoder = nn.TransformerDecoderLayer(8, 2, 16, dropout=0.2, batch_first=True)

    def forward(self, x):
        return self.decoder(x, self.encoder(x))


class DtypeDonors(nn.Module):
    """Class 2: tensor arguments that give only dtype, device or shape."""

    def forward(self, x):
        z = torch.fft.rfft(x)
        window = torch.hann_window(x.shape[-1]).to(z.real)
        typed = window.type_as(x) * x
        fresh = x.new_zeros(x.shape) + x.new_ones(x.shape) + x.new_full(x.shape, 2.0)
        shaped = torch.ones(x.numel()).view_as(x) + torch.ones(x.numel()).reshape_as(x)
        grown = torch.ones(1, x.shape[-1]).expand_as(x)
        return typed + fresh + shaped + grown + torch.zeros_like(x) + z.real.sum()


class InsensitiveParents(nn.Module):
    """Class 3: parents the output legitimately ignores, with outputs that are not constant:
    a zero weight, a zero mask, a saturated maximum, attention over one key."""

    def __init__(self):
        super().__init__()
        self.localisation = nn.Linear(4, 6)
        nn.init.zeros_(self.localisation.weight)
        self.floor = nn.Parameter(torch.arange(4.0) + 5)

    def forward(self, x):
        theta = self.localisation(x)
        masked = torch.addcmul(self.floor, x, (x > 100).float())
        dead = torch.maximum(-x.abs() - 1, self.floor)
        one_key = x[:1].view(1, 1, 1, 4)
        attended = F.scaled_dot_product_attention(x.view(1, 1, 3, 4), one_key, one_key * 2)
        return theta[:, :4] + masked + dead + attended.view(3, 4)


class WritesItsInput(nn.Module):
    """Class 4: a forward that writes into the caller's input."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        x += 1
        return self.fc(x)


class RewritesBuffer(nn.Module):
    """Class 4: a module that rewrites its buffer on each call (a running count)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros(()))
        self.register_buffer("memory", torch.ones(4))

    def forward(self, x):
        self.calls += 1
        self.memory.mul_(0.5).add_(x.mean(0))
        return x * self.calls + self.memory


class RebindsBuffers(nn.Module):
    """Class 4b: a forward that assigns new tensors to its buffers instead of writing into them
    (``self.buf = x ** 2``, ``self.noise = torch.rand(...)``)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("buf", torch.ones(4))
        self.register_buffer("noise", torch.zeros(4))

    def forward(self, x):
        out = x * self.buf + self.noise
        self.buf = x.mean(0) ** 2
        self.noise = torch.rand(4)
        return out * self.noise


class AutocastRegion(nn.Module):
    """Class 5: part of the forward under CPU autocast (bfloat16)."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(8, 8)
        self.outer = nn.Linear(8, 4)

    def forward(self, x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = torch.relu(self.inner(x))
        return self.outer(y.float())


class InnerGradient(nn.Module):
    """Class 6: ``torch.autograd.grad`` inside forward (a MAML-style inner step)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        weight = self.fc.weight
        loss = F.linear(x, weight).pow(2).sum()
        (grad,) = torch.autograd.grad(loss, weight, create_graph=True)
        adapted = weight - 0.1 * grad
        return F.linear(x, adapted) + self.fc.bias


class AliasWrite(nn.Module):
    """Class 7: a read through one view after a write through another view of its storage."""

    def forward(self, x):
        y = x.clone()
        v1 = y.view(2, 8)
        v2 = y.view(4, 4)
        v2.fill_(0)
        return v1.sum() + x.sum()


class BufferViewWrite(nn.Module):
    """Class 7: an in-place op on a view of a buffer, read afterwards through the buffer."""

    def __init__(self):
        super().__init__()
        self.register_buffer("state", torch.ones(2, 4))

    def forward(self, x):
        self.state[0].copy_(x.mean(0))
        return x @ self.state.T


@_seeded
def sdpa_dropout():
    return Case(SdpaDropout(), (torch.randn(2, 5, 8),), seed=5, train=True)


@_seeded
def transformer_train():
    return Case(TransformerTrain(), (torch.randn(2, 5, 8),), seed=5, train=True)


@_seeded
def dtype_donors():
    return Case(DtypeDonors(), (torch.randn(3, 8),))


@_seeded
def insensitive_parents():
    return Case(InsensitiveParents(), (torch.randn(3, 4),))


@_seeded
def writes_its_input():
    return Case(WritesItsInput(), (torch.randn(3, 4),))


@_seeded
def rewrites_buffer():
    return Case(RewritesBuffer(), (torch.randn(3, 4),))


@_seeded
def rebinds_buffers():
    return Case(RebindsBuffers(), (torch.randn(3, 4),))


@_seeded
def autocast_region():
    return Case(AutocastRegion(), (torch.randn(3, 8),))


@_seeded
def inner_gradient():
    return Case(InnerGradient(), (torch.randn(3, 4),))


@_seeded
def alias_write():
    return Case(AliasWrite(), (torch.randn(16),))


@_seeded
def buffer_view_write():
    return Case(BufferViewWrite(), (torch.randn(3, 4),))


VALIDATION_CASES = {build.__name__: build for build in (
    sdpa_dropout, transformer_train, dtype_donors, insensitive_parents, writes_its_input,
    rewrites_buffer, rebinds_buffers, autocast_region, inner_gradient, alias_write,
    buffer_view_write,
)}
"""One minimal model per validation failure class (issue: validation that never cries wolf)."""
