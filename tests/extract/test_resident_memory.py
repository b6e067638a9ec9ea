"""No batch's tensors outlive its pass, so resident memory does not grow with the stimuli.

Resident memory itself is measured by benchmarks/extraction_speed.py (peak
RSS for two set sizes, each in a fresh process); here the cause it had is
checked without timing or memory noise: with automatic garbage collection
off, tensors left in reference cycles by the passes would pile up batch after
batch.
"""

import gc

import pytest
import torch

import torchlens_like as tll


def _live_tensors():
    return sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects())


@pytest.mark.parametrize("early_stop", [True, False])
def test_no_tensor_of_a_batch_outlives_the_extraction(image_root, small_model, early_stop,
                                                      tmp_path):
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        before = _live_tensors()
        tll.extract_features(small_model, str(image_root), ["layer1", "add_1"], batch_size=1,
                             output_dir=str(tmp_path / "out"), progress=False, num_workers=0,
                             early_stop=early_stop)
        left = _live_tensors() - before
    finally:
        if was_enabled:
            gc.enable()
    assert left == 0, f"{left} tensors of the batches are still alive"
