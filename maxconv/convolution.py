"""The public API: scipy-compatible convolve and correlate, the raw conv1d, and ragged batches.

Argument checking, dtype rules and index arithmetic over the row engine
(rows.py): every mode is a slice of the full correlation computed directly
(the op supplies the zeros before the signal), convolution is correlation
with the kernel reversed, complex input runs as real correlations, and
N-D input is rows along one axis with the other axes broadcast.
"""

from __future__ import annotations

import warnings

import numpy as np

from .arrays import (
    as_numpy,
    cast_result,
    check_numeric,
    compute_dtype,
    cuda_index,
    fft_result_dtype,
    is_dlpack,
    returner,
)
from .device_arrays import filter_cuda
from .engine import get_engine
from .layout import RowShape
from .planning import check_method, check_mode, full_slice
from .rows import correlate_rows


def correlate(
    in1,
    in2,
    mode: str = "full",
    *,
    axis: int = -1,
    device: str = "auto",
    method: str = "auto",
    out=None,
):
    """Cross-correlate a signal with a kernel, like `scipy.signal.correlate`.

    Parameters
    ----------
    in1 : array_like
        The signal: 1-D, or N-D with samples along `axis` (one row per
        position on the other axes). numpy arrays, Python sequences, and any
        array with `__dlpack__` (torch, cupy, jax; host or CUDA).
    in2 : array_like
        The kernel: 1-D (shared by all rows), or laid out like `in1` with
        the other axes equal to in1's or 1 (broadcast, as scipy's
        `fftconvolve(..., axes=axis)`): one kernel per row, one for all,
        or one signal through several kernels.
    mode : str {'full', 'valid', 'same'}, optional
        As in scipy.signal: 'same' has the length of `in1`, centred on the
        full result; 'valid' keeps only full overlaps.
    axis : int, optional
        The samples axis (default -1).
    device : str, optional
        'auto' (GPU if MAX sees one, else CPU), 'cpu', 'gpu' or 'gpu:N'.
        CUDA arrays run on their own GPU.
    method : str {'auto', 'direct', 'fft'}, optional
        'direct' sums every product; 'fft' runs overlap-save FFT convolution
        in the op (N log K instead of N K); 'auto' takes the FFT from the
        kernel length where it was measured to win on the device: by
        `maxconv calibrate` on this one if it was run, else
        planning.FFT_FROM_TAPS (128 taps on the CPU, 512 on a GPU).
    out : array, optional
        Where to write the result: its shape and dtype must be the result's.

    Returns
    -------
    array
        scipy's result dtype (`numpy.result_type(in1, in2)`: integers stay
        integers, rounded from an exact float64 sum; bool, float16 and
        complex as scipy gives them), in the library and on the device of
        `in1` (of `in2` if only it is a foreign array).

    Raises
    ------
    ValueError
        Inputs of different dimensionality (a 1-D kernel with an N-D signal
        excepted), rows that do not broadcast, a wrong `out`, an unknown
        mode, method or device, or a GPU asked for where there is none.
    TypeError
        Non-numeric input, or CUDA arrays that are not float32/float64.

    Notes
    -----
    Empty inputs give an empty array, 0-d inputs their product, as scipy
    does. With the direct method a NaN or Inf in the input or kernel
    reaches exactly the outputs whose window covers it; the FFT method
    spreads it over its block and warns (RuntimeWarning), as scipy does.

    Examples
    --------
    >>> import numpy as np, maxconv
    >>> maxconv.correlate(np.arange(5.0), np.array([1.0, 1.0]), mode="valid")
    array([1., 3., 5., 7.])
    """
    return _filter(in1, in2, mode, axis, device, method, out, flip=False)


def convolve(
    in1,
    in2,
    mode: str = "full",
    *,
    axis: int = -1,
    device: str = "auto",
    method: str = "auto",
    out=None,
):
    """Convolve a signal with a kernel, like `scipy.signal.convolve`.

    Convolution is correlation with the kernel reversed; see `correlate`
    for the parameters, dtype rules and NaN behaviour.

    Examples
    --------
    >>> import numpy as np, maxconv
    >>> maxconv.convolve(np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 0.5]))
    array([0. , 1. , 2.5, 4. , 1.5])
    """
    return _filter(in1, in2, mode, axis, device, method, out, flip=True)


def fftconvolve(
    in1,
    in2,
    mode: str = "full",
    *,
    axis: int = -1,
    device: str = "auto",
    method: str = "fft",
    out=None,
):
    """Convolve by FFT, like `scipy.signal.fftconvolve(in1, in2, mode, axes=axis)`
    (and `oaconvolve`, the same result).

    As `convolve`, with scipy's FFT result dtypes: integer and bool inputs
    give float64 (not rounded back), float16 float32. Convolution over
    several axes at once (scipy's N-D `axes`) is out of scope: pass one axis.

    Examples
    --------
    >>> import numpy as np, maxconv
    >>> maxconv.fftconvolve(np.array([1, 2, 3]), np.array([0, 1, 1]))
    array([0., 1., 3., 5., 3.])
    """
    if not isinstance(axis, int | np.integer):
        raise ValueError(
            f"maxconv convolves along one axis; axis must be an int, not {axis!r} "
            "(N-D convolution over several axes is out of scope)"
        )
    return _filter(in1, in2, mode, axis, device, method, out, flip=True, fft_dtypes=True)


oaconvolve = fftconvolve


def conv1d(x, k, *, device: str = "auto"):
    """The raw op on one 1-D signal: out[i] = sum_j x[i + j] * k[j], x zero past its end.

    The output has the input's length; this is the op of the original
    custom-op exercise (`arange(15)` with `arange(4)` gives 14, 20, ..., 14, 0).
    """
    signal = as_numpy(x)
    kernel = as_numpy(k)
    if signal.ndim != 1 or kernel.ndim != 1:
        raise ValueError("conv1d takes a 1-D signal and a 1-D kernel; use correlate for N-D")
    if signal.size == 0 or kernel.size == 0:
        raise ValueError("conv1d needs at least one sample and one tap")
    check_numeric(signal, kernel)
    dtype = compute_dtype(np.result_type(signal, kernel, np.float32))
    rows = np.ascontiguousarray(signal[np.newaxis], dtype=dtype)
    taps = np.ascontiguousarray(kernel[np.newaxis], dtype=dtype)
    result = correlate_rows(get_engine(device), rows, taps, kernel.size - 1, signal.size)[0]
    return returner(x)(result)


def _filter(
    in1, in2, mode: str, axis: int, device: str, method: str, out, flip: bool, fft_dtypes=False
):
    """correlate (flip False) or convolve (flip True) of any supported inputs;
    `fft_dtypes`: scipy.signal.fftconvolve's result dtypes (see fftconvolve)."""
    check_mode(mode)
    check_method(method)
    index = cuda_index(in1)
    if index is not None or cuda_index(in2) is not None:
        return filter_cuda(in1, in2, mode, axis, device, method, out, flip, index)
    give_back = returner(in1 if is_dlpack(in1) else in2)
    x, h = as_numpy(in1), as_numpy(in2)
    check_numeric(x, h)
    if x.ndim == 0 and h.ndim == 0:
        return x * (h if flip else np.conj(h))
    if x.ndim != h.ndim and not (h.ndim == 1 and x.ndim > 1):
        raise ValueError(
            f"in1 and in2 should have the same dimensionality (got {x.ndim}-D and {h.ndim}-D); "
            "a 1-D in2 is also accepted as one kernel for every row of in1"
        )
    if x.size == 0 or h.size == 0:
        return give_back(np.array([]))
    shape = RowShape.of(x.shape, h.shape, axis)
    start, count = full_slice(mode, shape.length, shape.taps)
    result_dtype = np.result_type(x, h)
    if (shape.length == 1 or shape.taps == 1) and result_dtype not in (np.float32, np.float64):
        return give_back(_single_sample(shape, x, h, start, count, mode, flip, out))
    if fft_dtypes:
        result_dtype = fft_result_dtype(result_dtype)
    engine = get_engine(device)
    method = engine.resolve_method(method, shape.taps)
    wanted = shape.result_shape(count)
    if mode == "same" and shape.lead != shape.signal_lead:
        wanted = (*shape.signal_lead[: shape.axis], count, *shape.signal_lead[shape.axis :])
        if out is not None:
            raise ValueError("out= is not supported for 'same' with broadcast rows of in2")
    target = _check_out(out, wanted, result_dtype)
    if flip:
        taps = np.flip(h, -1 if h.ndim == 1 else shape.axis)
    else:
        taps = np.conj(h) if np.iscomplexobj(h) else h
    rows = _correlate_parts(engine, shape, x, taps, start, count, method, result_dtype, target)
    if method == "fft" and not np.isfinite(rows.flat[0]):
        warnings.warn(
            "Use of fft convolution on input with NAN or inf results in NAN or inf output. "
            "Consider using method='direct' instead.",
            RuntimeWarning,
            stacklevel=3,
        )
    if target is not None:
        if not np.shares_memory(rows, target):
            np.copyto(target, shape.from_rows(cast_result(rows, result_dtype), count))
        return out
    result = shape.from_rows(cast_result(rows, result_dtype), count)
    if mode == "same" and shape.lead != shape.signal_lead:
        result = shape.centered_on_signal(result)
    return give_back(result)


def _single_sample(shape, x, h, start: int, count: int, mode: str, flip: bool, out):
    """One sample or one tap along the axis, of integers, bool, complex or
    float16: the full result is a plain product, computed exactly in numpy's
    result dtype, as scipy does (its FFT path drops such axes and
    multiplies). float32/float64 run the op, which gives the same rounded
    products on all cores."""
    signal = np.moveaxis(x, shape.axis, -1)
    taps = np.moveaxis(h, shape.axis, -1) if h.ndim > 1 else h
    if not flip:
        taps = np.flip(np.conj(taps) if np.iscomplexobj(taps) else taps, -1)
    result = np.moveaxis((signal * taps)[..., start : start + count], -1, shape.axis)
    if mode == "same" and shape.lead != shape.signal_lead:
        result = shape.centered_on_signal(result)
    if out is None:
        return result
    target = _check_out(out, result.shape, result.dtype)
    np.copyto(target, result)
    return out


def _check_out(out, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
    """The caller's `out` as a numpy array (shared), after checking it fits."""
    if out is None:
        return None
    target = as_numpy(out)
    if target.shape != shape or target.dtype != dtype:
        raise ValueError(
            f"out must have the result's shape {shape} and dtype {dtype}, not "
            f"{target.shape} {target.dtype}"
        )
    if not target.flags.writeable:
        raise ValueError("out must be writeable")
    return target


def _correlate_parts(
    engine,
    shape: RowShape,
    x: np.ndarray,
    taps: np.ndarray,
    start: int,
    count: int,
    method: str,
    result_dtype: np.dtype,
    target: np.ndarray | None,
) -> np.ndarray:
    """The [rows, count] plain correlation sum_j x[n + j] taps[j] in float,
    complex inputs through real ops: (a + ib)(c + id) = (ac - bd) + i(ad + bc),
    each signal part stacked over the rows so one call per taps part serves both."""
    dtype = compute_dtype(result_dtype)
    taps_lead = shape.taps_lead
    if not (np.iscomplexobj(x) or np.iscomplexobj(taps)):
        direct = target is not None and target.dtype == dtype
        into = shape.row_view(target) if direct else None
        return correlate_rows(
            engine,
            shape.as_rows(x, shape.signal_lead, dtype),
            shape.as_rows(taps, taps_lead, dtype),
            start,
            count,
            method,
            out=into,
        )
    # Both parts of a broadcast complex signal row, stacked, need one row per
    # result row when the taps have one per row.
    expand = np.iscomplexobj(x) and any(size != 1 for size in taps_lead)
    parts = [x.real, x.imag] if np.iscomplexobj(x) else [x]
    signal = np.concatenate(
        [shape.as_rows(part, shape.signal_lead, dtype, expand) for part in parts]
    )
    rows = shape.rows
    sums = {}
    for name, part in (("c", taps.real), ("d", taps.imag if np.iscomplexobj(taps) else None)):
        if part is None:
            continue
        tap_rows = shape.as_rows(part, taps_lead, dtype)
        if len(parts) == 2 and tap_rows.shape[0] > 1:
            tap_rows = np.concatenate([tap_rows, tap_rows])
        found = correlate_rows(engine, signal, tap_rows, start, count, method)
        sums["a" + name] = found[:rows]
        if len(parts) == 2:
            sums["b" + name] = found[rows:]
    zero = np.zeros((rows, count), dtype)
    result = np.empty((rows, count), dtype=np.result_type(dtype, np.complex64))
    result.real = sums.get("ac", zero) - sums.get("bd", zero)
    result.imag = sums.get("ad", zero) + sums.get("bc", zero)
    return result
