"""Two questions about a GPU process that `maxconv bench` cannot answer.

python3 scripts/gpu_probe.py memory        peak resident memory after each start-up step
                                           (run it twice: the first run compiles the models)
python3 scripts/gpu_probe.py stream K      20 direct-op calls on 2^24 samples, one
                                           synchronize (run under `nsys profile` to see
                                           each kernel's time and the gaps between them)
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


def stream(n_taps: int) -> None:
    from maxconv.engine import get_engine

    engine = get_engine("gpu")
    signal = np.random.default_rng(0).standard_normal((1, 1, (1 << 24) + n_taps - 1))
    tiles = engine.to_device(signal.astype(np.float32))
    taps = engine.to_device(np.ones((1, n_taps), np.float32) / n_taps)
    for _ in range(5):
        engine.run_on_device(tiles, taps)
    engine.device.synchronize()
    for _ in range(20):
        engine.run_on_device(tiles, taps)
    engine.device.synchronize()


if __name__ == "__main__":
    if sys.argv[1:2] == ["memory"]:
        memory()
    elif sys.argv[1:2] == ["stream"] and len(sys.argv) == 3:
        stream(int(sys.argv[2]))
    else:
        sys.exit(__doc__)
