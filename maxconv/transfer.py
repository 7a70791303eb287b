"""Host arrays to and from a GPU through pinned staging memory, copied by several threads.

A GPU reads pinned (page-locked) host memory at full bus speed; pageable
numpy memory crossed the bus at about 4.5 GB/s on the H200 machine, which
made a 2^24-sample call take 29 ms. So host arrays are copied into pinned
staging buffers (and results out of them) by a pool of threads (numpy's
copy releases the GIL), two buffers each way, so the host copies of one
chunk overlap the transfers and the op of the next.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from max import driver

# Threads copying between numpy and pinned memory, and the least bytes a
# thread's share is worth handing out.
COPY_THREADS = min(16, os.cpu_count() or 1)
COPY_SHARE_BYTES = 1 << 20

_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="maxconv-copy")
    return _POOL


def parallel_copy(target: np.ndarray, source: np.ndarray) -> None:
    """target[...] = source (same shape, both C-contiguous; dtype converted), on several threads."""
    flat_target, flat_source = target.reshape(-1), source.reshape(-1)
    shares = min(COPY_THREADS, max(1, target.nbytes // COPY_SHARE_BYTES))
    if shares == 1:
        np.copyto(flat_target, flat_source)
        return
    bounds = [len(flat_target) * part // shares for part in range(shares + 1)]
    jobs = [
        _pool().submit(np.copyto, flat_target[a:b], flat_source[a:b])
        for a, b in zip(bounds, bounds[1:], strict=False)
    ]
    for job in jobs:
        job.result()


class Staging:
    """Pinned host buffers of one GPU and dtype, each reused from call to call.

    `host(name, shape)` is a numpy view of pinned buffer `name` and
    `pinned(name, shape)` the same memory as a MAX buffer, for copies to
    and from the device; buffers grow to the largest shape asked for.
    """

    def __init__(self, device: driver.Device, dtype) -> None:  # noqa: ANN001
        self.device = device
        self.dtype = dtype
        self._buffers: dict[str, tuple[driver.Buffer, np.ndarray]] = {}

    def _buffer(self, name: str, size: int) -> tuple[driver.Buffer, np.ndarray]:
        if name not in self._buffers or self._buffers[name][0].num_elements < size:
            pinned = driver.Buffer(
                self.dtype, (max(size, 1),), device=self.device, usage=driver.Usage.STAGING
            )
            self._buffers[name] = (pinned, pinned.to_numpy())
        return self._buffers[name]

    def host(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        size = int(np.prod(shape))
        return self._buffer(name, size)[1][:size].reshape(shape)

    def pinned(self, name: str, shape: tuple[int, ...]) -> driver.Buffer:
        size = int(np.prod(shape))
        return self._buffer(name, size)[0][:size].view(self.dtype, tuple(shape))
