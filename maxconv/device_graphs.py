"""Running a loaded op model: executed, or replayed from a captured device graph.

MAX's execute costs about 27 us of host time a call on the H200 host, in
front of the kernel; replaying the same call from a device graph captured
by MAX (`Model.capture` / `Model.replay`) costs about 6: the K = 64 direct
op on 2^24 samples takes 79 us a call with a synchronize executed and 69 us
(the kernel's own time) replayed; capturing one takes 0.24 ms
(docs/data/replay-probe-h200-2026-11-29.txt). Through maxconv.correlate on
torch tensors, 96 against 104 us a call with a new output, 88 against 92
with out= (docs/data/graphs-probe-h200-2026-11-29.txt).

A graph is bound to its buffers' addresses and shapes. So `DeviceGraphs`
captures a call the second time the same buffers come (a loop over the same
memory: the kept views of tensors passed again or put by their library's
allocator where the last ones were) and replays it from then on; MAX itself
refuses a replay whose buffers differ from the capture's. It serves calls on
CUDA arrays (the per-call-bound path; the engine's other callers, batches in
worker threads among them, execute). The direct op's calls are captured, and
the FFT op's only where a call is its fused kernel alone with the taps'
spectrum kept and ready (planning.gpu_fft_single_kernel: numpy taps with
CUDA arrays); other FFT calls allocate scratch within the call, which a
graph would hold for as long as it is kept.
"""

from __future__ import annotations

import itertools
import threading

from max import driver, engine


def execute(model: engine.Model, buffers: list[driver.Buffer]) -> None:
    """Run `model` on MAX buffers that are contiguous by construction.

    `Model.execute`'s Python wrapper (a profiling span, per-input type and
    contiguity checks) costs about 20 us of a call: on the 2-core machine
    one tiny CPU call takes 48-50 us through it and 25-29 us through the
    entry point it ends in (private, stable in the MAX version we pin).
    """
    model._execute_device_tensors(buffers)  # noqa: SLF001


class DeviceGraphs:
    """One GPU engine's captured op calls (see the module doc)."""

    GRAPHS_KEPT = 8  # captured graphs kept; past that the oldest is released
    SEEN_KEPT = 64  # calls remembered as seen once (captured if they come again)
    # One capture at a time in the process (engines of several GPUs in threads).
    _lock = threading.Lock()
    # Graph keys, unique in the process: MAX keeps a model's graphs by key, so a
    # second DeviceGraphs numbering from 1 again would be refused by the model.
    _keys = itertools.count(1)

    def __init__(self) -> None:
        self._graphs: dict[tuple, tuple[engine.Model, int]] = {}
        self._seen: dict[tuple, None] = {}
        # Models whose capture failed, executed from then on: why MAX refused.
        self.refused: dict[int, str] = {}

    def run(self, model: engine.Model, buffers: list[driver.Buffer]) -> None:
        """The op's call on `buffers`: replayed if captured, else executed
        (and captured when the same buffers came before)."""
        key = (id(model), *[(buffer._data_ptr(), buffer.shape) for buffer in buffers])  # noqa: SLF001
        found = self._graphs.get(key)
        if found is not None:
            model._replay([found[1]], buffers)  # noqa: SLF001
            return
        if key not in self._seen or id(model) in self.refused:
            with self._lock:
                self._seen[key] = None
                if len(self._seen) > self.SEEN_KEPT:
                    self._seen.pop(next(iter(self._seen)))
            execute(model, buffers)
            return
        with self._lock:
            graph = self._capture(model, key, buffers)
        if graph is None:
            execute(model, buffers)
        else:
            model._replay([graph], buffers)  # noqa: SLF001

    def _capture(self, model: engine.Model, key: tuple, buffers: list[driver.Buffer]) -> int | None:
        """Capture the call as a new graph (None if MAX cannot), making room first."""
        if key in self._graphs:  # another thread captured it meanwhile
            return self._graphs[key][1]
        while len(self._graphs) >= self.GRAPHS_KEPT:
            old_model, old_graph = self._graphs.pop(next(iter(self._graphs)))
            old_model._release_captured_graph([old_graph])  # noqa: SLF001
        graph = next(self._keys)
        try:
            model._capture([graph], buffers)  # noqa: SLF001
        except Exception as exc:  # noqa: BLE001 (capture is best-effort in MAX: execute instead)
            self.refused[id(model)] = f"{type(exc).__name__}: {exc}"
            return None
        self._graphs[key] = (model, graph)
        return graph
