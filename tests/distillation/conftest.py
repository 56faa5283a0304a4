"""Distillation tests run single-threaded: the 2-core CI box is shared, and tiny models gain nothing from threads."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
