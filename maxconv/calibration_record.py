"""The measured direct/FFT crossover of a device, as a record beside the compiled graphs.

`maxconv calibrate` (calibration.py) measures it; the engine reads it when
it chooses a method. A stale or damaged record is ignored, never trusted.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import replacing
from .cache import cache_key

if TYPE_CHECKING:
    from .engine import Engine


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
    key = cache_key(
        "calibration-1",
        engine.source_digest(),
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


def save_calibration(engine: Engine, calibration: Calibration) -> Path:
    """Write the record atomically; the engine uses it from its next lookup on."""
    path = calibration_path(engine)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, f"{path.name}.", text=True) as file:
        json.dump(calibration.as_dict(), file, indent=2)
    engine.forget_calibration()
    return path


def delete_calibration(engine: Engine) -> None:
    """Remove this device's record; the engine falls back to its built-in crossover."""
    calibration_path(engine).unlink(missing_ok=True)
    engine.forget_calibration()
