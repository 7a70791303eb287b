"""One group of an augmentation job: its clips loaded, computed, finished and written.

A group's convolution rows (one per clip channel, four per true-stereo clip)
go through `convolve_batch_on` on the group's engine in as few calls as its size allows (rows sorted
by signal and kernel length, cut at `batch_samples`); its outputs are
finished (mix, normalization) and written atomically. What is computed for a
clip depends only on its group, never on timing or on which device or process
runs it; the Ray job (maxconv.ray) runs the very same groups, so its outputs
are the same bytes as a local run's.

A clip's output is the slice ``full[shift : shift + count]`` of the full
convolution, where ``shift`` is the response's peak for ``--align peak`` (0
for causal) and ``count`` is the clip's length for ``--length same`` or runs to
the end of the tail for ``tail``. The rows go to `convolve_batch` in ``full``
mode as they are and the slice is cut here: `convolve_batch` computes a
group's full result anyway (its rows padded to a common length), so padding
the rows here to ask for ``valid`` would only lengthen them.

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
from .clipio import SFC_SET_ADD_PEAK_CHUNK, OutputFiles, read_clip, wav_bytes
from .plan import AugmentOptions, Task
from .responses import Response, ResponseBank, combine_rows, layout, row_plan

if TYPE_CHECKING:
    from ..engine import Engine

NORMALIZE_PEAK_DB = -0.1

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
    ``options.batch_samples`` samples.
    """
    if convolve is None:
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
