"""Overlapping output with compute: blocks are written while the next is computed.

Filtering a file is read, compute, write, chunk after chunk. Writing a block
is two copies, interleaving channels (with integer rounding for PCM) and the
I/O through libsndfile; together they take as long as an FFT filter's compute
on a CPU and several times longer than a GPU's. Both run in C with the GIL
released, so two worker threads, one per step, hide them behind the compute.
"""

from __future__ import annotations

import collections
import concurrent.futures
import time
from collections.abc import Callable
from types import TracebackType

import numpy as np

# Blocks handed over but not yet written; each holds a chunk of memory.
IN_FLIGHT = 2


class WriteBehind:
    """Pass blocks through `prepare` then `write`, each on its own worker thread.

    At most IN_FLIGHT blocks are between the two, which bounds the extra
    memory. A failure in either step comes back from a later `write` or at the
    end of the `with` block. On any exit every pending step is awaited first,
    so that the caller's writer is never closed (or its temp file deleted)
    under a write still running.
    """

    def __init__(
        self,
        prepare: Callable[[np.ndarray], np.ndarray],
        write: Callable[[np.ndarray], None],
    ) -> None:
        self._prepare = prepare
        self._write = write
        self._preparer = concurrent.futures.ThreadPoolExecutor(1, "maxconv-prepare")
        self._writer = concurrent.futures.ThreadPoolExecutor(1, "maxconv-writer")
        self._pending: collections.deque[concurrent.futures.Future] = collections.deque()
        self.seconds = 0.0  # spent in `write`, on its worker
        self._failed = False
        # Start both workers now. An executor starts its thread inside the first
        # submit, and a signal raised while that thread starts leaves it running
        # but unknown to shutdown(), which then returns before the first block's
        # write ends: the writer would be closed under it (seen: "write to closed
        # file", once a crash). Started here, before any block exists, an
        # interrupted start has nothing to write.
        for executor in (self._preparer, self._writer):
            executor.submit(int).result()

    def write(self, block: np.ndarray) -> None:
        """Queue `block`, first waiting while IN_FLIGHT blocks are pending."""
        while len(self._pending) >= IN_FLIGHT:
            self._pending.popleft().result()
        prepared = self._preparer.submit(self._prepare, block)
        self._pending.append(self._writer.submit(self._timed_write, prepared))

    def _timed_write(self, prepared: concurrent.futures.Future) -> None:
        if self._failed:
            return  # the output is lost already: no write after a failed one
        start = time.perf_counter()
        try:
            self._write(prepared.result())
        except BaseException:
            self._failed = True
            raise
        finally:
            self.seconds += time.perf_counter() - start

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
                while self._pending:
                    self._pending.popleft().result()
            else:
                # Their errors, if any, matter less than the one already on its way out.
                concurrent.futures.wait(self._pending)
        finally:
            self._writer.shutdown(wait=True)
            self._preparer.shutdown(wait=True)
