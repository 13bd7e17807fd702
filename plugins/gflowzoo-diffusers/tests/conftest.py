"""Test setup of the diffusers plugin. The repository's root conftest runs torch with one thread (U-Net convolutions
and attention on a shared 2-core machine ran 5-20x slower with two); this keeps that when the plugin's tests run
on their own."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
