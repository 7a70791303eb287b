"""The local augmentation job: a plan's groups on this host's devices, in input order.

Several groups are in flight at once: a group's clips are read and decoded on
worker threads, its rows computed on a free device (with ``gpu:all`` each GPU
computes its own groups, one engine per GPU, groups taken as devices come
free), its outputs finished and written on worker threads, and its manifest
lines appended in input order once all its files are in place. So reading,
computing and writing overlap.

A job's cost beside the compute is per clip: reading, finishing, writing.
Threads take a group's clips in chunks, not one by one, and the report breaks
the time down by phase (`PHASES`, seconds summed over the threads that run
each).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import MaxconvError
from .clipio import OutputFiles
from .group import ConvolveBatch, LoadedClip, compute_group, load_clip, write_clip
from .manifest import InputOrder, Manifest
from .plan import JobPlan, Task, default_group_clips, default_window_clips, resolve_devices
from .responses import ResponseBank

if TYPE_CHECKING:
    from ..engine import Engine


@dataclass
class JobReport:
    """What a run did, for the summary and ``--json``."""

    outdir: str
    devices: list[str]
    total: int
    skipped: int
    done: int = 0
    failed: int = 0
    errors: list[dict] = field(default_factory=list)  # the first few failures
    clipped_outputs: int = 0
    audio_seconds: float = 0.0
    seconds: float = 0.0
    stopped: bool = False  # --strict stopped the run at a failure
    # Where the time went (see PHASES): seconds summed over the threads of each phase,
    # "wall" (the run's) and "cpu" (the process's user + system time during the run).
    phases: dict[str, float] = field(default_factory=dict)
    workers: int = 0  # reading (and as many writing) threads
    group_clips: int = 0

    @property
    def clips_per_second(self) -> float:
        return (self.done + self.failed) / self.seconds if self.seconds else 0.0

    @property
    def realtime(self) -> float:
        return self.audio_seconds / self.seconds if self.seconds else 0.0

    def add(self, records: Sequence[dict]) -> None:
        """Count a group's records."""
        for record in records:
            if "error" in record:
                self.failed += 1
                if len(self.errors) < 20:
                    self.errors.append({"input": record["input"], "error": record["error"]})
            else:
                self.done += 1
                self.clipped_outputs += record["clipped"] > 0
                if record.get("rate"):
                    self.audio_seconds += record["frames"] / record["rate"]

    def as_dict(self) -> dict:
        data = asdict(self)
        data["clips_per_second"] = self.clips_per_second
        data["realtime"] = self.realtime
        return data


Progress = Callable[[JobReport], None]

# The phases a run's time is broken into: reading and decoding the clips (with the
# responses' preparation), computing a group on its device, finishing (mix and
# normalization), writing (encoding and the files), and appending to the manifest.
PHASES = ("read", "compute", "finish", "write", "manifest")


class _Phases:
    """Seconds per phase, added to from several threads."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self._lock = threading.Lock()

    def add(self, seconds: dict[str, float]) -> None:
        with self._lock:
            for name, value in seconds.items():
                self.seconds[name] += value

    def report(self, wall: float, cpu: float) -> dict[str, float]:
        with self._lock:
            return {**self.seconds, "wall": wall, "cpu": cpu}


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def default_workers(labels: Sequence[str]) -> int:
    """Threads for reading (and as many for writing): decoding and I/O release the GIL.

    A CPU device's op took every core, and slowed down sharply when a core was
    busy elsewhere: on the 2-core machine one reading and one writing thread
    gave 403 clips/s, two of each 276, four 194 (1-second clips, 8,000-24,000
    taps). With each call on one core (group.CPU_CALL_WORKERS) one of each
    still wins: 1,052 clips/s against 847 for two of each (medians of 4).
    A GPU leaves the cores to the threads, but a clip's path is CPU work
    now (its files are in the page cache; some 0.1 ms a clip holds the
    GIL), so threads beyond the cores only contend: half the cores each way
    (8 and 8 on a 16-core host), which also leaves cores to the GPU's copy
    threads. With the compute stubbed out on the 2-core machine, 1+1 threads
    took 0.6-1.1 ms of CPU a clip, 4+4 1.2 (scripts/augment_bench.py
    --stub-runs measures it on a host).
    """
    cores = os.cpu_count() or 1
    if any(label == "cpu" for label in labels):
        return max(1, cores // 4)
    return max(2, min(16, cores // 2))


# Clips a thread reads (or writes) in one go at most: few hand-offs, yet a group's
# clips spread over every thread.
CHUNK_CLIPS = 16


def _chunks(items: Sequence, workers: int) -> list[Sequence]:
    """Consecutive slices of `items`, at least one per worker where there are enough."""
    size = max(1, min(CHUNK_CLIPS, -(-len(items) // workers)))
    return [items[start : start + size] for start in range(0, len(items), size)]


def _flat(parts: Iterator[list]) -> list:
    return [item for part in parts for item in part]


def open_engines(spec: str) -> list[Engine]:
    """The engines a job computes on, for the command to open once: one, or
    with ``gpu:all`` one per GPU of the host (see plan.resolve_devices).

    Raises
    ------
    ValueError
        For an unknown device, or ``gpu:all`` where MAX sees no GPU.
    """
    from ..engine import get_engine

    return [get_engine(device) for device in resolve_devices(spec)]


def run_job(
    plan: JobPlan,
    manifest: Manifest,
    engines: Sequence[Engine],
    progress: Progress | None = None,
    convolve: ConvolveBatch | None = None,
) -> JobReport:
    """Run a planned job on these engines: groups in flight on worker threads, in input order.

    Each group computes on one engine, taken as engines come free. `convolve`
    stands in for `batch.convolve_batch_on` in tests. ``--strict`` stops after
    the group of the first failure (the groups already running finish and are
    listed); the report says so.

    Raises
    ------
    MaxconvError, RuntimeError
        Faults that are not one clip's (the engine, the manifest); the
        manifest keeps every group completed before.

    On a CPU the groups of a window run in response order (JobPlan.windows);
    the manifest gets the records in input order, each once every clip before
    it has its own.
    """
    options = plan.options
    plan.group_clips = options.group_clips or default_group_clips(engines[0].kind)
    plan.window_clips = options.window_clips or default_window_clips(engines[0].kind)
    labels = [engine.label for engine in engines]
    workers = options.workers or default_workers(labels)
    report = JobReport(
        str(plan.outdir),
        labels,
        plan.total,
        plan.skipped,
        workers=workers,
        group_clips=plan.group_clips,
    )
    bank = ResponseBank()
    free: queue.Queue[Engine] = queue.Queue()
    for engine in engines:
        free.put(engine)
    stopping = threading.Event()
    readers = concurrent.futures.ThreadPoolExecutor(workers, "maxconv-read")
    writers = concurrent.futures.ThreadPoolExecutor(workers, "maxconv-write")
    # Each group runs on one of these threads: reading, then a free engine, then writing.
    groups = concurrent.futures.ThreadPoolExecutor(len(engines) + 2, "maxconv-group")

    phases = _Phases()
    files = OutputFiles(plan.existing)

    def read_chunk(tasks: Sequence[Task]) -> list[LoadedClip]:
        started = time.perf_counter()
        loaded = [load_clip(task, bank, options) for task in tasks]
        phases.add({"read": time.perf_counter() - started})
        return loaded

    def write_chunk(pairs: Sequence[tuple[LoadedClip, np.ndarray | None]]) -> list[dict]:
        seconds = {"finish": 0.0, "write": 0.0}
        records = [
            write_clip(clip, wet, plan.outdir, plan.seed, options, seconds, files)
            for clip, wet in pairs
        ]
        phases.add(seconds)
        return records

    def one_group(tasks: list[Task]) -> list[dict]:
        loaded = _flat(readers.map(read_chunk, _chunks(tasks, workers)))
        if stopping.is_set():
            return []
        engine = free.get()
        try:
            started = time.perf_counter()
            wets = compute_group(loaded, options, engine, convolve)
            phases.add({"compute": time.perf_counter() - started})
        finally:
            free.put(engine)
        if stopping.is_set():
            return []
        pairs = list(zip(loaded, wets, strict=True))
        return _flat(writers.map(write_chunk, _chunks(pairs, workers)))

    started = time.perf_counter()
    cpu_started = _cpu_seconds()
    pending: collections.deque[tuple[concurrent.futures.Future, list[Task]]] = collections.deque()
    in_flight = len(engines) + 2
    order = InputOrder()

    def append(records: list[dict]) -> None:
        appending = time.perf_counter()
        manifest.append(records)
        phases.add({"manifest": time.perf_counter() - appending})

    def collect(future: concurrent.futures.Future, tasks: list[Task]) -> None:
        records = future.result()
        append(order.add((task.index for task in tasks), records))
        report.add(records)
        report.seconds = time.perf_counter() - started
        if progress is not None:
            progress(report)
        if options.strict and report.failed:
            report.stopped = True

    try:
        for tasks in plan.groups():
            if report.stopped:
                break
            while len(pending) >= in_flight:
                collect(*pending.popleft())
            pending.append((groups.submit(one_group, tasks), tasks))
        while pending:
            collect(*pending.popleft())
        append(order.release())  # a window that --strict cut short
    except BaseException:
        with contextlib.suppress(MaxconvError, OSError):
            manifest.append(order.release())  # the groups done of the window in progress
        raise
    finally:
        if pending:  # an exception is on its way out: drop what has not started
            stopping.set()
        for future, _ in pending:
            future.cancel()
        groups.shutdown(wait=True)
        readers.shutdown(wait=True)
        writers.shutdown(wait=True)
    report.seconds = time.perf_counter() - started
    report.phases = phases.report(report.seconds, _cpu_seconds() - cpu_started)
    return report
