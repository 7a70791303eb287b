"""Where a GPU process's memory goes, which `maxconv bench` cannot say.

python3 scripts/gpu_probe.py memory        peak resident memory after each start-up step
                                           (run it twice: the first run compiles the models)
python3 scripts/gpu_probe.py tensors       what a call on torch CUDA tensors spends beyond
                                           the op: each step of the path timed alone
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
    import maxconv

    maxconv.correlate(np.ones(4 << 16, np.float32), np.ones(64, np.float32), device="gpu")
    memory_report("first direct call")
    maxconv.correlate(np.ones((64, 1 << 16), np.float32), np.ones(64, np.float32), device="gpu")
    memory_report("call on 64 rows of 2^16")


def tensors() -> None:
    """Median microseconds of each step of maxconv.correlate on CUDA tensors."""
    import statistics
    import time

    import torch
    from max import driver

    import maxconv
    from maxconv.engine import get_engine

    engine = get_engine("gpu")
    x = torch.randn(1 << 24, device="cuda")
    w = torch.randn(64, device="cuda")
    out = torch.empty((1 << 24) - 63, device="cuda")
    signal = driver.Buffer.from_dlpack(x).view(driver.Buffer.from_dlpack(x).dtype, (1, 1 << 24))
    taps = driver.Buffer.from_dlpack(w).view(signal.dtype, (1, 64))
    result = driver.Buffer.from_dlpack(out).view(signal.dtype, (1, (1 << 24) - 63))

    def micros(step, repeat: int = 50) -> float:
        step()
        times = []
        for _ in range(repeat):
            torch.cuda.synchronize()
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e6

    steps = {
        "torch stream synchronize": lambda: torch.cuda.current_stream().synchronize(),
        "Buffer.from_dlpack": lambda: driver.Buffer.from_dlpack(x),
        "from_dlpack + view": lambda: driver.Buffer.from_dlpack(x).view(signal.dtype, (1, 1 << 24)),
        "torch.empty": lambda: torch.empty((1 << 24) - 63, device="cuda"),
        "engine.correlate (queued)": lambda: engine.correlate(result, signal, taps, 0),
        "engine.correlate + device sync": lambda: (
            engine.correlate(result, signal, taps, 0),
            engine.device.synchronize(),
        ),
        "device synchronize alone": engine.device.synchronize,
        "maxconv.correlate(valid)": lambda: maxconv.correlate(x, w, "valid"),
        "torch conv1d": lambda: (
            torch.nn.functional.conv1d(x.view(1, 1, -1), w.view(1, 1, -1)),
            torch.cuda.synchronize(),
        ),
    }
    for name, step in steps.items():
        print(f"{name:<34} {micros(step):9.1f} us")


if __name__ == "__main__":
    if sys.argv[1:2] == ["memory"]:
        memory()
    elif sys.argv[1:2] == ["tensors"]:
        tensors()
    else:
        sys.exit(__doc__)
