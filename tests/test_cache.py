"""The compiled-graph cache: hits, bad entries, unwritable folders, two processes.

Most tests feed the cache a real compiled model read back from the session's
cache entry (no 20 s compile); the two-process test compiles for real into
an empty folder, since that race is what it checks.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from max import driver, engine
from max.dtype import DType

from maxconv.cache import MAGIC, CacheWarning, GraphCache
from maxconv.engine import get_engine

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def good_payload() -> bytes:
    """A valid MEF (float32 conv1d on the CPU), from the shared test cache."""
    cpu = get_engine("cpu")
    cpu.model(np.float32)
    blob = cpu.cache.entry_path(cpu.graph_key(np.float32)).read_bytes()
    return blob[len(MAGIC) + 32 :]


class CountingCompiler:
    """Stands in for session.compile: counts calls, returns a real model."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.calls = 0

    def __call__(self) -> engine.CompiledModel:
        self.calls += 1
        return engine.read(io.BytesIO(self.payload))


def run_model(compiled: engine.CompiledModel) -> np.ndarray:
    session = engine.InferenceSession(devices=[driver.CPU()])
    model = session.init(compiled)
    signal = np.arange(15, dtype=np.float32).reshape(1, 15)
    taps = np.arange(4, dtype=np.float32).reshape(1, 4)
    out = np.full((1, 15), np.nan, np.float32)
    window = driver.Buffer(DType.int8, (0, 1, 0, 0))  # no leading zeros: conv1d's outputs
    model.execute(
        driver.Buffer.from_numpy(out),
        driver.Buffer.from_numpy(signal),
        driver.Buffer.from_numpy(taps),
        window,
    )
    return out.ravel()


EXPECTED = [14, 20, 26, 32, 38, 44, 50, 56, 62, 68, 74, 80, 41, 14, 0]


def test_compile_once_then_hit(tmp_path: Path, good_payload: bytes):
    compiler = CountingCompiler(good_payload)
    first, status = GraphCache(tmp_path).get_or_compile(KEY, compiler)
    assert status == "compiled" and compiler.calls == 1
    again, status = GraphCache(tmp_path).get_or_compile(KEY, compiler)
    assert status == "hit" and compiler.calls == 1
    np.testing.assert_array_equal(run_model(again), EXPECTED)
    assert [p.name for p in GraphCache(tmp_path).entries()] == [f"conv1d-{KEY}.mef"]
    assert not list(tmp_path.glob(".*.part")), "temporary files left behind"


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda blob: blob[: len(blob) // 2], id="truncated"),
        pytest.param(
            lambda blob: blob[:-100] + bytes(b ^ 0xFF for b in blob[-100:]), id="bit-flipped"
        ),
        pytest.param(lambda blob: b"", id="empty"),
        pytest.param(lambda blob: b"not a cache entry at all", id="foreign"),
    ],
)
def test_bad_entry_is_rebuilt_with_one_warning(tmp_path: Path, good_payload: bytes, damage):
    cache = GraphCache(tmp_path)
    compiler = CountingCompiler(good_payload)
    cache.get_or_compile(KEY, compiler)
    entry = cache.entry_path(KEY)
    entry.write_bytes(damage(entry.read_bytes()))
    with pytest.warns(CacheWarning, match="corrupt; recompiling") as caught:
        compiled, status = GraphCache(tmp_path).get_or_compile(KEY, compiler)
    assert status == "rebuilt" and compiler.calls == 2 and len(caught) == 1
    np.testing.assert_array_equal(run_model(compiled), EXPECTED)
    assert GraphCache(tmp_path).get_or_compile(KEY, compiler)[1] == "hit"


def test_checksummed_garbage_rejected_by_max_is_rebuilt(tmp_path: Path, good_payload: bytes):
    import hashlib

    cache = GraphCache(tmp_path)
    garbage = b"\x00MEF?" * 100
    cache.entry_path(KEY).write_bytes(MAGIC + hashlib.sha256(garbage).digest() + garbage)
    compiler = CountingCompiler(good_payload)
    with pytest.warns(CacheWarning, match="rejected by MAX"):
        _, status = cache.get_or_compile(KEY, compiler)
    assert status == "rebuilt" and compiler.calls == 1


def test_unwritable_folder_compiles_in_memory_with_one_warning(tmp_path: Path, good_payload: bytes):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    cache = GraphCache(blocker / "cache")
    compiler = CountingCompiler(good_payload)
    with pytest.warns(CacheWarning, match="not writable") as caught:
        for _ in range(3):
            compiled, status = cache.get_or_compile(KEY, compiler)
            assert status == "uncached"
    assert len(caught) == 1 and compiler.calls == 3
    np.testing.assert_array_equal(run_model(compiled), EXPECTED)


def test_clear_removes_entries(tmp_path: Path, good_payload: bytes):
    cache = GraphCache(tmp_path)
    cache.get_or_compile(KEY, CountingCompiler(good_payload))
    assert cache.size_bytes() > 0
    assert cache.clear() == 1
    assert cache.entries() == [] and cache.size_bytes() == 0


def test_env_var_picks_the_folder(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("MAXCONV_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert GraphCache().root == tmp_path / "elsewhere"


CHILD = textwrap.dedent(
    """
    import json, numpy as np
    from maxconv.engine import Engine
    from maxconv.rows import correlate_rows
    e = Engine("cpu")
    signal = np.arange(15, dtype=np.float32).reshape(1, 15)
    out = correlate_rows(e, signal, np.arange(4, dtype=np.float32).reshape(1, 4), 3, 15, "direct")
    print(json.dumps({"status": e.stats.cache_status["float32"], "out": out.ravel().tolist()}))
    """
)


def test_two_processes_fill_an_empty_cache_at_once(tmp_path: Path):
    env = {**os.environ, "MAXCONV_CACHE_DIR": str(tmp_path)}
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    reports = []
    for child in children:
        out, _ = child.communicate(timeout=600)
        assert child.returncode == 0
        reports.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["status"] for r in reports) == ["compiled", "hit"]
    for report in reports:
        assert report["out"] == EXPECTED
    assert len(GraphCache(tmp_path).entries()) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert GraphCache(tmp_path)._read(GraphCache(tmp_path).entries()[0].stem[7:])[0] is not None
