# The direct op's GPU kernels, standalone: each checked against a float64
# host sum and timed on the same data (N = 2^24 outputs in tiles of 2^16,
# device-resident, median of 7), one launch per synchronize (an empty
# kernel's launch + synchronize, ~10 us, is in every such figure) and ten
# back to back, so kernel variants can be compared without MAX's per-call
# overhead.
#   .venv/bin/mojo build --target-accelerator=sm_90 -I . \
#       research/direct/gpu_direct.mojo -o /tmp/gpu_direct
from max.gpu.host import DeviceAttribute, DeviceContext
from max.gpu.host.func_attribute import Attribute
from maxconv.ops.conv1d_gpu import (
    ASYNC_OUTPUTS,
    BLOCKED_TPB,
    KERNEL_ASYNC,
    KERNEL_BLOCKED,
    KERNEL_STRIDED,
    _conv1d_gpu_async,
    enqueue_conv1d_gpu,
)
from std.sys import argv
from std.time import perf_counter_ns


def _rand(mut state: UInt64) -> Float64:
    state = state * 6364136223846793005 + 1442695040888963407
    return Float64(Int((state >> 11) & 0xFFFFFFFF)) / 4294967296.0 - 0.5


def _empty():
    """Launch + synchronize alone: what every timing here includes."""
    pass


# run()'s stand-in for "no op kernel": an empty launch.
comptime EMPTY = -1


def run[dtype: DType = DType.float32](ctx: DeviceContext, kernel: Int, k: Int, t: Int = 1 << 16, calls: Int = 1) raises:
    """`kernel`: one of the op's KERNEL_* names, or EMPTY;
    `calls` launches per synchronize (10: back to back, as a stream of
    tiles runs, so the figure is the kernel's, not the launch's)."""
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
        for _ in range(calls):
            if kernel != EMPTY:
                # Each row's tile as the op sees it: w = T + K - 1 samples, no padding.
                enqueue_conv1d_gpu[dtype](ctx, kernel, o, sg, tp, rows, w, w, 0, 0, t, k)
            else:
                ctx.enqueue_function[_empty](grid_dim=1, block_dim=32)
        ctx.synchronize()
        if r > 0:
            times.append(Int(perf_counter_ns() - s) // calls)
    ctx.enqueue_copy(h_out, d_out)
    ctx.synchronize()
    var worst = 0.0
    var hsum = 0.0
    for j in range(k):
        hsum += abs(Float64(h_taps[j]))
    for row in [0, 77, rows - 1]:
        for i in [0, 1, 31, 1023, 1024, 2047, 2048, 4095, 4096, 8191, 8192, 16383, 16384, 30000, t - 2, t - 1]:
            var acc = 0.0
            for j in range(k):
                acc += Float64(h_sig[row * w + i + j]) * Float64(h_taps[j])
            worst = max(worst, abs(acc - Float64(h_out[row * t + i])) / (0.5 * hsum))
    sort(times)
    var med = Float64(times[len(times) // 2])
    var n = Float64(rows * t)
    print(String(dtype), "kernel", kernel, "calls", calls, "T", t, "K", k, "ms", med / 1e6, "GS/s", n / med, "TMAC/s", n * Float64(k) / med / 1e3, "err", worst)


def check[dtype: DType](
    ctx: DeviceContext, kernel: Int, rows: Int, n: Int, k: Int, pad: Int, t: Int, taps_rows: Int, signal_rows: Int
) raises -> Float64:
    """Worst error of outputs [0, t) with `pad` zeros before each row (zero past
    its end; the op's own halo), against a float64 host sum, relative to half
    the taps' absolute sum; signal and taps rows 1 (broadcast) or `rows`."""
    var h_sig = ctx.enqueue_create_host_buffer[dtype](signal_rows * n)
    var h_taps = ctx.enqueue_create_host_buffer[dtype](taps_rows * k)
    var h_out = ctx.enqueue_create_host_buffer[dtype](rows * t)
    ctx.synchronize()
    var state: UInt64 = 3
    for i in range(signal_rows * n):
        h_sig[i] = Scalar[dtype](_rand(state))
    for i in range(taps_rows * k):
        h_taps[i] = Scalar[dtype](_rand(state))
    var d_sig = ctx.enqueue_create_buffer[dtype](signal_rows * n)
    var d_taps = ctx.enqueue_create_buffer[dtype](taps_rows * k)
    # One element more, the result starting at it: a result that is not
    # 16-byte aligned must still be written right.
    var d_out = ctx.enqueue_create_buffer[dtype](rows * t + 1)
    ctx.enqueue_copy(d_sig, h_sig)
    ctx.enqueue_copy(d_taps, h_taps)
    var o = d_out.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]().unsafe_offset(1)
    var sg = d_sig.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var tp = d_taps.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var signal_stride = n if signal_rows > 1 else 0
    var taps_stride = k if taps_rows > 1 else 0
    enqueue_conv1d_gpu[dtype](ctx, kernel, o, sg, tp, rows, n, signal_stride, taps_stride, pad, t, k)
    var h_all = ctx.enqueue_create_host_buffer[dtype](rows * t + 1)
    ctx.enqueue_copy(h_all, d_out)
    ctx.synchronize()
    var worst = 0.0
    for row in range(rows):
        var c = row if taps_rows > 1 else 0
        var sr = row if signal_rows > 1 else 0
        var hsum = 0.0
        for j in range(k):
            hsum += abs(Float64(h_taps[c * k + j]))
        var step = max(1, t // 97)
        var i = 0
        while i < t:
            var acc = 0.0
            for j in range(k):
                var x = i + j - pad
                if x >= 0 and x < n:
                    acc += Float64(h_sig[sr * n + x]) * Float64(h_taps[c * k + j])
            worst = max(worst, abs(acc - Float64(h_all[1 + row * t + i])) / (0.5 * hsum))
            i = i + step if i + step < t or i == t - 1 else t
    return worst


def main() raises:
    # KERNEL_STRIDED (the op's below SMALL_K), KERNEL_BLOCKED with wide tap
    # chunks (the op's above TAP_CHUNK), KERNEL_ASYNC (the op's in between;
    # 16 outputs, 8 in float64), EMPTY (launch + synchronize). The variants
    # the asynchronous one was chosen over: results/gpu_h100_async_*.txt.
    var ctx = DeviceContext()
    if len(argv()) > 2 and argv()[1] == "one":
        # One kernel at one K, for a profiler: gpu_direct one K.
        run(ctx, KERNEL_ASYNC, Int(argv()[2]))
        return
    # The op's contract: 'full' (pad K-1, N+K-1 outputs), 'same', K > N, one
    # signal through several taps rows and several signals through one.
    for kernel in [KERNEL_STRIDED, KERNEL_ASYNC, KERNEL_BLOCKED]:
        for k in [1, 5, 64, 255, 700]:
            if kernel == KERNEL_ASYNC and k > 256:
                continue
            var n = 70001
            print("check kernel", kernel, "K", k,
                  "full f32", check[DType.float32](ctx, kernel, 3, n, k, k - 1, n + k - 1, 3, 3),
                  "same f32", check[DType.float32](ctx, kernel, 2, n, k, (k - 1) // 2, n, 1, 2),
                  "bcast f32", check[DType.float32](ctx, kernel, 3, n, k, k - 1, n + k - 1, 3, 1),
                  "K>N f64", check[DType.float64](ctx, kernel, 2, 37, k, k - 1, 37 + k - 1, 2, 2))
    var f = ctx.compile_function[_conv1d_gpu_async[DType.float32, ASYNC_OUTPUTS]]()
    print("async kernel: registers", f.get_attribute(Attribute.NUM_REGS), "spilled bytes",
          f.get_attribute(Attribute.LOCAL_SIZE_BYTES), "blocks/SM", f.occupancy_max_active_blocks_per_multiprocessor(BLOCKED_TPB, 0))
    for calls in [1, 10]:
        run(ctx, EMPTY, 1, calls=calls)
        for k in [1, 4, 8]:
            run(ctx, KERNEL_STRIDED, k, calls=calls)
        for k in [12, 16, 32, 64, 128, 256]:
            run(ctx, KERNEL_ASYNC, k, calls=calls)
        for k in [512, 1024]:
            run(ctx, KERNEL_BLOCKED, k, calls=calls)
    # Tiles whose width is no multiple of 4 (unaligned rows, partial spans),
    # and float64.
    for k in [5, 64, 255]:
        run(ctx, KERNEL_ASYNC, k, (1 << 16) - 3)
        run[DType.float64](ctx, KERNEL_ASYNC, k, (1 << 16) - 3)
    for k in [16, 64, 128]:
        run[DType.float64](ctx, KERNEL_ASYNC, k)
