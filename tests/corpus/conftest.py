"""Shared settings of the corpus tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Torch single-threaded: on a small shared machine, OpenMP threads spinning while other
    processes hold the cores slow small tensor ops down by two orders of magnitude."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
