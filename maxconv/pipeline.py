"""Overlapping output with compute: a block is written while the next is computed.

Filtering a file is read, compute, write, chunk after chunk. Writing (the
interleaving copy and libsndfile) takes as long as an FFT filter's compute on
a CPU and several times longer than a GPU's, and it runs in C with the GIL
released, so a worker thread hides most of it behind the next chunk.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from types import TracebackType

import numpy as np


class WriteBehind:
    """Hand blocks to a writer on one worker thread, at most one block in flight.

    One block in flight bounds the extra memory to one chunk. A write error
    comes back from the next `write` or at the end of the `with` block. On
    any exit the pending write is awaited first, so that the caller's writer
    is never closed (or its temp file deleted) under a write still running.
    """

    def __init__(self, write: Callable[[np.ndarray], None]) -> None:
        self._write = write
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="maxconv-writer"
        )
        self._pending: concurrent.futures.Future | None = None
        self.seconds = 0.0  # spent writing, on the worker

    def write(self, block: np.ndarray) -> None:
        """Queue `block` once the previous one is written (raising its error, if any)."""
        self._finish_pending()
        self._pending = self._executor.submit(self._timed_write, block)

    def _timed_write(self, block: np.ndarray) -> None:
        start = time.perf_counter()
        try:
            self._write(block)
        finally:
            self.seconds += time.perf_counter() - start

    def _finish_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self._finish_pending()
            elif self._pending is not None:
                # Its error, if any, matters less than the one already on its way out.
                concurrent.futures.wait([self._pending])
        finally:
            self._executor.shutdown(wait=True)
