"""The `maxconv` command line: parse, call the library, render.

Signal logic lives in the library; this module only maps arguments to calls,
errors to one line on stderr with a documented exit code, and results to
rich output. Heavy modules (MAX) are imported inside the commands so that
`--help` and argument errors stay instant.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from .cli_errors import (
    raise_if_signalled,
    reported_errors,
    stderr,
    stdout,
)
from .cli_serve import serve
from .planning import FFT_FROM_TAPS

app = typer.Typer(
    help="Filter signals by 1-D convolution with a Mojo custom op in a cached MAX graph.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
cache_app = typer.Typer(help="Inspect or clear the compiled-graph cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
app.command()(serve)

DeviceOption = Annotated[
    str, typer.Option("--device", "-d", help="auto (GPU if there is one), cpu, gpu or gpu:N.")
]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]


def _format_samples(values) -> str:  # noqa: ANN001
    import numpy as np

    return np.array2string(np.asarray(values), formatter={"float_kind": lambda v: f"{v:g}"})


@app.command()
def demo(device: DeviceOption = "auto", debug: DebugOption = False) -> None:
    """Run the reference example: arange(15) correlated with arange(4)."""
    with reported_errors(debug):
        import numpy as np

        from .convolution import conv1d
        from .engine import get_engine

        samples = np.arange(15, dtype=np.float32)
        kernel = np.arange(4, dtype=np.float32)
        expected = np.correlate(np.pad(samples, (0, kernel.size - 1)), kernel, mode="valid")
        result = conv1d(samples, kernel, device=device)
        engine = get_engine(device)
        stdout.print(f"Input: {_format_samples(samples)}")
        stdout.print(f"Kernel: {_format_samples(kernel)}")
        stdout.print(f"Expected (numpy): {_format_samples(expected)}")
        stdout.print(f"Custom op conv1d on {engine.label}: {_format_samples(result)}")
        if not np.allclose(result, expected):
            stdout.print("Verification FAILED: custom op and numpy disagree")
            raise typer.Exit(1)
        stdout.print("Verification passed")


def _targets(inputs: list[str], output: str) -> list[tuple[str, str]]:
    """Pair each input with its output path: a file, '-', or a name kept in a folder."""
    from .errors import OutputError

    folder = Path(output)
    if output != "-" and (folder.is_dir() or output.endswith(("/", "\\"))):
        if not folder.is_dir():
            raise OutputError(f"output folder '{output}' does not exist; create it first")
        names = [Path(name).name if name != "-" else "stdin.wav" for name in inputs]
        if len(set(names)) != len(names):
            raise OutputError(
                "several inputs share a file name; they would collide in the output folder"
            )
        return [(name, str(folder / out)) for name, out in zip(inputs, names, strict=True)]
    if len(inputs) > 1:
        raise ValueError(
            f"{len(inputs)} inputs need an existing output folder as -o, not '{output}'"
        )
    return [(inputs[0], output)]


class _LazyProgress:
    """A rich progress bar on stderr that appears only once work has run for a second.

    Short jobs stay quiet; with stderr not a terminal (or --quiet) it never shows.
    """

    def __init__(self, enabled: bool, files: int) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self.enabled = enabled and stderr.is_terminal
        self.started = time.perf_counter()
        self.shown = False
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=stderr,
            transient=True,
        )
        self.overall = self.progress.add_task("all files", total=files, visible=files > 1)
        self.current = None

    def next_file(self, name: str) -> None:
        if self.current is not None:
            self.progress.remove_task(self.current)
        self.current = self.progress.add_task(name, total=None)

    def update(self, done: int, total: int) -> None:
        raise_if_signalled()
        self.progress.update(self.current, completed=done, total=total)
        if self.enabled and not self.shown and time.perf_counter() - self.started > 1.0:
            self.progress.start()
            self.shown = True

    def file_done(self) -> None:
        self.progress.advance(self.overall)

    def stop(self) -> None:
        if self.shown:
            self.progress.stop()


def _summary(report) -> str:  # noqa: ANN001
    seconds = report.seconds
    speed = f"{report.samples_per_second / 1e6:.1f} MS/s"
    if report.realtime:
        speed += f", {report.realtime:.0f}x realtime"
    return (
        f"{report.input} -> {report.output}: {report.frames_in} frames x {report.channels} ch, "
        f"{report.taps} taps, {report.method} {report.dtype} on {report.device} "
        f"(graph: {report.cache}); "
        f"read {seconds['read']:.3f} s, compile {seconds['compile']:.3f} s, "
        f"compute {seconds['compute']:.3f} s, write {seconds['write']:.3f} s, "
        f"total {seconds['total']:.3f} s; {speed}"
    )


def _clip_warning(report, gain_db: float) -> str:  # noqa: ANN001
    """The clip count and the --gain that puts the peak at -0.1 dBFS instead."""
    over = report.peak_dbfs or 0.0
    return (
        f"{report.clipped} samples clipped in {report.output} (peak {over:+.1f} dBFS); "
        f"use --gain {gain_db - over - 0.1:.1f}, --normalize, or a float --subtype such as FLOAT"
    )


@app.command("filter")
def filter_command(
    inputs: Annotated[list[str], typer.Argument(help="Audio files, .npy arrays, or - for stdin.")],
    kernel: Annotated[
        str,
        typer.Option(
            "--kernel",
            "-k",
            help="Taps: .npy, a text file of coefficients (SoX fir format), an audio impulse "
            "response, or a design: lowpass:F, highpass:F, bandpass:F1-F2, bandstop:F1-F2 (Hz).",
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output", "-o", help="Output file, existing folder (several inputs), or - for stdout."
        ),
    ],
    taps: Annotated[int, typer.Option(help="Length of designed filters.")] = 255,
    window: Annotated[
        str,
        typer.Option(
            help="Window of designed filters: hamming, hann, blackman, kaiser:BETA, rect."
        ),
    ] = "hamming",
    align: Annotated[
        str | None,
        typer.Option(
            help="center (default for coefficients, like SoX fir) or causal "
            "(default for impulse responses)."
        ),
    ] = None,
    tail: Annotated[
        bool, typer.Option("--tail", help="Keep the K-1 samples of filter tail.")
    ] = False,
    mode: Annotated[
        str | None, typer.Option(help="numpy's full, same or valid instead of --align/--tail.")
    ] = None,
    correlate: Annotated[
        bool, typer.Option("--correlate", help="Correlate instead of convolve.")
    ] = False,
    gain: Annotated[float, typer.Option("--gain", help="Output gain in dB.")] = 0.0,
    normalize: Annotated[
        bool, typer.Option("--normalize", help="Scale the output peak to -0.1 dBFS (two passes).")
    ] = False,
    mix: Annotated[float, typer.Option(help="Wet share 0..1 of a dry/wet mix (reverb).")] = 1.0,
    device: DeviceOption = "auto",
    subtype: Annotated[
        str | None,
        typer.Option(help="Output subtype (PCM_16, PCM_24, FLOAT, ...); default: the input's."),
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Output format (WAV, FLAC, NPY, ...); default: from the name, WAV on stdout.",
        ),
    ] = None,
    precision: Annotated[str, typer.Option(help="Compute in auto, float32 or float64.")] = "auto",
    method: Annotated[
        str,
        typer.Option(
            help=f"direct, fft (overlap-save) or auto (fft from {FFT_FROM_TAPS['cpu']} taps on "
            f"the CPU, {FFT_FROM_TAPS['gpu']} on a GPU, or where `maxconv calibrate` measured "
            "it here)."
        ),
    ] = "auto",
    rate: Annotated[
        int | None, typer.Option(help="Sample rate of raw samples on stdin, or of .npy inputs.")
    ] = None,
    channels: Annotated[int | None, typer.Option(help="Channels of raw samples on stdin.")] = None,
    sample_format: Annotated[
        str,
        typer.Option(help="Sample format of raw stdin: FLOAT, DOUBLE, PCM_16, PCM_24, PCM_32, ..."),
    ] = "FLOAT",
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Overwrite existing outputs.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress and no summary.")
    ] = False,
    json_report: Annotated[
        bool, typer.Option("--json", help="Print a JSON report (stdout, or stderr when -o -).")
    ] = False,
    debug: DebugOption = False,
) -> None:
    """Filter audio files or arrays through a FIR kernel or impulse response."""
    with reported_errors(debug):
        from .audio_read import RawFormat
        from .filtering import FilterOptions, check_options, check_target, filter_file

        raw = None
        if channels is not None:
            if "-" not in inputs or rate is None:
                raise ValueError(
                    "--channels describes raw samples on stdin: give '-' as input, with --rate "
                    "and --sample-format"
                )
            raw = RawFormat(rate, channels, sample_format.upper())
        elif rate is not None and any(not name.lower().endswith(".npy") for name in inputs):
            raise ValueError(
                "--rate gives .npy inputs a sample rate, or (with --channels) describes raw "
                "stdin; audio files carry their own"
            )
        options = FilterOptions(
            kernel=kernel,
            taps=taps,
            window=window,
            align=align,
            tail=tail,
            mode=mode,
            correlate=correlate,
            gain_db=gain,
            normalize=normalize,
            mix=mix,
            device=device,
            subtype=subtype,
            format=output_format,
            precision=precision,
            raw=raw,
            rate=rate,
            method=method,
        )
        check_options(options)
        pairs = _targets(inputs, output)
        for source, target in pairs:
            check_target(source, target, force)
        progress = _LazyProgress(not quiet, len(pairs))
        reports = []
        try:
            for source, target in pairs:
                progress.next_file(Path(source).name)
                report = filter_file(source, target, options, progress.update)
                progress.file_done()
                reports.append(report)
                if not quiet:
                    stderr.print(_summary(report), soft_wrap=True)
                if report.clipped:
                    stderr.print(
                        f"[yellow]warning:[/] {_clip_warning(report, gain)}", soft_wrap=True
                    )
        finally:
            progress.stop()
        if json_report:
            text = json.dumps([report.as_dict() for report in reports], indent=2)
            (sys.stderr if output == "-" else sys.stdout).write(text + "\n")


# Up to 16384 both ops run; past it only the FFT op and the FFT peers do, up to the
# million taps of a long reverb.
DEFAULT_BENCH_K = [1, 4, 16, 64, 256, 1024, 4096, 16384, 131072, 1048576]


def _rate(value: float | None) -> str:
    if not value:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f} "


@app.command()
def bench(
    device: Annotated[
        list[str], typer.Option("--device", "-d", help="Devices to measure (repeatable).")
    ] = ["auto"],  # noqa: B006
    n: Annotated[
        list[int] | None,
        typer.Option("--n", help="Signal lengths (default 2^24 on GPU, 2^22 on CPU)."),
    ] = None,
    k: Annotated[
        list[int] | None, typer.Option("--k", help="Kernel lengths (default 1 to 2^20).")
    ] = None,
    dtype: Annotated[list[str], typer.Option(help="float32 and/or float64.")] = ["float32"],  # noqa: B006
    warmup: Annotated[int, typer.Option(help="Untimed runs per point.")] = 1,
    repeat: Annotated[int, typer.Option(help="Timed runs per point; the median is reported.")] = 5,
    peers: Annotated[
        bool,
        typer.Option(
            help="Measure the peers (numpy, scipy, torch, torchaudio, cupyx, MAX ops.conv2d)."
        ),
    ] = True,
    json_report: Annotated[
        bool, typer.Option("--json", help="Print the results as JSON on stdout.")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Write a throughput-vs-K chart (needs matplotlib).")
    ] = None,
    augment: Annotated[
        bool,
        typer.Option(
            help="Also time data augmentation: 1000 clips x 48,000 samples, each through its "
            "own 8,000-tap response (numpy, and torch tensors on a GPU)."
        ),
    ] = False,
    debug: DebugOption = False,
) -> None:
    """Measure the op against its peers: on the device, host to host, torch tensors."""
    with reported_errors(debug):
        from rich.table import Table

        from .bench import crossovers, device_limits, plot_throughput, share_of_limit, speedups
        from .bench_peers import measure_augment, run_sweep
        from .engine import get_engine

        rows = []
        limits = {}
        for spec in device:
            engine = get_engine(spec)
            lengths = n or [1 << 24 if engine.spec.kind == "gpu" else 1 << 22]
            progress = _LazyProgress(True, 1)
            progress.next_file(f"bench {engine.label}")
            try:
                rows += run_sweep(
                    spec,
                    dtype,
                    lengths,
                    k or DEFAULT_BENCH_K,
                    warmup,
                    repeat,
                    peers,
                    progress.update,
                )
            finally:
                progress.stop()
            if augment:
                rows += measure_augment(spec, warmup, repeat)
            limits[engine.label] = device_limits(spec)
        ratios = speedups(rows)
        fft_from = crossovers(rows)
        if json_report:
            data = [
                dict(row.as_dict(), maxconv_speedup=ratios.get(i)) for i, row in enumerate(rows)
            ]
            sys.stdout.write(
                json.dumps(
                    {
                        "results": data,
                        "limits": {
                            label: limit and limit.__dict__ for label, limit in limits.items()
                        },
                        "fft_crossover": [
                            {"device": d, "dtype": t, "n": size, "fft_from_k": k_from}
                            for (d, t, size), k_from in fft_from.items()
                        ],
                    },
                    indent=2,
                )
                + "\n"
            )
        else:
            for label, limit in limits.items():
                if limit:
                    stdout.print(
                        f"{label} limits: {limit.bytes_per_second / 1e9:.0f} GB/s, "
                        f"{limit.macs_per_second / 1e9:.0f} GMAC/s ({limit.source})"
                    )
            table = Table(
                "implementation",
                "device",
                "dtype",
                "N",
                "K",
                "ms",
                "samples/s",
                "GMAC/s",
                "of limit",
                "maxconv speedup",
            )
            for index, row in enumerate(rows):
                share = (
                    share_of_limit(row, limits.get(row.device))
                    if row.name == "maxconv op"
                    else None
                )
                table.add_row(
                    row.title,
                    row.device,
                    row.dtype,
                    str(row.n),
                    str(row.k),
                    f"{row.seconds * 1e3:.3f}" if row.seconds else row.note,
                    _rate(row.samples_per_second),
                    f"{row.n * row.k / row.seconds / 1e9:.1f}" if row.seconds else "-",
                    f"{share[0]:.0%} {share[1]}" if share else "",
                    f"{ratios[index]:.2f}x" if index in ratios else "",
                )
            wide = Console(highlight=False, width=max(stdout.width, 150))
            wide.print(table)
            for (label, dtype_name, size), k_from in fft_from.items():
                verdict = (
                    f"the fft op beats the direct op from K = {k_from} of those swept"
                    if k_from
                    else "the direct op was faster at the largest K swept"
                )
                stdout.print(f"{label} {dtype_name} N={size}: {verdict}")
        if plot:
            plot_throughput(rows, str(plot))


@app.command()
def calibrate(
    device: DeviceOption = "auto",
    k: Annotated[
        list[int] | None,
        typer.Option("--k", help="Kernel lengths to time (default 16 to 8192, doubling)."),
    ] = None,
    n: Annotated[
        int | None, typer.Option("--n", help="Signal length (default 2^24 on GPU, 2^20 on CPU).")
    ] = None,
    repeat: Annotated[int, typer.Option(help="Timed runs per point; the median counts.")] = 5,
    forget: Annotated[
        bool, typer.Option("--forget", help="Delete this device's record; auto uses the default.")
    ] = False,
    debug: DebugOption = False,
) -> None:
    """Measure where the FFT op overtakes the direct op here; method auto then uses it."""
    with reported_errors(debug):
        from rich.table import Table

        from .calibration import CALIBRATION_TAPS, measure_crossover
        from .calibration_record import delete_calibration, save_calibration
        from .engine import get_engine

        engine = get_engine(device)
        if forget:
            delete_calibration(engine)
            threshold, source = engine.fft_from_taps()
            stdout.print(f"{engine.label}: auto takes the FFT op from K = {threshold} ({source})")
            return
        if any(value < 1 for value in k or []) or (n is not None and n < 1) or repeat < 1:
            raise typer.BadParameter("--k, --n and --repeat must be positive")
        before, _ = engine.fft_from_taps()
        calibration = measure_crossover(
            device, tuple(sorted(set(k or CALIBRATION_TAPS))), n, repeat
        )
        table = Table("K", "direct op ms", "fft op ms", "faster")
        for taps, fft in calibration.fft_seconds.items():
            direct = calibration.direct_seconds.get(taps)
            table.add_row(
                str(taps),
                f"{direct * 1e3:.3f}" if direct else "skipped",
                f"{fft * 1e3:.3f}",
                "fft" if not direct or fft < direct else "direct",
            )
        stdout.print(table)
        path = save_calibration(engine, calibration)
        stdout.print(
            f"{engine.label}, N = {calibration.signal_length}: auto takes the FFT op from "
            f"K = {calibration.fft_from_taps} (was {before}); saved in {path}"
        )


@app.command()
def devices(debug: DebugOption = False) -> None:
    """List the devices maxconv can run on."""
    with reported_errors(debug):
        from rich.table import Table

        from .devices import describe_devices

        table = Table("device", "name", "api")
        for entry in describe_devices():
            table.add_row(entry["device"], entry["name"], entry["api"])
        stdout.print(table)


@cache_app.command("info")
def cache_info() -> None:
    """Show where the compiled-graph cache is and how big it is."""
    from .cache import GraphCache

    cache = GraphCache()
    entries = cache.entries()
    stdout.print(f"cache folder: {cache.root}")
    stdout.print(f"entries: {len(entries)}, {cache.size_bytes() / 1e6:.1f} MB")


@cache_app.command("clear")
def cache_clear() -> None:
    """Delete every compiled graph in the cache."""
    from .cache import GraphCache

    cache = GraphCache()
    removed = cache.clear()
    stdout.print(f"removed {removed} entr{'y' if removed == 1 else 'ies'} from {cache.root}")


from .cli_augment import augment_command  # noqa: E402 (listed after the commands above)

app.command("augment")(augment_command)


def main() -> None:
    """Run the CLI (the `maxconv` command calls this through maxconv.__main__).

    Once a command has returned, its outputs are committed or removed and its
    exit code is decided; a signal in the remaining interpreter and MAX
    teardown (a quarter of a second) could only add a traceback from wherever
    it lands, or turn a finished run into a killed one. So signals are ignored
    from there on, and the process ends with the command's own code.
    """
    try:
        app()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)


def run_to_exit_code() -> int:
    """Run the CLI and return the command's exit code (a SystemExit's, made an int)."""
    try:
        main()
        code: object = 0
    except SystemExit as exit_request:
        code = exit_request.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        sys.stderr.write(f"{code}\n")
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    return code


def run_and_exit() -> NoReturn:
    """Run the CLI, then end the process at once with the command's exit code.

    By then the outputs are committed (or removed) and every worker thread
    has finished; what remains is the interpreter's and MAX's teardown, about
    0.2 s that no user needs (a quarter of a short file's whole run, and the
    gap to FFmpeg on the reverb benchmark): the native runtime's memory and
    the device are the operating system's to reclaim. Buffered output is
    flushed first. Only a SystemExit takes this path; anything else
    propagates as usual.
    """
    os._exit(run_to_exit_code())


if __name__ == "__main__":
    run_and_exit()
