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

import numpy as np

from .convolution import correlate_rows
from .engine import get_engine


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

    @property
    def samples_per_second(self) -> float | None:
        return self.n / self.seconds if self.seconds else None

    def as_dict(self) -> dict:
        row = asdict(self)
        row["samples_per_second"] = self.samples_per_second
        row["gmac_per_second"] = self.n * self.k / self.seconds / 1e9 if self.seconds else None
        return row


def median_seconds(
    run: Callable[[], object], sync: Callable[[], object], warmup: int, repeat: int
) -> float:
    """Median wall time of `run` followed by `sync`, after `warmup` untimed runs."""
    for _ in range(warmup):
        run()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_maxconv(
    device: str, dtype: np.dtype, n: int, k: int, warmup: int, repeat: int
) -> list[Measurement]:
    """The op on device-resident data, and end to end from the host."""
    engine = get_engine(device)
    rng = np.random.default_rng(0)
    signal = rng.standard_normal((1, n)).astype(dtype)
    taps = rng.standard_normal((1, k)).astype(dtype)
    padded = np.concatenate([signal, np.zeros((1, k - 1), dtype)], axis=1).reshape(1, 1, -1)
    tiles_dev = engine.to_device(padded)
    taps_dev = engine.to_device(taps)
    engine.model(np.dtype(dtype))
    sync = engine.device.synchronize
    on_device = median_seconds(
        lambda: engine.run_on_device(tiles_dev, taps_dev), sync, warmup, repeat
    )
    end_to_end = median_seconds(
        lambda: correlate_rows(signal, taps, k - 1, n, device), sync, warmup, repeat
    )
    label = engine.label
    name = np.dtype(dtype).name
    return [
        Measurement("maxconv (on device)", label, name, n, k, on_device),
        Measurement("maxconv (host to host)", label, name, n, k, end_to_end),
    ]


def _cpu_peers(
    dtype: np.dtype, n: int, k: int
) -> dict[str, Callable[[], Callable[[], object]] | None]:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(n).astype(dtype)
    h = rng.standard_normal(k).astype(dtype)
    peers: dict[str, Callable[[], Callable[[], object]] | None] = {
        "numpy.convolve": lambda: (lambda: np.convolve(x, h)) if n * k <= 1 << 32 else None,
    }
    try:
        import scipy.signal as signal

        peers["scipy.signal.oaconvolve"] = lambda: lambda: signal.oaconvolve(x, h)
        peers["scipy.signal.fftconvolve"] = lambda: lambda: signal.fftconvolve(x, h)
    except ImportError:
        peers["scipy.signal.oaconvolve"] = None
        peers["scipy.signal.fftconvolve"] = None
    return peers


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
                results.append(Measurement(peer, "cpu", name, n, k, None, "absent"))
                continue
            results.append(
                Measurement(
                    peer, "cpu", name, n, k, median_seconds(run, lambda: None, warmup, repeat)
                )
            )
        return results
    results.extend(_torch_peer(dtype, n, k, warmup, repeat))
    results.extend(_cupy_peer(dtype, n, k, warmup, repeat))
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
    tdtype = torch.float32 if np.dtype(dtype) == np.float32 else torch.float64
    x = torch.randn(1, 1, n + k - 1, device="cuda", dtype=tdtype)
    w = torch.randn(1, 1, k, device="cuda", dtype=tdtype)
    seconds = median_seconds(
        lambda: functional.conv1d(x, w), torch.cuda.synchronize, warmup, repeat
    )
    return [Measurement("torch conv1d", "gpu", name, n, k, seconds)]


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
    seconds = median_seconds(lambda: csignal.oaconvolve(x, h), sync, warmup, repeat)
    return [Measurement("cupyx oaconvolve", "gpu", name, n, k, seconds)]


def run_sweep(
    device: str,
    dtypes: list[str],
    ns: list[int],
    ks: list[int],
    warmup: int = 2,
    repeat: int = 7,
    peers: bool = True,
) -> list[Measurement]:
    """Every (dtype, N, K) point: maxconv both ways, then the peers."""
    kind = get_engine(device).spec.kind
    rows: list[Measurement] = []
    for dtype_name in dtypes:
        dtype = np.dtype(dtype_name)
        for n in ns:
            for k in ks:
                rows.extend(measure_maxconv(device, dtype, n, k, warmup, repeat))
                if peers:
                    rows.extend(measure_peers(kind, dtype, n, k, warmup, repeat))
    return rows
