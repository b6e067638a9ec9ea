"""Stimulus sets: the first stimuli are read in the calling process; loaders must batch; image
folders are datasets a torchvision user can batch."""

import functools

import numpy as np
import pytest
import torch
import torchvision

import torchlens_like as tll
from stimulus_images import SMALL_TRANSFORM, transformed
from torchlens_like.extract import StimulusError
from torchlens_like.extract.stimuli import as_stimulus_set


def _mark_worker_started(marker, worker_id):
    marker.touch()


def test_leading_batches_of_a_loader_are_its_first_inputs_and_start_no_worker(tmp_path):
    data = torch.utils.data.TensorDataset(torch.rand(10, 3), torch.arange(10))
    marker = tmp_path / "worker-started"
    loader = torch.utils.data.DataLoader(data, batch_size=4, num_workers=2,
                                         worker_init_fn=functools.partial(_mark_worker_started,
                                                                          marker))
    stimuli = as_stimulus_set(loader)

    first, inputs, errors = next(stimuli.leading_batches(3))

    assert not marker.exists()
    assert (first, errors) == (0, [])
    assert torch.equal(inputs, next(iter(loader))[0][:3])
    assert marker.exists(), "the loader itself must start workers, or the check above proves nothing"


def test_leading_batches_of_a_folder_name_an_unreadable_file(image_root):
    paths = sorted(image_root.rglob("img*"))
    paths[1].write_bytes(b"not an image")
    stimuli = as_stimulus_set(tll.ImageFolder(image_root, SMALL_TRANSFORM), num_workers=2)

    batches = list(stimuli.leading_batches(3))

    assert [first for first, _, _ in batches] == [0, 3, 6]
    first, inputs, errors = batches[0]
    assert [index for index, _ in errors] == [1] and str(paths[1]) in errors[0][1]
    torch.testing.assert_close(inputs, transformed([paths[0], paths[2]]))
    assert sum(len(x) + len(e) for _, x, e in batches) == len(paths)


def test_a_loader_that_does_not_batch_is_refused():
    data = torch.utils.data.TensorDataset(torch.rand(4, 3))
    with pytest.raises(ValueError, match="batch_size=None"):
        as_stimulus_set(torch.utils.data.DataLoader(data, batch_size=None))
    batches = torch.utils.data.BatchSampler(range(4), batch_size=3, drop_last=False)
    stimuli = as_stimulus_set(torch.utils.data.DataLoader(data, batch_sampler=batches))
    assert [len(x) for _, x, _ in stimuli.batches(0, 4, 3)] == [3, 1]


def test_image_folder_items_collate_like_torchvision_image_folder(image_root):
    ours = tll.ImageFolder(image_root, SMALL_TRANSFORM)
    theirs = torchvision.datasets.ImageFolder(str(image_root), SMALL_TRANSFORM)
    assert ours.classes == theirs.classes and ours.class_to_idx == theirs.class_to_idx
    batches = zip(torch.utils.data.DataLoader(ours, batch_size=3),
                  torch.utils.data.DataLoader(theirs, batch_size=3))
    for (images, targets), (expected_images, expected_targets) in batches:
        torch.testing.assert_close(images, expected_images, rtol=0, atol=0)
        assert torch.equal(targets, expected_targets)


def test_an_unreadable_image_raises_naming_it_in_a_users_loader_and_is_skipped_in_extraction(
        image_root):
    paths = sorted(image_root.rglob("img*"))
    paths[1].write_bytes(b"not an image")
    folder = tll.ImageFolder(image_root, SMALL_TRANSFORM)
    with pytest.raises(StimulusError, match=str(paths[1].relative_to(image_root))):
        list(torch.utils.data.DataLoader(folder, batch_size=2))
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3)).eval()
    features = tll.extract_features(model, folder, ["0"], batch_size=2, progress=False,
                                    num_workers=0, on_error="skip")
    assert list(features.skipped) == [1]
    assert np.isnan(features["0"][1]).all() and not np.isnan(features["0"][[0, 2]]).any()


def test_a_reading_worker_stays_quiet_about_a_hand_over_broken_by_an_interrupt():
    import multiprocessing.connection
    import multiprocessing.resource_sharer
    import os
    import sys
    import threading

    from torchlens_like.extract.stimuli import _quiet_about_broken_handovers

    raised, reported, hook_ran = [], [], threading.Event()
    quiet = _quiet_about_broken_handovers(lambda exc_type, exc, traceback: reported.append(exc_type))

    def excepthook(exc_type, exc, traceback):
        raised.append(exc_type)
        quiet(exc_type, exc, traceback)
        hook_ran.set()

    previous = sys.excepthook
    sys.excepthook = excepthook
    read_end, write_end = os.pipe()
    try:
        handed = multiprocessing.resource_sharer.DupFd(read_end)  # starts the hand-over thread
        address = multiprocessing.resource_sharer._resource_sharer._address
        authkey = multiprocessing.process.current_process().authkey
        # a taker that stops before asking for its descriptor, as an interrupted main process does
        multiprocessing.connection.Client(address, authkey=authkey).close()
        assert hook_ran.wait(timeout=10)
        assert issubclass(raised[0], (EOFError, OSError)) and reported == []
        sys.excepthook(ValueError, ValueError("raised elsewhere"), None)
        assert reported == [ValueError]
    finally:
        sys.excepthook = previous
        multiprocessing.resource_sharer._resource_sharer.stop(timeout=5)
        os.close(read_end)
        os.close(write_end)
        del handed
