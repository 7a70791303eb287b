"""Planning an augmentation job: its options, its clips paired with responses, its groups.

`plan_job` finds the clips and responses, pairs them (seeded draws, or a
pairs list), names the outputs, checks the targets and opens the manifest;
the plan's *groups* (consecutive clips in input order; on a CPU cut from
windows of consecutive clips ordered by response, see `JobPlan.windows`) are
the unit that a local run (job.py) and a Ray run (maxconv.ray) compute,
group by group (group.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, OutputError
from .discovery import Entry, check_unique_names, find_entries, read_list
from .manifest import Manifest
from .pairing import DEFAULT_SEED, MixSpec, Pair, draw_pairs, pairs_from_list, parse_mix

LENGTHS = ("same", "tail")
ALIGNS = ("peak", "causal")
NORMALIZES = ("none", "peak", "input")
# Clips per group: enough rows to fill a GPU in one call; on a CPU, small enough that
# reading and writing overlap the compute of the next group.
GROUP_CLIPS_GPU = 256
GROUP_CLIPS_CPU = 32
# On a CPU, groups are cut from windows of this many consecutive clips ordered by
# response, so a group holds few responses with many clips each: the CPU computes a
# response's clips in one op call (group.py), and one call of ten rows costs a third
# of ten calls of one (0.28 against 0.6 ms a clip on the 2-core machine, 100
# responses of 8,000-24,000 taps). The manifest still lists the clips in input
# order, each once every clip before it is done (manifest.InputOrder).
WINDOW_CLIPS_CPU = 1024
# Samples of signal rows per convolve_batch call at most (64 MiB of float32).
BATCH_SAMPLES = 1 << 24


@dataclass
class AugmentOptions:
    """What `maxconv augment` can ask for, with its defaults."""

    mix: str | float = 1.0
    length: str = "same"
    align: str = "peak"
    normalize: str = "input"
    seed: int = DEFAULT_SEED
    device: str = "auto"
    method: str = "auto"
    subtype: str | None = None
    format: str | None = None
    rate: int | None = None
    force: bool = False
    resume: bool = False
    strict: bool = False
    group_clips: int | None = None  # None: by device kind
    batch_samples: int = BATCH_SAMPLES
    workers: int | None = None  # reading and writing threads; None: by cores
    window_clips: int | None = None  # None: by device kind (see JobPlan.windows)


def check_options(options: AugmentOptions) -> MixSpec:
    """Reject bad option values before any file is touched; returns the parsed mix."""
    mix = parse_mix(options.mix)
    if options.length not in LENGTHS:
        raise ValueError(f"--length must be same or tail, not {options.length!r}")
    if options.align not in ALIGNS:
        raise ValueError(f"--align must be peak or causal, not {options.align!r}")
    if options.normalize not in NORMALIZES:
        raise ValueError(f"--normalize must be none, peak or input, not {options.normalize!r}")
    if options.method not in ("auto", "direct", "fft"):
        raise ValueError(f"--method must be auto, direct or fft, not {options.method!r}")
    if options.group_clips is not None and options.group_clips < 1:
        raise ValueError(f"--group must be positive, not {options.group_clips}")
    if options.window_clips is not None and options.window_clips < 1:
        raise ValueError(f"window_clips must be positive, not {options.window_clips}")
    if options.rate is not None and options.rate < 1:
        raise ValueError(f"--rate must be positive, not {options.rate}")
    if options.resume and options.force:
        raise ValueError("--resume keeps the outputs that are done; --force redoes them all")
    return mix


def resolve_devices(spec: str, gpu_count: Callable[[], int] | None = None) -> list[str]:
    """The devices a job computes on: one, or with ``gpu:all`` every GPU of the host.

    Raises
    ------
    ValueError
        For an unknown device spelling, or ``gpu:all`` where MAX sees no GPU.
    """
    if spec.strip().lower() == "gpu:all":
        if gpu_count is None:
            from ..devices import gpu_count
        count = gpu_count()
        if count == 0:
            raise ValueError("device 'gpu:all' asked for, but MAX sees no GPU; use --device cpu")
        return [f"gpu:{index}" for index in range(count)]
    from ..devices import parse_device

    parse_device(spec)
    return [spec]


def default_group_clips(kind: str) -> int:
    """Clips per group for a device kind (GPUs take bigger groups)."""
    return GROUP_CLIPS_GPU if kind == "gpu" else GROUP_CLIPS_CPU


def default_window_clips(kind: str) -> int | None:
    """Clips per window for a device kind: WINDOW_CLIPS_CPU on a CPU, none on a
    GPU (its calls take a whole group's rows, one kernel each, whatever the order)."""
    return WINDOW_CLIPS_CPU if kind == "cpu" else None


@dataclass(frozen=True)
class Task:
    """One clip to augment: where it is, its output name, its response and wet share."""

    index: int
    input: str
    output: str
    response: str
    mix: float


@dataclass
class JobPlan:
    """The clips still to do, and how many the manifest already had."""

    outdir: Path
    tasks: list[Task]
    total: int
    skipped: int
    seed: int
    options: AugmentOptions
    group_clips: int = GROUP_CLIPS_CPU
    existing: set[str] = field(default_factory=set)  # outputs already there when planned
    window_clips: int | None = None  # None: groups in input order

    def windows(self) -> Iterator[list[list[Task]]]:
        """The groups the job runs, window by window.

        A window is `window_clips` consecutive tasks ordered by response (ties
        in input order) and cut into groups of `group_clips`; without windows
        each group is its own window of consecutive tasks. A pure function of
        the tasks, so a local and a Ray run compute the same groups.
        """
        size = self.window_clips or self.group_clips
        for start in range(0, len(self.tasks), size):
            window = self.tasks[start : start + size]
            if self.window_clips:
                window = sorted(window, key=lambda task: (task.response, task.index))
            yield [
                window[first : first + self.group_clips]
                for first in range(0, len(window), self.group_clips)
            ]

    def groups(self) -> Iterator[list[Task]]:
        """The groups the job runs, in order (see `windows`)."""
        for window in self.windows():
            yield from window


def output_name(name: str, format: str | None) -> str:
    """The output's relative name: the input's, with the format's suffix if one is forced."""
    if format is None:
        return name
    suffix = {"RF64": "wav", "AIFF": "aiff"}.get(format.upper(), format.lower())
    stem, dot, _ = name.rpartition(".")
    return f"{stem if dot else name}.{suffix}"


def plan_job(
    clips: Sequence[str],
    responses: Sequence[str],
    outdir: str | os.PathLike[str],
    options: AugmentOptions,
    pairs: str | None = None,
) -> tuple[JobPlan, Manifest]:
    """Find the clips and responses, pair them, and open the manifest.

    Parameters
    ----------
    clips, responses
        Files, folders or lists (see `discovery`); `clips` may be empty when
        `pairs` lists the clips.
    outdir
        The output folder; created if missing.
    options
        The job's options (checked here).
    pairs
        A CSV/JSONL/text list with a response (and optionally a mix) per clip,
        instead of seeded draws.

    Returns
    -------
    plan : JobPlan
        The tasks still to do (``--resume`` leaves out those done).
    manifest : Manifest
        Open for appending; close it when the job ends.

    Raises
    ------
    InputError
        No clips, a path that does not exist, clips missing from the pairs file.
    OutputError
        The output folder cannot be made, an output exists without --force or
        --resume, or an output would overwrite its input.
    """
    mix = check_options(options)
    folder = Path(outdir)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output '{folder}' is a file; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder '{folder}': {exc.strerror}") from exc
    clip_entries = find_entries(clips, exclude=folder) if clips else None
    if pairs is not None:
        chosen = pairs_from_list(clip_entries, read_list(Path(pairs)), mix, options.seed)
    else:
        if not clips:
            raise InputError("no clips given; name files, folders or lists of clips")
        response_paths = [entry.path for entry in find_entries(responses, exclude=folder)]
        chosen = draw_pairs(clip_entries or [], response_paths, mix, options.seed)
    if not chosen:
        raise InputError("no clips found; folders are searched for audio files and .npy")
    named = [
        Pair(Entry(p.clip.path, output_name(p.clip.name, options.format)), p.response, p.mix)
        for p in chosen
    ]
    check_unique_names([pair.clip for pair in named])
    manifest = Manifest(folder, resume=options.resume, force=options.force)
    try:
        tasks = []
        for pair in named:
            if pair.clip.name in manifest.done:
                continue
            tasks.append(
                Task(
                    len(tasks),
                    os.path.abspath(pair.clip.path),
                    pair.clip.name,
                    os.path.abspath(pair.response),
                    pair.mix,
                )
            )
        existing = _check_targets(folder, tasks, options)
    except BaseException:
        manifest.close()
        raise
    plan = JobPlan(folder, tasks, len(named), len(named) - len(tasks), options.seed, options)
    plan.existing = set(existing)
    return plan, manifest


def _check_targets(folder: Path, tasks: list[Task], options: AugmentOptions) -> list[str]:
    """No output may be an input; an existing one needs --force (or --resume).

    Returns the outputs (relative names) that exist.
    """
    existing = []
    names = []
    for task in tasks:
        target = folder / task.output
        if target.exists():
            if os.path.exists(task.input) and os.path.samefile(task.input, target):
                raise OutputError(
                    f"output '{target}' is the input file; maxconv never overwrites its input: "
                    "give another output folder"
                )
            existing.append(target)
            names.append(task.output)
    if existing and not (options.force or options.resume):
        raise OutputError(
            f"{len(existing)} output(s) exist already, such as '{existing[0]}'; use --force to "
            "overwrite them or --resume to go on with an earlier run"
        )
    if options.resume:
        for parent in {(folder / task.output).parent for task in tasks}:
            for stale in parent.glob(".maxconv-*.part"):  # a killed run's temp files
                stale.unlink(missing_ok=True)
    return names
