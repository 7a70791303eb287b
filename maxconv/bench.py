"""Benchmarks: the conv1d op beside its peers, measured in the same run.

Each point is timed with warm-up runs, then `repeat` timed runs; the median
is reported so one noisy run does not decide. The op is timed two ways: on
data already on the device (the op alone, output allocation included) and
end to end from host memory and back through the public API. Peers that
cannot be imported are reported as absent, never estimated.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from .rows import correlate_rows

if TYPE_CHECKING:
    from .engine import Engine

# numpy.convolve is scalar direct convolution (~1 GMAC/s): skip it past this.
NUMPY_MAX_MACS = 1 << 30
# MAX's conv2d runs at ~4 GMAC/s on the 2-core CPU and ~0.7 TMAC/s on an H100.
CONV2D_MAX_MACS_CPU = 1 << 35
CONV2D_MAX_MACS_GPU = 1 << 40
# torch's conv1d (cuDNN) falls to ~0.3 TMAC/s past K = 256 on an H100: skip it past this.
TORCH_MAX_MACS = 1 << 40
# The direct op past this many MACs takes seconds per run on a CPU.
DIRECT_MAX_MACS = 1 << 38
# On a GPU, maxconv's ops and the torch, torchaudio and cupyx peers (not
# MAX's conv2d, which is far from per-call bound) are also timed as STREAM_CALLS
# calls per synchronize, where one call takes under STREAM_UNDER_SECONDS:
# the rate a stream of tiles sees once the host's per-call cost overlaps the
# device's work. One call + synchronize costs MAX ~48 us on an H100 (an
# execute on a 1024-sample tile), which alone caps a 2^24-sample call at
# 350 GS/s.
STREAM_CALLS = 10
STREAM_UNDER_SECONDS = 0.01


@dataclass
class Measurement:
    """One timed point: who ran what, and the median seconds it took."""

    name: str
    device: str
    dtype: str
    n: int
    k: int
    seconds: float | None
    note: str = ""
    per_sync: int = 1
    # What goes in and comes out: "device" (data already on the device),
    # "host" (numpy to numpy), "tensors" (torch CUDA tensors), "augment" and
    # "augment tensors" (clips through one response each). See bench_peers.
    ground: str = "device"

    @property
    def title(self) -> str:
        """The name, with its ground and the calls per synchronize when streamed."""
        title = self.name if self.ground == "device" else f"{self.name} [{self.ground}]"
        return f"{title}, {self.per_sync} calls/sync" if self.per_sync > 1 else title

    @property
    def samples_per_second(self) -> float | None:
        return self.n / self.seconds if self.seconds else None

    def as_dict(self) -> dict:
        row = asdict(self)
        row["samples_per_second"] = self.samples_per_second
        row["gmac_per_second"] = self.n * self.k / self.seconds / 1e9 if self.seconds else None
        return row


@dataclass(frozen=True)
class DeviceLimits:
    """The ceilings a point is compared with, and where the figures come from."""

    bytes_per_second: float
    macs_per_second: float
    source: str


# Datasheet figures (NVIDIA H100/H200 SXM): HBM bandwidth and FP32 FMA rate
# (67 TFLOPS FP32 = 33.5 TMAC/s); looked up by MAX's architecture name.
GPU_DATASHEET = {
    "H100": DeviceLimits(
        3.35e12, 33.5e12, "NVIDIA H100 SXM datasheet: 3.35 TB/s HBM3, 67 TFLOPS FP32"
    ),
    "H200": DeviceLimits(
        4.8e12, 33.5e12, "NVIDIA H200 SXM datasheet: 4.8 TB/s HBM3e, 67 TFLOPS FP32"
    ),
}


def measure_cpu_limits(dtype: str = "float32") -> DeviceLimits:
    """Measure this CPU's ceilings in the same run: a 256 MB copy and a matmul.

    numpy's copy sets the attainable memory bandwidth and its BLAS matmul the
    attainable multiply-add rate; no datasheet is needed, and the shares are
    relative to what this machine really does.
    """
    source = np.ones(1 << 26, dtype=np.float32)
    target = np.empty_like(source)
    copy = median_seconds(lambda: np.copyto(target, source), lambda: None, 1, 5)
    size = 1024
    a = np.ones((size, size), dtype=dtype)
    matmul = median_seconds(lambda: a @ a, lambda: None, 1, 5)
    return DeviceLimits(
        2 * source.nbytes / copy,
        size**3 / matmul,
        "measured now: numpy copy of 256 MB (read + write) and a "
        f"{size}x{size} {np.dtype(dtype).name} BLAS matmul",
    )


def device_limits(engine: Engine) -> DeviceLimits | None:
    """Ceilings for the engine's device: datasheet for known GPUs, measured for the CPU."""
    if engine.spec.kind == "cpu":
        return measure_cpu_limits()
    name = f"{getattr(engine.device, 'model_name', '')} {engine.device.architecture_name}"
    for key, limits in GPU_DATASHEET.items():
        if key.lower() in name.lower():
            return limits
    return None


def share_of_limit(row: Measurement, limits: DeviceLimits | None) -> tuple[float, str] | None:
    """The larger of the bandwidth and FMA shares a point reaches, and which it is.

    Bytes moved are the input once plus the output once (the least any
    implementation must move); MACs are N*K (direct convolution's count).
    """
    if limits is None or not row.seconds:
        return None
    itemsize = np.dtype(row.dtype).itemsize
    bandwidth = (2 * row.n + row.k - 1) * itemsize / row.seconds / limits.bytes_per_second
    compute = row.n * row.k / row.seconds / limits.macs_per_second
    return (bandwidth, "memory") if bandwidth >= compute else (compute, "FMA")


def median_seconds(
    run: Callable[[], object],
    sync: Callable[[], object],
    warmup: int,
    repeat: int,
    calls: int = 1,
) -> float:
    """Median wall time per call of `calls` runs followed by one `sync`,
    after `warmup` untimed runs."""
    for _ in range(warmup):
        run()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        sync()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def timed(
    name: str,
    device: str,
    dtype: np.dtype,
    n: int,
    k: int,
    run: Callable[[], object],
    sync: Callable[[], object],
    warmup: int,
    repeat: int,
    stream: bool,
) -> list[Measurement]:
    """One call per synchronize; with `stream`, also STREAM_CALLS per synchronize
    where a call is short enough for the per-call cost to matter."""
    label = np.dtype(dtype).name
    seconds = median_seconds(run, sync, warmup, repeat)
    rows = [Measurement(name, device, label, n, k, seconds)]
    if stream and seconds < STREAM_UNDER_SECONDS:
        streamed = median_seconds(run, sync, warmup, repeat, STREAM_CALLS)
        rows.append(Measurement(name, device, label, n, k, streamed, per_sync=STREAM_CALLS))
    return rows


def bench_inputs(dtype: np.dtype, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The [1, N] signal and [1, K] taps each maxconv point is timed on (fixed seed)."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((1, n)).astype(dtype), rng.standard_normal((1, k)).astype(dtype)


def measure_ops(
    engine: Engine,
    signal: np.ndarray,
    taps: np.ndarray,
    warmup: int,
    repeat: int,
    stream: bool = False,
) -> list[Measurement]:
    """Both ops on device-resident data: the direct op and the FFT op.

    Each computes the first N outputs of the full correlation of one [1, N]
    row, reading the row in place (the op supplies the K-1 leading zeros).
    The direct op is skipped past DIRECT_MAX_MACS. `stream` adds the
    STREAM_CALLS-per-synchronize figures (see timed).
    """
    n, k, dtype = signal.shape[1], taps.shape[1], signal.dtype
    taps_dev = engine.to_device(taps)
    signal_dev = engine.to_device(signal)
    out_dev = engine.device_buffer("bench", (1, n), dtype)
    sync = engine.device.synchronize
    label = engine.label
    name = dtype.name
    rows = []
    if n * k <= DIRECT_MAX_MACS:
        engine.model(dtype)
        rows += timed(
            "maxconv op",
            label,
            dtype,
            n,
            k,
            lambda: engine.correlate(out_dev, signal_dev, taps_dev, k - 1),
            sync,
            warmup,
            repeat,
            stream,
        )
    else:
        rows.append(Measurement("maxconv op", label, name, n, k, None, "skipped: N*K too large"))
    block = engine.fft_block(k, n, dtype)
    engine.model(dtype, method="fft")
    rows += timed(
        "maxconv fft op",
        label,
        dtype,
        n,
        k,
        lambda: engine.correlate(out_dev, signal_dev, taps_dev, k - 1, "fft", block),
        sync,
        warmup,
        repeat,
        stream,
    )
    # The same taps call after call (a filter run, a stream of chunks): their
    # spectrum computed once and kept on the device.
    spectrum = engine.spectrum(taps, block)
    engine.correlate(out_dev, signal_dev, taps_dev, k - 1, "fft", block, spectrum=spectrum)
    kept = (spectrum[0], True)
    rows += timed(
        "maxconv fft op, taps spectrum kept",
        label,
        dtype,
        n,
        k,
        lambda: engine.correlate(out_dev, signal_dev, taps_dev, k - 1, "fft", block, spectrum=kept),
        sync,
        warmup,
        repeat,
        stream,
    )
    return rows


def measure_maxconv(
    engine: Engine, dtype: np.dtype, n: int, k: int, warmup: int, repeat: int
) -> list[Measurement]:
    """Both ops on device-resident data, and end to end from the host (method auto)."""
    signal, taps = bench_inputs(dtype, n, k)
    rows = measure_ops(engine, signal, taps, warmup, repeat, stream=engine.spec.kind == "gpu")
    end_to_end = median_seconds(
        lambda: correlate_rows(engine, signal, taps, k - 1, n),
        engine.device.synchronize,
        warmup,
        repeat,
    )
    name = np.dtype(dtype).name
    rows.append(
        Measurement("maxconv host-to-host", engine.label, name, n, k, end_to_end, ground="host")
    )
    return rows


def speedups(rows: list[Measurement]) -> dict[int, float]:
    """For each peer row, how many times faster maxconv's best row of the same
    ground is (peer / maxconv), timed alike (the same calls per synchronize)."""
    best: dict[tuple, float] = {}

    def key(row: Measurement) -> tuple:
        return (row.ground, row.device.split(":")[0], row.dtype, row.n, row.k, row.per_sync)

    for row in rows:
        # Peers transform their kernel on every call: compared with the op that does too.
        if row.name.startswith("maxconv") and "kept" not in row.name and row.seconds:
            best[key(row)] = min(best.get(key(row), row.seconds), row.seconds)
    ratios = {}
    for index, row in enumerate(rows):
        ours = best.get(key(row))
        if ours and row.seconds and not row.name.startswith("maxconv"):
            ratios[index] = row.seconds / ours
    return ratios


def crossovers(rows: list[Measurement]) -> dict[tuple[str, str, int], int | None]:
    """Per (device, dtype, N): the least swept K from which the FFT op beats the direct op.

    "From" means at that K and every larger one swept; a K where the direct op
    was skipped counts as an FFT win. None if the FFT op never takes over.
    """
    times: dict[tuple[str, str, int], dict[int, dict[str, float | None]]] = {}
    for row in rows:
        if row.name in ("maxconv op", "maxconv fft op") and row.per_sync == 1:
            point = times.setdefault((row.device, row.dtype, row.n), {}).setdefault(row.k, {})
            point[row.name] = row.seconds
    found: dict[tuple[str, str, int], int | None] = {}
    for key, by_k in times.items():
        crossover = None
        for k in sorted(by_k, reverse=True):
            direct, fft = by_k[k].get("maxconv op"), by_k[k].get("maxconv fft op")
            if fft is None or (direct is not None and direct <= fft):
                break
            crossover = k
        found[key] = crossover
    return found


def plot_throughput(rows: list[Measurement], path: str) -> None:
    """Samples/s against K, one line per implementation and device (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ValueError("--plot needs matplotlib: uv sync --extra plot") from exc
    figure, axes = plt.subplots(figsize=(8, 5))
    series: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        if row.samples_per_second:
            label = f"{row.title} [{row.device}, {row.dtype}, N={row.n}]"
            series.setdefault(label, []).append((row.k, row.samples_per_second))
    for label, points in series.items():
        points.sort()
        axes.plot([k for k, _ in points], [v for _, v in points], marker="o", label=label)
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xlabel("kernel length K (taps)")
    axes.set_ylabel("samples / s")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
