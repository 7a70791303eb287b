"""Filtering one signal file into another: the work behind `maxconv filter`.

This module decides *what* to compute (which slice of the full convolution,
aligned how, mixed and scaled how) and drives the streaming engine between a
reader and an atomic writer, timing each stage for the report. It knows
nothing of command-line parsing or rendering.

Alignment follows the tools people replace with maxconv: coefficient kernels
(text, .npy, designs) are centred the way SoX's `fir` effect centres them
(output = numpy.convolve(x, h, 'same')), recorded impulse responses are
applied causally, with no shift, as convolution reverbs do.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .audio_format import large_wav_as_rf64, output_format, output_subtype
from .audio_read import STDIO, RawFormat, SignalInfo, iter_blocks, read_info
from .audio_write import open_writer
from .convolution import full_slice
from .engine import Engine
from .errors import InputError, OutputError
from .fir import Kernel, load_kernel
from .pipeline import WriteBehind
from .stream import CHUNK_OUTPUTS, stream_correlate

ALIGNS = ("center", "causal")
NORMALIZE_PEAK_DB = -0.1


@dataclass
class FilterOptions:
    """Everything `maxconv filter` can ask for, with the tool's defaults."""

    kernel: str
    taps: int = 255
    window: str = "hamming"
    align: str | None = None
    tail: bool = False
    mode: str | None = None
    correlate: bool = False
    gain_db: float = 0.0
    normalize: bool = False
    mix: float = 1.0
    subtype: str | None = None
    format: str | None = None
    precision: str = "auto"
    raw: RawFormat | None = None
    rate: int | None = None
    method: str = "auto"
    chunk: int | None = None  # outputs per engine call; None: the method's choice


@dataclass
class FilterReport:
    """What one file took, for the timing summary and `--json`."""

    input: str
    output: str
    device: str
    samplerate: int | None
    channels: int
    frames_in: int
    frames_out: int
    taps: int
    kernel_kind: str
    dtype: str
    method: str
    subtype: str
    cache: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    clipped: int = 0
    peak_dbfs: float | None = None

    @property
    def busy_seconds(self) -> float:
        """Wall time of the filtering itself: the total less compiling or loading the
        graph (a cold first run's 30 s compile is not the filter's throughput)."""
        return max(self.seconds.get("total", 0.0) - self.seconds.get("compile", 0.0), 0.0)

    @property
    def samples_per_second(self) -> float:
        busy = self.busy_seconds
        return self.frames_in * self.channels / busy if busy else 0.0

    @property
    def realtime(self) -> float | None:
        """Seconds of audio filtered per second of wall time (compiling apart)."""
        busy = self.busy_seconds
        if not self.samplerate or not busy:
            return None
        return self.frames_in / self.samplerate / busy

    def as_dict(self) -> dict:
        data = asdict(self)
        data["samples_per_second"] = self.samples_per_second
        data["realtime"] = self.realtime
        return data


@dataclass(frozen=True)
class OutputSpan:
    """The slice [start, start + count) of the full result, and the dry path's delay."""

    start: int
    count: int
    delay: int


def output_span(frames: int, n_taps: int, kernel_kind: str, options: FilterOptions) -> OutputSpan:
    """Which outputs to write, from the mode or the alignment and --tail."""
    centre = (n_taps - 1) // 2
    if options.mode is not None:
        return OutputSpan(*full_slice(options.mode, frames, n_taps), centre)
    align = options.align or ("causal" if kernel_kind == "impulse_response" else "center")
    start = centre if align == "center" else 0
    count = frames + n_taps - 1 - start if options.tail else frames
    return OutputSpan(start, count, start)


def check_options(options: FilterOptions) -> None:
    """Reject option values and combinations before any file is touched."""
    if options.mode is not None and options.mode not in ("full", "same", "valid"):
        raise ValueError(f"--mode must be one of full, same, valid, not {options.mode!r}")
    if options.align is not None and options.align not in ALIGNS:
        raise ValueError(f"--align must be center or causal, not {options.align!r}")
    if options.mode is not None and (options.align is not None or options.tail):
        raise ValueError(
            "--mode gives numpy's slicing; it cannot be combined with --align or --tail"
        )
    if not 0.0 <= options.mix <= 1.0:
        raise ValueError(f"--mix is the wet share and must be within 0..1, not {options.mix}")
    if options.precision not in ("auto", "float32", "float64"):
        raise ValueError(f"--precision must be auto, float32 or float64, not {options.precision!r}")
    if options.method not in ("auto", "direct", "fft"):
        raise ValueError(f"--method must be auto, direct or fft, not {options.method!r}")
    if options.taps < 1:
        raise ValueError(f"--taps must be positive, not {options.taps}")


def check_target(source: str, target: str, force: bool) -> None:
    """Never overwrite an input; an existing output needs --force."""
    if target == STDIO:
        return
    path = Path(target)
    if (
        source != STDIO
        and Path(source).exists()
        and path.exists()
        and os.path.samefile(source, path)
    ):
        raise OutputError(
            f"output '{target}' is the input file; maxconv never overwrites its input"
        )
    if path.exists() and not force:
        raise OutputError(f"output '{target}' exists; use --force to overwrite it")
    if path.is_dir():
        raise OutputError(f"output '{target}' is a folder; give a file name inside it")


def file_compute_dtype(info: SignalInfo, options: FilterOptions) -> np.dtype:
    """A file's compute dtype: float32 where it holds every input bit (up to
    24-bit PCM), else float64.

    PCM_32, DOUBLE and float64 .npy inputs need float64 to pass through
    unchanged; `--precision` overrides the choice. (The API's rule, from the
    arrays' result dtype, is arrays.compute_dtype.)
    """
    if options.precision != "auto":
        return np.dtype(options.precision)
    if info.subtype in ("PCM_32", "DOUBLE", "float64"):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _taps_matrix(kernel: Kernel, channels: int, dtype: np.dtype, correlate: bool) -> np.ndarray:
    """[C, K] correlation taps: the kernel reversed unless --correlate."""
    taps = np.atleast_2d(kernel.taps)
    taps = np.broadcast_to(taps, (channels, taps.shape[1]))
    if not correlate:
        taps = taps[:, ::-1]
    return np.ascontiguousarray(taps, dtype=dtype)


class _Timed:
    """Wrap an iterator and add the time spent inside it to a counter."""

    def __init__(self, inner: Iterator[np.ndarray], seconds: dict[str, float], key: str) -> None:
        self.inner = inner
        self.seconds = seconds
        self.key = key

    def __iter__(self) -> _Timed:
        return self

    def __next__(self) -> np.ndarray:
        start = time.perf_counter()
        try:
            return next(self.inner)
        finally:
            self.seconds[self.key] = self.seconds.get(self.key, 0.0) + time.perf_counter() - start


def filter_file(
    source: str,
    target: str,
    options: FilterOptions,
    engine: Engine,
    progress: Callable[[int, int], None] | None = None,
) -> FilterReport:
    """Filter `source` into `target` (either may be '-') on `engine`, streaming block by block.

    `progress(done, total)` is called with output frames after each chunk
    and once more just before the output is committed; it may raise to
    abandon the output (the CLI re-raises signals that way).
    The output appears only when complete (atomic rename); on any error or
    interruption the target is left as it was.
    """
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    raw = options.raw if source == STDIO else None
    info = read_info(source, raw)
    if info.samplerate is None and options.rate is not None:
        info = replace(info, samplerate=options.rate)
    if info.frames == 0:
        raise InputError(f"input '{source}' has no samples; nothing to filter")
    kernel = load_kernel(
        options.kernel, info.samplerate, info.channels, options.taps, options.window
    )
    dtype = file_compute_dtype(info, options)
    taps = _taps_matrix(kernel, info.channels, dtype, options.correlate)
    span = output_span(info.frames, taps.shape[1], kernel.kind, options)
    seconds["read"] = time.perf_counter() - started

    compile_start = time.perf_counter()
    method = engine.resolve_method(options.method, taps.shape[1])
    engine.model(dtype, method=method)
    seconds["compile"] = time.perf_counter() - compile_start
    compute_before = engine.stats.compute_seconds

    def chunks() -> Iterator:
        read_block = options.chunk or CHUNK_OUTPUTS
        blocks = _Timed(iter_blocks(source, read_block, dtype, raw), seconds, "read")
        return stream_correlate(
            blocks,
            taps,
            span.start,
            span.count,
            engine=engine,
            delay=span.delay,
            method=method,
            chunk=options.chunk,
        )

    def mixed(chunk) -> np.ndarray:  # noqa: ANN001
        if options.mix == 1.0:
            return chunk.wet
        return (1.0 - options.mix) * chunk.dry + options.mix * chunk.wet

    scale = 10.0 ** (options.gain_db / 20.0)
    if options.normalize:
        peak = max(float(np.max(np.abs(mixed(chunk)), initial=0.0)) for chunk in chunks())
        if peak > 0:
            scale *= 10.0 ** (NORMALIZE_PEAK_DB / 20.0) / peak

    out_format = output_format(target, options.format)
    subtype = output_subtype(info, out_format, options.subtype)
    out_format = large_wav_as_rf64(out_format, subtype, span.count * info.channels)
    peak_out = 0.0
    with open_writer(
        target, info.samplerate, info.channels, subtype, out_format, info.one_dimensional
    ) as writer:
        with WriteBehind(writer.interleave, writer.write_frames) as behind:
            for chunk in chunks():
                block = mixed(chunk)
                if scale != 1.0:
                    block = block * np.asarray(scale, dtype=block.dtype)
                peak_out = max(peak_out, float(np.max(np.abs(block), initial=0.0)))
                behind.write(block)
                if progress:
                    progress(chunk.first - span.start + block.shape[1], span.count)
        if progress:
            progress(span.count, span.count)
        commit_start = time.perf_counter()
    # Writing overlaps the compute of the next chunk, so read + compute + write > total.
    seconds["write"] = behind.seconds + time.perf_counter() - commit_start
    seconds["compute"] = engine.stats.compute_seconds - compute_before
    seconds["total"] = time.perf_counter() - started
    return FilterReport(
        input=source,
        output=target,
        device=engine.label,
        samplerate=info.samplerate,
        channels=info.channels,
        frames_in=info.frames,
        frames_out=writer.frames,
        taps=taps.shape[1],
        kernel_kind=kernel.kind,
        dtype=dtype.name,
        method=method,
        subtype=writer.subtype,
        cache=engine.stats.cache_status.get(dtype.name, ""),
        seconds=seconds,
        clipped=writer.clipped,
        peak_dbfs=20 * np.log10(peak_out) if peak_out > 0 else None,
    )
