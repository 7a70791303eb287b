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

import math
import statistics
import time
from typing import TYPE_CHECKING

import numpy as np

from .calibration_record import Calibration
from .planning import FFT_FROM_TAPS

if TYPE_CHECKING:
    from .engine import Engine

# Kernel lengths timed: both sides of every crossover seen so far (CPU ~64-256, H100 256-512).
CALIBRATION_TAPS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
# Signal lengths timed: long enough that the per-call cost does not decide.
CALIBRATION_SIGNAL = {"cpu": 1 << 20, "gpu": 1 << 24}
# Times the whole ladder is walked (both ops at every K, then again): a
# K's figure is the median of its rounds, so a neighbour's burst of load
# spoils one round at most, and both ops of a round meet the same load.
CALIBRATION_ROUNDS = 3
# How much faster one op must be at a K for that K to count against the
# default crossover (see choose_crossover). Near the crossover the two ops
# are within a few per cent of each other, so the plain "least K from which
# the FFT op is faster" followed the noise: one H200 gave 256 in one run and
# 512 in the next. 15 % is above the run-to-run spread of a K's median seen
# on the GPU and on a quiet 2-core CPU (a few per cent), and below the gaps
# one ladder step away from the crossover (1.4x at K = 256 on an H100).
CROSSOVER_MARGIN = 0.15


def measure_crossover(
    engine: Engine,
    taps: tuple[int, ...] = CALIBRATION_TAPS,
    signal_length: int | None = None,
    repeat: int = 5,
) -> Calibration:
    """Time both ops (float32, data on the device) at each K, CALIBRATION_ROUNDS
    times over; the crossover is choose_crossover's.
    """
    from .bench import bench_inputs, measure_ops

    n = signal_length or CALIBRATION_SIGNAL[engine.spec.kind]
    inputs = {k: bench_inputs(np.dtype(np.float32), n, k) for k in taps}
    rounds = []
    for _ in range(CALIBRATION_ROUNDS):
        rows = []
        for k in taps:
            rows += measure_ops(engine, *inputs[k], 1, repeat)
        rounds.append(rows)
    seconds = _median_seconds(rounds)
    speedups = fft_speedups(seconds["maxconv op"], seconds["maxconv fft op"])
    found = choose_crossover(speedups, FFT_FROM_TAPS[engine.spec.kind], 2 * max(taps))
    return Calibration(
        fft_from_taps=found,
        device=engine.label,
        signal_length=n,
        direct_seconds=seconds["maxconv op"],
        fft_seconds=seconds["maxconv fft op"],
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )


def fft_speedups(direct: dict[int, float | None], fft: dict[int, float | None]) -> dict[int, float]:
    """Per K timed: direct seconds / FFT seconds, inf where the direct op was
    skipped (too many MACs: an FFT win). From the record's own medians, so a
    saved calibration reproduces its crossover."""
    return {k: math.inf if direct.get(k) is None else direct[k] / fft[k] for k in fft if fft[k]}


def choose_crossover(
    speedups: dict[int, float], default: int, past: int, margin: float = CROSSOVER_MARGIN
) -> int:
    """The K from which method auto takes the FFT op, from the FFT op's
    speedups over the direct op at the K timed, with hysteresis toward the
    device's `default`.

    A K where one op is faster by more than `margin` is a clear win for it;
    within the margin it is a tie, which speaks for neither. The timings
    then allow any crossover from `low`, the least K from which the FFT op
    is never clearly slower at any larger K timed, up to `high`, the least
    K from which it clearly wins at every larger K timed (`past`, a step
    beyond the ladder, where there is none). The default is kept if it lies
    in [low, high]; else the nearer end is taken: the crossover moves only
    as far as a clear win demands. Noise inside the margin (the two ops
    level near the crossover) cannot move `low` or `high`, so repeated
    calibrations give the same answer.
    """
    low = high = past
    clear_so_far = not_slower_so_far = True
    for k in sorted(speedups, reverse=True):
        not_slower_so_far = not_slower_so_far and speedups[k] >= 1 / (1 + margin)
        clear_so_far = clear_so_far and speedups[k] > 1 + margin
        if not_slower_so_far:
            low = k
        if clear_so_far:
            high = k
    return min(max(default, low), high)


def _median_seconds(rounds: list[list]) -> dict[str, dict[int, float | None]]:
    """Per op name and K, the median seconds over the rounds' bench
    Measurements (one call per synchronize); None where the op was skipped."""
    seen: dict[str, dict[int, list[float | None]]] = {}
    for rows in rounds:
        for row in rows:
            if row.per_sync == 1:
                seen.setdefault(row.name, {}).setdefault(row.k, []).append(row.seconds)
    return {
        name: {
            k: None if None in values else statistics.median(values) for k, values in by_k.items()
        }
        for name, by_k in seen.items()
    }
