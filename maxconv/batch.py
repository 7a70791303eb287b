"""Ragged batches: 1-D signals of different lengths, each with its own kernel, in few op calls."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .arrays import as_numpy, cast_result, check_numeric, compute_dtype, cuda_index, returner
from .convolution import convolve
from .devices import gpu_count
from .engine import Engine, get_engine
from .planning import check_method, check_mode, full_slice
from .rows import correlate_rows

# Rows of different lengths share one op call when the longest is at most
# this much longer than the shortest (the rest is zero padding).
BATCH_LENGTH_SLACK = 1.25


def convolve_batch(
    signals: Sequence,
    kernels,
    mode: str = "full",
    *,
    method: str = "auto",
    device: str = "auto",
) -> list:
    """Convolve 1-D signals of different lengths, each with its own kernel (or one for all).

    `signals` is a sequence of 1-D arrays; `kernels` a sequence of 1-D
    arrays of the same count, or one 1-D array for every signal. Returns
    a list with one result per signal, equal to `convolve(signal, kernel,
    mode)`. Rows of similar length share one op call: each is padded with
    zeros to the longest of its group (within BATCH_LENGTH_SLACK), kernels
    to the longest kernel, and every row's slice is cut from the group's
    full result. CUDA arrays (torch, cupy) stay on their GPU. With
    ``device="gpu:all"`` the groups are spread over every GPU of the host
    (one engine and one host thread each; results in input order).
    """
    check_mode(mode)
    check_method(method)
    signal_list = list(signals)
    shared = getattr(kernels, "ndim", None) == 1
    kernel_list = [kernels] * len(signal_list) if shared else list(kernels)
    if len(kernel_list) != len(signal_list):
        raise ValueError(
            f"{len(signal_list)} signals but {len(kernel_list)} kernels; give one kernel per "
            "signal or a single 1-D kernel for all"
        )
    if not signal_list:
        return []
    if any(cuda_index(item) is not None for item in (*signal_list, *kernel_list[:1])):
        from .device_arrays import convolve_batch_cuda

        return convolve_batch_cuda(signal_list, kernel_list, shared, mode, method, device)
    hosts = [as_numpy(signal) for signal in signal_list]
    taps = [as_numpy(kernel) for kernel in kernel_list]
    for index, (signal, kernel) in enumerate(zip(hosts, taps, strict=True)):
        if signal.ndim != 1 or kernel.ndim != 1:
            raise ValueError(
                f"signal {index} and its kernel must be 1-D, not {signal.ndim}-D and "
                f"{kernel.ndim}-D; use convolve for N-D rows"
            )
    check_numeric(*hosts, *taps[:1] if shared else taps)
    if not _op_takes(hosts, taps, shared):
        return [
            convolve(signal, kernel, mode, method=method, device=device)
            for signal, kernel in zip(signal_list, kernel_list, strict=True)
        ]
    give_back = returner(signal_list[0])
    rows = _batch_rows(_engines(device), hosts, taps, shared, mode, method)
    return [give_back(row) for row in rows]


def _engines(device: str) -> list[Engine]:
    """The engine of `device`; for "gpu:all" one per GPU of the host."""
    if device.strip().lower() != "gpu:all":
        return [get_engine(device)]
    count = gpu_count()
    if count == 0:
        raise ValueError("device='gpu:all' was asked for, but MAX sees no GPU here")
    return [get_engine(f"gpu:{index}") for index in range(count)]


def convolve_batch_on(
    engine: Engine,
    signals: Sequence[np.ndarray],
    kernels: Sequence[np.ndarray],
    mode: str = "full",
    *,
    method: str = "auto",
) -> list[np.ndarray]:
    """`convolve_batch` on a job's engine: 1-D numpy signals, one 1-D numpy kernel each.

    A job holds its engine (the augment job one per device), so no device is
    looked up here. Rows the op does not take (complex, or empty) go through
    `convolve` on the engine's device, as `convolve_batch` sends them.
    """
    check_mode(mode)
    check_method(method)
    if not _op_takes(signals, kernels, shared=False):
        return [
            convolve(signal, kernel, mode, method=method, device=engine.label)
            for signal, kernel in zip(signals, kernels, strict=True)
        ]
    return _batch_rows([engine], signals, kernels, False, mode, method)


def convolve_shared_on(
    engine: Engine,
    signals: np.ndarray,
    kernel: np.ndarray,
    start: int,
    count: int,
    *,
    method: str = "auto",
    key: Hashable | None = None,
    workers: int = 0,
) -> np.ndarray:
    """Outputs [start, start + count) of the full convolution of each row of
    `signals` (R, N) with one 1-D real `kernel`, on a job's engine: (R, count).

    One op call for all the rows. On the CPU the FFT op pairs their blocks
    across rows (a row of one block fills half a transform, two rows a whole
    one), and with `key` (the caller's name for exactly this kernel, see
    Engine.spectrum) the kernel's spectrum is computed once and kept for
    later calls: an augmentation job calls this once per response and group,
    each response serving many clips. `workers` caps the CPU cores of the
    FFT op (0: all).
    """
    dtype = compute_dtype(np.result_type(signals, kernel))
    signal = np.ascontiguousarray(signals, dtype)
    taps = np.ascontiguousarray(kernel[::-1], dtype)[np.newaxis]
    return correlate_rows(
        engine, signal, taps, start, count, method, spectrum_key=key, workers=workers
    )


def _op_takes(signals: Sequence[np.ndarray], kernels: Sequence[np.ndarray], shared: bool) -> bool:
    """Whether the rows go through the op in groups: real, and none of them empty."""
    result_dtype = np.result_type(*signals, *(kernels[:1] if shared else kernels))
    return (
        result_dtype.kind != "c" and all(a.size for a in signals) and all(k.size for k in kernels)
    )


def _batch_rows(
    engines: Sequence[Engine],
    signals: Sequence[np.ndarray],
    kernels: Sequence[np.ndarray],
    shared: bool,
    mode: str,
    method: str,
) -> list[np.ndarray]:
    """Every row's result in the rows' result dtype, from as few op calls as their
    lengths allow; with several engines their groups are shared out by samples
    (largest first, each to the least loaded engine) and run one thread per engine."""
    result_dtype = np.result_type(*signals, *(kernels[:1] if shared else kernels))
    results: list = [None] * len(signals)
    groups = _length_groups([signal.size for signal in signals], [k.size for k in kernels])
    shares: list[list[list[int]]] = [[] for _ in engines]
    load = [0] * len(engines)
    sized = sorted(((sum(signals[i].size for i in g), g) for g in groups), key=lambda s: -s[0])
    for samples, group in sized:
        least = load.index(min(load))
        shares[least].append(group)
        load[least] += samples

    def run(engine: Engine, share: list[list[int]]) -> None:
        for group in share:
            rows = _convolve_group(engine, signals, kernels, group, shared, mode, method)
            for index, row in zip(group, rows, strict=True):
                results[index] = cast_result(row, result_dtype)

    if len(engines) == 1:
        run(engines[0], shares[0])
    else:
        with ThreadPoolExecutor(len(engines)) as pool:
            futures = [pool.submit(run, *pair) for pair in zip(engines, shares, strict=True)]
            for future in futures:
                future.result()
    return results


def _length_groups(lengths: list[int], taps: list[int]) -> list[list[int]]:
    """Indices grouped by signal and kernel length: sorted by both, a new
    group once a row would pad the group's shortest signal or kernel past
    BATCH_LENGTH_SLACK (every row of a call is padded to its longest)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], taps[i]))
    groups: list[list[int]] = []
    shortest_taps = longest_taps = 0
    for index in order:
        fits = groups and lengths[index] <= BATCH_LENGTH_SLACK * lengths[groups[-1][0]]
        low, high = min(shortest_taps, taps[index]), max(longest_taps, taps[index])
        if fits and high <= BATCH_LENGTH_SLACK * low:
            groups[-1].append(index)
            shortest_taps, longest_taps = low, high
        else:
            groups.append([index])
            shortest_taps = longest_taps = taps[index]
    return groups


def padded_rows(rows: Sequence[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """1-D rows as one (R, N) array of `dtype`, the shorter ones zero-padded at the end."""
    longest = max(row.size for row in rows)
    if all(row.size == longest for row in rows):
        return np.stack(rows).astype(dtype, copy=False)
    out = np.zeros((len(rows), longest), dtype)
    for index, row in enumerate(rows):
        out[index, : row.size] = row
    return out


def _convolve_group(engine, signals, kernels, group, shared: bool, mode: str, method: str):
    """One op call for the rows in `group`: full correlations with the
    flipped kernels, zero-padded at the end to the longest kernel, so row
    i's convolution index m sits at m + K_max - K_i."""
    dtype = compute_dtype(
        np.result_type(*(signals[i] for i in group), *(kernels[i] for i in group))
    )
    taps_for = group[:1] if shared else group
    signal = padded_rows([signals[i] for i in group], dtype)
    taps = padded_rows([kernels[i][::-1] for i in taps_for], dtype)
    longest, longest_taps = signal.shape[1], taps.shape[1]
    full = correlate_rows(engine, signal, taps, 0, longest + longest_taps - 1, method)
    rows = []
    for row, index in enumerate(group):
        n_taps = kernels[index].size
        start, count = full_slice(mode, signals[index].size, n_taps)
        offset = start + longest_taps - n_taps
        rows.append(full[row, offset : offset + count])
    return rows
