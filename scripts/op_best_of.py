"""The direct op alone on the CPU, best of many calls: the figure a kernel change is judged by.

    uv run python scripts/op_best_of.py [--n 1048576] [--repeat 15] [--k 1 4 16 64 128 256]

One [1, N] float32 row, the first N outputs of the full correlation, the
result written into a preallocated array; prints MS/s and GMAC/s per K.
The best of `repeat` calls, not the median: on a shared 2-core machine the
median moves with the neighbours' load, the best much less.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from maxconv.engine import get_engine
from maxconv.rows import correlate_rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1 << 20)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 4, 16, 64, 128, 256])
    args = parser.parse_args()
    engine = get_engine("cpu")
    signal = np.random.default_rng(0).standard_normal((1, args.n)).astype(np.float32)
    out = np.empty((1, args.n), np.float32)
    for k in args.k:
        taps = np.ones((1, k), np.float32)

        def call(k: int = k, taps: np.ndarray = taps) -> None:
            correlate_rows(engine, signal, taps, k - 1, args.n, "direct", out=out)

        call()
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            call()
            best = min(best, time.perf_counter() - start)
        print(f"K={k}: {args.n / best / 1e6:.0f} MS/s, {args.n * k / best / 1e9:.1f} GMAC/s")


if __name__ == "__main__":
    main()
