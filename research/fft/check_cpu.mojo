# Correctness and speed of the CPU FFT path without a MAX graph:
#   .venv/bin/mojo run -I . research/fft/check_cpu.mojo
from maxconv.ops.fft_conv import fft_conv_cpu, _alloc
from std.time import perf_counter_ns


def _rand(mut state: UInt64) -> Float64:
    state = state * 6364136223846793005 + 1442695040888963407
    return Float64(Int((state >> 11) & 0xFFFFFFFF)) / 4294967296.0 - 0.5


def check[dtype: DType](channels: Int, batch: Int, width: Int, k: Int) -> Float64:
    var t = width - k + 1
    var sig = _alloc[dtype](channels * batch * width)
    var taps = _alloc[dtype](channels * k)
    var res = _alloc[dtype](channels * batch * t)
    var state: UInt64 = 12345
    for i in range(channels * batch * width):
        sig[unsafe_offset=i] = Scalar[dtype](_rand(state))
    for i in range(channels * k):
        taps[unsafe_offset=i] = Scalar[dtype](_rand(state))
    fft_conv_cpu[dtype](res, sig, taps, channels, batch, width, k)
    var worst = 0.0
    for c in range(channels):
        var hsum = 0.0
        for j in range(k):
            hsum += abs(Float64(taps[unsafe_offset=c * k + j]))
        for b in range(batch):
            var row = c * batch + b
            # spot-check up to 64 outputs per row, spread over the row
            var step = max(1, t // 64)
            var i = 0
            while i < t:
                var acc = 0.0
                for j in range(k):
                    acc += Float64(sig[unsafe_offset=row * width + i + j]) * Float64(taps[unsafe_offset=c * k + j])
                var err = abs(acc - Float64(res[unsafe_offset=row * t + i])) / (0.5 * hsum)
                worst = max(worst, err)
                i += step
            # and the last output
            var acc = 0.0
            for j in range(k):
                acc += Float64(sig[unsafe_offset=row * width + t - 1 + j]) * Float64(taps[unsafe_offset=c * k + j])
            worst = max(worst, abs(acc - Float64(res[unsafe_offset=row * t + t - 1])) / (0.5 * hsum))
    sig.unsafe_free()
    taps.unsafe_free()
    res.unsafe_free()
    return worst


def bench[dtype: DType](n: Int, k: Int, points: Int) raises:
    var t = points - k + 1
    var batch = (n + t - 1) // t
    var sig = _alloc[dtype](batch * points)
    var taps = _alloc[dtype](k)
    var res = _alloc[dtype](batch * t)
    for i in range(batch * points):
        sig[unsafe_offset=i] = Scalar[dtype](Float64(i % 17) - 8.0)
    for i in range(k):
        taps[unsafe_offset=i] = Scalar[dtype](1.0 / Float64(k))
    fft_conv_cpu[dtype](res, sig, taps, 1, batch, points, k)
    var best = Int.MAX
    for _ in range(5):
        var s = perf_counter_ns()
        fft_conv_cpu[dtype](res, sig, taps, 1, batch, points, k)
        best = min(best, Int(perf_counter_ns() - s))
    print("bench", dtype, "N", n, "K", k, "L", points, "B", batch, "ms", Float64(best) / 1e6, "MS/s", Float64(n) / Float64(best) * 1e3)
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
            print("K", k, "W", w, "f32", check[DType.float32](2, 3, w, k), "f64", check[DType.float64](1, 3, w, k))
    for p in [8192, 16384, 32768, 65536]:
        bench[DType.float32](1 << 20, 4096, p)
    for p in [131072, 262144, 524288, 1048576]:
        bench[DType.float32](1 << 20, 65536, p)
