"""Rows through an op: a slice of the full correlation of each row, without tiles.

full[r, m] = sum_j x[r, m - (K-1) + j] * taps[r, j], x zero outside [0, N).
Outputs [start, start + count) of it are one op call whose P leading zeros
(P = K - 1 - start) the op supplies itself; a start past K - 1 instead
starts the signal later. On the CPU the op reads the caller's numpy memory
and writes the result array in place (MAX's `Buffer.from_numpy` shares
memory), so nothing is copied. On a GPU each sample crosses the bus once
each way, in chunks that bound device memory: rows are grouped, or a long
row cut along its outputs with the K-1 samples before each chunk.
"""

from __future__ import annotations

import numpy as np
from max import driver

from .engine import Engine

# Outputs (and about as many inputs) a GPU chunk carries from host arrays:
# 2^24 float32 samples are 64 MB each way, enough to keep the bus busy and
# small beside the device's memory.
GPU_CHUNK_SAMPLES = 1 << 24


def result_rows(signal: np.ndarray, taps: np.ndarray) -> int:
    """Rows of the result: one per signal row and taps row (one of them may be 1)."""
    return max(signal.shape[0], taps.shape[0])


def correlate_rows(
    engine: Engine,
    signal: np.ndarray,
    taps: np.ndarray,
    start: int,
    count: int,
    method: str = "auto",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Outputs [start, start + count) of the full correlation of each row.

    `signal` [Rs, N] and `taps` [Rk, K] share a float dtype; Rs and Rk are
    equal or one of them is 1 (broadcast). Returns `out` (or a new array)
    [R, count], R = max(Rs, Rk). `method` 'auto' takes the FFT op where it
    wins on this device.
    """
    n_taps = taps.shape[1]
    rows = result_rows(signal, taps)
    if out is None:
        out = np.empty((rows, count), dtype=signal.dtype)
    if count == 0 or rows == 0:
        return out
    method = engine.resolve_method(method, n_taps)
    block = engine.fft_block(n_taps, count) if method == "fft" else 1
    pad = n_taps - 1 - start
    if pad < 0:
        signal = np.ascontiguousarray(signal[:, -pad:])
        pad = 0
    signal = np.ascontiguousarray(signal)
    taps = np.ascontiguousarray(taps)
    if engine.kind == "cpu":
        engine.correlate(
            driver.Buffer.from_numpy(out),
            driver.Buffer.from_numpy(_nonempty(signal)),
            driver.Buffer.from_numpy(taps),
            pad,
            method,
            block,
        )
        return out
    if signal.shape[1] == 0:
        out[...] = 0
        return out
    if count >= GPU_CHUNK_SAMPLES or rows == 1:
        _gpu_long_rows(engine, out, signal, taps, pad, method, block)
    else:
        _gpu_row_groups(engine, out, signal, taps, pad, method, block)
    engine.device.synchronize()
    return out


def _nonempty(signal: np.ndarray) -> np.ndarray:
    """A signal of zero samples as one zero sample (the op needs N >= 1; same result)."""
    if signal.shape[1] > 0:
        return signal
    return np.zeros((signal.shape[0], 1), signal.dtype)


def _to_device(engine: Engine, role: str, host: np.ndarray) -> driver.Buffer:
    """Copy a contiguous host array into a reused device buffer of its shape."""
    device = engine.device_buffer(role, host.shape, host.dtype)
    device.inplace_copy_from(driver.Buffer.from_numpy(host))
    return device


def _gpu_long_rows(
    engine: Engine,
    out: np.ndarray,
    signal: np.ndarray,
    taps: np.ndarray,
    pad: int,
    method: str,
    block: int,
) -> None:
    """Each row cut along its outputs: chunk [a, b) needs the signal from a - pad
    to b - pad + K - 1 (clipped to the row), its own leading zeros past the start."""
    length, n_taps = signal.shape[1], taps.shape[1]
    count = out.shape[1]
    shared_taps = engine.to_device(taps) if taps.shape[0] == 1 else None
    chunk = GPU_CHUNK_SAMPLES
    for row in range(out.shape[0]):
        taps_dev = shared_taps if shared_taps is not None else engine.to_device(taps[row : row + 1])
        source = signal[row if signal.shape[0] > 1 else 0]
        for first in range(0, count, chunk):
            last = min(count, first + chunk)
            low = max(0, first - pad)
            high = min(length, last - pad + n_taps - 1)
            if high <= low:  # every window of the chunk lies outside the signal
                out[row, first:last] = 0
                continue
            segment = source[np.newaxis, low:high]
            result = engine.device_buffer("out", (1, last - first), out.dtype)
            engine.correlate(
                result,
                _to_device(engine, "signal", segment),
                taps_dev,
                pad - first + low,
                method,
                block,
            )
            driver.Buffer.from_numpy(out[row : row + 1, first:last]).inplace_copy_from(result)


def _gpu_row_groups(
    engine: Engine,
    out: np.ndarray,
    signal: np.ndarray,
    taps: np.ndarray,
    pad: int,
    method: str,
    block: int,
) -> None:
    """Whole rows, as many a call as fit GPU_CHUNK_SAMPLES."""
    rows, count = out.shape
    width = max(count, signal.shape[1])
    per_call = max(1, GPU_CHUNK_SAMPLES // width)
    shared_signal = _to_device(engine, "signal", signal) if signal.shape[0] == 1 else None
    shared_taps = engine.to_device(taps) if taps.shape[0] == 1 else None
    for first in range(0, rows, per_call):
        last = min(rows, first + per_call)
        signal_dev = shared_signal
        if signal_dev is None:
            signal_dev = _to_device(engine, "signal", signal[first:last])
        taps_dev = shared_taps
        if taps_dev is None:
            taps_dev = _to_device(engine, "taps", taps[first:last])
        result = engine.device_buffer("out", (last - first, count), out.dtype)
        engine.correlate(result, signal_dev, taps_dev, pad, method, block)
        driver.Buffer.from_numpy(out[first:last]).inplace_copy_from(result)
