"""Prototype driver for the `fft_conv1d` op: correctness sweep and CPU benchmarks.

    cd /work/main && uv run python research/fft/proto.py check     # accuracy sweep
    cd /work/main && uv run python research/fft/proto.py bench     # vs scipy, N = 2^20
    cd /work/main && uv run python research/fft/proto.py sweep     # op time against L
    cd /work/main && uv run python research/fft/proto.py crossover # vs the direct conv1d op
    cd /work/main && uv run python research/fft/proto.py all

`--device gpu` runs the same on a GPU (run on an H100 through the device tool:
check PASS; see README.md).
The graph mirrors `maxconv.engine.build_conv1d_graph` (all dims symbolic,
one compiled graph per dtype) with maxconv's op folder (maxconv/ops/fft_conv.mojo).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import scipy.signal
from max import driver, engine
from max.dtype import DType
from max.graph import DeviceRef, Graph, TensorType, ops

OPS_DIR = Path(__file__).resolve().parents[2] / "maxconv" / "ops"
DTYPES = {np.dtype(np.float32): DType.float32, np.dtype(np.float64): DType.float64}


def build_fft_graph(dtype: DType, device: DeviceRef, threads: int = 0) -> Graph:
    """[C, B, W] tiles and [C, K] taps in, [C, B, W-K+1] out, like build_conv1d_graph."""
    signal_type = TensorType(dtype, ["channels", "batch", "width"], device=device)
    taps_type = TensorType(dtype, ["channels", "taps"], device=device)
    with Graph(
        f"research_fft_conv1d_{dtype}_t{threads}",
        input_types=[signal_type, taps_type],
        custom_extensions=[OPS_DIR],
    ) as graph:
        signal, taps = (value.tensor for value in graph.inputs)
        out_shape = [signal.shape[0], signal.shape[1], signal.shape[2] - taps.shape[1] + 1]
        result = ops.custom(
            name="fft_conv1d",
            device=device,
            values=[signal, taps],
            out_types=[TensorType(dtype, out_shape, device=device)],
            parameters={"threads": threads},
        )[0]
        graph.output(result)
    return graph


class Runner:
    """One session, one compiled fft_conv1d model per dtype (compiled on first use).

    `threads` caps the op's CPU workers (0: one per core).
    """

    def __init__(self, device: str = "cpu", threads: int = 0) -> None:
        self.threads = threads
        self.device = driver.CPU() if device == "cpu" else driver.Accelerator(0)
        self.host = driver.CPU()
        self.on_cpu = device == "cpu"
        self.session = engine.InferenceSession(devices=[self.device])
        self.models: dict[np.dtype, engine.Model] = {}
        self.compile_seconds: dict[str, float] = {}

    def model(self, dtype: np.dtype) -> engine.Model:
        dtype = np.dtype(dtype)
        if dtype not in self.models:
            start = time.perf_counter()
            graph = build_fft_graph(DTYPES[dtype], DeviceRef.from_device(self.device), self.threads)
            self.models[dtype] = self.session.load(graph)
            self.compile_seconds[dtype.name] = time.perf_counter() - start
            print(
                f"  compiled fft_conv1d[{dtype.name}] in {self.compile_seconds[dtype.name]:.1f} s"
            )
        return self.models[dtype]

    def to_device(self, array: np.ndarray) -> driver.Buffer:
        buffer = driver.Buffer.from_numpy(np.ascontiguousarray(array))
        return buffer if self.on_cpu else buffer.to(self.device)

    def correlate_tiles(self, tiles: np.ndarray, taps: np.ndarray) -> np.ndarray:
        """The op on host arrays: [C, B, W], [C, K] -> [C, B, W - K + 1]."""
        model = self.model(tiles.dtype)
        out = model.execute(self.to_device(tiles), self.to_device(taps.astype(tiles.dtype)))[0]
        return out.to_numpy() if self.on_cpu else out.to(self.host).to_numpy()


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def fft_points(k: int, rule: str = "auto") -> int:
    """The transform length L for K taps (T = L - K + 1 outputs per tile).

    'auto' is the rule the CPU sweep supports (README): L = 4K rounded up to
    a power of two, but at least 2^14, where a tile costs little more than
    its in-cache transform (both cores at 40+ GFLOP/s). 'xM' is
    next_pow2(M * K). A caller also caps L at next_pow2(N + K - 1).
    """
    if rule.startswith("x"):
        return max(next_pow2(int(rule[1:]) * k), 64)
    return max(next_pow2(4 * k), 1 << 14)


def tile_full(x: np.ndarray, k: int, points: int) -> tuple[np.ndarray, int]:
    """Tiles [1, B, L] of x zero-padded for a 'full' convolution, and N + K - 1."""
    t = points - k + 1
    n_out = x.size + k - 1
    batch = -(-n_out // t)
    padded = np.zeros(batch * t + k - 1, x.dtype)
    padded[k - 1 : k - 1 + x.size] = x
    windows = np.lib.stride_tricks.sliding_window_view(padded, points)[::t][:batch]
    return np.ascontiguousarray(windows)[None], n_out


def fft_convolve(runner: Runner, x: np.ndarray, h: np.ndarray, points: int) -> np.ndarray:
    """scipy.signal.convolve(x, h, 'full') by overlap-save through the op."""
    tiles, n_out = tile_full(x, h.size, points)
    out = runner.correlate_tiles(tiles, h[::-1][None])
    return out.reshape(-1)[:n_out]


# ---------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------


def check(runner: Runner) -> bool:
    """Random tiles for many shapes against scipy.signal.correlate(..., 'valid') in float64."""
    rng = np.random.default_rng(1)
    limits = {"float32": 1e-5, "float64": 1e-12}
    ok = True
    print("accuracy: max |op - scipy| / (max|x| * sum|h|) over tiles and channels")
    print(f"{'dtype':>8} {'K':>6} {'T':>7} {'L':>7} {'C':>2} {'B':>2} {'rel err':>10}")
    for dtype in (np.float32, np.float64):
        worst_dtype = 0.0
        for k in (1, 7, 64, 1000, 4097, 65536):
            for t in sorted({1, 37, fft_points(k) - k + 1}):
                w = t + k - 1
                for channels, batch in ((1, 1), (2, 3)):
                    tiles = rng.standard_normal((channels, batch, w)).astype(dtype)
                    taps = rng.standard_normal((channels, k)).astype(dtype)
                    out = runner.correlate_tiles(tiles, taps)
                    err = 0.0
                    for c in range(channels):
                        scale = np.abs(tiles[c]).max() * np.abs(taps[c]).astype(np.float64).sum()
                        for b in range(batch):
                            ref = scipy.signal.correlate(
                                tiles[c, b].astype(np.float64), taps[c].astype(np.float64), "valid"
                            )
                            err = max(err, float(np.abs(out[c, b] - ref).max() / scale))
                    worst_dtype = max(worst_dtype, err)
                    bad = (
                        out.shape != (channels, batch, t) or not err < limits[np.dtype(dtype).name]
                    )
                    ok &= not bad
                    print(
                        f"{np.dtype(dtype).name:>8} {k:>6} {t:>7} {next_pow2(max(w, 64)):>7} "
                        f"{channels:>2} {batch:>2} {err:>10.2e}{'  FAIL' if bad else ''}"
                    )
        print(f"  worst {np.dtype(dtype).name}: {worst_dtype:.2e}")
    print("check:", "PASS" if ok else "FAIL")
    return ok


# ---------------------------------------------------------------------------
# bench and sweep
# ---------------------------------------------------------------------------


def _times(functions: dict, repeats: int = 5) -> dict[str, tuple[float, float]]:
    """(median, best) seconds per function; one warm-up each, then round-robin
    repeats so a load change on this shared machine hits every method alike."""
    for fn in functions.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(values), min(values)) for name, values in times.items()}


def _median_times(functions: dict, repeats: int = 5) -> dict[str, float]:
    return {name: pair[0] for name, pair in _times(functions, repeats).items()}


def bench(runner: Runner, n: int = 1 << 20, ks=(4096, 65536)) -> None:
    """Full convolution of a 2^20-sample float32 signal: the op (tiling included) vs scipy."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(n).astype(np.float32)
    runner.model(np.float32)  # compile outside the timings
    single = Runner("cpu", threads=1) if runner.on_cpu else None
    if single:
        single.model(np.float32)
    print(
        f"\nbench: full convolution, N = {n} float32; MS/s = N / time / 1e6, median of 5 after a"
        " warm-up (best of 5 in brackets); '1 core' is op+tiling with one worker thread"
    )
    print(
        f"{'K':>6} {'L':>7} {'op+tiling':>15} {'op only':>15} {'1 core':>13} {'oaconvolve':>13} "
        f"{'fftconvolve':>13} {'vs oa':>6} {'vs fft':>6} {'rel err':>8}"
    )
    for k in ks:
        h = (rng.standard_normal(k) / np.sqrt(k)).astype(np.float32)
        for points in sorted({fft_points(k), fft_points(k, "x2"), fft_points(k, "x16")}):
            tiles, n_out = tile_full(x, k, points)
            taps = h[::-1][None].copy()
            methods = {
                "op": partial(fft_convolve, runner, x, h, points),
                "op_only": partial(runner.correlate_tiles, tiles, taps),
                "op1": partial(fft_convolve, single, x, h, points),
                "oa": partial(scipy.signal.oaconvolve, x, h),
                "fft": partial(scipy.signal.fftconvolve, x, h),
            }
            if single is None:
                del methods["op1"]
            times = _times(methods)
            ref = scipy.signal.fftconvolve(x.astype(np.float64), h.astype(np.float64))
            got = fft_convolve(runner, x, h, points)
            err = np.abs(got - ref).max() / (np.abs(x).max() * np.abs(h).sum())
            med = {name: n / pair[0] / 1e6 for name, pair in times.items()}
            cells = {
                name: f"{n / pair[0] / 1e6:.0f} ({n / pair[1] / 1e6:.0f})"
                for name, pair in times.items()
            }
            cells.setdefault("op1", "-")
            print(
                f"{k:>6} {points:>7} {cells['op']:>15} {cells['op_only']:>15} {cells['op1']:>13} "
                f"{cells['oa']:>13} {cells['fft']:>13} {med['op'] / med['oa']:>5.1f}x "
                f"{med['op'] / med['fft']:>5.1f}x {err:>8.1e}"
            )


def sweep(runner: Runner, n: int = 1 << 20, ks=(1024, 4096, 16384, 65536)) -> None:
    """Op time per output sample against L for fixed K (tiles prepared outside the timing)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(n).astype(np.float32)
    runner.model(np.float32)
    print(f"\nsweep: op only, N = {n} float32 outputs, MS/s by L (median of 5)")
    for k in ks:
        h = rng.standard_normal(k).astype(np.float32)
        taps = h[::-1][None].copy()
        row = []
        lo = next_pow2(2 * k)
        points = lo
        while points <= max(lo * 16, 1 << 15) and points <= 1 << 21:
            tiles, _ = tile_full(x, k, points)
            sec = _median_times({"op": partial(runner.correlate_tiles, tiles, taps)})["op"]
            row.append(f"L={points}: {n / sec / 1e6:.0f}")
            points *= 2
        print(f"  K={k:>6} (auto L={fft_points(k)}): " + ", ".join(row))


def crossover(runner: Runner, n: int | None = None, ks=None) -> None:
    """fft_conv1d against maxconv's direct conv1d op by K: same tiles, both
    device-resident, execute only (what an engine's cost model would compare)."""
    from maxconv.engine import get_engine

    n = n or (1 << 20 if runner.on_cpu else 1 << 24)
    ks = ks or (
        (16, 32, 64, 128, 256, 512, 1024)
        if runner.on_cpu
        else (16, 64, 256, 1024, 4096, 16384, 65536)
    )
    direct = get_engine("cpu" if runner.on_cpu else "gpu")
    rng = np.random.default_rng(4)
    x = rng.standard_normal(n).astype(np.float32)
    fft_model = runner.model(np.float32)
    direct.model(np.float32)
    where = "CPU" if runner.on_cpu else "GPU"
    print(
        f"\ncrossover ({where}): N = {n} float32, execute only on device buffers, L = auto; "
        "MS/s, median of 5 (best)"
    )
    print(f"{'K':>6} {'L':>7} {'direct':>15} {'fft':>15} {'fft/direct':>10}")
    for k in ks:
        h = rng.standard_normal(k).astype(np.float32)
        points = min(fft_points(k), next_pow2(n + k - 1))
        tiles, _ = tile_full(x, k, points)
        tiles_dev = runner.to_device(tiles)
        taps_dev = runner.to_device(h[::-1][None])

        def run(execute, tiles_dev=tiles_dev, taps_dev=taps_dev):
            execute(tiles_dev, taps_dev)
            runner.device.synchronize()

        times = _times(
            {
                "direct": partial(run, direct.run_on_device),
                "fft": partial(run, fft_model.execute),
            }
        )
        med = {name: n / pair[0] / 1e6 for name, pair in times.items()}
        best = {name: n / pair[1] / 1e6 for name, pair in times.items()}
        print(
            f"{k:>6} {points:>7} {med['direct']:>7.0f} ({best['direct']:>5.0f}) "
            f"{med['fft']:>7.0f} ({best['fft']:>5.0f}) {med['fft'] / med['direct']:>9.2f}x"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "what", nargs="?", default="all", choices=["check", "bench", "sweep", "crossover", "all"]
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    args = parser.parse_args(argv)
    runner = Runner(args.device)
    ok = True
    if args.what in ("check", "all"):
        ok = check(runner)
    if args.what in ("bench", "all"):
        bench(runner)
    if args.what in ("sweep", "all"):
        sweep(runner)
    if args.what in ("crossover", "all"):
        crossover(runner)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
