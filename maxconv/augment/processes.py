"""A job on several devices of one host: one worker process per device, the manifest in input order.

One process cannot feed two GPUs: a clip's path (reading, the rows' host
work around the op, finishing, writing) holds the GIL for part of its time,
so the threads of one process ran 10,000 clips on two H200s at 778-797
clips/s against 859-915 on one (`docs/data/augment-gpu-all-x2-2026-11-29/`).
Here each device gets its own process running the local job (`run_job`,
its reading, computing and writing threads) on every N-th group of the
plan, and this process puts the groups' records into the manifest in input
order as they come, so the manifest, the outputs and `--resume` are those
of a one-device run. The clock starts once every worker has opened its
device, as a one-device run's starts after the command opened it.
"""

from __future__ import annotations

import copy
import dataclasses
import multiprocessing
import queue
import signal
import time
from collections.abc import Sequence
from typing import Any

from ..atomic import discard_uncommitted
from ..errors import MaxconvError
from .job import PHASES, JobReport, Progress, default_workers, run_job
from .manifest import InputOrder, Manifest
from .plan import JobPlan, Task, default_group_clips, default_window_clips

# Seconds to wait for a worker's next message before checking that it is alive.
POLL_SECONDS = 1.0
# Seconds a stopped worker gets to finish the groups it has in flight.
STOP_SECONDS = 60.0


class _Forward:
    """A worker's stand-in for the manifest: the records go to the parent."""

    def __init__(self, messages: Any, worker: int) -> None:  # noqa: ANN401
        self.messages = messages
        self.worker = worker

    def append(self, records: list[dict]) -> None:
        if records:
            self.messages.put(("records", self.worker, records))


def _share(plan: JobPlan, groups: list[list[Task]]) -> JobPlan:
    """A plan that runs exactly `groups`, in order, its tasks numbered from 0 in
    that order (run_job releases records in task-number order)."""
    numbered, count = [], 0
    for group in groups:
        numbered.append(
            [dataclasses.replace(task, index=count + i) for i, task in enumerate(group)]
        )
        count += len(group)
    share = copy.copy(plan)
    share.tasks = [task for group in numbered for task in group]
    share.groups = lambda: iter(numbered)  # run_job takes its groups from here
    return share


def _stop(signum: int, frame: object) -> None:
    """SIGTERM from the parent (a --strict stop, a fault elsewhere): leave run_job
    by an exception, so its groups in flight finish their files and no temp file
    is left behind."""
    raise KeyboardInterrupt


def _work(plan: JobPlan, groups: list[list[Task]], device: str, worker: int, messages: Any) -> None:  # noqa: ANN401
    """A worker process: open `device`, run its groups, report."""
    signal.signal(signal.SIGTERM, _stop)
    try:
        from ..engine import get_engine

        engine = get_engine(device)
        messages.put(("ready", worker, None))
        report = run_job(_share(plan, groups), _Forward(messages, worker), [engine])
        messages.put(("done", worker, report.as_dict()))
    except BaseException as exc:  # the parent reports it; nothing else would see it
        text = " ".join(str(exc).split()) or type(exc).__name__
        messages.put(("error", worker, f"{device}: {text}"))
    finally:
        discard_uncommitted()


def run_on_devices(
    plan: JobPlan, manifest: Manifest, devices: Sequence[str], progress: Progress | None = None
) -> JobReport:
    """Run a planned job with one worker process per device (see the module doc).

    Raises
    ------
    MaxconvError
        When a worker fails outside a clip (its device, its files); the
        manifest keeps the records of every clip done before, in input order.
    """
    kind = "cpu" if any(device.split(":")[0] == "cpu" for device in devices) else "gpu"
    options = copy.copy(plan.options)
    options.group_clips = options.group_clips or default_group_clips(kind)
    options.window_clips = options.window_clips or default_window_clips(kind)
    options.workers = options.workers or max(1, default_workers(list(devices)) // len(devices))
    plan = copy.copy(plan)
    plan.options = options
    plan.group_clips = options.group_clips
    plan.window_clips = options.window_clips
    groups = list(plan.groups())  # what a one-device run of this kind computes, in its order
    report = JobReport(
        str(plan.outdir), list(devices), plan.total, plan.skipped,
        workers=options.workers, group_clips=options.group_clips,
    )  # fmt: skip
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    processes = [
        context.Process(
            target=_work, args=(plan, groups[worker :: len(devices)], device, worker, messages)
        )
        for worker, device in enumerate(devices)
    ]
    for process in processes:
        process.start()
    index_of = {task.output: task.index for task in plan.tasks}
    try:
        _collect(processes, messages, manifest, report, progress, index_of, options.strict)
    finally:
        for process in processes:  # a worker still running stops cleanly on SIGTERM (_stop)
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(STOP_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
    return report


def _collect(
    processes: list,
    messages: Any,  # noqa: ANN401
    manifest: Manifest,
    report: JobReport,
    progress: Progress | None,
    index_of: dict[str, int],
    strict: bool,
) -> None:
    """Put the workers' records into the manifest in input order, and merge their reports.

    With `strict`, the run stops at the first failed clip (the workers are
    stopped); the records of the clips done by then are listed, in input order.
    """
    workers = len(processes)
    ready: set[int] = set()
    finished: dict[int, dict] = {}
    order = InputOrder()
    started = time.perf_counter()
    try:
        while len(finished) < workers and not report.stopped:
            try:
                kind, worker, payload = messages.get(timeout=POLL_SECONDS)
            except queue.Empty:
                gone = [
                    p for i, p in enumerate(processes) if i not in finished and not p.is_alive()
                ]
                if gone:
                    code = gone[0].exitcode
                    raise MaxconvError(
                        f"an augment worker process died (exit code {code})"
                    ) from None
                continue
            if kind == "ready":
                ready.add(worker)
                if len(ready) == workers:
                    started = time.perf_counter()
            elif kind == "records":
                manifest.append(order.add((index_of[r["output"]] for r in payload), payload))
                report.add(payload)
                report.seconds = time.perf_counter() - started
                if progress is not None:
                    progress(report)
                report.stopped = strict and report.failed > 0
            elif kind == "done":
                finished[worker] = payload
            else:
                raise MaxconvError(payload)
    finally:
        manifest.append(order.release())  # records held behind a clip not done (a stop, a fault)
    report.seconds = time.perf_counter() - started
    report.stopped = report.stopped or any(done["stopped"] for done in finished.values())
    phases = dict.fromkeys((*PHASES, "cpu"), 0.0)
    for done in finished.values():  # seconds summed over the workers' threads, and their CPU
        for name in phases:
            phases[name] += done["phases"].get(name, 0.0)
    report.phases = {**phases, "wall": report.seconds}
