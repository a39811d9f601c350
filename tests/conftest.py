"""Shared test settings, and the explorer app served as `make explore` serves it."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sharpness.core.threads import single_cpu_thread


@pytest.fixture(autouse=True, scope="session")
def one_cpu_thread():
    """The suite runs tiny models and tensors, for which one intra-op thread is fastest (see threads.py)."""
    with single_cpu_thread():
        yield


ROOT = Path(__file__).resolve().parents[1]
# A bound for a failure, not an expectation: the Voila kernel imports torch and draws the first tab before the
# page shows it, which on a loaded 2-core machine can take minutes.
PAGE_TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def explorer_app_url():
    """The app served by the same command `make explore` runs, on a free port; stopped afterwards."""
    pytest.importorskip("voila", reason="voila is not installed (pip install -e '.[explore]')")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    server = subprocess.Popen(
        [sys.executable, "-m", "sharpness.book.figures.explore", f"--port={port}", "--no-browser"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + PAGE_TIMEOUT_S
    try:
        while True:
            if server.poll() is not None:
                pytest.fail(f"voila exited with {server.returncode}: {server.stderr.read()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"voila did not answer on {url} within {PAGE_TIMEOUT_S} s")
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
