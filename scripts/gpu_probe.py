"""Where a GPU process's memory goes, which `maxconv bench` cannot say.

python3 scripts/gpu_probe.py memory        peak resident memory after each start-up step
                                           (run it twice: the first run compiles the models)
python3 scripts/gpu_probe.py tensors       what a call on torch CUDA tensors spends beyond
                                           the op: each step of the path timed alone
python3 scripts/gpu_probe.py exchange      ways to hand CUDA memory to MAX and back, stream
                                           waits without host syncs, Model.capture/replay
python3 scripts/gpu_probe.py order         maxconv.correlate on torch tensors (K = 64, N = 2^24)
                                           per way of keeping the caller's stream order
python3 scripts/gpu_probe.py breakdown     the torch-tensor call (K = 64, N = 2^24) built up
                                           step by step from the bare op, each with a sync
python3 scripts/gpu_probe.py output        where a new output tensor's ~19 us go: allocation, its
                                           MAX view (two import paths), the view's release, and
                                           an output MAX allocates and torch takes
python3 scripts/gpu_probe.py prelaunch     each host step of maxconv.correlate on torch tensors
                                           (K = 64) timed alone, in call order
python3 scripts/gpu_probe.py fft K ...     the FFT op on the device (per call, spectrum kept or
                                           not), the API on torch tensors and cupyx oaconvolve
                                           at N = 2^24, as JSON lines: the bench's device and
                                           tensor rows without its host-side peers
python3 scripts/gpu_probe.py fftapi        the FFT op (K = 1024, 4096) through the engine and the
                                           API on torch tensors, executed and replayed
python3 scripts/gpu_probe.py fftprofile    cProfile of those API calls (K = 1024): host time by
                                           function
python3 scripts/gpu_probe.py replay        Model.capture/replay of the K = 64 op on kept views: time
                                           per call against execute, and its results
python3 scripts/gpu_probe.py graphs        maxconv.correlate on torch tensors (K = 64) with its
                                           device graphs and without: what was captured, refused
python3 scripts/gpu_probe.py chunks        numpy augment batch (1000 x 48,000 through 8,000
                                           taps each) per GPU chunk size and copy threads
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import numpy as np


def timings(step: Callable[[], object], repeat: int, before: Callable[[], object] = lambda: None):
    """Seconds of `repeat` calls of `step`, each after an untimed `before` (a
    device synchronize, say), following one untimed warm-up call."""
    step()
    times = []
    for _ in range(repeat):
        before()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def micros(step: Callable[[], object], repeat: int = 50) -> float:
    """Median microseconds of `step` alone, the CUDA device idle before each call."""
    import torch

    return statistics.median(timings(step, repeat, torch.cuda.synchronize)) * 1e6


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


def exchange() -> None:
    """Median microseconds of each way to exchange CUDA memory with MAX."""
    import torch
    from max import driver

    from maxconv.engine import get_engine

    engine = get_engine("gpu")
    queue = engine.device.default_queue
    n = 1 << 24
    x = torch.randn(n, device="cuda")
    w = torch.randn(64, device="cuda")

    class Capsule:
        """A DLPack producer handing out torch's capsule without stream handling."""

        def __init__(self, tensor) -> None:  # noqa: ANN001
            self.tensor = tensor

        def __dlpack__(self, stream=None):  # noqa: ANN001, ANN202
            return torch.utils.dlpack.to_dlpack(self.tensor)

        def __dlpack_device__(self):  # noqa: ANN202
            return self.tensor.__dlpack_device__()

    handle = queue.native_stream_handle
    print(
        "MAX queue stream handle", handle, "torch current", torch.cuda.current_stream().cuda_stream
    )
    max_stream = torch.cuda.ExternalStream(handle)
    made = driver.Buffer(driver.Buffer.from_dlpack(x).dtype, (n,), device=engine.device)
    steps = {
        "x.__dlpack__()": lambda: x.__dlpack__(),
        "x.__dlpack__(stream=max)": lambda: x.__dlpack__(stream=handle),
        "to_dlpack(x)": lambda: torch.utils.dlpack.to_dlpack(x),
        "Buffer.from_dlpack(x)": lambda: driver.Buffer.from_dlpack(x),
        "Buffer._from_dlpack(x)": lambda: driver.Buffer._from_dlpack(x),
        "Buffer._from_dlpack(Capsule(x))": lambda: driver.Buffer._from_dlpack(Capsule(x)),
        "Buffer(dtype, n) on GPU": lambda: driver.Buffer(made.dtype, (n,), device=engine.device),
        "torch.from_dlpack(Buffer)": lambda: torch.from_dlpack(made),
        "torch.empty(n)": lambda: torch.empty(n, device="cuda"),
        "ExternalStream(handle)": lambda: torch.cuda.ExternalStream(handle),
        "max_stream.wait_stream(current)": lambda: max_stream.wait_stream(
            torch.cuda.current_stream()
        ),
        "current.wait_stream(max_stream)": lambda: torch.cuda.current_stream().wait_stream(
            max_stream
        ),
        "x.record_stream(max_stream)": lambda: x.record_stream(max_stream),
        "torch current_stream sync": lambda: torch.cuda.current_stream().synchronize(),
    }
    for name, step in steps.items():
        try:
            print(f"{name:<36} {micros(step):9.1f} us")
        except Exception as exc:  # a probe: report and go on
            print(f"{name:<36} failed: {type(exc).__name__}: {exc}")
    # Does MAX's execute reuse the queue whose handle we read? Stream order check:
    # torch writes x on its stream, MAX reads it after a GPU-side wait only.
    signal = driver.Buffer.from_dlpack(x).view(made.dtype, (1, n))
    taps = driver.Buffer.from_dlpack(w).view(made.dtype, (1, 64))
    out = torch.empty(n - 63, device="cuda")
    result = driver.Buffer.from_dlpack(out).view(made.dtype, (1, n - 63))
    for _trial in range(3):
        x.normal_()
        max_stream.wait_stream(torch.cuda.current_stream())
        engine.correlate(result, signal, taps, 0)
        torch.cuda.current_stream().wait_stream(max_stream)
        expect = torch.nn.functional.conv1d(x.view(1, 1, -1), w.view(1, 1, -1)).view(-1)
        print("stream-ordered result max error", float((out - expect).abs().max()))

    def ordered_call() -> None:
        target = torch.empty(n - 63, device="cuda")
        max_stream.wait_stream(torch.cuda.current_stream())
        engine.correlate(
            driver.Buffer._from_dlpack(target).view(made.dtype, (1, n - 63)),
            driver.Buffer._from_dlpack(x).view(made.dtype, (1, n)),
            taps,
            0,
        )
        torch.cuda.current_stream().wait_stream(max_stream)

    def report(name: str, step) -> None:  # noqa: ANN001
        print(f"{name:<36} {micros(step):9.1f} us")

    report("stream-ordered call + sync", lambda: (ordered_call(), torch.cuda.synchronize()))
    report(
        "engine.correlate + sync",
        lambda: (engine.correlate(result, signal, taps, 0), engine.device.synchronize()),
    )
    # Device graphs: capture once, replay with the same and with other buffers.
    model = engine.model(np.float32)
    window = engine.window(0, 1)
    try:
        model.capture(7, result, signal, taps, window)
        report(
            "replay (same buffers) + sync",
            lambda: (model.replay(7, result, signal, taps, window), engine.device.synchronize()),
        )
        other = torch.empty(n - 63, device="cuda")
        other_result = driver.Buffer.from_dlpack(other).view(made.dtype, (1, n - 63))
        other.zero_()
        torch.cuda.synchronize()
        model.replay(7, other_result, signal, taps, window)
        engine.device.synchronize()
        expect = torch.nn.functional.conv1d(x.view(1, 1, -1), w.view(1, 1, -1)).view(-1)
        print("replay into other buffers: max error", float((other - expect).abs().max()))
    except Exception as exc:  # a probe: report and go on
        print("capture/replay failed:", type(exc).__name__, exc)


def chunks() -> None:
    """Seconds of the numpy augment batch per GPU chunk size and copy threads."""
    import maxconv
    from maxconv import rows, transfer

    rng = np.random.default_rng(1)
    x = rng.standard_normal((1000, 48000)).astype(np.float32)
    h = rng.standard_normal((1000, 8000)).astype(np.float32)
    maxconv.convolve(x, h, device="gpu")
    print("copy threads default", getattr(transfer, "COPY_THREADS", None))
    for log_chunk in (20, 21, 22, 23, 24):
        rows.GPU_CHUNK_SAMPLES = 1 << log_chunk
        times = timings(lambda: maxconv.convolve(x, h, device="gpu"), 5)
        median, low = statistics.median(times) * 1e3, min(times) * 1e3
        print(f"chunk 2^{log_chunk}: median {median:.1f} ms, min {low:.1f}")
    # One long row (N = 2^24) cut along its outputs, per chunk length.
    long_row = rng.standard_normal(1 << 24).astype(np.float32)
    for k in (4, 64, 1024):
        taps = rng.standard_normal(k).astype(np.float32)
        for log_chunk in (21, 22, 23, 24):
            rows.GPU_CHUNK_SAMPLES = 1 << log_chunk
            times = timings(lambda: maxconv.convolve(long_row, taps, device="gpu"), 7)  # noqa: B023
            median = statistics.median(times) * 1e3
            print(f"one row 2^24, K={k}, chunk 2^{log_chunk}: median {median:.1f} ms")
    # Where the batch's time goes: host copies (fill and drain) vs the rest.
    rows.GPU_CHUNK_SAMPLES = 1 << 24
    spent = {"copy": 0.0, "copies": 0}
    plain = rows.parallel_copy

    def timed_copy(target, source) -> None:  # noqa: ANN001
        start = time.perf_counter()
        plain(target, source)
        spent["copy"] += time.perf_counter() - start
        spent["copies"] += 1

    rows.parallel_copy = timed_copy
    start = time.perf_counter()
    out = maxconv.convolve(x, h, device="gpu")
    wall = time.perf_counter() - start
    copies = spent["copy"] * 1e3
    print(f"one call {wall * 1e3:.1f} ms: host copies {copies:.1f} ms in {spent['copies']}")
    start = time.perf_counter()
    np.empty_like(out)[...] = 1
    print(f"touching a new output array: {(time.perf_counter() - start) * 1e3:.1f} ms")
    rows.parallel_copy = plain


def order() -> None:
    """Median microseconds of maxconv.correlate(x, w, 'valid') on torch tensors
    (one call then torch.cuda.synchronize, 200 times) per way of ordering."""
    import torch

    import maxconv
    from maxconv.device_arrays import StreamOrder

    x = torch.randn(1 << 24, device="cuda")
    w = torch.randn(64, device="cuda")
    kept_before, kept_after = StreamOrder.before, StreamOrder.after

    def streams_before(self) -> None:  # noqa: ANN001
        self.queue.wait_stream(self._current())

    def streams_after(self) -> None:  # noqa: ANN001
        self._current().wait_stream(self.queue)

    def host_before(self) -> None:  # noqa: ANN001
        self._current().synchronize()

    def host_after(self) -> None:  # noqa: ANN001
        self.engine.device.synchronize()

    ways = {
        "kept events (the code)": (kept_before, kept_after),
        "wait_stream (new event a call)": (streams_before, streams_after),
        "host synchronize both sides": (host_before, host_after),
    }
    for _ in range(2):
        for name, (before, after) in ways.items():
            StreamOrder.before, StreamOrder.after = before, after
            call = lambda: (maxconv.correlate(x, w, "valid"), torch.cuda.synchronize())  # noqa: E731
            times = timings(call, 200, torch.cuda.synchronize)
            print(f"{name:<34} {statistics.median(times) * 1e6:8.1f} us")
    conv1d = lambda: (  # noqa: E731
        torch.nn.functional.conv1d(x.view(1, 1, -1), w.view(1, 1, -1)),
        torch.cuda.synchronize(),
    )
    times = timings(conv1d, 200, torch.cuda.synchronize)
    print(f"{'torch conv1d':<34} {statistics.median(times) * 1e6:8.1f} us")


def breakdown() -> None:
    """Median microseconds (call + synchronize, 200 times) of the torch-tensor
    call built up from the bare op one step at a time, the host's share of
    each (the call alone, device idle before it) and the op's GPU time from
    CUDA events on MAX's queue."""
    import torch
    from max import driver

    import maxconv
    from maxconv.device_arrays import (
        StreamOrder,
        _device_rows,
        _exporter,
        _Producer,
        filter_cuda,
        legacy_orders,
    )
    from maxconv.engine import get_engine

    n, k = 1 << 24, 64
    engine = get_engine("gpu")
    x = torch.randn(n, device="cuda")
    w = torch.randn(k, device="cuda")
    out = torch.empty(n - k + 1, device="cuda")
    export = _exporter(torch)
    dtype = driver.Buffer._from_dlpack(_Producer(export(x), (2, 0))).dtype
    signal = driver.Buffer._from_dlpack(_Producer(export(x), (2, 0))).view(dtype, (1, n))
    taps = driver.Buffer._from_dlpack(_Producer(export(w), (2, 0))).view(dtype, (1, k))
    result = driver.Buffer._from_dlpack(_Producer(export(out), (2, 0))).view(dtype, (1, n - k + 1))
    order = StreamOrder.of(torch, engine, 0)
    handle = engine.device.default_queue.native_stream_handle
    queue = torch.cuda.ExternalStream(handle)
    print("MAX queue ordered with the legacy stream by CUDA:", legacy_orders(handle, 0))

    def fresh_wrappers() -> None:
        engine.correlate(
            _device_rows(out, 1, n - k + 1, 0, export),
            _device_rows(x, 1, n, 0, export),
            _device_rows(w, 1, k, 0, export),
            0,
        )

    def fresh_output() -> None:
        target = torch.empty(n - k + 1, device="cuda")
        engine.correlate(_device_rows(target, 1, n - k + 1, 0, export), signal, taps, 0)

    def ordered() -> None:
        order.before()
        engine.correlate(result, signal, taps, 0)
        order.after()

    with_events = StreamOrder(torch, engine, 0, handle, implicit=False)

    def evented() -> None:
        with_events.before()
        engine.correlate(result, signal, taps, 0)
        with_events.after()

    steps = {
        "op, fixed buffers": lambda: engine.correlate(result, signal, taps, 0),
        "op, new wrappers of the tensors": fresh_wrappers,
        "op, new torch output": fresh_output,
        "op + StreamOrder (the code)": ordered,
        "op + kept events": evented,
        "filter_cuda": lambda: filter_cuda(x, w, "valid", -1, "auto", "auto", None, False, 0),
        "maxconv.correlate": lambda: maxconv.correlate(x, w, "valid"),
        "torch conv1d": lambda: torch.nn.functional.conv1d(x.view(1, 1, -1), w.view(1, 1, -1)),
    }
    for sync_name, sync in (
        ("device sync", engine.device.synchronize),
        ("torch sync", torch.cuda.synchronize),
    ):
        for name, step in steps.items():
            with_sync = timings(lambda s=step, y=sync: (s(), y()), 200, torch.cuda.synchronize)
            host = timings(step, 200, torch.cuda.synchronize)
            print(
                f"{name:<34} {sync_name:<12} call+sync {statistics.median(with_sync) * 1e6:8.1f} us"
                f"   host {statistics.median(host) * 1e6:8.1f} us"
            )
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    gpu = []
    for _ in range(50):
        start.record(queue)
        engine.correlate(result, signal, taps, 0)
        stop.record(queue)
        torch.cuda.synchronize()
        gpu.append(start.elapsed_time(stop) * 1e3)
    print(f"{'op on the GPU (events on its queue)':<47} {statistics.median(gpu):8.1f} us")
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        for name in ("maxconv.correlate", "torch conv1d"):
            step = steps[name]
            times = timings(
                lambda s=step: (s(), torch.cuda.synchronize()), 200, torch.cuda.synchronize
            )
            print(f"{name + ' on a side stream':<47} {statistics.median(times) * 1e6:8.1f} us")
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    for _ in range(200):
        maxconv.correlate(x, w, "valid")
        torch.cuda.synchronize()
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(25)


def output() -> None:
    """Median microseconds (call + device sync, and the host's share) of the
    K = 64 op on fixed inputs with the output made each call in several ways."""
    import torch
    from max import driver

    from maxconv.device_arrays import _device_rows, _exporter
    from maxconv.engine import get_engine

    n, k = 1 << 24, 64
    count = n - k + 1
    engine = get_engine("gpu")
    device = engine.device
    handle = device.default_queue.native_stream_handle
    export = _exporter(torch)
    x = torch.randn(n, device="cuda")
    w = torch.randn(k, device="cuda")
    out = torch.empty(count, device="cuda")
    signal = _device_rows(x, 1, n, 0, export)
    taps = _device_rows(w, 1, k, 0, export)
    dtype = signal.dtype
    result = _device_rows(out, 1, count, 0, export)
    kept: list = []
    print("DLPack view hazard-tracked:", result._host_hazard_tracked, "usage", result.usage)
    made = driver.Buffer(dtype, (1, count), device=device)
    print("MAX buffer hazard-tracked:", made._host_hazard_tracked, "usage", made.usage)

    def three_arg(tensor, stream: int):  # noqa: ANN001, ANN202
        return driver.Buffer._from_dlpack(export(tensor), device, stream).view(dtype, (1, count))

    def op(target) -> None:  # noqa: ANN001
        engine.correlate(target, signal, taps, 0)

    steps = {
        "op, fixed buffers": lambda: op(result),
        "view of out only (no op)": lambda: _device_rows(out, 1, count, 0, export),
        "3-arg view of out only (no op)": lambda: three_arg(out, 0),
        "torch.empty only": lambda: torch.empty(count, device="cuda"),
        "MAX Buffer only": lambda: driver.Buffer(dtype, (1, count), device=device),
        "torch.from_dlpack(MAX Buffer) only": lambda: torch.from_dlpack(made),
        "op, new view of out": lambda: op(_device_rows(out, 1, count, 0, export)),
        "op, new view of out, view kept": lambda: (
            kept.append(_device_rows(out, 1, count, 0, export)),
            op(kept[-1]),
        ),
        "op, 3-arg view of out (stream 0)": lambda: op(three_arg(out, 0)),
        "op, 3-arg view of out (MAX stream)": lambda: op(three_arg(out, handle)),
        "op, new torch output": lambda: op(
            _device_rows(torch.empty(count, device="cuda"), 1, count, 0, export)
        ),
        "op, new torch output, 3-arg view": lambda: op(
            three_arg(torch.empty(count, device="cuda"), 0)
        ),
        "op, MAX output, torch.from_dlpack": lambda: torch.from_dlpack(
            _run(engine, driver.Buffer(dtype, (1, count), device=device), signal, taps)
        ),
    }
    for name, step in steps.items():
        try:
            with_sync = timings(lambda s=step: (s(), device.synchronize()), 200, device.synchronize)
            host = timings(step, 200, device.synchronize)
            kept.clear()
            print(
                f"{name:<38} call+sync {statistics.median(with_sync) * 1e6:8.1f} us"
                f"   host {statistics.median(host) * 1e6:8.1f} us"
            )
        except Exception as exc:  # a probe: report and go on
            print(f"{name:<38} failed: {type(exc).__name__}: {exc}")
    # The 3-arg import's result is right (and the MAX-allocated one handed to torch).
    try:
        x.normal_()
        expect = torch.nn.functional.conv1d(x.view(1, 1, -1), w.view(1, 1, -1)).view(-1)
        fresh = torch.empty(count, device="cuda")
        op(three_arg(fresh, 0))
        device.synchronize()
        print("3-arg view result max error", float((fresh - expect).abs().max()))
        back = torch.from_dlpack(
            _run(engine, driver.Buffer(dtype, (1, count), device=device), signal, taps)
        )
        device.synchronize()
        print("MAX output in torch max error", float((back.view(-1) - expect).abs().max()))
    except Exception as exc:  # a probe: report and go on
        print("check failed:", type(exc).__name__, exc)
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    for _ in range(300):
        op(_device_rows(torch.empty(count, device="cuda"), 1, count, 0, export))
    device.synchronize()
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(12)


def prelaunch() -> None:
    """Mean microseconds of each host step of maxconv.correlate(x, w, 'valid') on
    torch CUDA tensors (K = 64, N = 2^24), each repeated alone (steps that queue
    GPU work are followed by an untimed device sync)."""
    import torch

    import maxconv
    from maxconv import arrays, device_arrays, planning
    from maxconv.engine import get_engine

    n, k = 1 << 24, 64
    count = n - k + 1
    engine = get_engine("gpu")
    x = torch.randn(n, device="cuda")
    w = torch.randn(k, device="cuda")
    maxconv.correlate(x, w, "valid")
    target = device_arrays._target(x, 0, "auto")
    dtype = device_arrays._numpy_dtype(x)
    out = torch.empty(count, device="cuda")
    signal = target.rows(x, 1, n)
    taps = device_arrays._taps_rows(target, w, False, dtype)
    result = target.rows(out, 1, count)

    def mean_micros(step, sync: bool = False, repeat: int = 2000) -> float:  # noqa: ANN001
        total = 0.0
        for _ in range(repeat):
            start = time.perf_counter()
            step()
            total += time.perf_counter() - start
            if sync:
                engine.device.synchronize()
        return total / repeat * 1e6

    steps = {
        "check_mode + check_method": lambda: (
            planning.check_mode("valid"),
            planning.check_method("auto"),
        ),
        "x.__dlpack_device__()": x.__dlpack_device__,
        "cuda_index(x)": lambda: arrays.cuda_index(x),
        "_target(x)": lambda: device_arrays._target(x, 0, "auto"),
        "target.rows(x) (kept view)": lambda: target.rows(x, 1, n),
        "_numpy_dtype(x)": lambda: device_arrays._numpy_dtype(x),
        "full_slice + resolve_method": lambda: (
            planning.full_slice("valid", n, k),
            engine.resolve_method("auto", k),
        ),
        "torch.empty(count)": lambda: device_arrays._empty(torch, x, (count,)),
        "_taps_rows (kept view)": lambda: device_arrays._taps_rows(target, w, False, dtype),
        "target.rows(out) (kept view)": lambda: target.rows(out, 1, count),
        "new view (MAX's DLPack import)": lambda: device_arrays._device_rows(
            out, 1, count, 0, target.export
        ),
        "order.before": target.order.before,
        "engine.window": lambda: engine.window(0, 1),
        "engine.correlate (queue only)": lambda: engine.correlate(result, signal, taps, 0),
        "order.after": target.order.after,
        "filter_cuda (queue only)": lambda: device_arrays.filter_cuda(
            x, w, "valid", -1, "auto", "auto", None, False, 0
        ),
        "maxconv.correlate (queue only)": lambda: maxconv.correlate(x, w, "valid"),
    }
    for name, step in steps.items():
        sync = "queue only" in name
        print(f"{name:<34} {mean_micros(step, sync, 500 if sync else 2000):8.2f} us")


def fft_rows(ks: list[int]) -> None:
    """maxconv bench's device-resident rows, its torch-tensor rows (the API on
    CUDA tensors) and cupyx's, one JSON line each."""
    import json

    from maxconv import bench_peers
    from maxconv.bench import bench_inputs, measure_ops
    from maxconv.bench_peers import _cupy_peer, measure_torch_tensors
    from maxconv.engine import get_engine

    bench_peers.TORCH_MAX_MACS = 0  # torch's conv1d takes 0.06-0.45 s a call at K >= 1024
    engine = get_engine("gpu")
    n = 1 << 24
    for k in ks:
        signal, taps = bench_inputs(np.dtype(np.float32), n, k)
        rows = measure_ops(engine, signal, taps, 2, 20, stream=True)
        rows += measure_torch_tensors(engine, np.dtype(np.float32), n, k, 2, 20)
        rows += _cupy_peer(np.dtype(np.float32), n, k, 2, 20)
        for row in rows:
            print(json.dumps(row.as_dict()), flush=True)


def fft_api() -> None:
    """Median microseconds (call + sync) of the FFT op at K = 1024 and 4096
    (N = 2^24 float32) on kept buffers through the engine, executed and
    replayed, and through maxconv.correlate on torch tensors with numpy or
    CUDA taps (out=), with the engine's device graphs and without; and the
    host's time of each call alone (its GPU work synchronized untimed)."""
    from maxconv.engine import get_engine

    engine = get_engine("gpu")
    graphs = engine.graphs
    for k in (1024, 4096):
        for label, name, step in _fft_api_steps(engine, k):
            engine.graphs = graphs if label == "graphs" else None
            _print_call(f"K={k} {label:<9} {name:<24}", step)
        engine.graphs = graphs
        print(f"  captured {len(graphs._graphs)}, refused {graphs.refused}", flush=True)


def fft_profile() -> None:
    """cProfile of 500 maxconv.correlate calls on torch tensors (K = 1024, N = 2^24,
    out=) with numpy taps and with CUDA taps: the host's functions by own time."""
    import cProfile
    import pstats

    import torch

    from maxconv.engine import get_engine

    steps = _fft_api_steps(get_engine("gpu"), 1024)
    for label, name, step in steps:
        if label != "graphs" or not name.startswith("api"):
            continue
        for _ in range(5):
            step()
        torch.cuda.synchronize()
        profile = cProfile.Profile()
        for _ in range(500):
            profile.enable()
            step()
            profile.disable()
            torch.cuda.synchronize()
        print(f"== {name}: 500 calls", flush=True)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)


def _fft_api_steps(engine, k: int):  # noqa: ANN001, ANN202
    """(graphs label, name, call) of fft_api at K = k."""
    import torch

    import maxconv

    n = 1 << 24
    x = torch.randn(n + k - 1, device="cuda")
    w = torch.randn(k, device="cuda")
    h = w.cpu().numpy()
    out = torch.empty(n, device="cuda")
    taps = np.ascontiguousarray(h.reshape(1, k))
    block = engine.fft_block(k, n, np.float32)
    signal = engine.to_device(x.cpu().numpy().reshape(1, -1))
    result = engine.device_buffer("probe", (1, n), np.float32)
    taps_dev = engine.device_taps(taps)[0]
    engine.correlate(result, signal, taps_dev, 0, "fft", block, engine.spectrum(taps, block))
    kept = engine.spectrum(taps, block)
    steps = {
        "engine, kept, execute": lambda: engine.correlate(
            result, signal, taps_dev, 0, "fft", block, kept
        ),
        "engine, kept, replay": lambda: engine.correlate(
            result, signal, taps_dev, 0, "fft", block, kept, replay=True
        ),
        "api, numpy taps, out=": lambda: maxconv.correlate(x, h, "valid", out=out),
        "api, cuda taps, out=": lambda: maxconv.correlate(x, w, "valid", out=out),
    }
    labels = ("graphs", "no graphs")
    return [(label, name, step) for label in labels for name, step in steps.items()]


def _print_call(label: str, step: Callable[[], object]) -> None:
    """Median microseconds of `step` with a device sync, and of its host part alone."""
    import torch

    sync = torch.cuda.synchronize
    times = timings(lambda: (step(), sync()), 200, sync)
    host = timings(step, 200, sync)
    print(
        f"{label} call+sync {statistics.median(times) * 1e6:7.1f} us"
        f"  host {statistics.median(host) * 1e6:6.1f} us",
        flush=True,
    )


def replay() -> None:
    """Median microseconds (call + device sync, and the host's share) of the
    K = 64 op executed and replayed from a captured device graph."""
    import torch

    from maxconv import device_arrays
    from maxconv.device_graphs import execute
    from maxconv.engine import get_engine

    n, k = 1 << 24, 64
    count = n - k + 1
    engine = get_engine("gpu")
    device = engine.device
    x = torch.randn(n, device="cuda")
    w = torch.randn(k, device="cuda")
    out = torch.empty(count, device="cuda")
    target = device_arrays._target(x, 0, "auto")
    signal, taps, result = target.rows(x, 1, n), target.rows(w, 1, k), target.rows(out, 1, count)
    model = engine.model(np.float32)
    window = engine.window(0, 1)
    buffers = [result, signal, taps, window]
    execute(model, buffers)
    device.synchronize()
    try:
        start = time.perf_counter()
        model.capture(11, *buffers)
        device.synchronize()
        print(f"capture: {(time.perf_counter() - start) * 1e3:.2f} ms")
    except Exception as exc:  # a probe: report and stop
        print("capture failed:", type(exc).__name__, exc)
        return
    steps = {
        "execute": lambda: execute(model, buffers),
        "replay": lambda: model.replay(11, *buffers),
        "replay, same memory, new views": lambda: model.replay(
            11,
            device_arrays._device_rows(out, 1, count, 0, target.export),
            device_arrays._device_rows(x, 1, n, 0, target.export),
            taps,
            window,
        ),
    }
    for name, step in steps.items():
        try:
            with_sync = timings(lambda s=step: (s(), device.synchronize()), 200, device.synchronize)
            host = timings(step, 200, device.synchronize)
            print(
                f"{name:<34} call+sync {statistics.median(with_sync) * 1e6:8.1f} us"
                f"   host {statistics.median(host) * 1e6:8.1f} us"
            )
        except Exception as exc:  # a probe: report and go on
            print(f"{name:<34} failed: {type(exc).__name__}: {exc}")
    for trial in range(3):
        x.normal_()
        w.normal_()
        expect = torch.nn.functional.conv1d(x.view(1, 1, -1), w.view(1, 1, -1)).view(-1)
        model.replay(11, *buffers)
        device.synchronize()
        print(f"replay {trial}: max error {float((out - expect).abs().max()):.3g}")
    other = torch.empty(count, device="cuda")
    try:
        model.replay(11, target.rows(other, 1, count), signal, taps, window)
        print("replay into another output: accepted")
    except Exception as exc:  # a probe: report and go on
        print("replay into another output:", type(exc).__name__, exc)


def graphs() -> None:
    """Median microseconds (call + sync) of maxconv.correlate on torch tensors,
    a new output and out=, with the engine's device graphs and without."""
    import torch

    import maxconv
    from maxconv.device_graphs import DeviceGraphs
    from maxconv.engine import get_engine

    n, k = 1 << 24, 64
    engine = get_engine("gpu")
    x = torch.randn(n, device="cuda")
    w = torch.randn(k, device="cuda")
    out = torch.empty(n - k + 1, device="cuda")
    steps = {
        "new output": lambda: maxconv.correlate(x, w, "valid"),
        "out=": lambda: maxconv.correlate(x, w, "valid", out=out),
    }
    for label, graphs in (
        ("graphs", engine.graphs),
        ("no graphs", None),
        ("graphs", DeviceGraphs()),
    ):
        engine.graphs = graphs
        for name, step in steps.items():
            times = timings(
                lambda s=step: (s(), torch.cuda.synchronize()), 200, torch.cuda.synchronize
            )
            print(f"{label:<10} {name:<12} call+sync {statistics.median(times) * 1e6:8.1f} us")
        if graphs is not None:
            kept = f"captured {len(graphs._graphs)}, seen {len(graphs._seen)}"
            print(f"  {kept}, refused {graphs.refused}")
    expect = torch.nn.functional.conv1d(x.view(1, 1, -1), w.view(1, 1, -1)).view(-1)
    print("max error", float((maxconv.correlate(x, w, "valid") - expect).abs().max()))


def _run(engine, target, signal, taps):  # noqa: ANN001, ANN202
    engine.correlate(target, signal, taps, 0)
    return target


# The probes by name (see the module doc).
PROBES = {
    "memory": memory,
    "tensors": tensors,
    "exchange": exchange,
    "order": order,
    "breakdown": breakdown,
    "output": output,
    "prelaunch": prelaunch,
    "fft": lambda: fft_rows([int(k) for k in sys.argv[2:]]),
    "fftapi": fft_api,
    "fftprofile": fft_profile,
    "replay": replay,
    "graphs": graphs,
    "chunks": chunks,
}


if __name__ == "__main__":
    probe = PROBES.get(sys.argv[1] if len(sys.argv) > 1 else "")
    if probe is None:
        sys.exit(__doc__)
    probe()
