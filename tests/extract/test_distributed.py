"""Distributed extraction: the split of the work, and the process group's stages on one rank."""

import socket

import pytest
import torch.distributed as dist

from torchlens_like.extract.distributed import (DistributedRun, Launch, RankFailure, detect_launch,
                                                plan_differences, runs_of, split_work)


def single_process_batches(ranges, batch_size):
    """The batches one process cuts: ``range(0, n, batch_size)`` clipped to what is to do."""
    n = max(stop for _, stop in ranges)
    todo = {i for start, stop in ranges for i in range(start, stop)}
    batches = []
    for low in range(0, n, batch_size):
        rows = [i for i in range(low, min(low + batch_size, n)) if i in todo]
        for i in rows:
            if batches and batches[-1][1] == i and batches[-1][0] >= low:
                batches[-1] = (batches[-1][0], i + 1)
            else:
                batches.append((i, i + 1))
    return batches


@pytest.mark.parametrize("split", ["contiguous", "strided"])
@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
@pytest.mark.parametrize("ranges", [[(0, 23)], [(3, 9), (13, 23)], [(0, 2)]])
def test_every_stimulus_once_in_the_batches_of_a_single_process(split, world_size, ranges):
    shares = split_work(ranges, 4, world_size, split)
    assert len(shares) == world_size
    assert sorted(b for share in shares for b in share) == single_process_batches(ranges, 4)
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    for share in shares:
        assert share == sorted(share)
        cut = [(low, min(stop, low + 4)) for start, stop in runs_of(share, 4)
               for low in range(start, stop, 4)]
        assert cut == share


def test_contiguous_shares_are_blocks_in_rank_order():
    shares = split_work([(0, 40)], 4, 3)
    flat = [b for share in shares for b in share]
    assert flat == sorted(flat) and [len(s) for s in shares] == [4, 3, 3]


def test_unknown_split_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown split 'random'; valid splits: contiguous, "
                                         "strided"):
        split_work([(0, 4)], 2, 2, "random")


def test_no_torchrun_no_launch_and_half_an_environment_is_an_error():
    assert detect_launch({"PATH": "/bin"}) is None
    with pytest.raises(RuntimeError, match="sets RANK, WORLD_SIZE but not LOCAL_RANK, "
                                           "MASTER_ADDR, MASTER_PORT.*torchrun"):
        detect_launch({"RANK": "0", "WORLD_SIZE": "2"})


@pytest.fixture
def one_rank(monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0",
                        "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    return detect_launch()


def test_a_failed_stage_raises_naming_rank_and_stage_and_the_group_is_left_as_found(one_rank):
    with DistributedRun(one_rank, timeout=30, backend="gloo") as run:
        with pytest.raises(RankFailure, match=r"rank 0 failed while extracting stimuli 8:12: "
                                              r"ValueError: unreadable") as caught:
            run.run_share([(8, 12)], iter([1]), lambda item: (_ for _ in ()).throw(
                ValueError("unreadable")))
        assert isinstance(caught.value.__cause__, ValueError)
        with run.stage("a step that works"):
            pass
        assert run.broadcast({"plan": 1}) == {"plan": 1} and run.max(3) == 3
        assert run.check_plans([("layer3", "conv2d_1_1")]) == [("layer3", "conv2d_1_1")]
    assert not dist.is_initialized()


def test_finish_assembles_on_rank_zero(one_rank):
    done = []
    with DistributedRun(Launch(0, 1, 0), timeout=30, backend="gloo") as run:
        run.finish(lambda: done.append(run.rank))
    assert done == [0] and not dist.is_initialized()


def test_plan_differences_name_the_first_layer_that_differs():
    reference = [("layer3", "conv2d_1_1"), ("fc", "linear_1_9")]
    assert plan_differences(reference, list(reference)) is None
    assert plan_differences(reference, [reference[0], ("fc", "linear_1_10")], lambda p: p[1]) \
        == "layer 1: linear_1_10 instead of linear_1_9"
    assert plan_differences(reference, reference[:1]) == "1 layers instead of 2"
