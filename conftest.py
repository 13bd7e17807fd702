"""Test-session setup shared by tests/ and plugins/*/tests: installed third-party plugins are not loaded unless a
test asks for them (``gflowzoo.testing.plugins_loaded``), runs stay on the CPU, and nothing reaches a hub."""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# commands run in-process must not switch the test process to the auto thread policy (gflowzoo.threads); subprocesses
# inherit it too. tests/test_threads.py removes it where it tests the policy.
os.environ.setdefault("GFLOWZOO_THREADS", "1")


def pytest_configure(config):
    sys._called_from_test = True
    try:
        import torch

        # the test networks are tiny: one thread avoids synchronisation overhead, and on a shared, loaded 2-core
        # machine two threads ran the plugin suites 5-20x slower than one
        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def pytest_unconfigure(config):
    if hasattr(sys, "_called_from_test"):
        del sys._called_from_test
