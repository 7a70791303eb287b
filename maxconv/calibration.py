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

import contextlib
import importlib.metadata
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .cache import cache_key

if TYPE_CHECKING:
    from .engine import Engine

# Kernel lengths timed: both sides of every crossover seen so far (CPU ~64-256, H100 256-512).
CALIBRATION_TAPS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
# Signal lengths timed: long enough that the per-call cost does not decide.
CALIBRATION_SIGNAL = {"cpu": 1 << 20, "gpu": 1 << 24}


@dataclass(frozen=True)
class Calibration:
    """A measured crossover and the timings it came from."""

    fft_from_taps: int
    device: str
    signal_length: int
    direct_seconds: dict[int, float | None]
    fft_seconds: dict[int, float]
    measured_at: str

    def as_dict(self) -> dict:
        return asdict(self)


def _usable_cores() -> int:
    with contextlib.suppress(AttributeError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def calibration_path(engine: Engine) -> Path:
    """The record for this engine's device, in its cache folder."""
    from .engine import op_source_digest

    key = cache_key(
        "calibration-1",
        op_source_digest(),
        importlib.metadata.version("max"),
        engine.device_signature(),
        f"cores={_usable_cores()}" if engine.spec.kind == "cpu" else "",
    )
    return engine.cache.root / f"calibration-{key[:32]}.json"


def load_calibration(engine: Engine) -> Calibration | None:
    """This device's record, or None if there is none or it cannot be read."""
    try:
        data = json.loads(calibration_path(engine).read_text())
        data["direct_seconds"] = {int(k): v for k, v in data["direct_seconds"].items()}
        data["fft_seconds"] = {int(k): v for k, v in data["fft_seconds"].items()}
        calibration = Calibration(**data)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    if not isinstance(calibration.fft_from_taps, int) or calibration.fft_from_taps < 1:
        return None
    return calibration


def measure_crossover(
    device: str,
    taps: tuple[int, ...] = CALIBRATION_TAPS,
    signal_length: int | None = None,
    repeat: int = 5,
) -> Calibration:
    """Time both ops (float32, data on the device) at each K; find where the FFT wins.

    The crossover is the least K from which the FFT op is faster at every
    larger K timed; if it never is, one step past the ladder.
    """
    from .bench import bench_inputs, crossovers, measure_ops
    from .engine import get_engine

    engine = get_engine(device)
    n = signal_length or CALIBRATION_SIGNAL[engine.spec.kind]
    rows = []
    for k in taps:
        rows += measure_ops(device, *bench_inputs(np.dtype(np.float32), n, k), 1, repeat)
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


def save_calibration(engine: Engine, calibration: Calibration) -> Path:
    """Write the record atomically; the engine uses it from its next lookup on."""
    path = calibration_path(engine)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(descriptor, "w") as file:
            json.dump(calibration.as_dict(), file, indent=2)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    engine.forget_calibration()
    return path


def delete_calibration(engine: Engine) -> None:
    """Remove this device's record; the engine falls back to its built-in crossover."""
    calibration_path(engine).unlink(missing_ok=True)
    engine.forget_calibration()
