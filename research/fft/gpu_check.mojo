# The GPU path of fft_conv1d, standalone: builds every kernel for an H100
# (sm_90) on a machine without a GPU, where MAX would only say "Failed to
# compile the model":
#   .venv/bin/mojo build --target-accelerator=sm_90 -I . \
#       research/fft/gpu_check.mojo -o /tmp/gpu_check
# Run on a GPU machine, it also checks results against a direct float64
# correlation on the host, for one shared-memory size and the multi-pass sizes.
from max.gpu.host import DeviceContext
from maxconv.ops.fft_conv import fft_conv_gpu
from std.time import perf_counter_ns


def _rand(mut state: UInt64) -> Float64:
    state = state * 6364136223846793005 + 1442695040888963407
    return Float64(Int((state >> 11) & 0xFFFFFFFF)) / 4294967296.0 - 0.5


def check[dtype: DType](
    ctx: DeviceContext, channels: Int, batch: Int, width: Int, k: Int, chunk_log: Int = 0
) raises -> Float64:
    var t = width - k + 1
    var n_sig = channels * batch * width
    var n_out = channels * batch * t
    var h_sig = ctx.enqueue_create_host_buffer[dtype](n_sig)
    var h_taps = ctx.enqueue_create_host_buffer[dtype](channels * k)
    var h_out = ctx.enqueue_create_host_buffer[dtype](n_out)
    ctx.synchronize()
    var state: UInt64 = 99
    for i in range(n_sig):
        h_sig[i] = Scalar[dtype](_rand(state))
    for i in range(channels * k):
        h_taps[i] = Scalar[dtype](_rand(state))
    var d_sig = ctx.enqueue_create_buffer[dtype](n_sig)
    var d_taps = ctx.enqueue_create_buffer[dtype](channels * k)
    var d_out = ctx.enqueue_create_buffer[dtype](n_out)
    ctx.enqueue_copy(d_sig, h_sig)
    ctx.enqueue_copy(d_taps, h_taps)
    fft_conv_gpu[dtype](
        ctx,
        d_out.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](),
        d_sig.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](),
        d_taps.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](),
        channels, batch, width, k, chunk_log,
    )
    ctx.enqueue_copy(h_out, d_out)
    ctx.synchronize()
    var worst = 0.0
    for c in range(channels):
        var hsum = 0.0
        for j in range(k):
            hsum += abs(Float64(h_taps[c * k + j]))
        for b in range(batch):
            var row = c * batch + b
            var step = max(1, t // 37)
            var i = 0
            while i < t:
                var acc = 0.0
                for j in range(k):
                    acc += Float64(h_sig[row * width + i + j]) * Float64(h_taps[c * k + j])
                worst = max(worst, abs(acc - Float64(h_out[row * t + i])) / (0.5 * hsum))
                i = i + step if i + step < t or i == t - 1 else t - 1
    return worst


def bench[dtype: DType](
    ctx: DeviceContext, n: Int, k: Int, points: Int, chunk_log: Int = 0, chunk_threads: Int = 0
) raises:
    """Device-resident timing of the whole op for about n outputs in tiles of L = points."""
    var t = points - k + 1
    var batch = (n + t - 1) // t
    var h_sig = ctx.enqueue_create_host_buffer[dtype](batch * points)
    var h_taps = ctx.enqueue_create_host_buffer[dtype](k)
    ctx.synchronize()
    for i in range(batch * points):
        h_sig[i] = Scalar[dtype](Float64(i % 13) - 6.0)
    for i in range(k):
        h_taps[i] = Scalar[dtype](1.0 / Float64(k))
    var d_sig = ctx.enqueue_create_buffer[dtype](batch * points)
    var d_taps = ctx.enqueue_create_buffer[dtype](k)
    var d_out = ctx.enqueue_create_buffer[dtype](batch * t)
    ctx.enqueue_copy(d_sig, h_sig)
    ctx.enqueue_copy(d_taps, h_taps)
    ctx.synchronize()
    var times = List[Int]()
    for r in range(6):
        var s = perf_counter_ns()
        fft_conv_gpu[dtype](
            ctx,
            d_out.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](),
            d_sig.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](),
            d_taps.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](),
            1, batch, points, k, chunk_log, chunk_threads,
        )
        ctx.synchronize()
        if r > 0:
            times.append(Int(perf_counter_ns() - s))
    sort(times)
    var med = Float64(times[len(times) // 2])
    print("bench", dtype, "N", batch * t, "K", k, "L", points, "chunk", chunk_log, chunk_threads, "ms", med / 1e6, "GS/s", Float64(batch * t) / med)


def main() raises:
    var ctx = DeviceContext()
    # (channels, batch, width, taps[, chunk log]): whole rows in one block
    # (float32 up to 2^13 points, float64 2^12), then global passes of
    # radix 2, 4, 8, 16, 32, 8 x 8, 16 x 8, 16 x 16, 32 x 32 before chunks
    # (2^12 float32, 2^11 float64); odd batches leave a row pair half empty.
    print("f32 L=64        ", check[DType.float32](ctx, 2, 3, 50, 7))
    print("f32 L=256       ", check[DType.float32](ctx, 2, 3, 200, 7))
    print("f32 L=4096      ", check[DType.float32](ctx, 1, 3, 4096, 1000))
    print("f32 L=8192      ", check[DType.float32](ctx, 2, 1, 8000, 4097))
    print("f32 L=8192 r2   ", check[DType.float32](ctx, 2, 3, 8192, 2000, 12))
    print("f32 L=16384     ", check[DType.float32](ctx, 1, 2, 16384, 4097))
    print("f32 L=2^15      ", check[DType.float32](ctx, 2, 3, 32768, 8192))
    print("f32 L=2^16 r16  ", check[DType.float32](ctx, 1, 3, 65536, 16384, 12))
    print("f32 L=2^17 r32  ", check[DType.float32](ctx, 1, 3, 131072, 30000, 12))
    print("f32 L=2^18      ", check[DType.float32](ctx, 1, 3, 262144, 65536))
    print("f32 L=2^19      ", check[DType.float32](ctx, 1, 2, 524288, 131072))
    print("f32 L=2^20      ", check[DType.float32](ctx, 2, 1, 1048576, 100000))
    print("f32 L=2^22      ", check[DType.float32](ctx, 1, 1, 4194304, 1048576))
    print("f64 L=2048      ", check[DType.float64](ctx, 2, 3, 2048, 64))
    print("f64 L=4096      ", check[DType.float64](ctx, 1, 3, 4096, 1000))
    print("f64 L=8192      ", check[DType.float64](ctx, 1, 3, 8192, 4097))
    print("f64 L=2^16      ", check[DType.float64](ctx, 2, 3, 65536, 10000))
    print("f64 L=2^18      ", check[DType.float64](ctx, 2, 1, 262144, 65536))
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
