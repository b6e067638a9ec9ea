"""Which batches of an extraction get a check."""

import pytest
import torch
from torch import nn

import torchlens_like as tll
from torchlens_like.extract.check_schedule import CHECK_SHARE, CheckSchedule


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_auto_checks_a_batch_only_while_the_checks_stay_within_their_share():
    clock = FakeClock()
    schedule = CheckSchedule("auto", clock)
    batch_seconds, check_seconds = 1.0, 0.5
    checked = []
    for batch in range(200):
        if schedule.due(("a",)):
            checked.append(batch)
            clock.now += check_seconds
            schedule.record(check_seconds)
        clock.now += batch_seconds
    # by hand: after the first check (t = 0 to 0.5), batch b starts at 0.5 + b; a second check
    # fits once 2 * 0.5 <= 0.05 * (0.5 + b + 0.5), i.e. b >= 19; a third once
    # 3 * 0.5 <= 0.05 * (1.0 + b + 0.5), i.e. b >= 28.5
    assert checked[:3] == [0, 19, 29]
    assert schedule.spent / clock.now <= CHECK_SHARE
    assert schedule.spent / clock.now > CHECK_SHARE * 0.8, "checks as often as the share allows"


def test_a_check_dearer_than_the_whole_run_is_done_once():
    clock = FakeClock()
    schedule = CheckSchedule("auto", clock)
    assert schedule.due(("a",))
    clock.now += 3.0
    schedule.record(3.0)
    for _ in range(30):
        clock.now += 1.0
        assert not schedule.due(("a",))
    assert schedule.due(("b",)), "every group's first batch is checked"


@pytest.mark.parametrize("every, expected", [(1, [0, 1, 2, 3, 4]), (2, [0, 2, 4]),
                                             (None, [0])])
def test_a_fixed_schedule_ignores_the_clock(every, expected):
    schedule = CheckSchedule(every, clock=lambda: 0.0)
    assert [b for b in range(5) if schedule.due(("a",))] == expected


@pytest.mark.parametrize("wrong", [0, -1, 1.5, "often", True])
def test_a_wrong_validate_every_is_refused_by_extract_features(wrong):
    data = torch.utils.data.TensorDataset(torch.rand(4, 3))
    with pytest.raises(ValueError, match="validate_every must be .*got"):
        tll.extract_features(nn.Linear(3, 2), data, ["linear_1"], validate_every=wrong,
                             progress=False)


def test_extract_features_checks_by_the_auto_schedule_by_default(monkeypatch):
    from torchlens_like.extract import extraction

    made = []

    def slow_clock_schedule(validate_every):
        # every reading of this clock is 10 s after the last: batches look slow next to the
        # checks (timed on the real clock), so "auto" checks every batch
        ticks = iter(range(0, 10**6, 10))
        made.append(validate_every)
        return CheckSchedule(validate_every, clock=lambda: float(next(ticks)))

    monkeypatch.setattr(extraction, "CheckSchedule", slow_clock_schedule)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU()).eval()
    data = torch.utils.data.TensorDataset(torch.rand(6, 3))
    feats = tll.extract_features(model, data, ["1"], batch_size=2, progress=False)
    assert made == ["auto"]
    assert [record["stimuli"] for record in feats.validation] == [[0, 2], [2, 4], [4, 6]]
    assert {record["result"] for record in feats.validation} == {"passed"}


def test_the_first_check_costs_its_validated_capture_and_its_comparison(monkeypatch):
    import time

    from torchlens_like.extract import extraction

    recorded = []

    class Recording(CheckSchedule):
        def record(self, seconds):
            recorded.append(seconds)
            super().record(seconds)

    real_check = extraction.check_saved_activations

    def slow_check(model, inputs):
        time.sleep(0.2)
        return real_check(model, inputs)

    monkeypatch.setattr(extraction, "CheckSchedule", Recording)
    monkeypatch.setattr(extraction, "check_saved_activations", slow_check)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU()).eval()
    data = torch.utils.data.TensorDataset(torch.rand(6, 3))
    tll.extract_features(model, data, ["1"], batch_size=2, progress=False)
    # the probe's validated capture is the first check: its time is that check's cost, on which
    # the schedule bases when the next check fits
    assert len(recorded) == 1 and recorded[0] >= 0.2
