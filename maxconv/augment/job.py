"""The augmentation job: every clip through its response, file to file, in groups.

The work is cut into *groups* of consecutive clips (in input order). A group
is the unit of everything: its clips are read and decoded on worker threads,
its convolution rows (one per clip channel, four per true-stereo clip) go
through `convolve_batch` in as few calls as its size allows (rows sorted by
signal and kernel length, cut at `batch_samples`), its outputs are finished
(mix, normalization) and written on worker threads, and its manifest lines are
appended in input order once all its files are in place. Several groups are in
flight at once, so reading, computing and writing overlap, and with
``gpu:all`` each GPU computes its own groups (one engine per GPU, groups taken
as devices come free, outputs and manifest still in input order).

A job's cost beside the compute is per clip: reading, finishing, writing. Plain
WAVs are read and written by `clipio` (one open and read, one open, write and
rename, the same bytes as `maxconv.audio_write`), other files through `maxconv.audio_read`
and `maxconv.audio_write`;
threads take a group's clips in chunks, not one by one; and the report breaks
the time down by phase (`PHASES`, seconds summed over the threads that run each).

What is computed for a clip depends only on its group, never on timing or on
which device or process runs it; the Ray job (maxconv.ray) runs the very same
groups, so its outputs are the same bytes as a local run's.

A clip's output is the slice ``full[shift : shift + count]`` of the full
convolution, where ``shift`` is the response's peak for ``--align peak`` (0
for causal) and ``count`` is the clip's length for ``--length same`` or runs to
the end of the tail for ``tail``. The rows go to `convolve_batch` in ``full``
mode as they are and the slice is cut here: `convolve_batch` computes a
group's full result anyway (its rows padded to a common length), so padding
the rows here to ask for ``valid`` would only lengthen them.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..audio_read import SignalInfo
from ..audio_write import SignalWriter, open_writer, output_format, output_subtype
from ..errors import InputError, MaxconvError, OutputError
from .clipio import SFC_SET_ADD_PEAK_CHUNK, OutputFiles, read_clip, wav_bytes
from .discovery import Entry, check_unique_names, find_entries, read_list
from .manifest import Manifest
from .pairing import DEFAULT_SEED, MixSpec, Pair, draw_pairs, pairs_from_list, parse_mix
from .responses import Response, ResponseBank, combine_rows, layout, row_plan

LENGTHS = ("same", "tail")
ALIGNS = ("peak", "causal")
NORMALIZES = ("none", "peak", "input")
NORMALIZE_PEAK_DB = -0.1
# Clips per group: enough rows to fill a GPU in one call; on a CPU, small enough that
# reading and writing overlap the compute of the next group.
GROUP_CLIPS_GPU = 256
GROUP_CLIPS_CPU = 32
# Samples of signal rows per convolve_batch call at most (64 MiB of float32).
BATCH_SAMPLES = 1 << 24

ConvolveBatch = Callable[..., list[np.ndarray]]


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


def default_group_clips(devices: Sequence[str], gpu_count: Callable[[], int] | None = None) -> int:
    """Clips per group for these devices (GPUs take bigger groups)."""
    first = devices[0].strip().lower()
    if first.startswith("gpu"):
        return GROUP_CLIPS_GPU
    if first == "auto":
        if gpu_count is None:
            from ..devices import gpu_count
        return GROUP_CLIPS_GPU if gpu_count() > 0 else GROUP_CLIPS_CPU
    return GROUP_CLIPS_CPU


# Planning --------------------------------------------------------------------------------


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

    def groups(self) -> Iterator[list[Task]]:
        """The groups the job runs, consecutive tasks in input order."""
        for start in range(0, len(self.tasks), self.group_clips):
            yield self.tasks[start : start + self.group_clips]


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


# One group: load, compute, finish, write --------------------------------------------------


@dataclass
class LoadedClip:
    """A clip read and matched with its response, or the reason it cannot be used."""

    task: Task
    data: np.ndarray | None = None
    info: SignalInfo | None = None
    response: Response | None = None
    layout: str | None = None
    error: str | None = None


def load_clip(task: Task, bank: ResponseBank, options: AugmentOptions) -> LoadedClip:
    """Read a clip and prepare its response; a failure is recorded, not raised."""
    try:
        data, info = read_clip(task.input)
        if data.shape[1] == 0:
            raise InputError(f"clip '{task.input}' has no samples")
        rate = info.samplerate if info.samplerate is not None else options.rate
        response = bank.get(task.response, rate)
        kind = layout(response.taps.shape[0], data.shape[0], task.response)
    except (MaxconvError, ValueError, OSError, MemoryError) as exc:
        return LoadedClip(task, error=_one_line(exc))
    return LoadedClip(task, data, info, response, kind)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _span(clip: LoadedClip, options: AugmentOptions) -> tuple[int, int]:
    """(shift, count): the output is full[shift : shift + count]."""
    assert clip.data is not None and clip.response is not None
    shift = clip.response.peak if options.align == "peak" else 0
    frames = clip.data.shape[1]
    taps = clip.response.taps.shape[1]
    count = frames if options.length == "same" else frames + taps - 1 - shift
    return shift, count


def compute_group(
    clips: Sequence[LoadedClip],
    options: AugmentOptions,
    device: str,
    convolve: ConvolveBatch | None = None,
) -> list[np.ndarray | None]:
    """The wet signal ``(channels, count)`` of each usable clip (None for failed ones).

    Every row of the group goes through `convolve` (default:
    `maxconv.convolve_batch`) in ``full`` mode, sorted by signal and kernel
    length and cut into calls of at most ``options.batch_samples`` samples.
    """
    if convolve is None:
        from ..batch import convolve_batch as convolve
    rows: list[np.ndarray] = []
    kernels: list[np.ndarray] = []
    owners: list[int] = []
    for number, clip in enumerate(clips):
        if clip.error is not None:
            continue
        assert clip.data is not None and clip.response is not None and clip.layout is not None
        for channel, path in row_plan(clip.layout, clip.data.shape[0]):
            rows.append(clip.data[channel])
            kernels.append(clip.response.taps[path])
            owners.append(number)
    results: list[np.ndarray | None] = [None] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: (rows[i].size, kernels[i].size, i))
    start = 0
    while start < len(order):
        stop, samples = start, 0
        while stop < len(order) and (stop == start or samples < options.batch_samples):
            samples += rows[order[stop]].size
            stop += 1
        chosen = order[start:stop]
        outs = convolve(
            [rows[i] for i in chosen],
            [kernels[i] for i in chosen],
            "full",
            method=options.method,
            device=device,
        )
        for i, out in zip(chosen, outs, strict=True):
            results[i] = out
        start = stop
    per_clip: dict[int, list[np.ndarray]] = collections.defaultdict(list)
    for owner, out in zip(owners, results, strict=True):
        assert out is not None
        shift, count = _span(clips[owner], options)
        per_clip[owner].append(np.asarray(out[shift : shift + count], dtype=np.float32))
    return [
        combine_rows(clip.layout, per_clip[number]) if number in per_clip else None
        for number, clip in enumerate(clips)
    ]


def finish_clip(
    clip: LoadedClip, wet: np.ndarray, options: AugmentOptions
) -> tuple[np.ndarray, int, float]:
    """Mix dry and wet, normalize: the output samples, the shift and the gain."""
    assert clip.data is not None
    shift, count = _span(clip, options)
    mix = clip.task.mix
    out = wet
    if mix < 1.0:
        dry = np.zeros_like(wet)
        keep = min(count, clip.data.shape[1])
        dry[:, :keep] = clip.data[:, :keep]
        out = np.float32(1.0 - mix) * dry + np.float32(mix) * wet
    gain = 1.0
    if options.normalize == "peak":
        peak = float(np.max(np.abs(out), initial=0.0))
        if peak > 0:
            gain = 10.0 ** (NORMALIZE_PEAK_DB / 20.0) / peak
    elif options.normalize == "input":
        energy_out = float(np.square(out, dtype=np.float64).sum()) / out.size
        if energy_out > 0:
            energy_in = float(np.square(clip.data, dtype=np.float64).sum()) / clip.data.size
            gain = float(np.sqrt(energy_in / energy_out))
    if gain != 1.0:
        out = out * np.float32(gain)
    return out, shift, gain


def write_clip(
    clip: LoadedClip,
    wet: np.ndarray | None,
    outdir: Path,
    seed: int,
    options: AugmentOptions,
    seconds: dict[str, float] | None = None,
    files: OutputFiles | None = None,
) -> dict:
    """Finish and write one clip atomically; its manifest record (with ``error`` on failure).

    `seconds`, if given, gets the time spent finishing and writing added to
    its ``finish`` and ``write`` keys. `files` is the job's `OutputFiles`
    (folders made once; None: a new one).
    """
    task = clip.task
    record: dict = {
        "input": task.input,
        "output": task.output,
        "response": task.response,
        "mix": task.mix,
        "seed": seed,
    }
    if clip.error is not None or wet is None:
        record["error"] = clip.error or "no result"
        return record
    assert clip.info is not None and clip.response is not None
    if files is None:
        files = OutputFiles()
    try:
        started = time.perf_counter()
        samples, shift, gain = finish_clip(clip, wet, options)
        finished = time.perf_counter()
        target = outdir / task.output
        files.folder(target)
        rate = clip.info.samplerate if clip.info.samplerate is not None else options.rate
        out_format, subtype = _output_spec(target, clip.info, options)
        one_dimensional = clip.info.one_dimensional and samples.shape[0] == 1
        clipped = _write_samples(
            files, target, task.output, samples, rate, (out_format, subtype, one_dimensional)
        )
        if seconds is not None:
            seconds["finish"] += finished - started
            seconds["write"] += time.perf_counter() - finished
    except (MaxconvError, ValueError, OSError, MemoryError) as exc:
        record["error"] = _one_line(exc)
        return record
    record.update(
        align_shift=shift,
        gain=gain,
        layout=clip.layout,
        rate=rate,
        response_rate=clip.response.source_rate,
        frames=int(samples.shape[1]),
        channels=int(samples.shape[0]),
        clipped=clipped,
    )
    return record


def _write_samples(
    files: OutputFiles,
    target: Path,
    name: str,
    samples: np.ndarray,
    rate: int | None,
    spec: tuple[str, str | None, bool],
) -> int:
    """Write an output as `audio`'s writer does; the samples clipped (integer subtypes).

    `spec` is (format, subtype, one-dimensional .npy). Plain WAVs go through
    `clipio` (one write each), the rest through `open_writer`.
    """
    out_format, subtype, one_dimensional = spec
    if out_format == "WAV" and rate is not None:
        effective = (subtype or "PCM_16").upper()  # libsndfile's default subtype of WAV
        parts = wav_bytes(samples, rate, effective)
        if parts is not None:
            files.put(target, parts, name)
            if effective in ("FLOAT", "DOUBLE"):
                return 0
            return int(np.count_nonzero(np.abs(samples) > 1.0))
    with open_writer(
        target, rate, samples.shape[0], subtype, out_format, one_dimensional
    ) as writer:
        _without_peak_chunk(writer)
        writer.write(samples)
    return writer.clipped


# (target suffix, --format, --subtype, clip subtype, clip format) -> (format, subtype).
_SPECS: dict[tuple, tuple[str, str | None]] = {}


def _output_spec(target: Path, info: SignalInfo, options: AugmentOptions) -> tuple[str, str | None]:
    """The output's format and subtype (asked once per kind of clip; failures each time).

    Raises
    ------
    OutputError
        For an unknown format.
    """
    key = (target.suffix.upper(), options.format, options.subtype, info.subtype, info.format)
    found = _SPECS.get(key)
    if found is None:
        out_format = output_format(target, options.format)
        found = (out_format, output_subtype(info, out_format, options.subtype))
        _SPECS[key] = found
    return found


def _without_peak_chunk(writer: SignalWriter) -> None:
    """Leave out the PEAK chunk, which stamps float WAV/AIFF headers with the time of writing.

    With it two runs of the same job write different bytes. Must come before
    the first sample is written.
    """
    sound = getattr(writer, "_sound", None)
    if sound is not None:
        import soundfile

        soundfile._snd.sf_command(sound._file, SFC_SET_ADD_PEAK_CHUNK, soundfile._ffi.NULL, 0)


def run_group(
    tasks: Sequence[Task],
    bank: ResponseBank,
    options: AugmentOptions,
    outdir: Path,
    seed: int,
    device: str,
    convolve: ConvolveBatch | None = None,
) -> list[dict]:
    """Load, compute and write one group in this thread; the records in input order.

    The Ray workers run groups this way; the local job runs the same steps with
    reading and writing spread over threads.
    """
    loaded = [load_clip(task, bank, options) for task in tasks]
    wets = compute_group(loaded, options, device, convolve)
    files = OutputFiles()
    return [
        write_clip(clip, wet, outdir, seed, options, files=files)
        for clip, wet in zip(loaded, wets, strict=True)
    ]


# The local job -------------------------------------------------------------------------------


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

    A CPU device's op takes every core, and slows down sharply when a core is
    busy elsewhere: on the 2-core machine one reading and one writing thread
    gave 403 clips/s, two of each 276, four 194 (1-second clips, 8,000-24,000
    taps). A GPU leaves the cores to the threads, but a clip's path is CPU
    work now (its files are in the page cache; some 0.1 ms a clip holds the
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


def run_job(
    plan: JobPlan,
    manifest: Manifest,
    progress: Progress | None = None,
    convolve: ConvolveBatch | None = None,
    gpu_count: Callable[[], int] | None = None,
) -> JobReport:
    """Run a planned job on this host: groups in flight on worker threads, in input order.

    `convolve` and `gpu_count` stand in for `convolve_batch` and the GPU count
    in tests. ``--strict`` stops after the group of the first failure (the
    groups already running finish and are listed); the report says so.

    Raises
    ------
    MaxconvError, RuntimeError
        Faults that are not one clip's (the engine, the manifest); the
        manifest keeps every group completed before.
    """
    options = plan.options
    devices = resolve_devices(options.device, gpu_count)
    plan.group_clips = options.group_clips or default_group_clips(devices, gpu_count)
    labels = devices
    if convolve is None:  # what 'auto' turned out to be, for the report
        from ..engine import get_engine

        labels = [get_engine(device).label for device in devices]
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
    free = queue.Queue()
    for device in devices:
        free.put(device)
    stopping = threading.Event()
    readers = concurrent.futures.ThreadPoolExecutor(workers, "maxconv-read")
    writers = concurrent.futures.ThreadPoolExecutor(workers, "maxconv-write")
    # Each group runs on one of these threads: reading, then a free device, then writing.
    groups = concurrent.futures.ThreadPoolExecutor(len(devices) + 2, "maxconv-group")

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
        device = free.get()
        try:
            started = time.perf_counter()
            wets = compute_group(loaded, options, device, convolve)
            phases.add({"compute": time.perf_counter() - started})
        finally:
            free.put(device)
        if stopping.is_set():
            return []
        pairs = list(zip(loaded, wets, strict=True))
        return _flat(writers.map(write_chunk, _chunks(pairs, workers)))

    started = time.perf_counter()
    cpu_started = _cpu_seconds()
    pending: collections.deque[concurrent.futures.Future] = collections.deque()
    in_flight = len(devices) + 2

    def collect(future: concurrent.futures.Future) -> None:
        records = future.result()
        appending = time.perf_counter()
        manifest.append(records)
        report.add(records)
        phases.add({"manifest": time.perf_counter() - appending})
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
                collect(pending.popleft())
            pending.append(groups.submit(one_group, tasks))
        while pending:
            collect(pending.popleft())
    finally:
        if pending:  # an exception is on its way out: drop what has not started
            stopping.set()
        for future in pending:
            future.cancel()
        groups.shutdown(wait=True)
        readers.shutdown(wait=True)
        writers.shutdown(wait=True)
    report.seconds = time.perf_counter() - started
    report.phases = phases.report(report.seconds, _cpu_seconds() - cpu_started)
    return report
