# The GPU path of fft_conv1d, standalone: builds every kernel for an H100
# (sm_90) on a machine without a GPU, where MAX would only say "Failed to
# compile the model":
#   .venv/bin/mojo build --target-accelerator=sm_90 -I . \
#       research/fft/gpu_check.mojo -o /tmp/gpu_check
# Run on a GPU machine, it also checks results against a direct float64
# correlation on the host, for one shared-memory size and the multi-pass sizes.
from max.gpu.host import DeviceContext
from maxconv.ops.fft_common import fft_points
from maxconv.ops.fft_gpu_launch import fft_conv_gpu
from std.time import perf_counter_ns


def _rand(mut state: UInt64) -> Float64:
    state = state * 6364136223846793005 + 1442695040888963407
    return Float64(Int((state >> 11) & 0xFFFFFFFF)) / 4294967296.0 - 0.5


def check[dtype: DType](
    ctx: DeviceContext, rows: Int, n: Int, k: Int, block: Int, chunk_log: Int = 0, taps_rows: Int = 1
) raises -> Float64:
    """Worst error of the 'full' correlation of `rows` signals of n samples
    (outputs n + K - 1, pad K - 1) against a float64 host sum, relative to
    half the taps' absolute sum."""
    var pad = k - 1
    var t = n + k - 1
    var n_sig = rows * n
    var n_out = rows * t
    var h_sig = ctx.enqueue_create_host_buffer[dtype](n_sig)
    var h_taps = ctx.enqueue_create_host_buffer[dtype](taps_rows * k)
    var h_out = ctx.enqueue_create_host_buffer[dtype](n_out)
    ctx.synchronize()
    var state: UInt64 = 99
    for i in range(n_sig):
        h_sig[i] = Scalar[dtype](_rand(state))
    for i in range(taps_rows * k):
        h_taps[i] = Scalar[dtype](_rand(state))
    var d_sig = ctx.enqueue_create_buffer[dtype](n_sig)
    var d_taps = ctx.enqueue_create_buffer[dtype](taps_rows * k)
    var d_out = ctx.enqueue_create_buffer[dtype](n_out)
    ctx.enqueue_copy(d_sig, h_sig)
    ctx.enqueue_copy(d_taps, h_taps)
    # Twice: the first call computes the taps' spectra into a kept buffer,
    # the second reads them from it (the stream-of-chunks case); the second
    # call's outputs are checked.
    var d_spectrum = ctx.enqueue_create_buffer[dtype](2 * taps_rows * fft_points(block, k, 8))
    for ready in [False, True]:
        fft_conv_gpu[dtype](
            ctx,
            d_out.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](),
            d_sig.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](),
            d_taps.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](),
            rows, n, n, taps_rows, pad, t, k, block,
            d_spectrum.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](), True, ready, chunk_log,
        )
        if not ready:
            ctx.enqueue_memset(d_out, 0)
    ctx.enqueue_copy(h_out, d_out)
    ctx.synchronize()
    var worst = 0.0
    for row in range(rows):
        var c = row if taps_rows > 1 else 0
        var hsum = 0.0
        for j in range(k):
            hsum += abs(Float64(h_taps[c * k + j]))
        var step = max(1, t // 37)
        var i = 0
        while i < t:
            var acc = 0.0
            for j in range(k):
                var x = i + j - pad
                if x >= 0 and x < n:
                    acc += Float64(h_sig[row * n + x]) * Float64(h_taps[c * k + j])
            worst = max(worst, abs(acc - Float64(h_out[row * t + i])) / (0.5 * hsum))
            i = i + step if i + step < t or i == t - 1 else t - 1
    return worst


def bench[dtype: DType](
    ctx: DeviceContext, n: Int, k: Int, points: Int, chunk_log: Int = 0, chunk_threads: Int = 0
) raises:
    """Device-resident timing of the whole op: n 'same'-style outputs of one row in blocks of L = points."""
    var h_sig = ctx.enqueue_create_host_buffer[dtype](n)
    var h_taps = ctx.enqueue_create_host_buffer[dtype](k)
    ctx.synchronize()
    for i in range(n):
        h_sig[i] = Scalar[dtype](Float64(i % 13) - 6.0)
    for i in range(k):
        h_taps[i] = Scalar[dtype](1.0 / Float64(k))
    var d_sig = ctx.enqueue_create_buffer[dtype](n)
    var d_taps = ctx.enqueue_create_buffer[dtype](k)
    var d_out = ctx.enqueue_create_buffer[dtype](n)
    var d_spectrum = ctx.enqueue_create_buffer[dtype](2 * fft_points(points, k, 8))
    ctx.enqueue_copy(d_sig, h_sig)
    ctx.enqueue_copy(d_taps, h_taps)
    ctx.synchronize()
    # The taps' spectrum computed on every call, then kept from the first.
    for kept in [False, True]:
        var times = List[Int]()
        for r in range(6):
            var s = perf_counter_ns()
            fft_conv_gpu[dtype](
                ctx,
                d_out.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](),
                d_sig.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](),
                d_taps.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](),
                1, n, n, 1, k - 1, n, k, points,
                d_spectrum.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](), True, kept and r > 0,
                chunk_log, chunk_threads,
            )
            ctx.synchronize()
            if r > 0:
                times.append(Int(perf_counter_ns() - s))
        sort(times)
        var med = Float64(times[len(times) // 2])
        print("bench", dtype, "N", n, "K", k, "L", points, "chunk", chunk_log, chunk_threads, "spectrum kept" if kept else "spectrum each call", "ms", med / 1e6, "GS/s", Float64(n) / med)


def main() raises:
    var ctx = DeviceContext()
    # (rows, samples, taps, block, chunk log, taps rows): whole blocks in one
    # thread block (float32 up to 2^13 points, float64 2^12), then global
    # passes of radix 2, 4, 8, 16, 32, 8 x 8, 16 x 8, 16 x 16, 32 x 32 before
    # chunks (2^12 float32, 2^11 float64); lengths leave the last block of a
    # row partial and odd block counts leave a pair half empty.
    print("f32 L=64        ", check[DType.float32](ctx, 2, 129, 7, 50, 0, 2))
    print("f32 L=256       ", check[DType.float32](ctx, 2, 579, 7, 200, 0, 2))
    print("f32 L=4096      ", check[DType.float32](ctx, 1, 9288, 1000, 4096, 0, 1))
    print("f32 L=8192      ", check[DType.float32](ctx, 2, 3901, 4097, 8000, 0, 2))
    print("f32 L=8192 r2   ", check[DType.float32](ctx, 2, 18576, 2000, 8192, 12, 2))
    print("f32 L=16384     ", check[DType.float32](ctx, 1, 24573, 4097, 16384, 0, 1))
    print("f32 L=2^15      ", check[DType.float32](ctx, 2, 73728, 8192, 32768, 0, 2))
    print("f32 L=2^16 r16  ", check[DType.float32](ctx, 1, 147456, 16384, 65536, 12, 1))
    print("f32 L=2^17 r32  ", check[DType.float32](ctx, 1, 303216, 30000, 131072, 12, 1))
    print("f32 L=2^18      ", check[DType.float32](ctx, 1, 589824, 65536, 262144, 0, 1))
    print("f32 L=2^19      ", check[DType.float32](ctx, 1, 786431, 131072, 524288, 0, 1))
    print("f32 L=2^20      ", check[DType.float32](ctx, 2, 948574, 100000, 1048576, 0, 2))
    print("f32 L=2^22      ", check[DType.float32](ctx, 1, 3145726, 1048576, 4194304, 0, 1))
    print("f64 L=2048      ", check[DType.float64](ctx, 2, 5952, 64, 2048, 0, 2))
    print("f64 L=4096      ", check[DType.float64](ctx, 1, 9288, 1000, 4096, 0, 1))
    print("f64 L=8192      ", check[DType.float64](ctx, 1, 12285, 4097, 8192, 0, 1))
    print("f64 L=2^16      ", check[DType.float64](ctx, 2, 166608, 10000, 65536, 0, 2))
    print("f64 L=2^18      ", check[DType.float64](ctx, 2, 196606, 65536, 262144, 0, 2))
    var n = 1 << 24
    # The defaults, then whole rows of up to 2^14 points (256 threads).
    for cfg in [(0, 0), (14, 256)]:
        var cap = cfg[0]
        var thr = cfg[1]
        bench[DType.float32](ctx, n, 2048, 8192, cap, thr)
        bench[DType.float32](ctx, n, 4096, 16384, cap, thr)
        bench[DType.float32](ctx, n, 16384, 65536, cap, thr)
        bench[DType.float32](ctx, n, 131072, 524288, cap, thr)
        bench[DType.float32](ctx, n, 1048576, 4194304, cap, thr)
