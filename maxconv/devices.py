"""Which device a run uses: parsing `auto`, `cpu`, `gpu`, `gpu:N` and opening it.

Kept apart from the engine so the CLI can list devices and validate
`--device` without building any graph.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from max import driver

DEVICE_CHOICES = "'auto', 'cpu', 'gpu' or 'gpu:N'"


class DeviceWarning(UserWarning):
    """A device request was served by another device (GPU fell back to CPU)."""


@dataclass(frozen=True)
class DeviceSpec:
    """A concrete device: `kind` is 'cpu' or 'gpu', `index` the GPU number."""

    kind: str
    index: int = 0

    @property
    def label(self) -> str:
        return "cpu" if self.kind == "cpu" else f"gpu:{self.index}"


def parse_device(spec: str) -> DeviceSpec | None:
    """Parse a device string; `None` means 'auto' (decided when opened).

    Raises ValueError for anything else, naming the accepted spellings.
    """
    text = spec.strip().lower()
    if text == "auto":
        return None
    if text == "cpu":
        return DeviceSpec("cpu")
    if text == "gpu":
        return DeviceSpec("gpu", 0)
    if text.startswith("gpu:") and text[4:].isdigit():
        return DeviceSpec("gpu", int(text[4:]))
    raise ValueError(f"device must be {DEVICE_CHOICES}, not {spec!r}")


def gpu_count() -> int:
    """GPUs that MAX can see (0 when the driver finds none or fails)."""
    try:
        return driver.accelerator_count()
    except Exception:  # a broken driver install counts as no GPU
        return 0


def open_device(spec: str) -> tuple[DeviceSpec, driver.Device]:
    """Resolve `spec` and open the MAX device for it.

    `auto` takes GPU 0 when one can be opened and falls back to the CPU with
    a single DeviceWarning otherwise; an explicit `gpu` that cannot be served
    raises ValueError saying what to do instead.
    """
    wanted = parse_device(spec)
    if wanted is None:
        if gpu_count() == 0:
            return DeviceSpec("cpu"), driver.CPU()
        try:
            return DeviceSpec("gpu", 0), driver.Accelerator(0)
        except Exception as exc:
            warnings.warn(
                f"GPU 0 could not be initialised ({exc}); running on the CPU",
                DeviceWarning,
                stacklevel=2,
            )
            return DeviceSpec("cpu"), driver.CPU()
    if wanted.kind == "cpu":
        return wanted, driver.CPU()
    count = gpu_count()
    if wanted.index >= count:
        seen = "no GPU" if count == 0 else f"only {count} GPU(s) (gpu:0..gpu:{count - 1})"
        raise ValueError(
            f"device {spec!r} asked for, but MAX sees {seen}; use --device cpu or auto"
        )
    try:
        return wanted, driver.Accelerator(wanted.index)
    except Exception as exc:
        raise ValueError(
            f"device {spec!r} could not be initialised ({exc}); use --device cpu"
        ) from exc


def describe_devices() -> list[dict[str, str]]:
    """One entry per usable device, for `maxconv devices`."""
    found = [{"device": "cpu", "name": "host CPU", "api": "cpu"}]
    for index in range(gpu_count()):
        try:
            gpu = driver.Accelerator(index)
            found.append({"device": f"gpu:{index}", "name": gpu.architecture_name, "api": gpu.api})
        except Exception as exc:
            found.append({"device": f"gpu:{index}", "name": f"unusable: {exc}", "api": "?"})
    return found
