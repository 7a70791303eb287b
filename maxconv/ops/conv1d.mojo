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
from std.memory.alloc import unsafe_alloc
from std.sys import simd_width_of


# CPU, direct: each task owns CPU_VECTORS SIMD accumulators (enough to hide
# the FMA latency on two FMA pipes) and sweeps all K taps over them.
comptime CPU_VECTORS = 8
# Output blocks handed to one parallel task; big enough to amortise the task
# overhead, small enough to balance two to many cores.
comptime CPU_BLOCKS_PER_TASK = 8
# CPU, lanes: from CPU_LANES_K taps on, the direct kernel's unaligned loads
# (many of them split across cache lines) bound it; the lanes kernel gives
# each SIMD lane CPU_LANE_ROWS contiguous outputs and transposes the input
# under them, so every load is aligned (and folds into its FMA).
comptime CPU_LANES_K = 128
comptime CPU_LANE_ROWS = 256

# GPU, small K: each of STRIDED_TPB threads keeps STRIDED_OUTPUTS outputs
# spaced STRIDED_TPB apart, so a warp reads consecutive shared-memory words
# (no bank conflicts) and stores coalesce; K loads per output, which shared
# memory serves well while K is small and the kernel is bound by HBM.
comptime STRIDED_TPB = 256
comptime STRIDED_OUTPUTS = 8
comptime STRIDED_BLOCK = STRIDED_TPB * STRIDED_OUTPUTS
# GPU, large K: each of BLOCKED_TPB threads keeps BLOCKED_OUTPUTS consecutive
# outputs in registers and slides a window over BLOCKED_STEP taps at a time:
# 2 * BLOCKED_STEP shared words feed BLOCKED_OUTPUTS * BLOCKED_STEP FMAs.
# Four pad words every 32 (thread stride 36 words) keep the 4-word reads
# conflict-free and make every padded offset a compile-time constant.
comptime BLOCKED_TPB = 128
comptime BLOCKED_OUTPUTS = 32
# Below WIDE_CHUNK_K taps, 16 outputs per thread: fewer registers, more
# blocks resident per SM to overlap one block's loads with another's FMAs
# (H100, N = 2^24: 195/165 GS/s at K=32, 159/138 at K=64, 118/106 at
# K=128, 76/75 at K=256 against 32 outputs; 8 outputs or 256 threads were
# slower) ...
comptime NARROW_OUTPUTS = 16
# ... and PIPELINED_SPANS spans per block, the next one's inputs loaded while
# this one computes (233/195 GS/s at K=32, 184/160 at K=64, 127/117 at
# K=128, 78/76 at K=256 against one span per block; 2 and 8 spans within 3%).
comptime PIPELINED_SPANS = 4
comptime BLOCKED_BLOCK = BLOCKED_TPB * BLOCKED_OUTPUTS
comptime BLOCKED_STEP = 32
# Global loads each thread keeps in flight while staging a block's inputs.
comptime LOAD_UNROLL = 8
# Taps staged in shared memory per pass (strided kernel, narrow blocked one).
comptime TAP_CHUNK = 256
# Below this many taps the strided kernel wins: on an H100 (N = 2^24 float32
# in 2^16-output rows, research/direct/gpu_direct.mojo) strided/pipelined
# ran 232/234 GS/s at K=16 and 162/233 at K=32.
comptime SMALL_K = 16
# From this many taps the blocked kernel stages WIDE_TAP_CHUNK taps per pass
# (fewer barrier phases): on an H100 narrow/wide ran 74 and 62 / 71 and 72
# GS/s at K=256 (two runs), 44.1/44.7 at K=512; with the earlier scalar-load
# kernel wide won at K=1024 (19.2/17.7) and K=4096 (5.3/4.7).
comptime WIDE_CHUNK_K = 256
comptime WIDE_TAP_CHUNK = 1024


def _conv1d_gpu_strided[
    dtype: DType, outputs: Int
](
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    signal: Pointer[Scalar[dtype], MutAnyOrigin],
    taps: Pointer[Scalar[dtype], MutAnyOrigin],
    batch: Int64,
    width: Int64,
    n_taps: Int64,
    blocks_per_row: Int64,
):
    """One thread block computes STRIDED_TPB * outputs outputs of one tile row."""
    comptime span = STRIDED_TPB * outputs
    var xs = stack_allocation[span + TAP_CHUNK, Scalar[dtype], address_space = AddressSpace.SHARED]()
    var ws = stack_allocation[TAP_CHUNK, Scalar[dtype], address_space = AddressSpace.SHARED]()
    var tid = Int(thread_idx.x)
    var block = Int(block_idx.x)
    var row = block // Int(blocks_per_row)
    var start = (block % Int(blocks_per_row)) * span
    var w = Int(width)
    var k = Int(n_taps)
    var row_in = row * w
    var tap_base = (row // Int(batch)) * k

    var acc = SIMD[dtype, outputs](0)
    var c0 = 0
    while c0 < k:
        var kc = min(TAP_CHUNK, k - c0)
        if tid < kc:
            ws[unsafe_offset=tid] = taps[unsafe_offset=tap_base + c0 + tid]
        var i = tid
        while i < span + kc - 1:
            # LOAD_UNROLL loads in flight per thread, not one: a loop of
            # dependent load-store pairs waits a full memory latency each.
            var v = SIMD[dtype, LOAD_UNROLL](0)
            comptime for u in range(LOAD_UNROLL):
                var src = start + c0 + i + u * STRIDED_TPB
                if i + u * STRIDED_TPB < span + kc - 1 and src < w:
                    v[u] = signal[unsafe_offset=row_in + src]
            comptime for u in range(LOAD_UNROLL):
                if i + u * STRIDED_TPB < span + kc - 1:
                    xs[unsafe_offset=i + u * STRIDED_TPB] = v[u]
            i += LOAD_UNROLL * STRIDED_TPB
        barrier()
        for j in range(kc):
            var tap = ws[unsafe_offset=j]
            comptime for m in range(outputs):
                acc[m] = xs[unsafe_offset=tid + m * STRIDED_TPB + j].fma(tap, acc[m])
        barrier()
        c0 += TAP_CHUNK

    var t = w - k + 1
    var row_out = row * t
    comptime for m in range(outputs):
        var i = start + tid + m * STRIDED_TPB
        if i < t:
            result[unsafe_offset=row_out + i] = acc[m]


@always_inline
def _padded[outputs: Int](i: Int) -> Int:
    """Four pad words after every `outputs` (a power of two) words."""
    comptime shift = 5 if outputs == 32 else (4 if outputs == 16 else 3)
    return i + ((i >> shift) << 2)


def _conv1d_gpu_blocked[
    dtype: DType, tap_chunk: Int, outputs: Int = BLOCKED_OUTPUTS
](
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    signal: Pointer[Scalar[dtype], MutAnyOrigin],
    taps: Pointer[Scalar[dtype], MutAnyOrigin],
    batch: Int64,
    width: Int64,
    n_taps: Int64,
    blocks_per_row: Int64,
):
    """One thread block of BLOCKED_TPB threads computes BLOCKED_TPB * outputs
    outputs of one tile row.

    Taps are staged tap_chunk at a time: bigger chunks mean fewer barrier
    phases per block, bounded by the 48 KB of static shared memory. Four pad
    words every `outputs` (8, 16 or 32; thread stride outputs + 4 words) keep
    every thread's window 16-byte aligned, and a quarter warp's 4-word loads
    then cover all 32 banks once; at 32 outputs 16 + 8 vector loads feed
    1024 FMAs per step (scalar loads with a 33-word stride needed 64 + 32:
    21.3 against 25.7 GS/s at K = 1024 on an H100).
    """
    comptime tpb = BLOCKED_TPB
    comptime span = tpb * outputs
    comptime window_size = outputs + BLOCKED_STEP
    comptime smem_words = (span + tap_chunk) * (outputs + 4) // outputs
    var xs = stack_allocation[smem_words, Scalar[dtype], address_space = AddressSpace.SHARED, alignment=16]()
    var ws = stack_allocation[tap_chunk, Scalar[dtype], address_space = AddressSpace.SHARED, alignment=16]()
    var tid = Int(thread_idx.x)
    var block = Int(block_idx.x)
    var row = block // Int(blocks_per_row)
    var start = (block % Int(blocks_per_row)) * span
    var w = Int(width)
    var k = Int(n_taps)
    var row_in = row * w
    var tap_base = (row // Int(batch)) * k
    var own = tid * (outputs + 4)

    var acc = SIMD[dtype, outputs](0)
    var c0 = 0
    while c0 < k:
        var kc = min(tap_chunk, k - c0)
        var steps = ceildiv(kc, BLOCKED_STEP) * BLOCKED_STEP
        var i = tid
        while i < tap_chunk:
            ws[unsafe_offset=i] = taps[unsafe_offset=tap_base + c0 + i] if i < kc else 0
            i += tpb
        i = tid
        while i < span + steps:
            var v = SIMD[dtype, LOAD_UNROLL](0)
            comptime for u in range(LOAD_UNROLL):
                var src = start + c0 + i + u * tpb
                if i + u * tpb < span + steps and src < w:
                    v[u] = signal[unsafe_offset=row_in + src]
            comptime for u in range(LOAD_UNROLL):
                if i + u * tpb < span + steps:
                    xs[unsafe_offset=_padded[outputs](i + u * tpb)] = v[u]
            i += LOAD_UNROLL * tpb
        barrier()
        var s = 0
        while s < steps:
            var at = own + _padded[outputs](s)
            # SIMD lengths are powers of two: 2 * BLOCKED_STEP >= window_size.
            var window = SIMD[dtype, 2 * BLOCKED_STEP](0)
            comptime for v in range(window_size // 4):
                comptime q = 4 * v
                window = window.insert[offset=q](xs.unsafe_load[width=4, alignment=16](at + _padded[outputs](q)))
            var tap = SIMD[dtype, BLOCKED_STEP](0)
            comptime for v in range(BLOCKED_STEP // 4):
                tap = tap.insert[offset = 4 * v](ws.unsafe_load[width=4, alignment=16](s + 4 * v))
            comptime for jj in range(BLOCKED_STEP):
                comptime for m in range(outputs):
                    acc[m] = window[m + jj].fma(tap[jj], acc[m])
            s += BLOCKED_STEP
        barrier()
        c0 += tap_chunk

    # Stage the results through shared memory so the global stores coalesce.
    comptime for v in range(outputs // 4):
        xs.unsafe_store[alignment=16](own + 4 * v, acc.slice[4, offset = 4 * v]())
    barrier()
    var t = w - k + 1
    var row_out = row * t
    var i = tid
    while i < span:
        if start + i < t:
            result[unsafe_offset=row_out + start + i] = xs[unsafe_offset=_padded[outputs](i)]
        i += tpb


def _conv1d_gpu_pipelined[
    dtype: DType, outputs: Int, spans: Int
](
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    signal: Pointer[Scalar[dtype], MutAnyOrigin],
    taps: Pointer[Scalar[dtype], MutAnyOrigin],
    batch: Int64,
    width: Int64,
    n_taps: Int64,
    blocks_per_row: Int64,
):
    """The blocked kernel for K <= TAP_CHUNK, each block computing `spans`
    consecutive spans of BLOCKED_TPB * outputs outputs of one row: the next
    span's inputs are loaded into registers while this one's FMAs run, so
    the memory latency hides behind compute instead of stalling the block.
    """
    comptime tpb = BLOCKED_TPB
    comptime span = tpb * outputs
    comptime window_size = outputs + BLOCKED_STEP
    comptime loads = (span + TAP_CHUNK) // tpb
    comptime smem_words = (span + TAP_CHUNK) * (outputs + 4) // outputs
    var xs = stack_allocation[smem_words, Scalar[dtype], address_space = AddressSpace.SHARED, alignment=16]()
    var ys = stack_allocation[span * (outputs + 4) // outputs, Scalar[dtype], address_space = AddressSpace.SHARED, alignment=16]()
    var ws = stack_allocation[TAP_CHUNK, Scalar[dtype], address_space = AddressSpace.SHARED, alignment=16]()
    var tid = Int(thread_idx.x)
    var block = Int(block_idx.x)
    var row = block // Int(blocks_per_row)
    var first = (block % Int(blocks_per_row)) * spans * span
    var w = Int(width)
    var k = Int(n_taps)
    var t = w - k + 1
    var row_in = row * w
    var row_out = row * t
    var tap_base = (row // Int(batch)) * k
    var own = tid * (outputs + 4)
    var steps = ceildiv(k, BLOCKED_STEP) * BLOCKED_STEP
    var i = tid
    while i < TAP_CHUNK:
        ws[unsafe_offset=i] = taps[unsafe_offset=tap_base + i] if i < k else 0
        i += tpb

    # Registers for the next span's inputs (SIMD lengths are powers of two).
    comptime ahead_size = 32
    comptime assert loads <= ahead_size, "the prefetch registers must hold a span's inputs"
    var ahead = SIMD[dtype, ahead_size](0)
    comptime for u in range(loads):
        var src = first + tid + u * tpb
        if tid + u * tpb < span + steps and src < w:
            ahead[u] = signal[unsafe_offset=row_in + src]
    for j in range(spans):
        var start = first + j * span
        if start >= t:
            break
        barrier()
        comptime for u in range(loads):
            if tid + u * tpb < span + steps:
                xs[unsafe_offset=_padded[outputs](tid + u * tpb)] = ahead[u]
        barrier()
        var next = start + span
        if j + 1 < spans and next < t:
            comptime for u in range(loads):
                var src = next + tid + u * tpb
                if tid + u * tpb < span + steps and src < w:
                    ahead[u] = signal[unsafe_offset=row_in + src]
        var acc = SIMD[dtype, outputs](0)
        var s = 0
        while s < steps:
            var at = own + _padded[outputs](s)
            # SIMD lengths are powers of two: 2 * BLOCKED_STEP >= window_size.
            var window = SIMD[dtype, 2 * BLOCKED_STEP](0)
            comptime for v in range(window_size // 4):
                comptime q = 4 * v
                window = window.insert[offset=q](xs.unsafe_load[width=4, alignment=16](at + _padded[outputs](q)))
            comptime for v in range(BLOCKED_STEP // 4):
                var tap = ws.unsafe_load[width=4, alignment=16](s + 4 * v)
                comptime for j4 in range(4):
                    comptime for m in range(outputs):
                        acc[m] = window[m + 4 * v + j4].fma(tap[j4], acc[m])
            s += BLOCKED_STEP
        comptime for v in range(outputs // 4):
            ys.unsafe_store[alignment=16](own + 4 * v, acc.slice[4, offset = 4 * v]())
        barrier()
        i = tid
        while i < span:
            if start + i < t:
                result[unsafe_offset=row_out + start + i] = ys[unsafe_offset=_padded[outputs](i)]
            i += tpb


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


def _conv1d_cpu_lanes[
    dtype: DType, width: Int
](
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    signal: Pointer[Scalar[dtype], MutAnyOrigin],
    taps: Pointer[Scalar[dtype], MutAnyOrigin],
    out_base: Int,
    in_base: Int,
    in_width: Int,
    tap_base: Int,
    n_taps: Int,
    first: Int,
    last: Int,
):
    """Outputs [first, last) of one row, lane l taking a contiguous run of them.

    lanes[r, l] = signal[first + l * rows + r]: row r of the transposed
    buffer is one aligned vector, and outputs m of all lanes are
    sum_j lanes[m + j] * taps[j], accumulated in the same order as the
    direct kernel, so both give identical results.
    """
    comptime block = CPU_VECTORS * width
    var count = last - first
    var rows = ceildiv(count, width)
    var rows_padded = ceildiv(rows, CPU_VECTORS) * CPU_VECTORS
    var span = rows_padded + n_taps
    var lanes = unsafe_alloc[Scalar[dtype]](span * width, alignment=64)
    var sums = unsafe_alloc[Scalar[dtype]](rows_padded * width, alignment=64)
    for l in range(width):
        var source = first + l * rows
        for r in range(span):
            var index = source + r
            lanes[unsafe_offset=r * width + l] = (
                signal[unsafe_offset=in_base + index] if index < in_width else 0
            )
    for m0 in range(0, rows_padded, CPU_VECTORS):
        var acc = SIMD[dtype, block](0)
        for j in range(n_taps):
            var tap = SIMD[dtype, width](taps[unsafe_offset=tap_base + j])
            comptime for v in range(CPU_VECTORS):
                var row = lanes.unsafe_load[width=width]((m0 + v + j) * width)
                var sum = acc.slice[width, offset = v * width]()
                acc = acc.insert[offset = v * width](row.fma(tap, sum))
        sums.unsafe_store(m0 * width, acc)
    for l in range(width):
        for m in range(rows):
            var index = l * rows + m
            if index < count:
                result[unsafe_offset=out_base + first + index] = sums[unsafe_offset=m * width + l]
    lanes.unsafe_free()
    sums.unsafe_free()


@extensibility.register("conv1d")
struct Conv1D:
    """Correlate each tile row with its channel's taps.

    The `algorithm` parameter of `execute` picks the GPU kernel: 0 by K
    (strided below SMALL_K taps, then the pipelined register-blocked one,
    from WIDE_CHUNK_K the blocked one with wide tap chunks); 1 forces the
    strided kernel, 2 the pipelined one (up to TAP_CHUNK taps) and 3 the
    wide blocked one, so benchmarks can measure each on either side of the
    crossovers.

    Args:
        output: [C, B, T] results, T = W - K + 1.
        signal: [C, B, W] tiles, each with its K-1 halo already in place.
        taps: [C, K] one row of taps per channel.
        ctx: the device context MAX hands the op.
    """

    @staticmethod
    def execute[target: StaticString, algorithm: Int](
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
            if (algorithm == 0 and k < SMALL_K) or algorithm == 1:
                var blocks_per_row = ceildiv(t, STRIDED_BLOCK)
                ctx.enqueue_function[_conv1d_gpu_strided[output.dtype, STRIDED_OUTPUTS]](
                    out_ptr,
                    in_ptr,
                    tap_ptr,
                    Int64(batch),
                    Int64(w),
                    Int64(k),
                    Int64(blocks_per_row),
                    grid_dim=rows * blocks_per_row,
                    block_dim=STRIDED_TPB,
                )
            elif (algorithm == 0 and k < WIDE_CHUNK_K) or (algorithm == 2 and k <= TAP_CHUNK):
                var blocks_per_row = ceildiv(t, BLOCKED_TPB * NARROW_OUTPUTS * PIPELINED_SPANS)
                ctx.enqueue_function[_conv1d_gpu_pipelined[output.dtype, NARROW_OUTPUTS, PIPELINED_SPANS]](
                    out_ptr, in_ptr, tap_ptr, Int64(batch), Int64(w), Int64(k), Int64(blocks_per_row),
                    grid_dim=rows * blocks_per_row, block_dim=BLOCKED_TPB,
                )
            else:
                # float64 words are twice as wide: half the chunk keeps the
                # shared memory within 48 KB.
                comptime wide = WIDE_TAP_CHUNK if output.dtype == DType.float32 else WIDE_TAP_CHUNK // 2
                var blocks_per_row = ceildiv(t, BLOCKED_BLOCK)
                ctx.enqueue_function[_conv1d_gpu_blocked[output.dtype, wide]](
                    out_ptr, in_ptr, tap_ptr, Int64(batch), Int64(w), Int64(k), Int64(blocks_per_row),
                    grid_dim=rows * blocks_per_row, block_dim=BLOCKED_TPB,
                )
        elif target == "cpu":
            comptime width = simd_width_of[output.dtype]()
            var lanes = k >= CPU_LANES_K
            var task_span = (
                width * CPU_LANE_ROWS if lanes else CPU_VECTORS * width * CPU_BLOCKS_PER_TASK
            )
            var tasks_per_row = ceildiv(t, task_span)

            def work(task: Int) {
                var out_ptr, var in_ptr, var tap_ptr, var tasks_per_row, var task_span,
                var lanes, var t, var w, var k, var batch
            }:
                var row = task // tasks_per_row
                var first = (task % tasks_per_row) * task_span
                var last = min(first + task_span, t)
                if lanes:
                    _conv1d_cpu_lanes[output.dtype, width](
                        out_ptr, in_ptr, tap_ptr, row * t, row * w, w, (row // batch) * k, k,
                        first, last,
                    )
                else:
                    _conv1d_cpu_span[output.dtype, width](
                        out_ptr, in_ptr, tap_ptr, row * t, row * w, (row // batch) * k, k,
                        first, last,
                    )

            sync_parallelize(work, rows * tasks_per_row)
        else:
            raise Error("conv1d: no implementation for target ", target)
