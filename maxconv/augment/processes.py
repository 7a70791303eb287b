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
import multiprocessing
import queue
import time
from collections.abc import Sequence
from typing import Any

from ..errors import MaxconvError
from .job import PHASES, JobReport, Progress, default_workers, run_job
from .manifest import Manifest
from .plan import GROUP_CLIPS_CPU, GROUP_CLIPS_GPU, JobPlan

# Seconds to wait for a worker's next message before checking that it is alive.
POLL_SECONDS = 1.0


class _Forward:
    """A worker's stand-in for the manifest: each group's records go to the parent."""

    def __init__(self, messages: Any, worker: int) -> None:  # noqa: ANN401
        self.messages = messages
        self.worker = worker
        self.sent = 0

    def append(self, records: list[dict]) -> None:
        self.messages.put(("group", self.worker, self.sent, records))
        self.sent += 1


def _share(plan: JobPlan, worker: int, workers: int) -> JobPlan:
    """The plan of one worker: every `workers`-th group from its own, in order."""
    groups = [group for index, group in enumerate(plan.groups()) if index % workers == worker]
    share = copy.copy(plan)
    share.groups = lambda: iter(groups)  # run_job takes its groups from here
    return share


def _work(plan: JobPlan, device: str, worker: int, workers: int, messages: Any) -> None:  # noqa: ANN401
    """A worker process: open `device`, run its share of the plan, report."""
    try:
        from ..engine import get_engine

        engine = get_engine(device)
        messages.put(("ready", worker, None, None))
        report = run_job(_share(plan, worker, workers), _Forward(messages, worker), [engine])
        messages.put(("done", worker, None, report.as_dict()))
    except BaseException as exc:  # the parent reports it; nothing else would see it
        text = " ".join(str(exc).split()) or type(exc).__name__
        messages.put(("error", worker, None, f"{device}: {text}"))


def run_on_devices(
    plan: JobPlan, manifest: Manifest, devices: Sequence[str], progress: Progress | None = None
) -> JobReport:
    """Run a planned job with one worker process per device (see the module doc).

    Raises
    ------
    MaxconvError
        When a worker fails outside a clip (its device, its files); the
        manifest keeps every group completed in order before.
    """
    options = copy.copy(plan.options)
    kinds = {device.split(":")[0] for device in devices}
    options.group_clips = options.group_clips or (
        GROUP_CLIPS_CPU if "cpu" in kinds else GROUP_CLIPS_GPU
    )
    options.workers = options.workers or max(1, default_workers(list(devices)) // len(devices))
    plan = copy.copy(plan)
    plan.options = options
    plan.group_clips = options.group_clips
    report = JobReport(
        str(plan.outdir), list(devices), plan.total, plan.skipped,
        workers=options.workers, group_clips=options.group_clips,
    )  # fmt: skip
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    processes = [
        context.Process(target=_work, args=(plan, device, worker, len(devices), messages))
        for worker, device in enumerate(devices)
    ]
    for process in processes:
        process.start()
    try:
        _collect(processes, messages, manifest, report, progress, options.strict)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
    return report


def _collect(
    processes: list,
    messages: Any,  # noqa: ANN401
    manifest: Manifest,
    report: JobReport,
    progress: Progress | None,
    strict: bool,
) -> None:
    """Merge the workers' groups into the manifest in input order, and their reports.

    With `strict`, merging stops after the group of the first failure (the
    workers are stopped; groups after it are not listed), as run_job does.
    """
    workers = len(processes)
    ready: set[int] = set()
    finished: dict[int, dict] = {}
    waiting: dict[int, list[dict]] = {}  # by the group's number in the plan
    next_group = 0
    started = time.perf_counter()
    while len(finished) < workers and not report.stopped:
        try:
            kind, worker, sent, payload = messages.get(timeout=POLL_SECONDS)
        except queue.Empty:
            dead = [p for i, p in enumerate(processes) if i not in finished and not p.is_alive()]
            if dead:
                code = dead[0].exitcode
                raise MaxconvError(f"an augment worker process died (exit code {code})") from None
            continue
        if kind == "ready":
            ready.add(worker)
            if len(ready) == workers:
                started = time.perf_counter()
        elif kind == "group":
            waiting[sent * workers + worker] = payload
            while next_group in waiting and not report.stopped:
                records = waiting.pop(next_group)
                manifest.append(records)
                report.add(records)
                report.seconds = time.perf_counter() - started
                next_group += 1
                if progress is not None:
                    progress(report)
                report.stopped = strict and report.failed > 0
        elif kind == "done":
            finished[worker] = payload
        else:
            raise MaxconvError(payload)
    report.seconds = time.perf_counter() - started
    report.stopped = report.stopped or any(done["stopped"] for done in finished.values())
    phases = dict.fromkeys((*PHASES, "cpu"), 0.0)
    for done in finished.values():  # seconds summed over the workers' threads, and their CPU
        for name in phases:
            phases[name] += done["phases"].get(name, 0.0)
    report.phases = {**phases, "wall": report.seconds}
