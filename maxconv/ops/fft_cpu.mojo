"""CPU path of the FFT op: overlap-save correlation with SIMD radix-4 FFTs.

See fft_conv.mojo for the method; this file holds the cache-blocked schedule
of the transform (its pieces are in fft_cpu_stages.mojo) and the driver that
reads overlap-save blocks straight from the caller's rows.
"""

from max.algorithm import sync_parallelize
from std.atomic import Atomic
from std.math import ceildiv
from std.sys import simd_width_of, num_physical_cores, size_of

from .fft_common import _log2, fft_points, table_offset
from .fft_cpu_stages import (
    _alloc,
    _build_tables,
    _dif2_stage,
    _dif4_stage,
    _dit2_stage,
    _dit4_stage,
    _forward_stages,
    _inverse_stages,
    _rows_pass,
)


# CPU: a sub-transform whose re + im fit this many bytes runs all its
# remaining stages in cache (see _transform_block). Insensitive: on one Zen 3
# core (512 KB L2), 64, 256 and 512 KB all gave 44-46 GFLOP/s for L = 2^12..
# 2^15 in float32 and 20-24 at 2^20 (micro_cpu.mojo).
comptime CPU_CACHE_BYTES = 128 * 1024
# CPU: im starts this many elements past the end of re in one allocation, so
# rows a power-of-two stride apart in re and im fall in different cache sets
# (with both page-aligned, the 4 + 4 rows of a radix-4 butterfly would share
# one 8-way L1 set and thrash it once blocks outgrow the cache). One core,
# float32: 19 -> 32 GFLOP/s at L = 2^18, 36 -> 41 at 2^16 (micro_cpu.mojo).
comptime CPU_SKEW = 128


# ---------------------------------------------------------------------------
# CPU: cache-blocked schedule
# ---------------------------------------------------------------------------


def _transform_block[dtype: DType, lanes: Int, spectrum_only: Bool](
    re: Pointer[Scalar[dtype], MutAnyOrigin],
    im: Pointer[Scalar[dtype], MutAnyOrigin],
    g_re: Pointer[Scalar[dtype], MutAnyOrigin],
    g_im: Pointer[Scalar[dtype], MutAnyOrigin],
    rows: Int,
    first: Int,
    n: Int,
    col_re: Pointer[Scalar[dtype], MutAnyOrigin],
    col_im: Pointer[Scalar[dtype], MutAnyOrigin],
    row_re: Pointer[Scalar[dtype], MutAnyOrigin],
    row_im: Pointer[Scalar[dtype], MutAnyOrigin],
    scale: Scalar[dtype],
):
    """Forward, product and inverse of the sub-transform at rows [first, first+n).

    Depth first: a decimation-in-frequency stage leaves independent
    contiguous sub-transforms, so once a block fits CPU_CACHE_BYTES all its
    remaining stages, its share of the product and the mirrored inverse
    stages run while it stays in cache; larger blocks cost one pass each
    way per level instead of one per stage.
    """
    comptime cache_points = CPU_CACHE_BYTES // (2 * size_of[Scalar[dtype]]())
    if n * lanes <= cache_points or n <= lanes:
        _forward_stages[dtype, lanes](re, im, rows, first, n, col_re, col_im)
        _rows_pass[dtype, lanes, spectrum_only](
            re, im, g_re, g_im, first, n, row_re, row_im, scale
        )
        comptime if not spectrum_only:
            _inverse_stages[dtype, lanes](re, im, rows, first, n, col_re, col_im)
        return
    var radix = 2 if _log2(n) % 2 == 1 else 4
    if radix == 2:
        _dif2_stage[dtype, lanes](re, im, rows, first, first + n, n, col_re, col_im)
    else:
        _dif4_stage[dtype, lanes](re, im, rows, first, first + n, n, col_re, col_im)
    var sub = n // radix
    for r in range(radix):
        _transform_block[dtype, lanes, spectrum_only](
            re, im, g_re, g_im, rows, first + r * sub, sub, col_re, col_im, row_re, row_im, scale
        )
    comptime if not spectrum_only:
        if radix == 2:
            _dit2_stage[dtype, lanes](re, im, rows, first, first + n, n, col_re, col_im)
        else:
            _dit4_stage[dtype, lanes](re, im, rows, first, first + n, n, col_re, col_im)


# ---------------------------------------------------------------------------
# CPU: driver
# ---------------------------------------------------------------------------


def table_points[lanes: Int](points: Int) -> Int:
    """Elements of the twiddle tables for L points: the column twiddles
    (L/V re, L/V im), then the row twiddles (L re, L im). At most 3L for
    V >= 2 lanes, which the engine allows for (maxconv/engine.py)."""
    return 2 * (points // lanes) + 2 * points


@always_inline
def _load_row[dtype: DType, lanes: Int](
    dst: Pointer[Scalar[dtype], MutAnyOrigin],
    src: Pointer[Scalar[dtype], MutAnyOrigin],
    offset: Int,
    count: Int,
    points: Int,
):
    """dst[0:count] = src[offset:offset+count], zeros up to `points` and not
    one element past it: `points` need not be a multiple of the lanes (a
    block behind leading zeros is loaded at dst + zeros; where that block
    sits in the second half of a scratch pair, a whole last vector ran past
    the allocation once blocks were paired across rows)."""
    var i = 0
    while i + lanes <= count:
        dst.unsafe_store(i, src.unsafe_load[width=lanes](offset + i))
        i += lanes
    while i < count:
        dst[unsafe_offset=i] = src[unsafe_offset=offset + i]
        i += 1
    while i < points and i % lanes != 0:
        dst[unsafe_offset=i] = 0
        i += 1
    while i + lanes <= points:
        dst.unsafe_store(i, SIMD[dtype, lanes](0))
        i += lanes
    while i < points:
        dst[unsafe_offset=i] = 0
        i += 1


@always_inline
def _load_block[dtype: DType, lanes: Int](
    dst: Pointer[Scalar[dtype], MutAnyOrigin],
    row: Pointer[Scalar[dtype], MutAnyOrigin],
    start: Int,
    length: Int,
    points: Int,
):
    """dst[i] = row[start + i] for i < points, zero where start + i is
    outside [0, length): one overlap-save block read in place."""
    var head = min(max(-start, 0), points)
    for i in range(head):
        dst[unsafe_offset=i] = 0
    var begin = start + head
    var count = max(0, min(length - begin, points - head))
    _load_row[dtype, lanes](dst.unsafe_offset(head), row, begin, count, points - head)

@always_inline
def _store_row[dtype: DType, lanes: Int](
    dst: Pointer[Scalar[dtype], MutAnyOrigin],
    offset: Int,
    src: Pointer[Scalar[dtype], MutAnyOrigin],
    count: Int,
):
    """dst[offset:offset+count] = src[0:count]."""
    var i = 0
    while i + lanes <= count:
        dst.unsafe_store(offset + i, src.unsafe_load[width=lanes](i))
        i += lanes
    while i < count:
        dst[unsafe_offset=offset + i] = src[unsafe_offset=i]
        i += 1


@always_inline
def _slot_in[dtype: DType, lanes: Int](
    slot: Int,
    dst: Pointer[Scalar[dtype], MutAnyOrigin],
    signal: Pointer[Scalar[dtype], MutAnyOrigin],
    signal_stride: Int,
    length: Int,
    pad: Int,
    per_row: Int,
    slots: Int,
    blocks: Int,
    t: Int,
    points: Int,
):
    """Load block slot `slot` (row slot // per_row, block slot % per_row) into
    dst; zeros for an empty slot (past the last, or a row's padding slot)."""
    var r = slot // per_row
    var b = slot % per_row
    if slot < slots and b < blocks:
        _load_block[dtype, lanes](
            dst, signal.unsafe_offset(r * signal_stride), b * t - pad, length, points
        )
    else:
        _load_row[dtype, lanes](dst, signal, 0, 0, points)


@always_inline
def _slot_out[dtype: DType, lanes: Int](
    slot: Int,
    src: Pointer[Scalar[dtype], MutAnyOrigin],
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    row_outputs: Int,
    per_row: Int,
    slots: Int,
    blocks: Int,
    t: Int,
):
    """Store block slot `slot`'s outputs from src; nothing for an empty slot."""
    var r = slot // per_row
    var b = slot % per_row
    if slot < slots and b < blocks:
        _store_row[dtype, lanes](
            result, r * row_outputs + b * t, src, min(t, row_outputs - b * t)
        )


def _transform_parallel[dtype: DType, lanes: Int, spectrum_only: Bool](
    re: Pointer[Scalar[dtype], MutAnyOrigin],
    im: Pointer[Scalar[dtype], MutAnyOrigin],
    g_re: Pointer[Scalar[dtype], MutAnyOrigin],
    g_im: Pointer[Scalar[dtype], MutAnyOrigin],
    rows: Int,
    col_re: Pointer[Scalar[dtype], MutAnyOrigin],
    col_im: Pointer[Scalar[dtype], MutAnyOrigin],
    row_re: Pointer[Scalar[dtype], MutAnyOrigin],
    row_im: Pointer[Scalar[dtype], MutAnyOrigin],
    scale: Scalar[dtype],
    workers: Int,
):
    """One whole transform on `workers` cores: for rows left over once the
    row pairs no longer fill every core, and for a lone channel's taps.

    The top stage is split by butterfly index, its radix (2 or 4)
    independent sub-transforms run one per task, and the mirrored top
    stage is split again; small transforms just run on one core.
    """
    comptime cache_points = CPU_CACHE_BYTES // (2 * size_of[Scalar[dtype]]())
    if workers <= 1 or rows * lanes <= cache_points:
        _transform_block[dtype, lanes, spectrum_only](
            re, im, g_re, g_im, rows, 0, rows, col_re, col_im, row_re, row_im, scale
        )
        return
    var radix = 2 if _log2(rows) % 2 == 1 else 4
    var sub = rows // radix
    var chunk = ceildiv(sub, workers)

    def top(w: Int) {var re, var im, var rows, var radix, var chunk, var col_re, var col_im}:
        if radix == 2:
            _dif2_stage[dtype, lanes](re, im, rows, 0, rows, rows, col_re, col_im, w * chunk, (w + 1) * chunk)
        else:
            _dif4_stage[dtype, lanes](re, im, rows, 0, rows, rows, col_re, col_im, w * chunk, (w + 1) * chunk)

    sync_parallelize(top, workers)

    def middle(r: Int) {
        var re, var im, var g_re, var g_im, var rows, var sub, var col_re, var col_im,
        var row_re, var row_im, var scale
    }:
        _transform_block[dtype, lanes, spectrum_only](
            re, im, g_re, g_im, rows, r * sub, sub, col_re, col_im, row_re, row_im, scale
        )

    sync_parallelize(middle, radix)

    comptime if not spectrum_only:

        def bottom(w: Int) {var re, var im, var rows, var radix, var chunk, var col_re, var col_im}:
            if radix == 2:
                _dit2_stage[dtype, lanes](re, im, rows, 0, rows, rows, col_re, col_im, w * chunk, (w + 1) * chunk)
            else:
                _dit4_stage[dtype, lanes](re, im, rows, 0, rows, rows, col_re, col_im, w * chunk, (w + 1) * chunk)

        sync_parallelize(bottom, workers)


def fft_conv_cpu[dtype: DType](
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    signal: Pointer[Scalar[dtype], MutAnyOrigin],
    taps: Pointer[Scalar[dtype], MutAnyOrigin],
    rows: Int,
    length: Int,
    signal_stride: Int,
    taps_rows: Int,
    pad: Int,
    row_outputs: Int,
    n_taps: Int,
    block: Int,
    spectrum: Pointer[Scalar[dtype], MutAnyOrigin],
    spectrum_given: Bool,
    spectrum_ready: Bool,
    spectrum_size: Int = 0,
    max_workers: Int = 0,
):
    """The whole CPU op: tables, one spectrum per taps row, block pairs over cores.

    The taps' spectra (S rows of L re, then S rows of L im) go to `spectrum`
    if `spectrum_given`, and are read from it without being computed again
    if `spectrum_ready` (a stream of chunks through the same taps); else
    they live in scratch for this call. When the buffer holds
    `spectrum_size` >= table_offset + table_points elements (see those),
    the twiddle tables for L are kept behind the spectra the same way:
    built with them, read back with them (the buffer belongs to one L and
    one dtype, so they cannot go stale); else built in scratch every call.

    Row r's outputs are cut into blocks of T = L - K + 1; block b reads the
    L signal samples from b * T - pad (zero outside the row) and writes
    outputs [b * T, b * T + T). Blocks 2p and 2p + 1 of a row share one
    complex transform; with one taps row for all rows, blocks pair across
    rows too (the rows' blocks in one sequence), so R rows of one block
    take R/2 transforms, not R. Tasks (a taps row, or a block pair) go to `workers`
    (all cores, or max_workers): taps rows in full rounds, block pairs from a
    shared counter, each worker reusing one pair of L-point scratch arrays;
    in a call of fewer than two full rounds, the tasks left over after the
    last full round run one at a time with every core inside the transform
    (_transform_parallel), so 3 pairs on 2 cores do not leave a core idle
    for a third of the call; in longer calls the counter takes them too
    (each split waits three more times for every worker, and one that
    another thread preempted keeps the others spinning: the augment job's
    calls, with its reading and writing threads on the same cores).
    """
    comptime lanes = simd_width_of[dtype]()
    var points = fft_points(block, n_taps, lanes)
    var t = points - n_taps + 1
    var blocks = ceildiv(row_outputs, t)
    var rows_l = points // lanes
    var workers = num_physical_cores() if max_workers <= 0 else min(max_workers, num_physical_cores())
    workers = max(1, workers)
    # Tables: kept in the spectrum buffer behind the spectra when it has room.
    var tables_kept = spectrum_given and spectrum_size >= table_offset(
        taps_rows, points
    ) + table_points[lanes](points)
    var col_re = spectrum.unsafe_offset(table_offset(taps_rows, points)) if tables_kept else _alloc[
        dtype
    ](table_points[lanes](points))
    var col_im = col_re.unsafe_offset(rows_l)
    var row_re = col_im.unsafe_offset(rows_l)
    var row_im = row_re.unsafe_offset(points)

    def tables(part: Int) {var col_re, var col_im, var row_re, var row_im, var points, var workers}:
        _build_tables[dtype, lanes](points, col_re, col_im, row_re, row_im, part, workers)

    if not (tables_kept and spectrum_ready):
        sync_parallelize(tables, workers)

    var g_re = spectrum if spectrum_given else _alloc[dtype](2 * taps_rows * points)
    var g_im = g_re.unsafe_offset(taps_rows * points)
    var scale = Scalar[dtype](1.0 / Float64(points))

    # The taps' spectra: taps row c in re, zeros in im.
    var full = 0 if spectrum_ready else (taps_rows // workers) * workers

    def spectra(worker: Int) {
        var taps, var g_re, var g_im, var col_re, var col_im, var row_re, var row_im,
        var points, var rows_l, var n_taps, var full, var workers, var scale
    }:
        var re = _alloc[dtype](2 * points + CPU_SKEW)
        var im = re.unsafe_offset(points + CPU_SKEW)
        var c = worker
        while c < full:
            _load_row[dtype, lanes](re, taps, c * n_taps, n_taps, points)
            _load_row[dtype, lanes](im, taps, 0, 0, points)
            _transform_block[dtype, lanes, True](
                re, im, g_re.unsafe_offset(c * points), g_im.unsafe_offset(c * points), rows_l, 0,
                rows_l, col_re, col_im, row_re, row_im, scale,
            )
            c += workers
        re.unsafe_free()

    if full > 0:
        sync_parallelize(spectra, workers)

    var re = _alloc[dtype](2 * points + CPU_SKEW)
    var im = re.unsafe_offset(points + CPU_SKEW)
    for c in range(full, 0 if spectrum_ready else taps_rows):
        _load_row[dtype, lanes](re, taps, c * n_taps, n_taps, points)
        _load_row[dtype, lanes](im, taps, 0, 0, points)
        _transform_parallel[dtype, lanes, True](
            re, im, g_re.unsafe_offset(c * points), g_im.unsafe_offset(c * points), rows_l,
            col_re, col_im, row_re, row_im, scale, workers,
        )

    # Block slots: a row's blocks, then (with a taps row per row) one empty slot
    # if their count is odd, so both blocks of a pair share the pair's taps;
    # slots 2p and 2p + 1 make pair p. With one taps row for all the rows, a
    # row's last block pairs with the next row's first: rows of one block (a
    # clip whose outputs fit one block) fill whole transforms, not half ones.
    var per_row = blocks if taps_rows == 1 else blocks + blocks % 2
    var slots = rows * per_row
    var tasks = (slots + 1) // 2
    # From two full rounds on, leftovers stay in the counter: splitting each over every
    # core costs three more waits for all the workers (see the docstring).
    full = tasks if tasks >= 2 * workers else (tasks // workers) * workers

    @always_inline
    def pair_in(
        task: Int,
        re: Pointer[Scalar[dtype], MutAnyOrigin],
        im: Pointer[Scalar[dtype], MutAnyOrigin],
    ) {var signal, var signal_stride, var length, var pad, var per_row, var slots, var blocks, var t, var points} -> Int:
        """Load block pair `task` into re and im; returns the row of its taps."""
        _slot_in[dtype, lanes](
            2 * task, re, signal, signal_stride, length, pad, per_row, slots, blocks, t, points
        )
        _slot_in[dtype, lanes](
            2 * task + 1, im, signal, signal_stride, length, pad, per_row, slots, blocks, t, points
        )
        return (2 * task) // per_row

    @always_inline
    def pair_out(
        task: Int,
        re: Pointer[Scalar[dtype], MutAnyOrigin],
        im: Pointer[Scalar[dtype], MutAnyOrigin],
    ) {var result, var row_outputs, var per_row, var slots, var blocks, var t}:
        """Store block pair `task`'s outputs from re and im."""
        _slot_out[dtype, lanes](2 * task, re, result, row_outputs, per_row, slots, blocks, t)
        _slot_out[dtype, lanes](2 * task + 1, im, result, row_outputs, per_row, slots, blocks, t)

    # Tasks are taken from a shared counter, not dealt in turn: when another
    # thread (the file writer, a neighbour) takes part of one core, the other
    # worker takes more of the pairs instead of waiting for it at the end.
    var next_task = Atomic[Int64](0)
    var counter = Pointer(to=next_task).unsafe_origin_cast[MutAnyOrigin]()

    def work(worker: Int) {
        var g_re, var g_im, var col_re, var col_im, var row_re, var row_im, var points,
        var rows_l, var full, var scale, var taps_rows, var pair_in, var pair_out, var counter
    }:
        var re = _alloc[dtype](2 * points + CPU_SKEW)
        var im = re.unsafe_offset(points + CPU_SKEW)
        while True:
            var task = Int(counter[].fetch_add(1))
            if task >= full:
                break
            var r = pair_in(task, re, im)
            var c = r if taps_rows > 1 else 0
            _transform_block[dtype, lanes, False](
                re, im, g_re.unsafe_offset(c * points), g_im.unsafe_offset(c * points), rows_l, 0,
                rows_l, col_re, col_im, row_re, row_im, scale,
            )
            pair_out(task, re, im)
        re.unsafe_free()

    if full > 0:
        sync_parallelize(work, workers)
    _ = next_task.load()  # the counter lives until every worker is done

    for task in range(full, tasks):
        var r = pair_in(task, re, im)
        var c = r if taps_rows > 1 else 0
        _transform_parallel[dtype, lanes, False](
            re, im, g_re.unsafe_offset(c * points), g_im.unsafe_offset(c * points), rows_l,
            col_re, col_im, row_re, row_im, scale, workers,
        )
        pair_out(task, re, im)

    re.unsafe_free()
    if not tables_kept:
        col_re.unsafe_free()
    if not spectrum_given:
        g_re.unsafe_free()
