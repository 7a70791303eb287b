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
from max.gpu import MAX_THREADS_PER_BLOCK_METADATA, block_dim, block_idx, grid_dim, thread_idx
from max.gpu.host import DeviceAttribute, DeviceContext
from max.gpu.memory import AddressSpace, async_copy, async_copy_commit_group, async_copy_wait_group
from max.gpu.sync import barrier, syncwarp
from std.math import ceildiv
from std.memory import stack_allocation
from std.memory.alloc import unsafe_alloc
from std.sys import simd_width_of, size_of
from std.utils import StaticTuple


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
# Up to TAP_CHUNK taps, the asynchronous-copy kernel: ASYNC_OUTPUTS outputs
# per thread (half in float64, whose shared buffers are twice as wide),
# ASYNC_STAGES shared buffers in its ring, and ASYNC_BLOCKS_PER_SM blocks per
# SM that its registers must allow (the grid is one such wave). H100,
# N = 2^24 float32 (research/direct/gpu_direct.mojo, one launch +
# synchronize): 59/60/67/107/190 us at K = 16/32/64/128/256 against
# 71/77/93/134/213 for the kernel it replaced (16 outputs, next span
# prefetched into registers, four spans a block) and 232 us for the wide
# blocked kernel at K = 256; ten launches back to back, 54/54/61/100/181 us.
# Three stages, 64-thread blocks, 5 or 8 blocks per SM, 32 outputs per
# thread, fast FIR arithmetic and L2 cache hints were all measured and none
# was faster at K = 64 (research/direct/results/gpu_h100_async_*.txt).
comptime ASYNC_OUTPUTS = 16
comptime ASYNC_STAGES = 2
comptime ASYNC_BLOCKS_PER_SM = 4
comptime BLOCKED_BLOCK = BLOCKED_TPB * BLOCKED_OUTPUTS
comptime BLOCKED_STEP = 32
# Global loads each thread keeps in flight while staging a block's inputs.
comptime LOAD_UNROLL = 8
# Taps staged in shared memory per pass (strided kernel); the asynchronous
# kernel takes up to this many.
comptime TAP_CHUNK = 256
# Below this many taps the strided kernel wins: on an H100 (N = 2^24 float32
# in 2^16-output rows, research/direct/gpu_direct.mojo) strided/asynchronous
# ran 63.0/63.1 us at K=8, 67.5/65.5 at K=12 and 74.8/63.4 at K=16.
comptime SMALL_K = 12
# Above TAP_CHUNK taps the blocked kernel stages WIDE_TAP_CHUNK taps per pass
# (fewer barrier phases): on an H100 TAP_CHUNK/WIDE_TAP_CHUNK ran 44.1/44.7
# GS/s at K=512; with the earlier scalar-load kernel wide won at K=1024
# (19.2/17.7) and K=4096 (5.3/4.7).
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
    dtype: DType, tap_chunk: Int
](
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    signal: Pointer[Scalar[dtype], MutAnyOrigin],
    taps: Pointer[Scalar[dtype], MutAnyOrigin],
    batch: Int64,
    width: Int64,
    n_taps: Int64,
    blocks_per_row: Int64,
):
    """One thread block of BLOCKED_TPB threads computes BLOCKED_BLOCK
    outputs of one tile row.

    Taps are staged tap_chunk at a time: bigger chunks mean fewer barrier
    phases per block, bounded by the 48 KB of static shared memory. Four pad
    words every BLOCKED_OUTPUTS (thread stride BLOCKED_OUTPUTS + 4 words)
    keep every thread's window 16-byte aligned, and a quarter warp's 4-word loads
    then cover all 32 banks once; at 32 outputs 16 + 8 vector loads feed
    1024 FMAs per step (scalar loads with a 33-word stride needed 64 + 32:
    21.3 against 25.7 GS/s at K = 1024 on an H100).
    """
    comptime tpb = BLOCKED_TPB
    comptime outputs = BLOCKED_OUTPUTS
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


@always_inline
def _span_sums[
    dtype: DType, outputs: Int
](
    xs: Pointer[Scalar[dtype], MutUntrackedOrigin, address_space = AddressSpace.SHARED],
    ws: Pointer[Scalar[dtype], MutUntrackedOrigin, address_space = AddressSpace.SHARED],
    own: Int,
    steps: Int,
) -> SIMD[dtype, outputs]:
    """One thread's `outputs` sums over a span staged in `xs` (padded layout,
    the thread's window from word `own`), BLOCKED_STEP taps of `ws` a step:
    a window of outputs + BLOCKED_STEP words in registers, taps read four at
    a time, so 12 + 8 vector loads feed 512 FMAs per step at 16 outputs."""
    comptime window_size = outputs + BLOCKED_STEP
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
    return acc


@always_inline
def _next_span(mut row: Int, mut col: Int, spans_per_row: Int):
    """Step a (row, span in the row) cursor to the next span, by counting."""
    col += 1
    if col == spans_per_row:
        col = 0
        row += 1


@__llvm_metadata(
    MAX_THREADS_PER_BLOCK_METADATA=StaticTuple[Int32, 1](Int32(BLOCKED_TPB)),
    `nvvm.minctasm`=SIMDLength(ASYNC_BLOCKS_PER_SM),
)
def _conv1d_gpu_async[
    dtype: DType, outputs: Int
](
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    signal: Pointer[Scalar[dtype], MutAnyOrigin],
    taps: Pointer[Scalar[dtype], MutAnyOrigin],
    batch: Int64,
    width: Int64,
    n_taps: Int64,
    spans_per_row: Int64,
    total_spans: Int64,
):
    """The blocked kernel's arithmetic for K <= TAP_CHUNK, fed by
    asynchronous copies: a grid sized to the GPU, each block taking an equal
    run of consecutive spans of BLOCKED_TPB * outputs outputs, and cp.async
    filling a ring of ASYNC_STAGES shared buffers a span ahead, so the loads
    run behind the FMAs without holding registers and the pipeline drains
    once per block, not once per span. Span positions advance by counting:
    a 64-bit division per span cost as much as a quarter of the FMAs at
    K = 64. Each warp stages its sums in its own shared rows and stores
    them as whole lines, with no block-wide barrier (stores of each
    thread's 16 consecutive sums straight from registers made a loads-and-
    stores-only run 1.5x slower).
    """
    comptime tpb = BLOCKED_TPB
    comptime span = tpb * outputs
    comptime buffer = (span + TAP_CHUNK) * (outputs + 4) // outputs
    comptime warp_words = 32 * (outputs + 4)
    comptime word = size_of[dtype]()
    var xs = stack_allocation[ASYNC_STAGES * buffer, Scalar[dtype], address_space = AddressSpace.SHARED, alignment=16]()
    var ws = stack_allocation[TAP_CHUNK, Scalar[dtype], address_space = AddressSpace.SHARED, alignment=16]()
    var ys = stack_allocation[(tpb // 32) * warp_words, Scalar[dtype], address_space = AddressSpace.SHARED, alignment=16]()
    var source = signal.unsafe_address_space_cast[AddressSpace.GLOBAL]()
    var tid = Int(thread_idx.x)
    var lane = tid % 32
    var warp = tid // 32
    var block = Int(block_idx.x)
    var grid = Int(grid_dim.x)
    var w = Int(width)
    var k = Int(n_taps)
    var t = w - k + 1
    var per_row = Int(spans_per_row)
    var total = Int(total_spans)
    var own = tid * (outputs + 4)
    var steps = ceildiv(k, BLOCKED_STEP) * BLOCKED_STEP
    var begin = block * total // grid
    var count = (block + 1) * total // grid - begin
    # Row, and span within the row, of the next span to load and to compute.
    var load_row = begin // per_row
    var load_col = begin % per_row
    var row = load_row
    var col = load_col

    @always_inline
    def issue(j: Int, row: Int, col: Int) {var source, var xs, var tid, var w, var steps}:
        """Start copying the inputs of span `col` of `row` into buffer j % ASYNC_STAGES."""
        var start = col * span
        var base = row * w + start
        var into = xs.unsafe_offset((j % ASYNC_STAGES) * buffer)
        if start + span + steps <= w:
            # Unrolled: thread tid copies words tid + u * tpb, and tpb is a
            # multiple of `outputs`, so every offset past the first is a
            # constant on both sides (one instruction per copy).
            var src = source.unsafe_offset(base + tid)
            var dst = into.unsafe_offset(_padded[outputs](tid))
            comptime for u in range(ceildiv(span + TAP_CHUNK, tpb)):
                # The span itself is always copied whole: only the halo's
                # copies need a bound (a compare and a branch each).
                comptime if (u + 1) * tpb <= span:
                    async_copy[word](src.unsafe_offset(u * tpb), dst.unsafe_offset(_padded[outputs](u * tpb)))
                else:
                    if u * tpb + tid < span + steps:
                        async_copy[word](src.unsafe_offset(u * tpb), dst.unsafe_offset(_padded[outputs](u * tpb)))
        else:
            var i = tid
            while i < span + steps:
                if start + i < w:
                    async_copy[word](source.unsafe_offset(base + i), into.unsafe_offset(_padded[outputs](i)))
                else:
                    into[unsafe_offset=_padded[outputs](i)] = 0
                i += tpb

    comptime for j in range(ASYNC_STAGES - 1):
        if j < count:
            issue(j, load_row, load_col)
            _next_span(load_row, load_col, per_row)
        async_copy_commit_group()
    var channel = -1
    for j in range(count):
        async_copy_wait_group(Int32(ASYNC_STAGES - 2))
        barrier()
        var start = col * span
        if channel < 0 or (col == 0 and row // Int(batch) != channel):
            channel = row // Int(batch)
            var i = tid
            while i < TAP_CHUNK:
                ws[unsafe_offset=i] = taps[unsafe_offset=channel * k + i] if i < k else 0
                i += tpb
            barrier()
        if j + ASYNC_STAGES - 1 < count:
            issue(j + ASYNC_STAGES - 1, load_row, load_col)
            _next_span(load_row, load_col, per_row)
        async_copy_commit_group()
        var acc = _span_sums[dtype, outputs](xs.unsafe_offset((j % ASYNC_STAGES) * buffer), ws, own, steps)
        var at = row * t
        _next_span(row, col, per_row)
        # Sums to this warp's rows (the padded layout), then each lane
        # stores 4 consecutive sums: 32 lanes write 128 in a row.
        var mine = ys.unsafe_offset(warp * warp_words)
        comptime for v in range(outputs // 4):
            mine.unsafe_store[alignment=16](lane * (outputs + 4) + 4 * v, acc.slice[4, offset = 4 * v]())
        syncwarp()
        var lead = start + warp * 32 * outputs + 4 * lane
        if start + span <= t and (at + lead) % 4 == 0:
            comptime for v in range(outputs // 4):
                var sums = mine.unsafe_load[width=4, alignment=16](_padded[outputs](128 * v + 4 * lane))
                result.unsafe_store[alignment=16](at + lead + 128 * v, sums)
        else:
            comptime for v in range(outputs // 4):
                var first = lead + 128 * v
                var sums = mine.unsafe_load[width=4, alignment=16](_padded[outputs](128 * v + 4 * lane))
                comptime for m in range(4):
                    if first + m < t:
                        result[unsafe_offset=at + first + m] = sums[m]


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
    (strided below SMALL_K taps, then the asynchronous-copy one up to
    TAP_CHUNK, above it the blocked one with wide tap chunks); 1 forces the
    strided kernel, 2 the asynchronous one (up to TAP_CHUNK taps) and 3 the
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
            elif (algorithm == 0 or algorithm == 2) and k <= TAP_CHUNK:
                # float64 words are twice as wide: half the outputs per
                # thread keeps the shared memory within 48 KB.
                comptime outputs = ASYNC_OUTPUTS if output.dtype == DType.float32 else ASYNC_OUTPUTS // 2
                var spans_per_row = ceildiv(t, BLOCKED_TPB * outputs)
                var spans = rows * spans_per_row
                var sms = ctx.get_attribute(DeviceAttribute.MULTIPROCESSOR_COUNT)
                ctx.enqueue_function[_conv1d_gpu_async[output.dtype, outputs]](
                    out_ptr, in_ptr, tap_ptr, Int64(batch), Int64(w), Int64(k),
                    Int64(spans_per_row), Int64(spans),
                    grid_dim=min(spans, ASYNC_BLOCKS_PER_SM * sms), block_dim=BLOCKED_TPB,
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
