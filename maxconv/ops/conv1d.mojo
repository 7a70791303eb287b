"""The `conv1d` custom op: a batched, tiled 1-D correlation.

For every channel c and tile b:

    output[c, b, i] = sum_{j < K} signal[c, b, i + j] * taps[c, j]

with i < T = W - K + 1, where W is the tile width (T outputs plus the K-1
halo). The Python engine cuts signals into such tiles and pads them with
zeros, so the op itself never reads out of bounds and knows nothing of modes.
All sizes are runtime values: one compiled graph serves every (C, B, W, K).
"""

from extensibility import InputTensor, OutputTensor
import extensibility
from max.algorithm import sync_parallelize
from max.gpu import block_dim, block_idx, thread_idx
from max.gpu.host import DeviceContext
from max.gpu.memory import AddressSpace
from max.gpu.sync import barrier
from std.math import ceildiv
from std.memory import stack_allocation
from std.sys import simd_width_of


# CPU blocking: each task owns CPU_VECTORS SIMD accumulators (enough to hide
# the FMA latency on two FMA pipes) and sweeps all K taps over them.
comptime CPU_VECTORS = 8
# Output blocks handed to one parallel task; big enough to amortise the task
# overhead, small enough to balance two to many cores.
comptime CPU_BLOCKS_PER_TASK = 8

# GPU blocking: TPB threads each keep GPU_OUTPUTS consecutive outputs in
# registers; taps are staged through shared memory GPU_TAP_CHUNK at a time.
comptime TPB = 256
comptime GPU_OUTPUTS = 16
comptime GPU_BLOCK = TPB * GPU_OUTPUTS
comptime GPU_TAP_CHUNK = 256
comptime GPU_TAP_STEP = 8
# Shared-memory words; one pad word every 32 keeps the per-thread stride of
# GPU_OUTPUTS words free of bank conflicts.
comptime GPU_SMEM_WORDS = (GPU_BLOCK + GPU_TAP_CHUNK) + (GPU_BLOCK + GPU_TAP_CHUNK) // 32 + 1


@always_inline
def _padded(i: Int) -> Int:
    return i + i // 32


def _conv1d_gpu_kernel[
    dtype: DType
](
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    signal: Pointer[Scalar[dtype], MutAnyOrigin],
    taps: Pointer[Scalar[dtype], MutAnyOrigin],
    batch: Int64,
    width: Int64,
    n_taps: Int64,
    blocks_per_row: Int64,
):
    """One thread block computes GPU_BLOCK outputs of one tile row."""
    var xs = stack_allocation[
        GPU_SMEM_WORDS, Scalar[dtype], address_space = AddressSpace.SHARED
    ]()
    var ws = stack_allocation[
        GPU_TAP_CHUNK, Scalar[dtype], address_space = AddressSpace.SHARED
    ]()
    var tid = Int(thread_idx.x)
    var block = Int(block_idx.x)
    var row = block // Int(blocks_per_row)
    var start = (block % Int(blocks_per_row)) * GPU_BLOCK
    var w = Int(width)
    var k = Int(n_taps)
    var t = w - k + 1
    var channel = row // Int(batch)
    var row_in = row * w
    var tap_base = channel * k

    var acc = SIMD[dtype, GPU_OUTPUTS](0)
    var c0 = 0
    while c0 < k:
        var kc = min(GPU_TAP_CHUNK, k - c0)
        var kc_steps = ceildiv(kc, GPU_TAP_STEP) * GPU_TAP_STEP
        var i = tid
        while i < GPU_TAP_CHUNK:
            ws[unsafe_offset=i] = taps[unsafe_offset=tap_base + c0 + i] if i < kc else Scalar[dtype](0)
            i += TPB
        i = tid
        var span = GPU_BLOCK + kc_steps
        while i < span:
            var src = start + c0 + i
            xs[unsafe_offset=_padded(i)] = (
                signal[unsafe_offset=row_in + src] if src < w else Scalar[dtype](0)
            )
            i += TPB
        barrier()
        var base = tid * GPU_OUTPUTS
        var j0 = 0
        while j0 < kc_steps:
            var window = SIMD[dtype, 2 * GPU_OUTPUTS](0)
            comptime for q in range(GPU_OUTPUTS + GPU_TAP_STEP):
                window[q] = xs[unsafe_offset=_padded(base + j0 + q)]
            comptime for jj in range(GPU_TAP_STEP):
                var tap = ws[unsafe_offset=j0 + jj]
                comptime for m in range(GPU_OUTPUTS):
                    acc[m] = window[m + jj].fma(tap, acc[m])
            j0 += GPU_TAP_STEP
        barrier()
        c0 += GPU_TAP_CHUNK

    # Stage the results through shared memory so the global stores coalesce.
    comptime for m in range(GPU_OUTPUTS):
        xs[unsafe_offset=_padded(tid * GPU_OUTPUTS + m)] = acc[m]
    barrier()
    var i = tid
    var row_out = row * t
    while i < GPU_BLOCK:
        if start + i < t:
            result[unsafe_offset=row_out + start + i] = xs[unsafe_offset=_padded(i)]
        i += TPB


def _conv1d_cpu_span[
    dtype: DType, width: Int
](
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    signal: Pointer[Scalar[dtype], MutAnyOrigin],
    taps: Pointer[Scalar[dtype], MutAnyOrigin],
    out_base: Int,
    in_base: Int,
    tap_base: Int,
    n_taps: Int,
    first: Int,
    last: Int,
):
    """Outputs [first, last) of one row: register-blocked SIMD, then scalars.

    The wide accumulator spans CPU_VECTORS machine vectors, so every tap is
    one broadcast and CPU_VECTORS independent FMAs kept in registers.
    """
    comptime block = CPU_VECTORS * width
    var i = first
    while i + block <= last:
        var acc = SIMD[dtype, block](0)
        for j in range(n_taps):
            var tap = SIMD[dtype, block](taps[unsafe_offset=tap_base + j])
            acc = signal.unsafe_load[width=block](in_base + i + j).fma(tap, acc)
        result.unsafe_store(out_base + i, acc)
        i += block
    while i + width <= last:
        var acc = SIMD[dtype, width](0)
        for j in range(n_taps):
            var tap = SIMD[dtype, width](taps[unsafe_offset=tap_base + j])
            acc = signal.unsafe_load[width=width](in_base + i + j).fma(tap, acc)
        result.unsafe_store(out_base + i, acc)
        i += width
    while i < last:
        var acc = Scalar[dtype](0)
        for j in range(n_taps):
            acc = signal[unsafe_offset=in_base + i + j].fma(taps[unsafe_offset=tap_base + j], acc)
        result[unsafe_offset=out_base + i] = acc
        i += 1


@extensibility.register("conv1d")
struct Conv1D:
    """Correlate each tile row with its channel's taps.

    Args:
        output: [C, B, T] results, T = W - K + 1.
        signal: [C, B, W] tiles, each with its K-1 halo already in place.
        taps: [C, K] one row of taps per channel.
        ctx: the device context MAX hands the op.
    """

    @staticmethod
    def execute[target: StaticString](
        output: OutputTensor[rank=3, ...],
        signal: InputTensor[dtype=output.dtype, rank=3, ...],
        taps: InputTensor[dtype=output.dtype, rank=2, ...],
        ctx: DeviceContext,
    ) raises:
        var channels = output.dim_size(0)
        var batch = output.dim_size(1)
        var t = output.dim_size(2)
        var w = signal.dim_size(2)
        var k = taps.dim_size(1)
        if t != w - k + 1 or taps.dim_size(0) != channels:
            raise Error("conv1d: tile, halo and tap shapes disagree")
        var rows = channels * batch
        if rows == 0 or t == 0:
            return
        var out_ptr = output.unsafe_ptr()
        var in_ptr = signal.unsafe_ptr()
        var tap_ptr = taps.unsafe_ptr()

        comptime if target == "gpu":
            var blocks_per_row = ceildiv(t, GPU_BLOCK)
            ctx.enqueue_function[_conv1d_gpu_kernel[output.dtype]](
                out_ptr,
                in_ptr,
                tap_ptr,
                Int64(batch),
                Int64(w),
                Int64(k),
                Int64(blocks_per_row),
                grid_dim=rows * blocks_per_row,
                block_dim=TPB,
            )
        elif target == "cpu":
            comptime width = simd_width_of[output.dtype]()
            comptime task_span = CPU_VECTORS * width * CPU_BLOCKS_PER_TASK
            var tasks_per_row = ceildiv(t, task_span)

            def work(task: Int) {var out_ptr, var in_ptr, var tap_ptr, var tasks_per_row, var t, var w, var k, var batch}:
                var row = task // tasks_per_row
                var first = (task % tasks_per_row) * task_span
                _conv1d_cpu_span[output.dtype, width](
                    out_ptr,
                    in_ptr,
                    tap_ptr,
                    row * t,
                    row * w,
                    (row // batch) * k,
                    k,
                    first,
                    min(first + task_span, t),
                )

            sync_parallelize(work, rows * tasks_per_row)
        else:
            raise Error("conv1d: no implementation for target ", target)
