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


@pytest.fixture
def study(tmp_path, monkeypatch):
    """A tiny ImageFolder (digits, 10 classes) and the CPU study's outputs redirected into tmp_path; its protocol cut
    to one epoch on 64 images (the studies across networks reuse it)."""
    import torch
    from PIL import Image

    from sharpness.studies import cpu_study, registry
    from sharpness.training.data import load_dataset

    digits = load_dataset("digits")
    for split, images, labels, per_class in (("train", digits.train_images, digits.train_labels, 8),
                                             ("test", digits.test_images, digits.test_labels, 3)):
        for c in range(10):
            folder = tmp_path / "pack" / split / f"class{c}"
            folder.mkdir(parents=True)
            for i, index in enumerate(torch.nonzero(labels == c).flatten()[:per_class]):
                Image.fromarray(images[index].permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    monkeypatch.setitem(registry.PROTOCOL, "train_images", 64)
    for key, value in dict(epochs=1, slow_measure_images=16, sam_draws=2, hessian_iterations=1, corruption_images=20,
                           landscape_resolution=3, landscape_images=16).items():
        monkeypatch.setitem(registry.PROTOCOL, key, value)
    for name in ("STUDY_DIR", "CORRUPTED_DIR", "SURFACES_DIR"):
        monkeypatch.setattr(cpu_study, name, tmp_path / name.lower())
    monkeypatch.setattr(cpu_study, "GRID_FILE", tmp_path / "grid.json")
    monkeypatch.setattr(cpu_study, "RHO_GRID_FILE", tmp_path / "grid_rho.json")
    return tmp_path
