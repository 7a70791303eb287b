"""The direct op alone on the CPU, best of many calls: the figure a kernel change is judged by.

    uv run python scripts/op_best_of.py [--n 1048576] [--repeat 15] [--k 1 4 16 64 128 256]
    uv run python scripts/op_best_of.py --n 4194304 --repeat 40 --k 1 4 16 64 --host-to-host

One [1, N] float32 row, the first N outputs of the full correlation, the
result written into a preallocated array; prints MS/s and GMAC/s per K.
The best of `repeat` calls, not the median: on a shared 2-core machine the
median moves with the neighbours' load, the best much less.

With --host-to-host the op call is interleaved with the same call returning
a new numpy array (what `maxconv.correlate` does) and with `np.multiply(x,
c)` into a new array (the memory floor), and the best and median ms of each
are printed with host-to-host's share of the op's throughput.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from maxconv.engine import get_engine
from maxconv.rows import correlate_rows


def seconds(calls: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    """Each call's times, the calls interleaved (one round of all per repeat)."""
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeat):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1 << 20)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 4, 16, 64, 128, 256])
    parser.add_argument("--host-to-host", action="store_true")
    args = parser.parse_args()
    engine = get_engine("cpu")
    signal = np.random.default_rng(0).standard_normal((1, args.n)).astype(np.float32)
    out = np.empty((1, args.n), np.float32)
    for k in args.k:
        taps = np.ones((1, k), np.float32)
        calls = {
            "op": lambda k=k, taps=taps: correlate_rows(
                engine, signal, taps, k - 1, args.n, "direct", out=out
            )
        }
        if args.host_to_host:
            calls["host-to-host"] = lambda k=k, taps=taps: correlate_rows(
                engine, signal, taps, k - 1, args.n, "direct"
            )
            calls["np.multiply"] = lambda: np.multiply(signal, 2.0)
        times = seconds(calls, args.repeat)
        best = min(times["op"])
        line = f"K={k}: {args.n / best / 1e6:.0f} MS/s, {args.n * k / best / 1e9:.1f} GMAC/s"
        if args.host_to_host:
            least = {name: min(t) for name, t in times.items()}
            middle = {name: statistics.median(t) for name, t in times.items()}
            line += "".join(
                f" | {label} "
                + ", ".join(f"{name} {value[name] * 1e3:.3f}" for name in calls)
                + f" ms, host-to-host {value['op'] / value['host-to-host']:.2f} of the op"
                for label, value in (("best", least), ("median", middle))
            )
        print(line)


if __name__ == "__main__":
    main()
