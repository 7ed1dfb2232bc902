"""Shared test fixtures (small and generic on purpose)."""

from __future__ import annotations

import os
import shutil
import socket
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parent.parent
#: where tests leave screenshots and other artefacts (git-ignored)
ARTIFACTS = REPO / "test-artifacts"
#: the browser the Playwright tests drive (Debian's chromium; never `playwright install`)
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def untrained_cascade():
    """A seeded cascade with random weights (deterministic; its scores mean nothing)."""
    from mire2e_viz.cascade import Cascade

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return Cascade.untrained_model(seed=0, device="cpu")


@pytest.fixture(scope="session")
def demo_record():
    """The chr19 miR-23a/27a/24-2 locus (459 nt, GRCh38 coordinates), from the data directory."""
    from mire2e_viz import datasets

    return datasets.demo_record()


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """``test-artifacts/`` at the repository root (created)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Path of the Chromium binary; fails (never skips) when it is missing."""
    path = CHROMIUM if os.path.isabs(CHROMIUM) else shutil.which(CHROMIUM)
    if not path or not os.access(path, os.X_OK):
        pytest.fail(
            f"Chromium not found at {CHROMIUM!r}: the browser tests need it. "
            "Install it with `make browser` (Debian: apt-get install chromium) or set CHROMIUM=/path/to/chromium.",
            pytrace=False,
        )
    return path
