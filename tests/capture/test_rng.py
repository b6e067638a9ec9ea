"""Generator states of random calls: read only where a call can draw, never silently wrong.

Ground truth: the saved activations against a plain forward with the same seed,
and replay (the validator) on the recorded state.
"""

import warnings

import pytest
import torch
from torch import nn

import torchlens_like as tll
from torchlens_like.validate.rerun import run_call


def _custom(draw_by_default):
    """A fresh function the capture intercepts as one call (``handle_torch_function``).

    It adds uniform noise when ``draw`` is true: a call whose name no rule knows.
    """
    def custom(x, draw=draw_by_default):
        if torch._C._has_torch_function((x,)):
            return torch.overrides.handle_torch_function(custom, (x,), x, draw=draw)
        return x + torch.rand_like(x) if draw else x * 2.0

    return custom


def _log(forward, x, seed=3):
    torch.manual_seed(seed)
    expected = forward(x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = tll.log_forward_pass(forward, x, random_seed=seed)
    unexplained = [w for w in caught if "not expected to draw" in str(w.message)]
    assert torch.equal(history[history.output_layers[0]].tensor_contents, expected)
    return history, unexplained


def test_a_function_that_always_draws_is_learned_at_its_first_call():
    noisy = _custom(True)
    history, unexplained = _log(lambda x: noisy(x).relu(), torch.zeros(5))
    assert not unexplained
    node = history["custom_1"]
    assert node.replay.rng_state is not None
    assert torch.equal(run_call(node), node.tensor_contents)
    assert history["relu_1"].replay.rng_state is None
    assert history.validate()


def test_calls_that_draw_nothing_keep_no_state():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.ReLU())
    train, _ = _log(model.train(), torch.ones(3, 4))
    evaluated, _ = _log(model.eval(), torch.ones(3, 4))
    assert train["dropout_1"].replay.rng_state is not None
    assert evaluated["dropout_1"].replay.rng_state is None
    assert all(layer.replay.rng_state is None for history in (train, evaluated)
               for layer in history if layer.kind == "op" and layer.func_name != "dropout")
    assert train.validate() and evaluated.validate()


def test_an_unexpected_draw_between_two_read_calls_replays_exactly():
    sometimes = _custom(False)

    def forward(x):
        y = sometimes(x)                      # first call: draws nothing, learned as quiet
        noise = torch.rand(5)                 # a known drawing call: a checkpoint
        z = sometimes(y, draw=True)           # draws unexpectedly: alone between checkpoints
        return z * torch.rand(5) + noise      # the next checkpoint finds the draw

    history, unexplained = _log(forward, torch.zeros(5))
    assert not unexplained
    node = history["custom_1:2"] if "custom_1:2" in history else history["custom_2"]
    assert node.replay.rng_state is not None
    assert torch.equal(run_call(node), node.tensor_contents)
    assert history.validate()


def _warm(*functions):
    """Log one pass calling each function once without drawing: they are learned as quiet."""
    def forward(x):
        for function in functions:
            x = function(x, draw=False)
        return x

    _log(forward, torch.zeros(5))


def test_an_unexpected_draw_among_several_calls_is_reported_and_learned():
    first, drawing, last = _custom(False), _custom(False), _custom(False)
    _warm(first, drawing, last)

    def forward(x):
        return last(drawing(first(x), draw=True))

    history, unexplained = _log(forward, torch.zeros(5))
    assert len(unexplained) == 1 and "custom" in str(unexplained[0].message)
    assert history.validate()  # the first call that drew gets the state it consumed
    again, unexplained = _log(forward, torch.zeros(5))
    assert not unexplained
    assert [layer.replay.rng_state is not None for layer in again if layer.kind == "op"] \
        == [False, True, False]
    assert again.validate()


def test_two_unexpected_draws_in_one_window_fail_validation_not_silently():
    first, second = _custom(False), _custom(False)
    _warm(first, second)

    def forward(x):
        return second(first(x, draw=True), draw=True)

    history, unexplained = _log(forward, torch.zeros(5))
    assert len(unexplained) == 1
    assert history.validate() is False
    again, unexplained = _log(forward, torch.zeros(5))
    assert not unexplained and again.validate()


@pytest.mark.parametrize("layers_to_save", ["all", None])
def test_generator_left_as_a_plain_forward_leaves_it(layers_to_save):
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).train()
    x = torch.ones(2, 4)
    torch.manual_seed(5)
    model(x)
    after_plain = torch.get_rng_state()
    torch.manual_seed(5)
    tll.log_forward_pass(model, x, layers_to_save=layers_to_save)
    assert torch.equal(torch.get_rng_state(), after_plain)
