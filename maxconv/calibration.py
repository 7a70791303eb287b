"""Where method="auto" switches to the FFT op, measured on this device.

The built-in crossovers (planning.FFT_FROM_TAPS) are the crossovers measured on
the machines maxconv is developed on. Another CPU (more cores, AVX-512) or
another GPU moves the crossover, so `maxconv calibrate` times both ops here
over a ladder of kernel lengths and keeps the result beside the compiled
graphs, keyed by everything the timing depends on (device, usable cores, op
sources, MAX version); the engine then prefers it to the constant. A stale
or damaged record is ignored, never trusted.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from .calibration_record import Calibration

if TYPE_CHECKING:
    from .engine import Engine

# Kernel lengths timed: both sides of every crossover seen so far (CPU ~64-256, H100 256-512).
CALIBRATION_TAPS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
# Signal lengths timed: long enough that the per-call cost does not decide.
CALIBRATION_SIGNAL = {"cpu": 1 << 20, "gpu": 1 << 24}


def measure_crossover(
    engine: Engine,
    taps: tuple[int, ...] = CALIBRATION_TAPS,
    signal_length: int | None = None,
    repeat: int = 5,
) -> Calibration:
    """Time both ops (float32, data on the device) at each K; find where the FFT wins.

    The crossover is the least K from which the FFT op is faster at every
    larger K timed; if it never is, one step past the ladder.
    """
    from .bench import bench_inputs, crossovers, measure_ops

    n = signal_length or CALIBRATION_SIGNAL[engine.spec.kind]
    rows = []
    for k in taps:
        rows += measure_ops(engine, *bench_inputs(np.dtype(np.float32), n, k), 1, repeat)
    (found,) = crossovers(rows).values()
    seconds = {
        name: {r.k: r.seconds for r in rows if r.name == name} for name in {r.name for r in rows}
    }
    return Calibration(
        fft_from_taps=found if found is not None else 2 * max(taps),
        device=engine.label,
        signal_length=n,
        direct_seconds=seconds["maxconv op"],
        fft_seconds=seconds["maxconv fft op"],
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
