"""numpy/scipy-compatible convolve and correlate on top of the conv1d op.

Everything here is argument checking and index arithmetic: every mode is a
slice of the full correlation, convolution is correlation with the kernel
reversed, and the slice is computed directly (never the whole full result)
by padding the signal so that tile 0 starts at the slice's first output.
"""

from __future__ import annotations

import numpy as np

from .engine import get_engine
from .tiling import (
    TILE_OUTPUTS,
    batch_ranges,
    fill_tiles,
    plan_tiles,
    store_tiles,
)

MODES = ("full", "same", "valid")
METHODS = ("auto", "direct", "fft")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of 'full', 'same', 'valid', not {mode!r}")


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of 'auto', 'direct', 'fft', not {method!r}")


def compute_dtype(*arrays: np.ndarray) -> np.dtype:
    """float32 unless an input needs float64 (float64, int32/int64 data).

    float16, small integers (PCM) and bool compute in float32, like numpy's
    promotion with a float32 operand; complex input is not supported.
    """
    for array in arrays:
        if np.iscomplexobj(array):
            raise TypeError("complex input is not supported; filter .real and .imag separately")
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise TypeError(f"input must be numeric, not dtype {array.dtype}")
    return np.result_type(*(array.dtype for array in arrays), np.float32)


def _as_rows(x: np.ndarray, axis: int, name: str) -> np.ndarray:
    """View a 1-D or 2-D array as [rows, samples], samples along `axis`."""
    if x.ndim not in (1, 2):
        raise ValueError(
            f"{name} must be 1-D (samples) or 2-D (channels x samples), not {x.ndim}-D "
            f"with shape {x.shape}"
        )
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape}); give it at least one sample")
    if x.ndim == 1:
        return x[np.newaxis, :]
    if axis not in (-2, -1, 0, 1):
        raise ValueError(f"axis must be 0 or 1 (or -1, -2) for 2-D {name}, not {axis}")
    return np.moveaxis(x, axis, -1)


def _kernel_rows(h: np.ndarray, channels: int, axis: int) -> np.ndarray:
    """Kernel as [channels, K]: one shared kernel, or one per channel."""
    rows = _as_rows(h, axis, "in2 (kernel)")
    if rows.shape[0] == channels:
        return rows
    if rows.shape[0] == 1:
        return np.broadcast_to(rows, (channels, rows.shape[1]))
    raise ValueError(
        f"in2 has {rows.shape[0]} kernels but in1 has {channels} channels; give one kernel "
        "for all channels (1-D) or one per channel"
    )


def correlate_rows(
    rows: np.ndarray,
    taps: np.ndarray,
    start: int,
    outputs: int,
    device: str = "auto",
    method: str = "auto",
) -> np.ndarray:
    """Outputs [start, start + outputs) of the full correlation of each row.

    full[m] = sum_j x[m - (K-1) + j] * taps[j], x zero outside [0, N). Rows
    are [C, N] and taps [C, K], both already in the compute dtype. `method`
    'auto' takes the FFT op where it is measured to win on this device.
    """
    check_method(method)
    channels = rows.shape[0]
    n_taps = taps.shape[1]
    engine = get_engine(device)
    method = engine.resolve_method(method, n_taps)
    tile = engine.fft_tile_outputs(n_taps, outputs) if method == "fft" else TILE_OUTPUTS
    plan = plan_tiles(outputs, n_taps, channels, tile=tile)
    result = np.empty((channels, outputs), dtype=rows.dtype)
    for first, count in batch_ranges(plan):
        tiles = engine.host_buffer((channels, count, plan.width), rows.dtype)
        fill_tiles(rows, n_taps - 1 - start, plan, first, tiles)
        store_tiles(result, plan, first, engine.correlate_tiles(tiles, taps, method))
    return result


def full_slice(mode: str, length: int, n_taps: int) -> tuple[int, int]:
    """(start, count) of the full result that `mode` keeps, as scipy.signal does."""
    if mode == "full":
        return 0, length + n_taps - 1
    if mode == "same":
        return (n_taps - 1) // 2, length
    return min(length, n_taps) - 1, abs(length - n_taps) + 1


def correlate(
    in1: np.ndarray,
    in2: np.ndarray,
    mode: str = "full",
    *,
    axis: int = -1,
    device: str = "auto",
    method: str = "auto",
) -> np.ndarray:
    """Cross-correlate a signal with a kernel, like `scipy.signal.correlate`.

    Parameters
    ----------
    in1 : array_like
        The signal: 1-D, or 2-D multichannel with samples along `axis`.
    in2 : array_like
        The kernel: 1-D (shared by all channels) or 2-D with one kernel per
        channel, laid out like `in1`.
    mode : str {'full', 'valid', 'same'}, optional
        As in scipy.signal: 'same' has the length of `in1`, centred on the
        full result; 'valid' keeps only full overlaps.
    axis : int, optional
        The samples axis of 2-D input (default -1: channels x samples).
    device : str, optional
        'auto' (GPU if MAX sees one, else CPU), 'cpu', 'gpu' or 'gpu:N'.
    method : str {'auto', 'direct', 'fft'}, optional
        'direct' sums every product; 'fft' runs overlap-save FFT convolution
        in the op (N log K instead of N K); 'auto' takes the FFT from the
        kernel length where it was measured to win on the device: by
        `maxconv calibrate` on this one if it was run, else 128 taps on the
        CPU and 2048 on a GPU.

    Returns
    -------
    numpy.ndarray
        float32 when both inputs are float32 or narrower (float16, PCM
        integers up to 16 bits), float64 otherwise.

    Raises
    ------
    ValueError
        Empty or >2-D input, kernels not matching channels, unknown mode or
        device, or a GPU asked for where there is none.
    TypeError
        Complex or non-numeric input.

    Notes
    -----
    With the direct method a NaN or Inf in the input or kernel reaches
    exactly the outputs whose window covers it (as numpy's direct method
    does); the FFT method spreads it over its whole block, as scipy's FFT
    methods do. Pass method='direct' to confine it.

    Examples
    --------
    >>> import numpy as np, maxconv
    >>> maxconv.correlate(np.arange(5.0), np.array([1.0, 1.0]), mode="valid")
    array([1., 3., 5., 7.])
    """
    _check_mode(mode)
    check_method(method)
    x = np.asarray(in1)
    h = np.asarray(in2)
    dtype = compute_dtype(x, h)
    rows = _as_rows(x, axis, "in1")
    taps = _kernel_rows(h, rows.shape[0], axis if h.ndim == 2 else -1)
    start, count = full_slice(mode, rows.shape[1], taps.shape[1])
    result = correlate_rows(
        rows.astype(dtype, copy=False),
        np.ascontiguousarray(taps, dtype=dtype),
        start,
        count,
        device,
        method,
    )
    return result[0] if x.ndim == 1 else np.moveaxis(result, -1, axis)


def convolve(
    in1: np.ndarray,
    in2: np.ndarray,
    mode: str = "full",
    *,
    axis: int = -1,
    device: str = "auto",
    method: str = "auto",
) -> np.ndarray:
    """Convolve a signal with a kernel, like `scipy.signal.convolve`.

    Convolution is correlation with the kernel reversed; see `correlate`
    for the parameters, dtype rules and NaN behaviour.

    Examples
    --------
    >>> import numpy as np, maxconv
    >>> maxconv.convolve(np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 0.5]))
    array([0. , 1. , 2.5, 4. , 1.5])
    """
    h = np.asarray(in2)
    flipped = np.flip(h, axis=-1 if h.ndim == 1 else axis)
    return correlate(in1, flipped, mode, axis=axis, device=device, method=method)


def conv1d(x: np.ndarray, k: np.ndarray, *, device: str = "auto") -> np.ndarray:
    """The raw op on one 1-D signal: out[i] = sum_j x[i + j] * k[j], x zero past its end.

    The output has the input's length; this is the op of the original
    custom-op exercise (`arange(15)` with `arange(4)` gives 14, 20, ..., 14, 0).
    """
    signal = np.asarray(x)
    kernel = np.asarray(k)
    if signal.ndim != 1 or kernel.ndim != 1:
        raise ValueError("conv1d takes a 1-D signal and a 1-D kernel; use correlate for 2-D")
    rows = _as_rows(signal, -1, "x")
    taps = _as_rows(kernel, -1, "k")
    dtype = compute_dtype(signal, kernel)
    start = kernel.size - 1
    return correlate_rows(rows.astype(dtype), taps.astype(dtype), start, signal.size, device)[0]


def convolve_batch(
    signals,
    kernels,
    mode: str = "full",
    *,
    method: str = "auto",
    device: str = "auto",
) -> list[np.ndarray]:
    """Convolve rows of different lengths, each with its own kernel (or one shared kernel).

    `signals` is a sequence of 1-D arrays; `kernels` a sequence of 1-D arrays
    of the same count, or a single 1-D kernel for every signal. Returns a
    list with one 1-D result per signal, as `convolve(signal, kernel, mode)`
    would give it.
    """
    signal_list = [np.asarray(signal) for signal in signals]
    if isinstance(kernels, np.ndarray) and kernels.ndim == 1:
        kernel_list = [kernels] * len(signal_list)
    else:
        kernel_list = [np.asarray(kernel) for kernel in kernels]
    if len(kernel_list) != len(signal_list):
        raise ValueError(
            f"{len(signal_list)} signals but {len(kernel_list)} kernels; give one kernel per "
            "signal or a single 1-D kernel for all"
        )
    return [
        convolve(signal, kernel, mode, method=method, device=device)
        for signal, kernel in zip(signal_list, kernel_list, strict=True)
    ]
