"""Shared test setup: one compiled-graph cache for the whole run.

Compiling the op costs ~20 s per dtype on the CPU, so the tests share one
cache folder under .pytest_cache (kept between local runs, empty on a fresh
clone) and the process-wide engine. Tests of the cache itself use their own
empty folders.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SESSION_CACHE = Path(__file__).resolve().parent.parent / ".pytest_cache" / "maxconv-graphs"
os.environ.setdefault("MAXCONV_CACHE_DIR", str(SESSION_CACHE))
# A developer's running `maxconv serve` must not serve the suite's
# subprocesses (tests of the server start their own, with their own folder).
os.environ.setdefault("MAXCONV_SERVER", "off")


@pytest.fixture(autouse=True)
def _refuse_process_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI ends its process with os._exit (cli.run_and_exit); reached inside
    pytest, that would end the whole run with the command's code, 0 included:
    a green run that never finished. Here it fails the test instead."""

    def refuse(code: int) -> None:
        raise AssertionError(f"os._exit({code}) inside the test process")

    monkeypatch.setattr(os, "_exit", refuse)


@pytest.fixture(scope="session")
def cpu_engine():  # noqa: ANN201
    """A CPU engine for the jobs and streams that tests hand one (the process-wide one,
    so that its compiled graphs are loaded once)."""
    from maxconv.engine import get_engine

    return get_engine("cpu")


def gpu_available() -> bool:
    from maxconv.devices import gpu_count

    return gpu_count() > 0


@pytest.fixture(scope="session")
def gpu_device() -> str:
    """The GPU device string; GPU tests are deselected unless run with -m gpu."""
    if not gpu_available():
        pytest.fail("test marked gpu but MAX sees no GPU; run -m gpu only on the GPU machine")
    return "gpu"
