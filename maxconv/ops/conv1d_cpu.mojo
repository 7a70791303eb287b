"""CPU kernels of the direct `conv1d` op, and the parallel driver.

For each row r of a [R, T] result:

    result[r, i] = sum_{j < K} signal[r * signal_stride + i + j - pad] * taps[r * taps_stride + j]

with the signal zero outside [0, length). Outputs whose window lies inside
the row read the caller's memory directly; the few near either end (at most
K - 1 + pad of them a row) read a small zero-padded copy of their window, so
every output runs the same SIMD arithmetic and no caller copies the signal.
"""

from max.algorithm import sync_parallelize
from std.math import ceildiv
from std.memory.alloc import unsafe_alloc
from std.sys import num_physical_cores, simd_width_of


# Each span step keeps CPU_VECTORS SIMD accumulators and sweeps all K taps
# over them; the lanes kernel keeps CPU_LANE_VECTORS. On the 2-core AVX-512
# machine (N = 2^20 float32, best of 15, MS/s at K = 16 / 64 / 128 / 256):
# 4 and 8 accumulators gave 3056 / 1028 and 2976 / 742 for the span kernel,
# 432 / 232 and 466 / 296 for the lanes kernel (2 and 16 were slower).
comptime CPU_VECTORS = 4
comptime CPU_LANE_VECTORS = 8
# From CPU_LANES_K taps on, the span kernel's unaligned loads (many of them
# split across cache lines) bound it; the lanes kernel gives each SIMD lane
# CPU_LANE_ROWS contiguous outputs and transposes the input under them, so
# every load is aligned (and folds into its FMA).
comptime CPU_LANES_K = 128
comptime CPU_LANE_ROWS = 256
# Work is cut into at most CPU_TASKS_PER_CORE contiguous ranges a core, of at
# least CPU_MIN_TASK_MACS multiply-adds each: a task costs a few microseconds
# to hand out, which at 1024 outputs a task (K = 16) was most of the call.
comptime CPU_TASKS_PER_CORE = 4
comptime CPU_MIN_TASK_MACS = 1 << 18
# Outputs near a row's ends are computed this many at a time from a
# zero-padded copy of their window.
comptime CPU_EDGE_OUTPUTS = 1024


@always_inline
def _span[dtype: DType, width: Int](
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    signal: Pointer[Scalar[dtype], MutAnyOrigin],
    taps: Pointer[Scalar[dtype], MutAnyOrigin],
    out_base: Int,
    in_base: Int,
    n_taps: Int,
    first: Int,
    last: Int,
):
    """result[out_base + i] = sum_j signal[in_base + i + j] * taps[j] for i in
    [first, last): register-blocked SIMD, then one vector, then scalars.

    The wide accumulator spans CPU_VECTORS machine vectors, so every tap is
    one broadcast and CPU_VECTORS independent FMAs kept in registers.
    """
    comptime block = CPU_VECTORS * width
    var i = first
    while i + block <= last:
        var acc = SIMD[dtype, block](0)
        for j in range(n_taps):
            var tap = SIMD[dtype, block](taps[unsafe_offset=j])
            acc = signal.unsafe_load[width=block](in_base + i + j).fma(tap, acc)
        result.unsafe_store(out_base + i, acc)
        i += block
    while i + width <= last:
        var acc = SIMD[dtype, width](0)
        for j in range(n_taps):
            var tap = SIMD[dtype, width](taps[unsafe_offset=j])
            acc = signal.unsafe_load[width=width](in_base + i + j).fma(tap, acc)
        result.unsafe_store(out_base + i, acc)
        i += width
    while i < last:
        var acc = Scalar[dtype](0)
        for j in range(n_taps):
            acc = signal[unsafe_offset=in_base + i + j].fma(taps[unsafe_offset=j], acc)
        result[unsafe_offset=out_base + i] = acc
        i += 1


def _span_edges[dtype: DType, width: Int](
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    row: Pointer[Scalar[dtype], MutAnyOrigin],
    taps: Pointer[Scalar[dtype], MutAnyOrigin],
    out_base: Int,
    length: Int,
    pad: Int,
    n_taps: Int,
    first: Int,
    last: Int,
    scratch: Pointer[Scalar[dtype], MutAnyOrigin],
):
    """Outputs [first, last) of a row whose windows reach past its ends:
    CPU_EDGE_OUTPUTS at a time, each from a zero-padded copy of its window
    in `scratch` (CPU_EDGE_OUTPUTS + K - 1 elements)."""
    var a = first
    while a < last:
        var b = min(a + CPU_EDGE_OUTPUTS, last)
        var begin = a - pad
        for m in range(b - a + n_taps - 1):
            var x = begin + m
            scratch[unsafe_offset=m] = row[unsafe_offset=x] if x >= 0 and x < length else 0
        _span[dtype, width](result, scratch, taps, out_base, -a, n_taps, a, b)
        a = b


def _lanes[dtype: DType, width: Int](
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    row: Pointer[Scalar[dtype], MutAnyOrigin],
    taps: Pointer[Scalar[dtype], MutAnyOrigin],
    out_base: Int,
    length: Int,
    pad: Int,
    n_taps: Int,
    first: Int,
    last: Int,
):
    """Outputs [first, last) of one row, lane l taking a contiguous run of them.

    lanes[r, l] = padded[first + l * rows + r] (padded[v] = row[v - pad],
    zero outside the row): row r of the transposed buffer is one aligned
    vector, and outputs m of all lanes are sum_j lanes[m + j] * taps[j],
    accumulated in the same order as `_span`, so both give identical results.
    """
    comptime block = CPU_LANE_VECTORS * width
    var count = last - first
    var rows = ceildiv(count, width)
    var rows_padded = ceildiv(rows, CPU_LANE_VECTORS) * CPU_LANE_VECTORS
    var span = rows_padded + n_taps
    var lanes = unsafe_alloc[Scalar[dtype]](span * width, alignment=64)
    var sums = unsafe_alloc[Scalar[dtype]](rows_padded * width, alignment=64)
    for l in range(width):
        var source = first + l * rows - pad
        for r in range(span):
            var x = source + r
            lanes[unsafe_offset=r * width + l] = row[unsafe_offset=x] if x >= 0 and x < length else 0
    for m0 in range(0, rows_padded, CPU_LANE_VECTORS):
        var acc = SIMD[dtype, block](0)
        for j in range(n_taps):
            var tap = SIMD[dtype, width](taps[unsafe_offset=j])
            comptime for v in range(CPU_LANE_VECTORS):
                var lane_row = lanes.unsafe_load[width=width]((m0 + v + j) * width)
                var sum = acc.slice[width, offset = v * width]()
                acc = acc.insert[offset = v * width](lane_row.fma(tap, sum))
        sums.unsafe_store(m0 * width, acc)
    for l in range(width):
        for m in range(rows):
            var index = l * rows + m
            if index < count:
                result[unsafe_offset=out_base + first + index] = sums[unsafe_offset=m * width + l]
    lanes.unsafe_free()
    sums.unsafe_free()


def _row_range[dtype: DType, width: Int](
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    row: Pointer[Scalar[dtype], MutAnyOrigin],
    taps: Pointer[Scalar[dtype], MutAnyOrigin],
    out_base: Int,
    length: Int,
    pad: Int,
    n_taps: Int,
    first: Int,
    last: Int,
    scratch: Pointer[Scalar[dtype], MutAnyOrigin],
):
    """Outputs [first, last) of one row, by the kernel that suits K."""
    if n_taps >= CPU_LANES_K:
        var a = first
        while a < last:
            var b = min(a + width * CPU_LANE_ROWS, last)
            _lanes[dtype, width](result, row, taps, out_base, length, pad, n_taps, a, b)
            a = b
        return
    # Output i reads row[i - pad .. i - pad + K - 1]: inside the row for
    # i in [pad, length - K + 1 + pad).
    var inner_lo = max(first, pad)
    var inner_hi = min(last, length - n_taps + 1 + pad)
    if inner_lo >= inner_hi:
        _span_edges[dtype, width](result, row, taps, out_base, length, pad, n_taps, first, last, scratch)
        return
    _span_edges[dtype, width](result, row, taps, out_base, length, pad, n_taps, first, inner_lo, scratch)
    _span[dtype, width](result, row, taps, out_base, -pad, n_taps, inner_lo, inner_hi)
    _span_edges[dtype, width](result, row, taps, out_base, length, pad, n_taps, inner_hi, last, scratch)


def conv1d_cpu[dtype: DType](
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
):
    """The whole CPU op: the R * T outputs, seen as one flat range, cut into
    a few contiguous tasks over all cores."""
    comptime width = simd_width_of[dtype]()
    var total = rows * row_outputs
    var cores = max(1, num_physical_cores())
    var by_work = max(1, total * n_taps // CPU_MIN_TASK_MACS)
    var tasks = min(by_work, cores * CPU_TASKS_PER_CORE)

    def work(task: Int) {
        var result, var signal, var taps, var total, var tasks, var length, var signal_stride,
        var taps_stride, var pad, var row_outputs, var n_taps
    }:
        var begin = task * total // tasks
        var end = (task + 1) * total // tasks
        var scratch = unsafe_alloc[Scalar[dtype]](CPU_EDGE_OUTPUTS + n_taps, alignment=64)
        var flat = begin
        while flat < end:
            var r = flat // row_outputs
            var first = flat - r * row_outputs
            var last = min(row_outputs, first + (end - flat))
            _row_range[dtype, width](
                result, signal.unsafe_offset(r * signal_stride), taps.unsafe_offset(r * taps_stride),
                r * row_outputs, length, pad, n_taps, first, last,
                scratch.unsafe_origin_cast[MutAnyOrigin](),
            )
            flat += last - first
        scratch.unsafe_free()

    sync_parallelize(work, tasks)
