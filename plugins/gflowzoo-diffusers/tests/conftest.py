"""Test setup of the diffusers plugin: run each test module with one torch thread.

U-Net convolutions and attention with two threads on a shared, oversubscribed 2-core machine ran 5-20x slower than
with one (the plugin's suite: 204 s against 33 s). The previous thread count is restored after each module, so tests
outside this folder are unaffected.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
