"""The peers `maxconv bench` times beside maxconv, each on its own ground.

A ground is what a user hands over and gets back: "device" (data already on
the device, the op alone: torch conv1d, torchaudio fftconvolve, cupyx
oaconvolve, MAX's conv2d), "host" (numpy in, numpy out, every copy
included: numpy, scipy, and on a GPU cupyx and torch with their own
transfers), "tensors" (torch CUDA tensors in and out) and "augment" (many
clips, each through its own response). Speedups compare rows of one ground
only. Peers that cannot be imported are listed as absent, never estimated.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable

import numpy as np

from .bench import (
    CONV2D_MAX_MACS_CPU,
    CONV2D_MAX_MACS_GPU,
    NUMPY_MAX_MACS,
    STREAM_CALLS,
    TORCH_MAX_MACS,
    Measurement,
    measure_maxconv,
    median_seconds,
    timed,
)
from .cache import cache_key
from .engine import SUPPORTED_DTYPES, Engine

# The augmentation case: clips x samples through responses x taps (one per clip).
AUGMENT_SHAPE = (1000, 48_000, 8_000)


def _cpu_peers(
    dtype: np.dtype, n: int, k: int
) -> dict[str, Callable[[], Callable[[], object]] | None]:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(n).astype(dtype)
    h = rng.standard_normal(k).astype(dtype)
    scale = dtype.type(0.5)
    peers: dict[str, Callable[[], Callable[[], object]] | None] = {
        # The memory floor of K = 1: read N, write N into a new array.
        "numpy multiply (floor)": lambda: lambda: np.multiply(x, scale),
        "numpy.convolve": lambda: (lambda: np.convolve(x, h)) if n * k <= NUMPY_MAX_MACS else None,
    }
    try:
        import scipy.signal as signal

        peers["scipy.signal.oaconvolve"] = lambda: lambda: signal.oaconvolve(x, h)
        peers["scipy.signal.fftconvolve"] = lambda: lambda: signal.fftconvolve(x, h)
    except ImportError:
        peers["scipy.signal.oaconvolve"] = None
        peers["scipy.signal.fftconvolve"] = None
    return peers


def _max_conv2d_model(engine: Engine, dtype: np.dtype):
    """MAX's built-in conv2d as a 1 x K correlation, compiled once (symbolic W, K) and cached."""
    from max.graph import DeviceRef, Graph, TensorType, ops

    max_dtype = SUPPORTED_DTYPES[np.dtype(dtype)]
    device = DeviceRef.from_device(engine.device)

    def compile_graph():
        signal = TensorType(max_dtype, [1, 1, "width", 1], device=device)
        taps = TensorType(max_dtype, [1, "taps", 1, 1], device=device)
        with Graph(f"max_conv2d_peer_{max_dtype}", input_types=[signal, taps]) as graph:
            x, h = (value.tensor for value in graph.inputs)
            graph.output(ops.conv2d(x, h))
        return engine.session.compile(graph)

    key = cache_key(
        "max-conv2d-peer",
        importlib.metadata.version("max"),
        engine.device_signature(),
        str(max_dtype),
    )
    compiled, _ = engine.cache.get_or_compile(key, compile_graph)
    return engine.session.init(compiled)


def measure_max_conv2d(
    engine: Engine, dtype: np.dtype, n: int, k: int, warmup: int, repeat: int
) -> Measurement:
    """MAX's own ops.conv2d on device-resident data, the in-house baseline."""
    limit = CONV2D_MAX_MACS_CPU if engine.spec.kind == "cpu" else CONV2D_MAX_MACS_GPU
    if n * k > limit:
        note = "skipped: N*K too large"
        return Measurement("MAX ops.conv2d", engine.label, np.dtype(dtype).name, n, k, None, note)
    model = _max_conv2d_model(engine, dtype)
    rng = np.random.default_rng(2)
    x = engine.to_device(rng.standard_normal((1, 1, n + k - 1, 1)).astype(dtype))
    h = engine.to_device(rng.standard_normal((1, k, 1, 1)).astype(dtype))
    seconds = median_seconds(lambda: model.execute(x, h), engine.device.synchronize, warmup, repeat)
    return Measurement("MAX ops.conv2d", engine.label, np.dtype(dtype).name, n, k, seconds)


def measure_peers(
    device_kind: str, dtype: np.dtype, n: int, k: int, warmup: int, repeat: int
) -> list[Measurement]:
    """Peers on the same device kind; absent ones are listed with seconds=None."""
    results: list[Measurement] = []
    name = np.dtype(dtype).name
    if device_kind == "cpu":
        for peer, make in _cpu_peers(dtype, n, k).items():
            run = make() if make else None
            if run is None:
                note = "absent" if make is None else "skipped: over a minute per run"
                results.append(Measurement(peer, "cpu", name, n, k, None, note, ground="host"))
                continue
            seconds = median_seconds(run, lambda: None, warmup, repeat)
            results.append(Measurement(peer, "cpu", name, n, k, seconds, ground="host"))
        return results
    results.extend(_torch_peer(dtype, n, k, warmup, repeat))
    results.extend(_torchaudio_peer(dtype, n, k, warmup, repeat))
    results.extend(_cupy_peer(dtype, n, k, warmup, repeat))
    results.extend(_host_gpu_peers(dtype, n, k, warmup, repeat))
    return results


def _torch_peer(dtype: np.dtype, n: int, k: int, warmup: int, repeat: int) -> list[Measurement]:
    name = np.dtype(dtype).name
    try:
        import torch
        import torch.nn.functional as functional
    except ImportError:
        return [Measurement("torch conv1d", "gpu", name, n, k, None, "absent")]
    if not torch.cuda.is_available():
        return [Measurement("torch conv1d", "gpu", name, n, k, None, "no CUDA")]
    if n * k > TORCH_MAX_MACS:
        return [Measurement("torch conv1d", "gpu", name, n, k, None, "skipped: N*K too large")]
    tdtype = torch.float32 if np.dtype(dtype) == np.float32 else torch.float64
    x = torch.randn(1, 1, n + k - 1, device="cuda", dtype=tdtype)
    w = torch.randn(1, 1, k, device="cuda", dtype=tdtype)
    return timed(
        "torch conv1d",
        "gpu",
        dtype,
        n,
        k,
        lambda: functional.conv1d(x, w),
        torch.cuda.synchronize,
        warmup,
        repeat,
        True,
    )


def _torchaudio_peer(
    dtype: np.dtype, n: int, k: int, warmup: int, repeat: int
) -> list[Measurement]:
    """torchaudio's FFT convolution, the ground of the long-kernel (reverb) users."""
    name = np.dtype(dtype).name
    try:
        import torch
        import torchaudio.functional as audio_functional
    except ImportError:
        return [Measurement("torchaudio fftconvolve", "gpu", name, n, k, None, "absent")]
    if not torch.cuda.is_available():
        return [Measurement("torchaudio fftconvolve", "gpu", name, n, k, None, "no CUDA")]
    tdtype = torch.float32 if np.dtype(dtype) == np.float32 else torch.float64
    x = torch.randn(n, device="cuda", dtype=tdtype)
    h = torch.randn(k, device="cuda", dtype=tdtype)
    return timed(
        "torchaudio fftconvolve",
        "gpu",
        dtype,
        n,
        k,
        lambda: audio_functional.fftconvolve(x, h),
        torch.cuda.synchronize,
        warmup,
        repeat,
        True,
    )


def _cupy_peer(dtype: np.dtype, n: int, k: int, warmup: int, repeat: int) -> list[Measurement]:
    name = np.dtype(dtype).name
    try:
        import cupy
        import cupyx.scipy.signal as csignal
    except ImportError:
        return [Measurement("cupyx oaconvolve", "gpu", name, n, k, None, "absent")]
    x = cupy.random.standard_normal(n).astype(dtype)
    h = cupy.random.standard_normal(k).astype(dtype)
    sync = cupy.cuda.Device().synchronize
    return timed(
        "cupyx oaconvolve",
        "gpu",
        dtype,
        n,
        k,
        lambda: csignal.oaconvolve(x, h),
        sync,
        warmup,
        repeat,
        True,
    )


def _host_gpu_peers(dtype: np.dtype, n: int, k: int, warmup: int, repeat: int) -> list[Measurement]:
    """cupyx and torch from numpy to numpy, each with its own copies."""
    name = np.dtype(dtype).name
    rng = np.random.default_rng(1)
    x = rng.standard_normal(n).astype(dtype)
    h = rng.standard_normal(k).astype(dtype)
    rows = []
    try:
        import cupy
        import cupyx.scipy.signal as csignal

        run = lambda: csignal.oaconvolve(cupy.asarray(x), cupy.asarray(h)).get()  # noqa: E731
        seconds = median_seconds(run, lambda: None, warmup, repeat)
        rows.append(Measurement("cupyx oaconvolve", "gpu", name, n, k, seconds, ground="host"))
    except ImportError:
        rows.append(
            Measurement("cupyx oaconvolve", "gpu", name, n, k, None, "absent", ground="host")
        )
    try:
        import torch
        import torch.nn.functional as functional

        if n * k > TORCH_MAX_MACS or not torch.cuda.is_available():
            raise ImportError
        flipped = np.ascontiguousarray(h[::-1]).reshape(1, 1, k)

        def run() -> np.ndarray:
            signal = torch.from_numpy(x).cuda().reshape(1, 1, n)
            weights = torch.from_numpy(flipped).cuda()
            return functional.conv1d(signal, weights, padding=k - 1).cpu().numpy()

        seconds = median_seconds(run, lambda: None, warmup, repeat)
        rows.append(Measurement("torch conv1d", "gpu", name, n, k, seconds, ground="host"))
    except ImportError:
        rows.append(Measurement("torch conv1d", "gpu", name, n, k, None, "absent", ground="host"))
    return rows


def measure_torch_tensors(
    engine: Engine, dtype: np.dtype, n: int, k: int, warmup: int, repeat: int
) -> list[Measurement]:
    """maxconv and torch's conv1d on the same CUDA tensors (correlation, 'valid'):
    maxconv returning a new tensor, writing the caller's `out` (a loop that
    does not allocate), and writing `out` with the taps given as a numpy
    array (a fixed filter: kept on the device with their FFT spectrum, so
    the FFT op's fused calls replay from a device graph); one call per
    synchronize, then STREAM_CALLS."""
    name = np.dtype(dtype).name
    try:
        import torch
        import torch.nn.functional as functional
    except ImportError:
        return []
    if not torch.cuda.is_available() or engine.kind != "gpu":
        return []
    import maxconv

    tdtype = torch.float32 if np.dtype(dtype) == np.float32 else torch.float64
    x = torch.randn(n + k - 1, device="cuda", dtype=tdtype)
    w = torch.randn(k, device="cuda", dtype=tdtype)
    x3, w3 = x.reshape(1, 1, -1), w.reshape(1, 1, -1)
    out = torch.empty(n, device="cuda", dtype=tdtype)
    host_taps = w.cpu().numpy()
    runs = [
        ("maxconv", lambda: maxconv.correlate(x, w, "valid", device=engine.label)),
        ("maxconv, out=", lambda: maxconv.correlate(x, w, "valid", device=engine.label, out=out)),
        (
            "maxconv, out=, numpy taps (spectrum kept)",
            lambda: maxconv.correlate(x, host_taps, "valid", device=engine.label, out=out),
        ),
    ]
    if n * k <= TORCH_MAX_MACS:
        runs.append(("torch conv1d", lambda: functional.conv1d(x3, w3)))
    rows = []
    for per_sync in (1, STREAM_CALLS):  # one call per synchronize, then a loop of calls
        for label, run in runs:
            seconds = median_seconds(run, torch.cuda.synchronize, warmup, repeat, per_sync)
            rows.append(
                Measurement(label, "gpu", name, n, k, seconds, per_sync=per_sync, ground="tensors")
            )
    return rows


def measure_augment(
    engine: Engine, warmup: int, repeat: int, shape=AUGMENT_SHAPE
) -> list[Measurement]:
    """Clips through one response each: numpy in and out, and torch tensors on a GPU.

    maxconv is timed through its public API, on the engine's device.
    """
    import maxconv

    clips, samples, taps = shape
    rng = np.random.default_rng(3)
    x = rng.standard_normal((clips, samples)).astype(np.float32)
    h = (rng.standard_normal((clips, taps)) * np.exp(-np.arange(taps) / 2000)).astype(np.float32)
    label = engine.label
    total = clips * samples

    def row(
        name: str, seconds: float | None, ground: str, where: str, note: str = ""
    ) -> Measurement:
        return Measurement(name, where, "float32", total, taps, seconds, note, ground=ground)

    run = lambda: maxconv.convolve(x, h, axis=-1, device=label)  # noqa: E731
    rows = [row("maxconv", median_seconds(run, lambda: None, warmup, repeat), "augment", label)]
    if engine.kind == "cpu":
        try:
            import scipy.signal as signal

            run = lambda: signal.oaconvolve(x, h, axes=-1)  # noqa: E731
            seconds = median_seconds(run, lambda: None, warmup, repeat)
            rows.append(row("scipy.signal.oaconvolve", seconds, "augment", "cpu"))
        except ImportError:
            rows.append(row("scipy.signal.oaconvolve", None, "augment", "cpu", "absent"))
        return rows
    try:
        import cupy
        import cupyx.scipy.signal as csignal

        run = lambda: csignal.oaconvolve(cupy.asarray(x), cupy.asarray(h), axes=-1).get()  # noqa: E731
        rows.append(
            row(
                "cupyx oaconvolve",
                median_seconds(run, lambda: None, warmup, repeat),
                "augment",
                "gpu",
            )
        )
    except ImportError:
        rows.append(row("cupyx oaconvolve", None, "augment", "gpu", "absent"))
    try:
        import torch
        import torchaudio.functional as audio_functional
    except ImportError:
        return rows
    xt, ht = torch.from_numpy(x).cuda(), torch.from_numpy(h).cuda()
    sync = torch.cuda.synchronize
    run = lambda: maxconv.convolve(xt, ht, device=label)  # noqa: E731
    rows.append(row("maxconv", median_seconds(run, sync, warmup, repeat), "augment tensors", "gpu"))
    run = lambda: audio_functional.fftconvolve(xt, ht)  # noqa: E731
    rows.append(
        row(
            "torchaudio fftconvolve",
            median_seconds(run, sync, warmup, repeat),
            "augment tensors",
            "gpu",
        )
    )
    return rows


def run_sweep(
    engine: Engine,
    dtypes: list[str],
    ns: list[int],
    ks: list[int],
    warmup: int = 2,
    repeat: int = 7,
    peers: bool = True,
    on_point: Callable[[int, int], None] | None = None,
) -> list[Measurement]:
    """Every (dtype, N, K) point: maxconv both ways, then the peers.

    `on_point(done, total)` is called after each point, for progress bars.
    """
    kind = engine.spec.kind
    rows: list[Measurement] = []
    for dtype_name in dtypes:
        dtype = np.dtype(dtype_name)
        for n in ns:
            for k in ks:
                rows.extend(measure_maxconv(engine, dtype, n, k, warmup, repeat))
                rows.extend(measure_torch_tensors(engine, dtype, n, k, warmup, repeat))
                if peers:
                    rows.append(measure_max_conv2d(engine, dtype, n, k, warmup, repeat))
                    rows.extend(measure_peers(kind, dtype, n, k, warmup, repeat))
                if on_point:
                    on_point(len(rows), len(dtypes) * len(ns) * len(ks))
    return rows
