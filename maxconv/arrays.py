"""Arrays in and out of the public API: numpy, anything with `__dlpack__`, and scipy's dtype rules.

A host array from any library (numpy, torch, jax, ...) is viewed as numpy
through DLPack (no copy) and the result goes back to the caller's library
the same way. A CUDA array stays on its GPU: the op reads and writes device
memory, and the result is a CUDA array of the caller's library.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

# DLPack device types (dlpack.h): kDLCPU, kDLCUDA, kDLCUDAHost, kDLCUDAManaged.
DLPACK_CPU = (1, 3, 13)
DLPACK_CUDA = 2


def is_dlpack(value: object) -> bool:
    """An array of another library that speaks DLPack (numpy arrays are numpy's own)."""
    return (
        not isinstance(value, np.ndarray)
        and hasattr(value, "__dlpack__")
        and hasattr(value, "__dlpack_device__")
    )


def cuda_index(value: object) -> int | None:
    """The GPU index of a CUDA DLPack array, or None for host memory and plain values."""
    reader = _INDEX_READERS.get(type(value))
    if reader is None:
        reader = _INDEX_READERS[type(value)] = _index_reader(value)
    return reader(value)


def _dlpack_cuda_index(value: object) -> int | None:
    kind, index = value.__dlpack_device__()
    return int(index) if int(kind) == DLPACK_CUDA else None


def _torch_cuda_index(value: object) -> int | None:
    return value.get_device() if value.is_cuda else None


def _index_reader(value: object) -> Callable[[object], int | None]:
    """How to read the GPU index of arrays of `value`'s type: torch's
    `Tensor.__dlpack_device__` is Python (0.7 us, 1.1 with the checks here,
    on the H200 host) where `is_cuda`/`get_device` are C (CUDA builds only:
    a ROCm build's tensors report is_cuda too but are not DLPack CUDA)."""
    if not is_dlpack(value):
        return lambda _: None
    torch = sys.modules.get("torch")
    if (
        torch is not None
        and isinstance(value, torch.Tensor)
        and getattr(torch.version, "hip", None) is None
    ):
        return _torch_cuda_index
    return _dlpack_cuda_index


# The reader of each array type seen (see _index_reader).
_INDEX_READERS: dict[type, Callable[[object], int | None]] = {}


def library_of(value: object) -> Any | None:
    """The module whose `from_dlpack` rebuilds arrays like `value` (torch, cupy, jax.numpy)."""
    if not is_dlpack(value):
        return None
    root = type(value).__module__.split(".")[0]
    if root in ("jax", "jaxlib"):
        root = "jax.numpy"
    module = sys.modules.get(root)
    return module if module is not None and hasattr(module, "from_dlpack") else None


def as_numpy(value: object) -> np.ndarray:
    """A host array of any library as numpy (shared through DLPack), else np.asarray."""
    if is_dlpack(value):
        kind, _ = value.__dlpack_device__()
        if int(kind) in DLPACK_CPU:
            return np.from_dlpack(value)
    return np.asarray(value)


def returner(like: object) -> Callable[[np.ndarray], Any]:
    """How to hand a numpy result back in the library `like` came from."""
    library = library_of(like)
    if library is None:
        return lambda result: result
    return lambda result: library.from_dlpack(result)


def check_numeric(*arrays: np.ndarray) -> None:
    """Numbers and booleans only, as scipy.signal accepts them."""
    for array in arrays:
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise TypeError(f"input must be numeric, not dtype {array.dtype}")


def compute_dtype(result: np.dtype) -> np.dtype:
    """The real float dtype the ops compute a result of dtype `result` in.

    float32 for float16/float32/complex64 and bool (exact: sums of 0/1 below
    2^24); float64 for everything else, integers included, so that integer
    results are exact up to 2^53 before they are rounded back.
    """
    if result == np.bool_ or result in (np.float16, np.float32, np.complex64):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def fft_result_dtype(result: np.dtype) -> np.dtype:
    """scipy.signal.fftconvolve's result dtype: float64 for integers and bool,
    float32 for float16, the inputs' own otherwise."""
    if result.kind in "biu":
        return np.dtype(np.float64)
    if result == np.float16:
        return np.dtype(np.float32)
    return result


def cast_result(values: np.ndarray, result: np.dtype) -> np.ndarray:
    """Values computed in float to scipy's result dtype: integers rounded, bool as sum > 0."""
    if result == values.dtype:
        return values
    if result == np.bool_:
        return values > 0.5
    if result.kind in "iu":
        return np.rint(values).astype(result)
    return values.astype(result)
