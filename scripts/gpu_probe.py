"""Where a GPU process's memory goes, which `maxconv bench` cannot say.

python3 scripts/gpu_probe.py memory        peak resident memory after each start-up step
                                           (run it twice: the first run compiles the models)
"""

from __future__ import annotations

import sys

import numpy as np


def memory_report(step: str) -> None:
    """Current and peak resident set of this process, from /proc (Linux)."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status if line.startswith(("VmRSS", "VmHWM")))
    print(f"{step:<28} rss {fields['VmRSS'].strip():>12}  peak {fields['VmHWM'].strip():>12}")


def memory() -> None:
    memory_report("python + numpy")
    from maxconv.engine import get_engine

    memory_report("import maxconv.engine")
    engine = get_engine("gpu")
    memory_report("GPU engine (device open)")
    from max import driver
    from max.dtype import DType

    pinned = driver.Buffer(
        DType.float32, (1 << 18,), device=engine.device, usage=driver.Usage.STAGING
    )
    memory_report("1 MB pinned staging buffer")
    device_buffer = driver.Buffer(DType.float32, (1 << 18,), device=engine.device)
    memory_report("1 MB device buffer")
    del pinned, device_buffer
    engine.model(np.float32)
    memory_report("direct model loaded")
    engine.model(np.float32, method="fft")
    memory_report("FFT model loaded")
    tiles = np.ones((1, 4, (1 << 16) + 63), np.float32)
    engine.correlate_tiles(tiles, np.ones((1, 64), np.float32))
    memory_report("first direct call")
    batch = np.ones((2, 64, (1 << 16) + 63), np.float32)
    engine.correlate_tiles(batch, np.ones((2, 64), np.float32))
    memory_report("call on 2 x 64 tiles")


if __name__ == "__main__":
    if sys.argv[1:2] == ["memory"]:
        memory()
    else:
        sys.exit(__doc__)
