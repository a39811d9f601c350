"""Shared test settings."""

import pytest

from sharpness.core.threads import single_cpu_thread


@pytest.fixture(autouse=True, scope="session")
def one_cpu_thread():
    """The suite runs tiny models and tensors, for which one intra-op thread is fastest (see threads.py)."""
    with single_cpu_thread():
        yield
