"""The cyclic-GC pause: off inside a logging call, restored after, also across threads."""

import gc
import threading

import torch

import torchlens_like as tll
from torchlens_like.capture.gc_pause import cyclic_gc_paused


def test_overlapping_pauses_in_two_threads_restore_the_collector():
    inside_first, release_first = threading.Event(), threading.Event()
    seen = {}

    def first():
        with cyclic_gc_paused():
            inside_first.set()
            release_first.wait(5)
            seen["first"] = gc.isenabled()

    thread = threading.Thread(target=first)
    thread.start()
    inside_first.wait(5)
    with cyclic_gc_paused():
        seen["second"] = gc.isenabled()
    seen["between"] = gc.isenabled()
    release_first.set()
    thread.join(5)
    assert seen == {"first": False, "second": False, "between": False}
    assert gc.isenabled()


def test_concurrent_logging_calls_leave_the_collector_on():
    barrier = threading.Barrier(2)
    errors = []

    def forward(x):
        barrier.wait(5)
        return x.relu()

    def log():
        try:
            tll.log_forward_pass(forward, torch.ones(2))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=log) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors and gc.isenabled()


def test_collector_left_off_when_it_was_off():
    gc.disable()
    try:
        with cyclic_gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_logging_leaves_no_reference_cycles_for_the_collector():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.rand(1, 3, 64, 64)
    tll.log_forward_pass(model, x)
    gc.collect()
    gc.disable()
    try:
        for layers in ("all", None, ["layer1", "fc"]):
            history = tll.log_forward_pass(model, x, layers_to_save=layers)
            del history
            assert gc.collect() == 0, layers
    finally:
        gc.enable()
