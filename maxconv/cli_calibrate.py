"""`maxconv calibrate`: measure where the FFT op overtakes the direct op on a device."""

from __future__ import annotations

from typing import Annotated

import typer

from .cli_errors import reported_errors, stdout
from .cli_options import DebugOption, DeviceOption


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
            engine, tuple(sorted(set(k or CALIBRATION_TAPS))), n, repeat
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
