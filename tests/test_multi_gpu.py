"""Every GPU of a host: run on the two-GPU machine (``-m gpu``); they fail on fewer GPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
from typer.testing import CliRunner

import maxconv
from maxconv.cli import app
from maxconv.devices import gpu_count

pytestmark = pytest.mark.gpu

ONE_PROCESS = """
import sys, numpy as np, maxconv
x, h = np.arange(4096.0, dtype=np.float32), np.ones(33, np.float32)
for device in sys.argv[1:]:
    np.testing.assert_allclose(maxconv.correlate(x, h, device=device), np.correlate(x, h, "full"),
                               rtol=1e-5)
print("ok")
"""


@pytest.fixture
def two_gpus(gpu_device) -> None:
    if gpu_count() < 2:
        pytest.fail("needs a host with two GPUs (the nvidia-h200-x2 machine)")


def test_every_gpu_in_any_order_from_one_cache(two_gpus, tmp_path):
    """gpu:1 after gpu:0 filled the graph cache and the reverse, in one process and
    across processes sharing the cache folder (issue 14's bug: a cached graph was
    bound to the GPU it was built for)."""
    env = {**os.environ, "MAXCONV_CACHE_DIR": str(tmp_path / "cache")}
    for order in (["gpu:0", "gpu:1"], ["gpu:1", "gpu:0"]):
        done = subprocess.run(
            [sys.executable, "-c", ONE_PROCESS, *order], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]
    for device in ("gpu:1", "gpu:0"):  # each in a new process, the cache already full
        done = subprocess.run(
            [sys.executable, "-c", ONE_PROCESS, device], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]


def test_batch_on_every_gpu_matches_scipy(two_gpus):
    rng = np.random.default_rng(4)
    signals = [rng.standard_normal(int(n)).astype(np.float32) for n in rng.integers(900, 5000, 24)]
    kernels = [rng.standard_normal(int(k)).astype(np.float32) for k in rng.integers(1, 700, 24)]
    results = maxconv.convolve_batch(signals, kernels, device="gpu:all")
    for signal, kernel, result in zip(signals, kernels, results, strict=True):
        expected = scipy.signal.convolve(signal.astype(np.float64), kernel.astype(np.float64))
        np.testing.assert_allclose(result, expected, atol=2e-4 * np.abs(expected).max())


def test_augment_on_every_gpu_equals_one_gpu(two_gpus, tmp_path):
    """`maxconv augment --device gpu:all` uses both GPUs and writes what one GPU writes."""
    rng = np.random.default_rng(5)
    (tmp_path / "clips").mkdir()
    (tmp_path / "rirs").mkdir()
    for index in range(40):
        x = 0.1 * rng.standard_normal(4800 + 37 * index)
        sf.write(tmp_path / "clips" / f"c{index:02d}.wav", x, 48000, subtype="PCM_16")
    for index in range(3):
        h = rng.standard_normal(700 + 300 * index) * np.exp(-np.arange(700 + 300 * index) / 200)
        sf.write(tmp_path / "rirs" / f"r{index}.wav", h.astype(np.float32), 48000, "FLOAT")
    runner = CliRunner()
    outputs = {}
    for device in ("gpu:0", "gpu:all"):
        out = tmp_path / device.replace(":", "-")
        result = runner.invoke(app, ["augment", str(tmp_path / "clips"), "-r",
                                     str(tmp_path / "rirs"), "-o", str(out), "--device", device,
                                     "--group", "4", "--json"])  # fmt: skip
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["done"] == 40 and report["failed"] == 0
        outputs[device] = (out, report)
    assert outputs["gpu:all"][1]["devices"] == [f"gpu:{i}" for i in range(gpu_count())]
    one, every = outputs["gpu:0"][0], outputs["gpu:all"][0]
    for path in sorted(one.rglob("*.wav")):
        a = sf.read(path)[0]
        b = sf.read(every / path.relative_to(one))[0]
        np.testing.assert_allclose(a, b, atol=2 / 32768)
