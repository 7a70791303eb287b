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

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
from max import driver

from .engine import Engine
from .transfer import parallel_copy

# Outputs (and about as many inputs) a GPU chunk carries from host arrays:
# rows in groups of up to this many samples, a longer row cut into chunks of
# it. On an H200 (docs/data/augment-chunks-h200-2026-11-28.txt) larger chunks
# won at every size tried, 2^20 to 2^24: one row of 2^24 through 4 taps took
# 9.0 ms in one chunk, 14.2 in four; 1000 rows of 48,000 through 8,000 taps
# each 36 ms in groups of 2^24 samples, 57 of 2^22, 122 of 2^20 (each call's
# launches fill the GPU better). The pinned and device buffers grow to two
# chunks each way: 256 MB of float32.
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
    spectrum_key: Hashable | None = None,
    workers: int = 0,
) -> np.ndarray:
    """Outputs [start, start + count) of the full correlation of each row.

    `signal` [Rs, N] and `taps` [Rk, K] share a float dtype; Rs and Rk are
    equal or one of them is 1 (broadcast). Returns `out` (or a new array)
    [R, count], R = max(Rs, Rk). `method` 'auto' takes the FFT op where it
    wins on this device. `spectrum_key` names the taps for the engine's
    kept spectra (see Engine.spectrum; on the CPU); `workers` caps the CPU
    cores of the FFT op (0: all).
    """
    n_taps = taps.shape[1]
    rows = result_rows(signal, taps)
    if out is None:
        out = np.empty((rows, count), dtype=signal.dtype)
    if count == 0 or rows == 0:
        return out
    method = engine.resolve_method(method, n_taps)
    shared_rows = rows if taps.shape[0] == 1 else 1
    block = engine.fft_block(n_taps, count, out.dtype, shared_rows) if method == "fft" else 1
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
            spectrum=engine.spectrum(taps, block, spectrum_key) if method == "fft" else None,
            workers=workers,
        )
        engine.device.synchronize()
        return out
    if signal.shape[1] == 0:
        out[...] = 0
        return out
    _gpu_from_host(engine, out, signal, taps, pad, method, block)
    return out


def _nonempty(signal: np.ndarray) -> np.ndarray:
    """A signal of zero samples as one zero sample (the op needs N >= 1; same result)."""
    if signal.shape[1] > 0:
        return signal
    return np.zeros((signal.shape[0], 1), signal.dtype)


@dataclass(frozen=True)
class Chunk:
    """One op call of a host-to-GPU run: output rows and columns, the signal
    rows and columns they need, the zeros before those, and the taps rows."""

    rows: slice
    columns: slice
    signal_rows: slice
    signal_columns: slice
    pad: int
    taps_rows: slice


def plan_chunks(
    rows: int, count: int, signal_shape: tuple[int, int], taps_shape: tuple[int, int], pad: int
) -> list[Chunk]:
    """Cut a host-to-GPU run into chunks of about GPU_CHUNK_SAMPLES outputs:
    whole rows in groups, or a long row along its outputs, each chunk with the
    K-1 samples before it (clipped to the row; its own leading zeros if any).
    A chunk whose windows all lie outside the signal has no signal columns."""
    signal_rows, length = signal_shape
    taps_rows, n_taps = taps_shape

    def own(first: int, last: int, total: int) -> slice:
        return slice(first, last) if total > 1 else slice(0, 1)

    chunks = []
    if count >= GPU_CHUNK_SAMPLES or rows == 1:
        for row in range(rows):
            for first in range(0, count, GPU_CHUNK_SAMPLES):
                last = min(count, first + GPU_CHUNK_SAMPLES)
                low = max(0, first - pad)
                high = max(low, min(length, last - pad + n_taps - 1))
                chunks.append(
                    Chunk(
                        slice(row, row + 1),
                        slice(first, last),
                        own(row, row + 1, signal_rows),
                        slice(low, high),
                        pad - first + low,
                        own(row, row + 1, taps_rows),
                    )
                )
        return chunks
    per_call = max(1, GPU_CHUNK_SAMPLES // max(count, length))
    for first in range(0, rows, per_call):
        last = min(rows, first + per_call)
        chunks.append(
            Chunk(
                slice(first, last),
                slice(0, count),
                own(first, last, signal_rows),
                slice(0, length),
                pad,
                own(first, last, taps_rows),
            )
        )
    return chunks


def _gpu_from_host(
    engine: Engine,
    out: np.ndarray,
    signal: np.ndarray,
    taps: np.ndarray,
    pad: int,
    method: str,
    block: int,
) -> None:
    """Host rows through a GPU, every sample across the bus once each way.

    Pinned staging buffers, two each way: while the GPU copies in, computes
    and copies out chunk c, host threads copy chunk c + 1 in and chunk c - 1
    out (transfer.py).
    """
    staging = engine.staging(out.dtype)
    parallel_copy(staging.host("taps", taps.shape), taps)
    taps_device = engine.device_buffer("taps", taps.shape, taps.dtype)
    taps_device.inplace_copy_from(staging.pinned("taps", taps.shape))
    chunks = plan_chunks(out.shape[0], out.shape[1], signal.shape, taps.shape, pad)
    # The taps' spectra are kept on the device when every call takes all the
    # taps rows (the buffer holds them all, in the op's layout).
    every_row = all(chunk.taps_rows == slice(0, taps.shape[0]) for chunk in chunks)
    spectrum = engine.spectrum(taps, block) if method == "fft" and every_row else None

    def shapes(chunk: Chunk) -> tuple[tuple[int, int], tuple[int, int]]:
        rows = chunk.rows.stop - chunk.rows.start
        columns = chunk.columns.stop - chunk.columns.start
        signal_rows = chunk.signal_rows.stop - chunk.signal_rows.start
        length = chunk.signal_columns.stop - chunk.signal_columns.start
        return (signal_rows, length), (rows, columns)

    def fill(index: int) -> None:
        chunk = chunks[index]
        source = signal[chunk.signal_rows, chunk.signal_columns]
        if source.shape[1] > 0:
            parallel_copy(staging.host(f"in{index % 2}", source.shape), source)

    def enqueue(index: int) -> None:
        nonlocal spectrum
        chunk = chunks[index]
        signal_shape, out_shape = shapes(chunk)
        if signal_shape[1] == 0:
            return
        slot = index % 2
        signal_device = engine.device_buffer(f"in{slot}", signal_shape, out.dtype)
        signal_device.inplace_copy_from(staging.pinned(f"in{slot}", signal_shape))
        result = engine.device_buffer(f"out{slot}", out_shape, out.dtype)
        taps_rows = taps_device[chunk.taps_rows, :]
        engine.correlate(
            result, signal_device, taps_rows, chunk.pad, method, block, spectrum=spectrum
        )
        if spectrum is not None:
            spectrum = (spectrum[0], True)  # the next calls find them computed
        staging.pinned(f"out{slot}", out_shape).inplace_copy_from(result)

    def drain(index: int) -> None:
        chunk = chunks[index]
        signal_shape, out_shape = shapes(chunk)
        target = out[chunk.rows, chunk.columns]
        if signal_shape[1] == 0:
            target[...] = 0
        else:
            parallel_copy(target, staging.host(f"out{index % 2}", out_shape))

    fill(0)
    enqueue(0)
    for index in range(len(chunks)):
        if index + 1 < len(chunks):
            fill(index + 1)
        engine.device.synchronize()
        if index + 1 < len(chunks):
            enqueue(index + 1)
        drain(index)
