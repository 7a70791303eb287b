"""`maxconv bench`: the ops beside their peers (maxconv.bench, bench_peers), as a table or JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .cli_errors import reported_errors, stdout
from .cli_options import DebugOption
from .cli_progress import ProgressBar

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
            bar = ProgressBar(True)
            task = bar.add(f"bench {engine.label}")
            try:
                rows += run_sweep(
                    engine,
                    dtype,
                    lengths,
                    k or DEFAULT_BENCH_K,
                    warmup,
                    repeat,
                    peers,
                    bar.counter(task),
                )
            finally:
                bar.stop()
            if augment:
                rows += measure_augment(engine, warmup, repeat)
            limits[engine.label] = device_limits(engine)
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
