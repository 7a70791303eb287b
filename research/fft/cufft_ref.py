"""cuFFT's batched complex float32 transforms on the GPU machine, as a yardstick
for the fused kernels' per-point cost: two transforms of 2^lp points (two
forward ones: an inverse costs the same, and CuPy's ifft adds a scaling
pass), batched to 2^20 points in all (8 MB: the data stays in the L2)
and to 2^24 (128 MB: from HBM). Prints G points a second, a point counted
once a transform.

    python3 research/fft/cufft_ref.py      # GPU machine: CuPy (cuFFT) only

The fused op does a forward and an inverse transform of every point plus
the spectrum's product, loading real samples and storing real outputs; K =
4096 at L = 16384 transforms 11.18 M points each way for 2^24 outputs.
"""

import cupy as cp


def rate(points_log: int, total_log: int, repeat: int = 50) -> tuple[float, float]:
    """(G points a second, a point counted once a transform; ms for both
    transforms) of batched C2C."""
    n = 1 << points_log
    batch = 1 << (total_log - points_log)
    x = (cp.random.standard_normal((batch, n)) + 1j * cp.random.standard_normal((batch, n))).astype(
        cp.complex64
    )
    for _ in range(3):
        cp.fft.fft(cp.fft.fft(x, axis=1), axis=1)
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    for _ in range(repeat):
        cp.fft.fft(cp.fft.fft(x, axis=1), axis=1)
    stop.record()
    stop.synchronize()
    ms = cp.cuda.get_elapsed_time(start, stop) / repeat
    return 2 * batch * n / (ms * 1e-3) / 1e9, ms


def main() -> None:
    print(cp.cuda.runtime.getDeviceProperties(0)["name"].decode())
    for total_log in (20, 24):
        for points_log in (12, 13, 14, 17):
            g, ms = rate(points_log, total_log)
            print(
                f"C2C 2^{points_log} x {1 << (total_log - points_log)} (2^{total_log} points): "
                f"two transforms {ms:.4f} ms, {g:.0f} G points/s",
                flush=True,
            )


if __name__ == "__main__":
    main()
