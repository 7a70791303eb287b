"""GPU kernels of the direct `conv1d` op, and the launcher that picks one by K.

Every kernel computes, for each row r of a [R, T] result,

    result[r, i] = sum_{j < K} signal[r * signal_stride + i + j - pad] * taps[r * taps_stride + j]

with the signal zero outside [0, length): the halo and the zero padding are
read in place (bounds-checked only near the row's ends), so no caller copies
samples into tiles. A stride of 0 broadcasts one signal row or one taps row.
"""

from max.gpu import MAX_THREADS_PER_BLOCK_METADATA, block_dim, block_idx, grid_dim, thread_idx
from max.gpu.host import DeviceAttribute, DeviceContext
from max.gpu.memory import AddressSpace, async_copy, async_copy_commit_group, async_copy_wait_group
from max.gpu.sync import barrier, syncwarp
from std.math import ceildiv
from std.memory import stack_allocation
from std.sys import size_of
from std.utils import StaticTuple


# GPU, small K: each of STRIDED_TPB threads keeps STRIDED_OUTPUTS outputs
# spaced STRIDED_TPB apart, so a warp reads consecutive shared-memory words
# (no bank conflicts) and stores coalesce; K loads per output, which shared
# memory serves well while K is small and the kernel is bound by HBM.
# The GPU kernels by name: the op takes the one for K (KERNEL_BY_K); the
# harness and the build check name one to time or compile it; any other
# value is an error.
comptime KERNEL_BY_K = 0
comptime KERNEL_STRIDED = 1
comptime KERNEL_ASYNC = 2
comptime KERNEL_BLOCKED = 3

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
    length: Int64,
    signal_stride: Int64,
    taps_stride: Int64,
    pad: Int64,
    row_outputs: Int64,
    n_taps: Int64,
    blocks_per_row: Int64,
):
    """One thread block computes STRIDED_TPB * outputs outputs of one row."""
    comptime span = STRIDED_TPB * outputs
    var xs = stack_allocation[span + TAP_CHUNK, Scalar[dtype], address_space = AddressSpace.SHARED]()
    var ws = stack_allocation[TAP_CHUNK, Scalar[dtype], address_space = AddressSpace.SHARED]()
    var tid = Int(thread_idx.x)
    var block = Int(block_idx.x)
    var row = block // Int(blocks_per_row)
    var start = (block % Int(blocks_per_row)) * span
    var n = Int(length)
    var k = Int(n_taps)
    # Padded position v holds signal[v - pad] (zero outside the row).
    var row_in = row * Int(signal_stride) - Int(pad)
    var lo = Int(pad)
    var hi = lo + n
    var tap_base = row * Int(taps_stride)

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
                if i + u * STRIDED_TPB < span + kc - 1 and src >= lo and src < hi:
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

    var t = Int(row_outputs)
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
    length: Int64,
    signal_stride: Int64,
    taps_stride: Int64,
    pad: Int64,
    row_outputs: Int64,
    n_taps: Int64,
    blocks_per_row: Int64,
):
    """One thread block of BLOCKED_TPB threads computes BLOCKED_BLOCK
    outputs of one row.

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
    var n = Int(length)
    var k = Int(n_taps)
    var row_in = row * Int(signal_stride) - Int(pad)
    var lo = Int(pad)
    var hi = lo + n
    var tap_base = row * Int(taps_stride)
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
                if i + u * tpb < span + steps and src >= lo and src < hi:
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
    var t = Int(row_outputs)
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
    length: Int64,
    signal_stride: Int64,
    taps_stride: Int64,
    pad: Int64,
    row_outputs: Int64,
    n_taps: Int64,
    spans_per_row: Int64,
    total_spans: Int64,
    aligned_result: Int64,
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
    var n = Int(length)
    var stride = Int(signal_stride)
    var p = Int(pad)
    var k = Int(n_taps)
    var t = Int(row_outputs)
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
    def issue(j: Int, row: Int, col: Int) {var source, var xs, var tid, var n, var stride, var p, var steps}:
        """Start copying the inputs of span `col` of `row` into buffer j % ASYNC_STAGES."""
        # Signal index of the span's first input; zeros outside [0, n).
        var first = col * span - p
        var base = row * stride + first
        var into = xs.unsafe_offset((j % ASYNC_STAGES) * buffer)
        if first >= 0 and first + span + steps <= n:
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
                if first + i >= 0 and first + i < n:
                    async_copy[word](source.unsafe_offset(base + i), into.unsafe_offset(_padded[outputs](i)))
                else:
                    into[unsafe_offset=_padded[outputs](i)] = 0
                i += tpb

    comptime for j in range(ASYNC_STAGES - 1):
        if j < count:
            issue(j, load_row, load_col)
            _next_span(load_row, load_col, per_row)
        async_copy_commit_group()
    var loaded_taps = -1
    for j in range(count):
        async_copy_wait_group(Int32(ASYNC_STAGES - 2))
        barrier()
        var start = col * span
        var tap_base = row * Int(taps_stride)
        if tap_base != loaded_taps:
            loaded_taps = tap_base
            var i = tid
            while i < TAP_CHUNK:
                ws[unsafe_offset=i] = taps[unsafe_offset=tap_base + i] if i < k else 0
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
        if start + span <= t and aligned_result != 0 and (at + lead) % 4 == 0:
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


def enqueue_conv1d_gpu[dtype: DType](
    ctx: DeviceContext,
    kernel: Int,
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    signal: Pointer[Scalar[dtype], MutAnyOrigin],
    taps: Pointer[Scalar[dtype], MutAnyOrigin],
    rows: Int,
    length: Int,
    signal_stride: Int,
    taps_stride: Int,
    pad: Int,
    row_outputs: Int,
    n_taps: Int,
) raises:
    """Launch the kernel for K (KERNEL_BY_K) or the one `kernel` names:
    KERNEL_STRIDED, KERNEL_ASYNC (K <= TAP_CHUNK) or KERNEL_BLOCKED.

    Below SMALL_K taps the strided kernel, up to TAP_CHUNK the asynchronous
    one, above it the blocked one with wide tap chunks.
    """
    var k = n_taps
    var t = row_outputs
    if kernel < KERNEL_BY_K or kernel > KERNEL_BLOCKED:
        raise Error("conv1d: no GPU kernel numbered ", kernel)
    if kernel == KERNEL_ASYNC and k > TAP_CHUNK:
        raise Error("conv1d: the asynchronous kernel takes at most ", TAP_CHUNK, " taps")
    if (kernel == KERNEL_BY_K and k < SMALL_K) or kernel == KERNEL_STRIDED:
        var blocks_per_row = ceildiv(t, STRIDED_BLOCK)
        ctx.enqueue_function[_conv1d_gpu_strided[dtype, STRIDED_OUTPUTS]](
            result, signal, taps, Int64(length), Int64(signal_stride), Int64(taps_stride),
            Int64(pad), Int64(t), Int64(k), Int64(blocks_per_row),
            grid_dim=rows * blocks_per_row, block_dim=STRIDED_TPB,
        )
    elif (kernel == KERNEL_BY_K and k <= TAP_CHUNK) or kernel == KERNEL_ASYNC:
        # float64 words are twice as wide: half the outputs per thread
        # keeps the shared memory within 48 KB.
        comptime outputs = ASYNC_OUTPUTS if dtype == DType.float32 else ASYNC_OUTPUTS // 2
        var spans_per_row = ceildiv(t, BLOCKED_TPB * outputs)
        var spans = rows * spans_per_row
        var sms = ctx.get_attribute(DeviceAttribute.MULTIPROCESSOR_COUNT)
        # The sums go out as 16-byte vectors where the result allows it.
        var aligned = Int64(1) if Int(result) % 16 == 0 else Int64(0)
        ctx.enqueue_function[_conv1d_gpu_async[dtype, outputs]](
            result, signal, taps, Int64(length), Int64(signal_stride), Int64(taps_stride),
            Int64(pad), Int64(t), Int64(k), Int64(spans_per_row), Int64(spans), aligned,
            grid_dim=min(spans, ASYNC_BLOCKS_PER_SM * sms), block_dim=BLOCKED_TPB,
        )
    else:
        # float64 words are twice as wide: half the chunk keeps the shared
        # memory within 48 KB.
        comptime wide = WIDE_TAP_CHUNK if dtype == DType.float32 else WIDE_TAP_CHUNK // 2
        var blocks_per_row = ceildiv(t, BLOCKED_BLOCK)
        ctx.enqueue_function[_conv1d_gpu_blocked[dtype, wide]](
            result, signal, taps, Int64(length), Int64(signal_stride), Int64(taps_stride),
            Int64(pad), Int64(t), Int64(k), Int64(blocks_per_row),
            grid_dim=rows * blocks_per_row, block_dim=BLOCKED_TPB,
        )
