"""Host taps kept by value on an engine (their spectra and device copy), and which
FFT-op calls may be replayed from a captured device graph.

The CPU tests drive the engine's bookkeeping; the `gpu` tests run torch
signals with numpy taps through the public API (their FFT calls replay once
the taps' spectrum is ready) against scipy in float64.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

import maxconv
import maxconv.engine as engine_module
from maxconv.engine import Engine, get_engine
from maxconv.planning import GPU_FUSED_POINTS, gpu_fft_single_kernel

OPS = Path(maxconv.__file__).parent / "ops"


def test_spectra_found_by_value_not_by_array():
    """Equal taps in another array find the spectrum; the same array changed
    in place does not (its values are what is compared)."""
    engine = Engine("cpu")
    taps = np.arange(700, dtype=np.float32).reshape(1, 700)
    first, ready = engine.spectrum(taps, 4096)
    assert not ready
    assert engine.spectrum(taps.copy(), 4096) == (first, True)
    assert engine.spectrum(taps, 8192)[1] is False  # another block length
    assert engine.spectrum(taps.astype(np.float64), 4096)[1] is False  # another dtype
    assert engine.spectrum(taps.reshape(2, 350), 4096)[1] is False  # another shape
    taps[0, 699] += 1.0
    assert engine.spectrum(taps, 4096)[1] is False


def test_least_recently_used_taps_go_first():
    engine = Engine("cpu")
    rows = [np.full((1, 300), float(i), np.float32) for i in range(engine_module.SPECTRA_KEPT + 1)]
    for taps in rows[:-1]:
        engine.spectrum(taps, 2048)
    engine.spectrum(rows[0], 2048)  # rows[0] used last: rows[1] goes first
    engine.spectrum(rows[-1], 2048)
    assert engine.spectrum(rows[0], 2048)[1]
    assert not engine.spectrum(rows[1], 2048)[1]


def test_many_row_taps_are_not_kept():
    engine = Engine("cpu")
    taps = np.ones((engine_module.SPECTRA_MAX_ROWS + 1, 40), np.float32)
    assert engine.spectrum(taps, 1024) is None
    assert engine.device_taps(taps, 1024)[1] is None
    assert engine.device_taps(taps)[0] is not engine.device_taps(taps)[0]


def test_device_taps_kept_as_a_copy():
    """Equal host taps give the same device buffer (so calls can repeat their
    buffers), holding a copy: the caller's array changed later leaves it alone."""
    engine = Engine("cpu")
    taps = np.arange(64, dtype=np.float32).reshape(1, 64)
    buffer, spectrum = engine.device_taps(taps)
    assert spectrum is None  # block 0: no spectrum asked for
    assert engine.device_taps(taps.copy())[0] is buffer
    taps[0, 0] = 100.0
    assert engine.device_taps(taps)[0] is not buffer
    assert buffer.to_numpy()[0, 0] == 0.0


def test_device_taps_with_their_spectrum():
    """One lookup gives the device copy and the spectrum, shared with `spectrum`."""
    engine = Engine("cpu")
    taps = np.arange(300, dtype=np.float32).reshape(1, 300)
    buffer, (first, ready) = engine.device_taps(taps, 2048)
    assert not ready
    assert engine.device_taps(taps.copy(), 2048) == (buffer, (first, True))
    assert engine.spectrum(taps, 2048) == (first, True)
    assert engine.device_taps(taps, 4096)[1][1] is False


def test_single_kernel_calls():
    """The fused kernel's L range: K and block round up to a power of two of at least 64."""
    assert gpu_fft_single_kernel(1024, 4096, "float32")
    assert gpu_fft_single_kernel(4096, 16384, "float32")
    assert gpu_fft_single_kernel(100, 200, "float32")  # L = 256
    assert not gpu_fft_single_kernel(100, 100, "float32")  # L = 128: the old kernels
    assert not gpu_fft_single_kernel(8192, 16385, "float32")  # L = 32768: staged
    assert not gpu_fft_single_kernel(20_000, 16384, "float32")  # K > block: L = 32768
    assert not gpu_fft_single_kernel(1024, 4096, "float64")


def test_fused_range_matches_the_op():
    """GPU_FUSED_POINTS is the Mojo op's FUSED_MIN_LOG .. FUSED_MAX_LOG."""
    source = (OPS / "fft_gpu_fused.mojo").read_text()
    logs = [
        int(re.search(rf"comptime {name} = (\d+)", source).group(1))
        for name in ("FUSED_MIN_LOG", "FUSED_MAX_LOG")
    ]
    assert (1 << logs[0], 1 << logs[1]) == GPU_FUSED_POINTS


class Recorder:
    """Stands in for an engine's DeviceGraphs: records the calls it is given
    and executes them, so the result is still computed."""

    def __init__(self) -> None:
        self.calls = 0

    def run(self, model, buffers) -> None:
        self.calls += 1
        engine_module.execute(model, buffers)


@pytest.mark.parametrize(
    ("dtype", "n_taps", "block", "ready", "replayed"),
    [
        (np.float32, 700, 4096, True, True),
        (np.float32, 700, 4096, False, False),  # the spectrum is computed in the call
        (np.float64, 700, 4096, True, False),
        (np.float32, 700, 32768, True, False),  # staged: scratch allocated in the call
    ],
)
def test_fft_calls_replayed_only_as_one_kernel(dtype, n_taps, block, ready, replayed):
    """`replay` reaches the device graphs only for a fused call with its spectrum
    ready; the result is right either way."""
    from max import driver

    engine = Engine("cpu")
    recorder = Recorder()
    engine.graphs = recorder
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 10_000)).astype(dtype)
    h = rng.standard_normal((1, n_taps)).astype(dtype)
    spectrum = engine.spectrum(h, block)
    if ready:  # computed by an earlier call
        out = np.empty((1, 10_000), dtype)
        engine.correlate(
            *map(driver.Buffer.from_numpy, (out, x, h)), n_taps - 1, "fft", block, spectrum
        )
        spectrum = engine.spectrum(h, block)
        assert spectrum[1]
    out = np.empty((1, 10_000), dtype)
    buffers = map(driver.Buffer.from_numpy, (out, x, h))
    engine.correlate(*buffers, n_taps - 1, "fft", block, spectrum, replay=True)
    assert recorder.calls == int(replayed)
    expected = scipy.signal.correlate(x[0].astype(np.float64), h[0].astype(np.float64))[:10_000]
    np.testing.assert_allclose(out[0], expected, atol=1e-4 * np.abs(expected).max())


@pytest.mark.gpu
@pytest.mark.parametrize("n_taps", [1024, 4096, 20_000])
def test_torch_signal_numpy_taps_fft_loop(gpu_device, n_taps):
    """A loop of FFT calls on one torch signal and out= with numpy taps: from the
    third call on the fused ones (K = 1024, 4096) replay from a captured graph;
    each call reads the values written just before it, and taps changed in
    place are found changed (compared by value). scipy in float64 checks
    every result."""
    torch = pytest.importorskip("torch")
    engine = get_engine("gpu")
    rng = np.random.default_rng(n_taps)
    n = 1 << 18
    h = rng.standard_normal(n_taps).astype(np.float32)
    x = torch.empty(n, device="cuda")
    out = torch.empty(n - n_taps + 1, device="cuda")
    graphs_before = set(engine.graphs._graphs)  # at most GRAPHS_KEPT: new keys, not a count
    for step in range(6):
        if step == 4:
            h[::7] *= -2.0  # new values in the same array
        values = rng.standard_normal(n).astype(np.float32)
        x.copy_(torch.from_numpy(values))
        maxconv.correlate(x, h, "valid", method="fft", out=out)
        expected = scipy.signal.correlate(values.astype(np.float64), h.astype(np.float64), "valid")
        got = out.cpu().numpy()
        assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()
    captured = bool(set(engine.graphs._graphs) - graphs_before)
    assert captured == gpu_fft_single_kernel(
        n_taps, engine.fft_block(n_taps, n - n_taps + 1, np.float32), "float32"
    )


class YieldingTaps(np.ndarray):
    """Taps whose shape, read at every comparison of a lookup, hands the
    interpreter to another thread first: the lookups of several threads
    then interleave inside the engine's search of its kept taps."""

    @property
    def shape(self):  # noqa: ANN201
        time.sleep(1e-5)
        return super().shape


def test_kept_taps_shared_by_threads():
    """Batch workers share an engine: concurrent lookups (evicting one another)
    raise nothing and always give the device copy of the taps asked for."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    engine = Engine("cpu")
    kinds = engine_module.SPECTRA_KEPT + 2
    rows = [np.full((1, 50), float(i), np.float32).view(YieldingTaps) for i in range(kinds)]

    def lookups(seed: int) -> list[int]:
        pick = random.Random(seed)
        wrong = []
        for _ in range(200):
            i = pick.randrange(len(rows))
            if engine.device_taps(rows[i], 1024)[0].to_numpy()[0, 0] != float(i):
                wrong.append(i)
        return wrong

    with ThreadPoolExecutor(4) as pool:
        results = [future.result() for future in [pool.submit(lookups, s) for s in range(4)]]
    assert results == [[], [], [], []]
