# Correctness and speed of the CPU FFT path without a MAX graph:
#   .venv/bin/mojo run -I . research/fft/check_cpu.mojo
from maxconv.ops.fft_cpu import fft_conv_cpu, _alloc
from std.time import perf_counter_ns


def _rand(mut state: UInt64) -> Float64:
    state = state * 6364136223846793005 + 1442695040888963407
    return Float64(Int((state >> 11) & 0xFFFFFFFF)) / 4294967296.0 - 0.5


def check[dtype: DType](rows: Int, n: Int, k: Int, block: Int, pad: Int, t: Int) -> Float64:
    """Worst error of outputs [0, t) (pad zeros before the signal) against a
    float64 direct sum, relative to half the taps' absolute sum; one taps
    row per signal row."""
    var sig = _alloc[dtype](rows * n)
    var taps = _alloc[dtype](rows * k)
    var res = _alloc[dtype](rows * t)
    var state: UInt64 = 12345
    for i in range(rows * n):
        sig[unsafe_offset=i] = Scalar[dtype](_rand(state))
    for i in range(rows * k):
        taps[unsafe_offset=i] = Scalar[dtype](_rand(state))
    fft_conv_cpu[dtype](res, sig, taps, rows, n, n, rows, pad, t, k, block, res, False, False)
    var worst = 0.0
    for row in range(rows):
        var hsum = 0.0
        for j in range(k):
            hsum += abs(Float64(taps[unsafe_offset=row * k + j]))
        # spot-check up to 64 outputs per row, spread over the row, and the last
        var step = max(1, t // 64)
        var i = 0
        while i < t:
            var acc = 0.0
            for j in range(k):
                var x = i + j - pad
                if x >= 0 and x < n:
                    acc += Float64(sig[unsafe_offset=row * n + x]) * Float64(taps[unsafe_offset=row * k + j])
            worst = max(worst, abs(acc - Float64(res[unsafe_offset=row * t + i])) / (0.5 * hsum))
            i = i + step if i + step < t or i == t - 1 else t
    sig.unsafe_free()
    taps.unsafe_free()
    res.unsafe_free()
    return worst


def bench[dtype: DType](n: Int, k: Int, points: Int) raises:
    var sig = _alloc[dtype](n)
    var taps = _alloc[dtype](k)
    var res = _alloc[dtype](n)
    for i in range(n):
        sig[unsafe_offset=i] = Scalar[dtype](Float64(i % 17) - 8.0)
    for i in range(k):
        taps[unsafe_offset=i] = Scalar[dtype](1.0 / Float64(k))
    fft_conv_cpu[dtype](res, sig, taps, 1, n, n, 1, k - 1, n, k, points, res, False, False)
    var best = Int.MAX
    for _ in range(5):
        var s = perf_counter_ns()
        fft_conv_cpu[dtype](res, sig, taps, 1, n, n, 1, k - 1, n, k, points, res, False, False)
        best = min(best, Int(perf_counter_ns() - s))
    print("bench", dtype, "N", n, "K", k, "L", points, "ms", Float64(best) / 1e6, "MS/s", Float64(n) / Float64(best) * 1e3)
    sig.unsafe_free()
    taps.unsafe_free()
    res.unsafe_free()


def main() raises:
    var ks = [1, 7, 64, 1000, 4097]
    var extra = [1, 10, 100]
    for ki in range(len(ks)):
        for ei in range(len(extra)):
            var k = ks[ki]
            var w = k + extra[ei] - 1 + 57
            var n = 3 * w - 5
            print("K", k, "B", w, "full f32", check[DType.float32](2, n, k, w, k - 1, n + k - 1), "same f32", check[DType.float32](1, n, k, w, (k - 1) // 2, n), "full f64", check[DType.float64](2, n, k, w, k - 1, n + k - 1),
                  "same f64", check[DType.float64](1, n, k, w, (k - 1) // 2, n))
    for p in [8192, 16384, 32768, 65536]:
        bench[DType.float32](1 << 20, 4096, p)
    for p in [131072, 262144, 524288, 1048576]:
        bench[DType.float32](1 << 20, 65536, p)
