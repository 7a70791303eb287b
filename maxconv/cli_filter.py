"""`maxconv filter`: files through a FIR kernel or impulse response (maxconv.filtering)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .cli_errors import reported_errors, stderr
from .cli_options import DebugOption, DeviceOption
from .cli_progress import ProgressBar
from .planning import FFT_FROM_TAPS


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
        from .engine import get_engine
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
        engine = get_engine(device)
        bar = ProgressBar(not quiet)
        overall = bar.add("all files", total=len(pairs), visible=len(pairs) > 1)
        current = None
        reports = []
        try:
            for source, target in pairs:
                if current is not None:
                    bar.remove(current)
                current = bar.add(Path(source).name)
                report = filter_file(source, target, options, engine, bar.counter(current))
                bar.advance(overall)
                reports.append(report)
                if not quiet:
                    stderr.print(_summary(report), soft_wrap=True)
                if report.clipped:
                    stderr.print(
                        f"[yellow]warning:[/] {_clip_warning(report, gain)}", soft_wrap=True
                    )
        finally:
            bar.stop()
        if json_report:
            text = json.dumps([report.as_dict() for report in reports], indent=2)
            (sys.stderr if output == "-" else sys.stdout).write(text + "\n")
