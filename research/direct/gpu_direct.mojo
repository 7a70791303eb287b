# The direct op's GPU kernels, standalone: each checked against a float64
# host sum and timed on the same data (N = 2^24 outputs in tiles of 2^16,
# device-resident, launch + kernel, median of 7), so kernel variants can be
# compared without MAX's per-call overhead.
#   .venv/bin/mojo build --target-accelerator=sm_90 -I . \
#       research/direct/gpu_direct.mojo -o /tmp/gpu_direct
from max.gpu.host import DeviceContext
from maxconv.ops.conv1d import (
    BLOCKED_BLOCK, BLOCKED_TPB, NARROW_OUTPUTS, STRIDED_BLOCK, STRIDED_OUTPUTS, STRIDED_TPB,
    TAP_CHUNK, WIDE_TAP_CHUNK,
    _conv1d_gpu_blocked, _conv1d_gpu_pipelined, _conv1d_gpu_strided,
)
from std.math import ceildiv
from std.time import perf_counter_ns


def _rand(mut state: UInt64) -> Float64:
    state = state * 6364136223846793005 + 1442695040888963407
    return Float64(Int((state >> 11) & 0xFFFFFFFF)) / 4294967296.0 - 0.5


def run(ctx: DeviceContext, kernel: Int, k: Int) raises:
    comptime dtype = DType.float32
    var t = 1 << 16
    var rows = 256
    var w = t + k - 1
    var h_sig = ctx.enqueue_create_host_buffer[dtype](rows * w)
    var h_taps = ctx.enqueue_create_host_buffer[dtype](k)
    var h_out = ctx.enqueue_create_host_buffer[dtype](rows * t)
    ctx.synchronize()
    var state: UInt64 = 7
    for i in range(rows * w):
        h_sig[i] = Scalar[dtype](_rand(state))
    for i in range(k):
        h_taps[i] = Scalar[dtype](_rand(state))
    var d_sig = ctx.enqueue_create_buffer[dtype](rows * w)
    var d_taps = ctx.enqueue_create_buffer[dtype](k)
    var d_out = ctx.enqueue_create_buffer[dtype](rows * t)
    ctx.enqueue_copy(d_sig, h_sig)
    ctx.enqueue_copy(d_taps, h_taps)
    var o = d_out.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var sg = d_sig.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var tp = d_taps.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var times = List[Int]()
    for r in range(8):
        ctx.synchronize()
        var s = perf_counter_ns()
        if kernel == 0:
            var bpr = ceildiv(t, STRIDED_BLOCK)
            ctx.enqueue_function[_conv1d_gpu_strided[dtype, STRIDED_OUTPUTS]](
                o, sg, tp, Int64(rows), Int64(w), Int64(k), Int64(bpr), grid_dim=rows * bpr, block_dim=STRIDED_TPB)
        elif kernel == 1:
            var bpr = ceildiv(t, BLOCKED_TPB * NARROW_OUTPUTS)
            ctx.enqueue_function[_conv1d_gpu_blocked[dtype, TAP_CHUNK, NARROW_OUTPUTS]](
                o, sg, tp, Int64(rows), Int64(w), Int64(k), Int64(bpr), grid_dim=rows * bpr, block_dim=BLOCKED_TPB)
        elif kernel == 2:
            var bpr = ceildiv(t, BLOCKED_BLOCK)
            ctx.enqueue_function[_conv1d_gpu_blocked[dtype, WIDE_TAP_CHUNK]](
                o, sg, tp, Int64(rows), Int64(w), Int64(k), Int64(bpr), grid_dim=rows * bpr, block_dim=BLOCKED_TPB)
        elif kernel == 4:
            var bpr = ceildiv(t, BLOCKED_TPB * NARROW_OUTPUTS * 2)
            ctx.enqueue_function[_conv1d_gpu_pipelined[dtype, NARROW_OUTPUTS, 2]](
                o, sg, tp, Int64(rows), Int64(w), Int64(k), Int64(bpr), grid_dim=rows * bpr, block_dim=BLOCKED_TPB)
        elif kernel == 5:
            var bpr = ceildiv(t, BLOCKED_TPB * NARROW_OUTPUTS * 4)
            ctx.enqueue_function[_conv1d_gpu_pipelined[dtype, NARROW_OUTPUTS, 4]](
                o, sg, tp, Int64(rows), Int64(w), Int64(k), Int64(bpr), grid_dim=rows * bpr, block_dim=BLOCKED_TPB)
        elif kernel == 6:
            var bpr = ceildiv(t, BLOCKED_TPB * NARROW_OUTPUTS * 8)
            ctx.enqueue_function[_conv1d_gpu_pipelined[dtype, NARROW_OUTPUTS, 8]](
                o, sg, tp, Int64(rows), Int64(w), Int64(k), Int64(bpr), grid_dim=rows * bpr, block_dim=BLOCKED_TPB)
        elif kernel == 7:
            var bpr = ceildiv(t, BLOCKED_TPB * 8 * 4)
            ctx.enqueue_function[_conv1d_gpu_pipelined[dtype, 8, 4]](
                o, sg, tp, Int64(rows), Int64(w), Int64(k), Int64(bpr), grid_dim=rows * bpr, block_dim=BLOCKED_TPB)
        else:
            var bpr = ceildiv(t, BLOCKED_BLOCK)
            ctx.enqueue_function[_conv1d_gpu_blocked[dtype, TAP_CHUNK]](
                o, sg, tp, Int64(rows), Int64(w), Int64(k), Int64(bpr), grid_dim=rows * bpr, block_dim=BLOCKED_TPB)
        ctx.synchronize()
        if r > 0:
            times.append(Int(perf_counter_ns() - s))
    ctx.enqueue_copy(h_out, d_out)
    ctx.synchronize()
    var worst = 0.0
    var hsum = 0.0
    for j in range(k):
        hsum += abs(Float64(h_taps[j]))
    for row in [0, 77, rows - 1]:
        for i in [0, 1, 31, 2047, 2048, 4095, 4096, 8191, 8192, 16383, 16384, 30000, t - 1]:
            var acc = 0.0
            for j in range(k):
                acc += Float64(h_sig[row * w + i + j]) * Float64(h_taps[j])
            worst = max(worst, abs(acc - Float64(h_out[row * t + i])) / (0.5 * hsum))
    sort(times)
    var med = Float64(times[len(times) // 2])
    var n = Float64(rows * t)
    print("kernel", kernel, "K", k, "ms", med / 1e6, "GS/s", n / med, "TMAC/s", n * Float64(k) / med / 1e3, "err", worst)


def main() raises:
    # kernel 0: strided (the op's below SMALL_K); blocked (tap chunk, outputs
    # per thread): 1: (TAP_CHUNK, NARROW_OUTPUTS), 2: (WIDE_TAP_CHUNK, 32),
    # the op's from WIDE_CHUNK_K, 3: (TAP_CHUNK, 32); pipelined (outputs,
    # spans per block): 4: (16, 2), 5: (16, 4), the op's in between,
    # 6: (16, 8), 7: (8, 4).
    var ctx = DeviceContext()
    for k in [4, 16]:
        run(ctx, 0, k)
    for k in [16, 32, 64, 128, 200, 256]:
        for kernel in [1, 4, 5, 6, 7]:
            run(ctx, kernel, k)
    run(ctx, 2, 1024)
