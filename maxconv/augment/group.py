"""One group of an augmentation job: its clips loaded, computed, finished and written.

A group's convolution rows (one per clip channel, four per true-stereo clip)
go through `convolve_batch_on` on the group's engine in as few calls as its size allows (rows sorted
by signal and kernel length, cut at `batch_samples`); on a CPU, through
`convolve_shared_on`, one call per response channel and its rows (see
`_compute_by_response`); its outputs are finished (mix, normalization) and
written atomically. What is computed for a
clip depends only on its group, never on timing or on which device or process
runs it; the Ray job (maxconv.ray) runs the very same groups, so its outputs
are the same bytes as a local run's.

A clip's output is the slice ``full[shift : shift + count]`` of the full
convolution, where ``shift`` is the response's peak for ``--align peak`` (0
for causal) and ``count`` is the clip's length for ``--length same`` or runs to
the end of the tail for ``tail``. On a GPU the rows go to `convolve_batch` in
``full`` mode as they are and the slice is cut here: `convolve_batch` computes
a group's full result anyway (its rows padded to a common length), so padding
the rows here to ask for ``valid`` would only lengthen them. On a CPU the op
computes the span alone (its rows share the response, so the shift too).

Plain WAVs are read and written by `clipio` (one open and read, one open, write
and rename, the same bytes as `maxconv.audio_write`), other files through
`maxconv.audio_read` and `maxconv.audio_write`.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..audio_format import output_format, output_subtype
from ..audio_read import SignalInfo
from ..audio_write import SignalWriter, open_writer
from ..errors import InputError, MaxconvError
from .clipio import SFC_SET_ADD_PEAK_CHUNK, OutputFiles, clipped_samples, read_clip, wav_bytes
from .plan import AugmentOptions, Task
from .responses import Response, ResponseBank, combine_rows, layout, row_plan

if TYPE_CHECKING:
    from ..engine import Engine

NORMALIZE_PEAK_DB = -0.1
# CPU cores each op call of a CPU job uses (0: all). The job's reading and writing
# threads share the cores with the op, and an op that splits its work over every core
# waits (spinning) at each split for a worker another thread has preempted: on the
# 2-core machine, 1,000 clips of 100 responses, one core a call took 0.41 ms of the
# op's threads' CPU a clip and ran 929 clips/s; every core 0.66 ms and 866 clips/s
# (medians of 3 runs side by side; the job before this change: 0.99 ms).
CPU_CALL_WORKERS = 1

ConvolveBatch = Callable[..., list[np.ndarray]]


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
    engine: Engine,
    convolve: ConvolveBatch | None = None,
) -> list[np.ndarray | None]:
    """The wet signal ``(channels, count)`` of each usable clip (None for failed ones).

    Every row of the group goes through `convolve` (default:
    `maxconv.batch.convolve_batch_on`) on `engine` in ``full`` mode, sorted by
    signal and kernel length and cut into calls of at most
    ``options.batch_samples`` samples; on a CPU engine with no `convolve`
    given, one call per response channel instead (`_compute_by_response`).
    """
    if convolve is None:
        if engine.kind == "cpu":
            return _compute_by_response(clips, options, engine)
        from ..batch import convolve_batch_on as convolve
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
            engine,
            [rows[i] for i in chosen],
            [kernels[i] for i in chosen],
            "full",
            method=options.method,
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


def _compute_by_response(
    clips: Sequence[LoadedClip], options: AugmentOptions, engine: Engine
) -> list[np.ndarray | None]:
    """`compute_group` on a CPU: one op call per response channel and its rows.

    Rows that share a response channel go through `convolve_shared_on`
    together, asking for the clip's span only (``shift``, ``count``), the
    response's spectrum kept by the engine under the response: on the
    2-core machine 1,000 clips of 100 responses (8,000-24,000 taps) took
    0.28 ms a clip this way (10 rows a call) against 1.21 through
    `convolve_batch_on` (per-row kernels padded to the longest, their spectra
    computed every call, full outputs), before blocks were paired across
    rows, which halves the transforms of one-block rows.
    """
    from ..batch import convolve_shared_on, padded_rows

    results: dict[tuple[int, int], np.ndarray] = {}
    for (response, path), members in _rows_by_kernel(clips).items():
        for call in _shared_calls(clips, members, options.batch_samples):
            shift, _ = _span(clips[call[0][0]], options)
            counts = [_span(clips[owner], options)[1] for owner, _, _ in call]
            rows = [clips[owner].data[channel] for owner, _, channel in call]
            signals = padded_rows(rows, rows[0].dtype)
            outs = convolve_shared_on(
                engine,
                signals,
                response.taps[path],
                shift,
                max(counts),
                method=options.method,
                key=(response, path),
                workers=CPU_CALL_WORKERS,
            )
            for out, count, (owner, slot, _) in zip(outs, counts, call, strict=True):
                results[owner, slot] = out[:count]
    return [_combined(clip, number, results) for number, clip in enumerate(clips)]


def _combined(
    clip: LoadedClip, number: int, results: dict[tuple[int, int], np.ndarray]
) -> np.ndarray | None:
    """The clip's output channels from its rows' results (None for a failed clip)."""
    if clip.error is not None:
        return None
    assert clip.data is not None and clip.layout is not None
    slots = len(row_plan(clip.layout, clip.data.shape[0]))
    return combine_rows(clip.layout, [results[number, slot] for slot in range(slots)])


def _rows_by_kernel(clips: Sequence[LoadedClip]) -> dict[tuple, list[tuple[int, int, int]]]:
    """(owner clip, row of the clip, clip channel) of every row, by (response, response channel).

    Both in the group's order, so the calls (and so the bytes) depend only on the group.
    """
    members: dict[tuple, list[tuple[int, int, int]]] = {}
    for number, clip in enumerate(clips):
        if clip.error is not None:
            continue
        assert clip.data is not None and clip.response is not None and clip.layout is not None
        plan = row_plan(clip.layout, clip.data.shape[0])
        for slot, (channel, path) in enumerate(plan):
            members.setdefault((clip.response, path), []).append((number, slot, channel))
    return members


def _shared_calls(
    clips: Sequence[LoadedClip], members: list[tuple[int, int, int]], batch_samples: int
) -> list[list[tuple[int, int, int]]]:
    """One kernel's rows cut into op calls: by length, each call's rows within
    BATCH_LENGTH_SLACK of its shortest (all are padded to its longest) and
    at most `batch_samples` samples (a call takes one row at least)."""
    from ..batch import BATCH_LENGTH_SLACK

    def frames(member: tuple[int, int, int]) -> int:
        return clips[member[0]].data.shape[1]

    calls: list[list[tuple[int, int, int]]] = []
    samples = 0
    for member in sorted(members, key=lambda m: (frames(m), m)):
        size = frames(member)
        if (
            calls
            and size <= BATCH_LENGTH_SLACK * frames(calls[-1][0])
            and samples + size <= batch_samples
        ):
            calls[-1].append(member)
            samples += size
        else:
            calls.append([member])
            samples = size
    return calls


def finish_clip(
    clip: LoadedClip, wet: np.ndarray, options: AugmentOptions
) -> tuple[np.ndarray, int, float]:
    """Mix dry and wet, normalize: the output samples, the shift and the gain.

    `wet` is left as it is. In float32 with one new array at most: the mix is
    ``mix * wet`` with ``(1 - mix) * dry`` added where the dry clip reaches
    (the same roundings as summing the two products), and the gain scales
    that array in place.
    """
    assert clip.data is not None
    shift, count = _span(clip, options)
    mix = clip.task.mix
    out = wet
    if mix < 1.0:
        out = np.multiply(wet, np.float32(mix))
        keep = min(count, clip.data.shape[1])
        out[:, :keep] += np.float32(1.0 - mix) * clip.data[:, :keep]
    gain = _gain(clip.data, out, options.normalize)
    if gain != 1.0:
        out = np.multiply(out, np.float32(gain), out=None if out is wet else out)
    return out, shift, gain


def _gain(dry: np.ndarray, out: np.ndarray, normalize: str) -> float:
    """The normalization's factor for `out` (the dry clip `dry`'s RMS for ``input``)."""
    if normalize == "peak":
        peak = max(-float(out.min(initial=0.0)), float(out.max(initial=0.0)))
        return 10.0 ** (NORMALIZE_PEAK_DB / 20.0) / peak if peak > 0 else 1.0
    if normalize == "input":
        energy_out = _energy(out) / out.size
        if energy_out > 0:
            return float(np.sqrt(_energy(dry) / dry.size / energy_out))
    return 1.0


def _energy(samples: np.ndarray) -> float:
    """The sum of squares, row by row as float32 dot products (BLAS: 4 us for 48,000
    samples where squaring into float64 and summing took 30; the error is some 1e-7)."""
    return sum(float(np.dot(row, row)) for row in samples)


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
            return clipped_samples(samples)
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
    engine: Engine,
    convolve: ConvolveBatch | None = None,
) -> list[dict]:
    """Load, compute and write one group in this thread; the records in input order.

    The Ray workers run groups this way; the local job runs the same steps with
    reading and writing spread over threads.
    """
    loaded = [load_clip(task, bank, options) for task in tasks]
    wets = compute_group(loaded, options, engine, convolve)
    files = OutputFiles()
    return [
        write_clip(clip, wet, outdir, seed, options, files=files)
        for clip, wet in zip(loaded, wets, strict=True)
    ]
