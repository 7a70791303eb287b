"""GPU path of the FFT op, host side: which kernels run for a block length, in what order.

The kernels are in fft_gpu.mojo; this file enqueues them: twiddle tables,
the taps' spectra (unless kept), then the global passes and the
shared-memory chunks of every block pair.
"""

from max.gpu.host import DeviceContext, FuncAttribute
from std.math import ceildiv
from std.sys import size_of

from .fft_common import _log2, fft_points, table_offset
from .fft_gpu import (
    GPU_CHUNK_LOG_F32,
    GPU_CHUNK_LOG_F64,
    GPU_CHUNK_TPB,
    GPU_PASS_BITS_F32,
    GPU_PASS_BITS_F64,
    GPU_PASS_TPB,
    GPU_ROW_LOG_F32,
    GPU_ROW_LOG_F64,
    GPU_ROW_TPB,
    _gpu_chunk,
    _gpu_pass,
    _gpu_twiddles,
    _pad,
)
from .fft_gpu_fused import (
    FUSED_MAX_LOG,
    FUSED_MIN_LOG,
    FUSED_TW_TPB,
    FUSED_VALUES_LOG,
    _gpu_fused,
    _gpu_fused_twiddles,
    fused_cap_threads,
    fused_max_threads,
    fused_smem_bytes,
    fused_threads,
    fused_tw_entries,
    fused_values_log,
)
from .fft_gpu_staged import (
    COOP_CAP_THREADS,
    COOP_TPB,
    STAGED_CHUNK_LOG,
    STAGED_MIN_LOG,
    STAGED_PASS_BITS,
    STAGED_PASS_CAP_THREADS,
    STAGED_PASS_TPB,
    STAGED_VALUES_LOG,
    _coop_pass,
    _staged_chunk,
    _staged_pass,
    coop_blocks,
    coop_pass,
    coop_smem_bytes,
    staged_chunk_cap_threads,
    staged_chunk_log,
    staged_values_log,
)

# fft_conv_gpu's `variant`: GPU_OLD runs the staged kernels of fft_gpu.mojo
# for every L; GPU_FUSED (the default) runs float32 rows of 2^FUSED_MIN_LOG
# .. 2^FUSED_MAX_LOG points through the one-kernel path of fft_gpu_fused.mojo
# (fused_values_log(lp) values a thread: 16 up to 4096, 32 at 8192 and
# 16384; registers capped from 4096 on, 64 at V = 16, 128 at V = 32:
# fused_max_threads), and longer float32 rows through the new staged
# kernels of fft_gpu_staged.mojo (chunks by L: staged_chunk_log,
# staged_values_log; V = 32 chunks capped, V = 16 not:
# staged_chunk_cap_threads); GPU_FUSED_FREE is the same kernels with ptxas
# free to use more registers (fewer blocks per SM). float64 always takes
# the old kernels.
comptime GPU_OLD = 0
comptime GPU_FUSED = 1
comptime GPU_FUSED_FREE = 2
# Trial variants, compiled only into fft_conv_gpu[trials=True] (the
# harness), measured on the H200 (issue 16; the op's defaults now take
# their winners: fft_gpu_fused.fused_values_log, fft_gpu_staged.
# staged_chunk_log); elsewhere each runs as GPU_FUSED. GPU_FUSED_16K: the
# fused kernel with 16 values a thread at L = 2^13 (the op's kernel there
# before V = 32) and 2^14 (1024 threads, 64 registers, 136 KB of shared
# memory: one block per SM), the old kernels' spectrum order. GPU_FUSED_V32 /
# GPU_FUSED_V64: 32 / 64 values a thread at L = 2^TRIAL_MIN_LOG ..
# 2^TRIAL_MAX_LOG (registers capped at 128 / 255: fused_cap_threads), one
# shared-memory exchange a direction fewer at 2^13 and 2^14 (V32) or 2^12
# (V64), and past 2^14 the staged path with chunks of their V
# (_trial_conv); spectrum orders of their own.
comptime GPU_FUSED_16K = 3
comptime GPU_FUSED_V32 = 4
comptime GPU_FUSED_V64 = 5
# GPU_FUSED_PLAIN: the op's kernels and L's, but every shared-memory
# exchange a block barrier (the fused and chunk kernels with lean=False:
# what the op ran before _exchange_sync).
comptime GPU_FUSED_PLAIN = 6
# GPU_STAGED_SINGLE: the op's staged kernels, but every global pass one
# butterfly a thread (_staged_pass; the op splits radix 32 over threads:
# _coop_pass).
comptime GPU_STAGED_SINGLE = 7
comptime TRIAL_MIN_LOG = 12
comptime TRIAL_MAX_LOG = 14


def _enqueue_pass[dtype: DType, inverse: Bool, io: Bool, spectrum: Bool](
    ctx: DeviceContext,
    bits: Int,
    re: Pointer[Scalar[dtype], MutAnyOrigin],
    im: Pointer[Scalar[dtype], MutAnyOrigin],
    source: Pointer[Scalar[dtype], MutAnyOrigin],
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    tw: Pointer[Scalar[dtype], MutAnyOrigin],
    n_rows: Int,
    lp: Int,
    lb: Int,
    lo_bits: Int,
    geo: Blocks,
) raises:
    """Launch one global pass of radix 2^bits (1..5)."""
    var grid = ceildiv(n_rows << (lp - bits), GPU_PASS_TPB)
    comptime for b in range(1, 6):
        if bits == b:
            ctx.enqueue_function[_gpu_pass[dtype, 1 << b, inverse, io, spectrum]](
                re, im, source, result, tw, Int64(n_rows), Int64(lp), Int64(lb), Int64(lo_bits),
                Int64(geo.length), Int64(geo.signal_stride), Int64(geo.pad), Int64(geo.row_outputs),
                Int64(geo.block_outputs), Int64(geo.blocks), Int64(geo.pairs), Int64(geo.taps_rows),
                grid_dim=grid, block_dim=GPU_PASS_TPB,
            )


def _fused_rows[dtype: DType, lp: Int, vb: Int, spectrum: Bool, max_threads: Int, lean: Bool](
    ctx: DeviceContext,
    source: Pointer[Scalar[dtype], MutAnyOrigin],
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    g_re: Pointer[Scalar[dtype], MutAnyOrigin],
    g_im: Pointer[Scalar[dtype], MutAnyOrigin],
    tw: Pointer[Scalar[dtype], MutAnyOrigin],
    n_rows: Int,
    geo: Blocks,
    scale: Scalar[dtype],
) raises:
    """Launch _gpu_fused over n_rows block pairs (spectrum: taps rows)."""
    var smem = fused_smem_bytes[dtype](lp, vb)
    ctx.enqueue_function[_gpu_fused[dtype, lp, vb, spectrum, max_threads, lean]](
        source, result, g_re, g_im, tw,
        Int32(geo.length), Int64(geo.signal_stride), Int32(geo.pad), Int32(geo.row_outputs),
        Int32(geo.block_outputs), Int32(geo.blocks), Int32(geo.pairs), Int32(geo.taps_rows), scale,
        grid_dim=n_rows, block_dim=fused_threads(lp, vb),
        shared_mem_bytes=smem,
        func_attribute=FuncAttribute.MAX_DYNAMIC_SHARED_SIZE_BYTES(UInt32(smem)),
    )


def _fused_conv[dtype: DType, lp: Int, vb: Int, max_threads: Int, lean: Bool = True](
    ctx: DeviceContext,
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    signal: Pointer[Scalar[dtype], MutAnyOrigin],
    taps: Pointer[Scalar[dtype], MutAnyOrigin],
    rows: Int,
    taps_rows: Int,
    n_taps: Int,
    geo: Blocks,
    spectrum: Pointer[Scalar[dtype], MutAnyOrigin],
    spectrum_given: Bool,
    spectrum_ready: Bool,
    spectrum_elements: Int,
) raises:
    """fft_conv_gpu for L = 2^lp through fft_gpu_fused.mojo (2^vb values a
    thread): the twiddle table (unless kept and ready, _tables_kept), the
    taps' spectra unless ready, then one kernel for every block pair. With
    spectra and tables kept and ready (a filter run, a stream of chunks)
    that kernel is all the call enqueues: no scratch is allocated."""
    comptime points = 1 << lp
    comptime n_tw = fused_tw_entries(lp, vb)
    var kept = _tables_kept(spectrum_given, spectrum_elements, taps_rows, points, 2 * n_tw)
    var scale = Scalar[dtype](1.0 / Float64(points))
    if kept and spectrum_ready:
        _fused_rows[dtype, lp, vb, False, max_threads, lean](
            ctx, signal, result, spectrum, spectrum.unsafe_offset(taps_rows * points),
            spectrum.unsafe_offset(table_offset(taps_rows, points)), rows * geo.pairs, geo, scale,
        )
        return
    var tw = ctx.enqueue_create_buffer[dtype](1 if kept else 2 * n_tw)
    var scratch_spectra = ctx.enqueue_create_buffer[dtype](1 if spectrum_given else 2 * taps_rows * points)
    var tw_p = spectrum.unsafe_offset(table_offset(taps_rows, points)) if kept else tw.unsafe_ptr().unsafe_origin_cast[
        MutAnyOrigin
    ]()
    var g_re_p = spectrum if spectrum_given else scratch_spectra.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var g_im_p = g_re_p.unsafe_offset(taps_rows * points)
    ctx.enqueue_function[_gpu_fused_twiddles[dtype, lp, vb]](
        tw_p, grid_dim=ceildiv(n_tw, FUSED_TW_TPB), block_dim=FUSED_TW_TPB,
    )
    if not spectrum_ready:
        var spectra = Blocks(n_taps, n_taps, 0, 0, geo.block_outputs, 1, 1, taps_rows)
        _fused_rows[dtype, lp, vb, True, max_threads, lean](
            ctx, taps, result, g_re_p, g_im_p, tw_p, taps_rows, spectra, scale
        )
    _fused_rows[dtype, lp, vb, False, max_threads, lean](
        ctx, signal, result, g_re_p, g_im_p, tw_p, rows * geo.pairs, geo, scale
    )


def _staged_enqueue_pass[dtype: DType, inverse: Bool, io: Bool, spectrum: Bool, max_threads: Int, coop: Bool](
    ctx: DeviceContext,
    bits: Int,
    re: Pointer[Scalar[dtype], MutAnyOrigin],
    im: Pointer[Scalar[dtype], MutAnyOrigin],
    source: Pointer[Scalar[dtype], MutAnyOrigin],
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    tw: Pointer[Scalar[dtype], MutAnyOrigin],
    n_rows: Int,
    pair0: Int,
    lp: Int,
    lb: Int,
    lo_bits: Int,
    geo: Blocks,
) raises:
    """Launch one global pass of radix 2^bits (1..STAGED_PASS_BITS):
    _coop_pass where coop_pass(bits) (unless not coop: the harness's
    GPU_STAGED_SINGLE), else _staged_pass. _staged_pass at radix 32 is never
    capped below 255 registers: at 128 (max_threads 512) ptxas spilled
    40-1388 bytes a thread (sm_90, ptxas -v)."""
    var grid = ceildiv(n_rows << (lp - bits), STAGED_PASS_TPB)
    comptime for b in range(1, STAGED_PASS_BITS + 1):
        if bits == b:
            comptime if coop and coop_pass(b):
                ctx.enqueue_function[_coop_pass[dtype, b, inverse, io, spectrum, COOP_CAP_THREADS]](
                    re, im, source, result, tw, Int32(n_rows), Int32(pair0), Int32(lp), Int32(lb), Int32(lo_bits),
                    Int32(geo.length), Int64(geo.signal_stride), Int32(geo.pad), Int32(geo.row_outputs),
                    Int32(geo.block_outputs), Int32(geo.blocks), Int32(geo.pairs),
                    grid_dim=coop_blocks(n_rows, lp, b), block_dim=COOP_TPB,
                    shared_mem_bytes=coop_smem_bytes[dtype](),
                    func_attribute=FuncAttribute.MAX_DYNAMIC_SHARED_SIZE_BYTES(UInt32(coop_smem_bytes[dtype]())),
                )
            else:
                comptime cap = max_threads if b < 5 else STAGED_PASS_TPB
                ctx.enqueue_function[_staged_pass[dtype, b, inverse, io, spectrum, cap]](
                    re, im, source, result, tw, Int32(n_rows), Int32(pair0), Int32(lp), Int32(lb), Int32(lo_bits),
                    Int32(geo.length), Int64(geo.signal_stride), Int32(geo.pad), Int32(geo.row_outputs),
                    Int32(geo.block_outputs), Int32(geo.blocks), Int32(geo.pairs),
                    grid_dim=grid, block_dim=STAGED_PASS_TPB,
                )


def _staged_rows[
    dtype: DType,
    lc: Int,
    vb: Int,
    spectrum: Bool,
    chunk_threads_cap: Int,
    pass_threads_cap: Int,
    lean: Bool,
    coop: Bool,
](
    ctx: DeviceContext,
    re: Pointer[Scalar[dtype], MutAnyOrigin],
    im: Pointer[Scalar[dtype], MutAnyOrigin],
    source: Pointer[Scalar[dtype], MutAnyOrigin],
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    g_re: Pointer[Scalar[dtype], MutAnyOrigin],
    g_im: Pointer[Scalar[dtype], MutAnyOrigin],
    tw: Pointer[Scalar[dtype], MutAnyOrigin],
    tw_chunk: Pointer[Scalar[dtype], MutAnyOrigin],
    n_rows: Int,
    pair0: Int,
    lp: Int,
    lo_bits: Int,
    geo: Blocks,
    scale: Scalar[dtype],
) raises:
    """Enqueue the new staged kernels for scratch rows 0 .. n_rows - 1 =
    block pairs (spectrum: taps rows) pair0 .. pair0 + n_rows - 1: global
    passes down to chunks of 2^lc points (radices as the old path's,
    _pass_bits(lp - lc, 5, i)), the chunk kernel, the mirrored passes."""
    var above = lp - lc
    var passes = ceildiv(above, STAGED_PASS_BITS)
    var lb = lp
    for index in range(passes):
        var bits = _pass_bits(above, STAGED_PASS_BITS, index)
        if index == 0:
            _staged_enqueue_pass[dtype, False, True, spectrum, pass_threads_cap, coop](
                ctx, bits, re, im, source, result, tw, n_rows, pair0, lp, lb, lo_bits, geo
            )
        else:
            _staged_enqueue_pass[dtype, False, False, spectrum, pass_threads_cap, coop](
                ctx, bits, re, im, source, result, tw, n_rows, pair0, lp, lb, lo_bits, geo
            )
        lb -= bits
    var smem = fused_smem_bytes[dtype](lc, vb)
    ctx.enqueue_function[_staged_chunk[dtype, lc, vb, spectrum, chunk_threads_cap, lean]](
        re, im, g_re, g_im, tw_chunk, Int32(lp), Int32(pair0), Int32(geo.pairs), Int32(geo.taps_rows), scale,
        grid_dim=n_rows << above, block_dim=fused_threads(lc, vb),
        shared_mem_bytes=smem,
        func_attribute=FuncAttribute.MAX_DYNAMIC_SHARED_SIZE_BYTES(UInt32(smem)),
    )
    comptime if not spectrum:
        for step in range(passes):
            var index = passes - 1 - step
            var bits = _pass_bits(above, STAGED_PASS_BITS, index)
            lb += bits
            if index == 0:
                _staged_enqueue_pass[dtype, True, True, spectrum, pass_threads_cap, coop](
                    ctx, bits, re, im, source, result, tw, n_rows, pair0, lp, lb, lo_bits, geo
                )
            else:
                _staged_enqueue_pass[dtype, True, False, spectrum, pass_threads_cap, coop](
                    ctx, bits, re, im, source, result, tw, n_rows, pair0, lp, lb, lo_bits, geo
                )


# The new staged path runs at most this many points of scratch rows per
# batch (32-bit thread and row indices): 2^31.
comptime STAGED_MAX_BATCH_POINTS = 1 << 31


def _staged_conv[
    dtype: DType,
    lc: Int,
    vb: Int,
    chunk_threads_cap: Int,
    pass_threads_cap: Int,
    lean: Bool = True,
    coop: Bool = True,
](
    ctx: DeviceContext,
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    signal: Pointer[Scalar[dtype], MutAnyOrigin],
    taps: Pointer[Scalar[dtype], MutAnyOrigin],
    rows: Int,
    taps_rows: Int,
    n_taps: Int,
    lp: Int,
    geo: Blocks,
    spectrum: Pointer[Scalar[dtype], MutAnyOrigin],
    spectrum_given: Bool,
    spectrum_ready: Bool,
    batch_pairs: Int,
    spectrum_elements: Int,
) raises:
    """fft_conv_gpu for float32 L = 2^lp > 2^FUSED_MAX_LOG (the harness:
    from 2^STAGED_MIN_LOG) through fft_gpu_staged.mojo, chunks of 2^lc
    points of 2^vb values: the twiddle tables (lo/hi for the passes, the
    fused kernel's per-stage table of 2^lc points for the chunks; unless
    kept and ready, _tables_kept), the taps' spectra unless ready, then the
    block pairs, batch_pairs at a time (0: all at once) through one scratch
    of that many rows."""
    var points = 1 << lp
    var total_pairs = rows * geo.pairs
    var limit = max(1, STAGED_MAX_BATCH_POINTS >> lp)
    var batch = min(total_pairs if batch_pairs <= 0 else batch_pairs, limit)
    var taps_batch = min(taps_rows, limit)
    var scratch_rows = batch if spectrum_ready else max(batch, taps_batch)
    var lo_bits = (lp + 1) // 2
    var n_tw = (1 << lo_bits) + (1 << (lp - lo_bits))
    comptime n_tw_chunk = fused_tw_entries(lc, vb)
    var kept = _tables_kept(spectrum_given, spectrum_elements, taps_rows, points, 2 * (n_tw + n_tw_chunk))
    var tw = ctx.enqueue_create_buffer[dtype](1 if kept else 2 * n_tw)
    var tw_c = ctx.enqueue_create_buffer[dtype](1 if kept else 2 * n_tw_chunk)
    var scratch_spectra = ctx.enqueue_create_buffer[dtype](1 if spectrum_given else 2 * taps_rows * points)
    var x_re = ctx.enqueue_create_buffer[dtype](scratch_rows * points)
    var x_im = ctx.enqueue_create_buffer[dtype](scratch_rows * points)
    var tw_p = spectrum.unsafe_offset(table_offset(taps_rows, points)) if kept else tw.unsafe_ptr().unsafe_origin_cast[
        MutAnyOrigin
    ]()
    var tw_c_p = tw_p.unsafe_offset(2 * n_tw) if kept else tw_c.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var g_re_p = spectrum if spectrum_given else scratch_spectra.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var g_im_p = g_re_p.unsafe_offset(taps_rows * points)
    var x_re_p = x_re.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var x_im_p = x_im.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var scale = Scalar[dtype](1.0 / Float64(points))
    if not (kept and spectrum_ready):
        ctx.enqueue_function[_gpu_twiddles[dtype]](
            tw_p, Int64(lp), Int64(lo_bits),
            grid_dim=ceildiv(n_tw, GPU_PASS_TPB), block_dim=GPU_PASS_TPB,
        )
        ctx.enqueue_function[_gpu_fused_twiddles[dtype, lc, vb]](
            tw_c_p, grid_dim=ceildiv(n_tw_chunk, FUSED_TW_TPB), block_dim=FUSED_TW_TPB,
        )
    if not spectrum_ready:
        # Each taps row is one block of its own: K samples from 0, no pairing.
        var spectra = Blocks(n_taps, n_taps, 0, 0, geo.block_outputs, 1, 1, taps_rows)
        var first = 0
        while first < taps_rows:
            var n = min(taps_batch, taps_rows - first)
            _staged_rows[dtype, lc, vb, True, chunk_threads_cap, pass_threads_cap, lean, coop](
                ctx, x_re_p, x_im_p, taps, result, g_re_p, g_im_p, tw_p, tw_c_p, n, first, lp, lo_bits,
                spectra, scale,
            )
            first += n
    var first = 0
    while first < total_pairs:
        var n = min(batch, total_pairs - first)
        _staged_rows[dtype, lc, vb, False, chunk_threads_cap, pass_threads_cap, lean, coop](
            ctx, x_re_p, x_im_p, signal, result, g_re_p, g_im_p, tw_p, tw_c_p, n, first, lp, lo_bits,
            geo, scale,
        )
        first += n


def _tables_kept(spectrum_given: Bool, spectrum_elements: Int, taps_rows: Int, points: Int, n: Int) -> Bool:
    """Whether a call's n twiddle-table elements fit behind the spectra
    (table_offset) in a spectrum buffer of spectrum_elements. There they
    are built with the spectra and read back with them, as on the CPU (the
    buffer belongs to one L, dtype and kernel choice, so they cannot go
    stale): a call with the spectra ready then runs no table kernel and
    allocates no table; else they are built in scratch every call."""
    return spectrum_given and spectrum_elements >= table_offset(taps_rows, points) + n


def _pass_bits(above: Int, max_bits: Int, index: Int) -> Int:
    """Radix bits of global pass `index` when `above` bits lie outside the
    chunk: as few passes as radix 2^max_bits allows, bits spread evenly."""
    var passes = ceildiv(above, max_bits)
    return above // passes + (1 if index < above % passes else 0)


def _transform_rows[dtype: DType, spectrum: Bool](
    ctx: DeviceContext,
    re: Pointer[Scalar[dtype], MutAnyOrigin],
    im: Pointer[Scalar[dtype], MutAnyOrigin],
    source: Pointer[Scalar[dtype], MutAnyOrigin],
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    g_re: Pointer[Scalar[dtype], MutAnyOrigin],
    g_im: Pointer[Scalar[dtype], MutAnyOrigin],
    tw: Pointer[Scalar[dtype], MutAnyOrigin],
    n_rows: Int,
    lp: Int,
    ls: Int,
    lo_bits: Int,
    geo: Blocks,
    scale: Scalar[dtype],
    chunk_threads: Int,
) raises:
    """Enqueue every pass for n_rows rows: the taps' spectra (spectrum) or
    the block pairs' correlations."""
    comptime max_bits = GPU_PASS_BITS_F32 if dtype == DType.float32 else GPU_PASS_BITS_F64
    var smem_bytes = 2 * _pad(1 << ls) * size_of[dtype]()
    var chunks = n_rows << (lp - ls)
    var above = lp - ls
    if above == 0:
        ctx.enqueue_function[_gpu_chunk[dtype, True, spectrum]](
            re, im, source, result, g_re, g_im, tw, Int64(lp), Int64(ls), Int64(lo_bits),
            Int64(geo.length), Int64(geo.signal_stride), Int64(geo.pad), Int64(geo.row_outputs),
            Int64(geo.block_outputs), Int64(geo.blocks), Int64(geo.pairs), Int64(geo.taps_rows), scale,
            grid_dim=chunks, block_dim=chunk_threads,
            shared_mem_bytes=smem_bytes,
            func_attribute=FuncAttribute.MAX_DYNAMIC_SHARED_SIZE_BYTES(UInt32(smem_bytes)),
        )
        return
    var passes = ceildiv(above, max_bits)
    var lb = lp
    for index in range(passes):
        var bits = _pass_bits(above, max_bits, index)
        if index == 0:
            _enqueue_pass[dtype, False, True, spectrum](
                ctx, bits, re, im, source, result, tw, n_rows, lp, lb, lo_bits, geo
            )
        else:
            _enqueue_pass[dtype, False, False, spectrum](
                ctx, bits, re, im, source, result, tw, n_rows, lp, lb, lo_bits, geo
            )
        lb -= bits
    ctx.enqueue_function[_gpu_chunk[dtype, False, spectrum]](
        re, im, source, result, g_re, g_im, tw, Int64(lp), Int64(ls), Int64(lo_bits),
        Int64(geo.length), Int64(geo.signal_stride), Int64(geo.pad), Int64(geo.row_outputs),
        Int64(geo.block_outputs), Int64(geo.blocks), Int64(geo.pairs), Int64(geo.taps_rows), scale,
        grid_dim=chunks, block_dim=chunk_threads,
        shared_mem_bytes=smem_bytes,
        func_attribute=FuncAttribute.MAX_DYNAMIC_SHARED_SIZE_BYTES(UInt32(smem_bytes)),
    )
    comptime if not spectrum:
        for step in range(passes):
            var index = passes - 1 - step
            var bits = _pass_bits(above, max_bits, index)
            lb += bits
            if index == 0:
                _enqueue_pass[dtype, True, True, spectrum](
                    ctx, bits, re, im, source, result, tw, n_rows, lp, lb, lo_bits, geo
                )
            else:
                _enqueue_pass[dtype, True, False, spectrum](
                    ctx, bits, re, im, source, result, tw, n_rows, lp, lb, lo_bits, geo
                )


@fieldwise_init
struct Blocks(Copyable):
    """How the op's rows are cut into overlap-save block pairs (host side):
    pair p of the launch is blocks b0 = 2 * (p % pairs) and b0 + 1 of
    signal row p // pairs; block b reads `length`-sample row samples from
    b * block_outputs - pad (zeros outside) and writes outputs
    [b * block_outputs, ...) of a `row_outputs`-long result row."""

    var length: Int
    var signal_stride: Int
    var pad: Int
    var row_outputs: Int
    var block_outputs: Int
    var blocks: Int
    var pairs: Int
    var taps_rows: Int


def _op_staged_conv[dtype: DType, lean: Bool, coop: Bool](
    ctx: DeviceContext,
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    signal: Pointer[Scalar[dtype], MutAnyOrigin],
    taps: Pointer[Scalar[dtype], MutAnyOrigin],
    rows: Int,
    taps_rows: Int,
    n_taps: Int,
    lp: Int,
    geo: Blocks,
    spectrum: Pointer[Scalar[dtype], MutAnyOrigin],
    spectrum_given: Bool,
    spectrum_ready: Bool,
    batch_pairs: Int,
    spectrum_elements: Int,
) raises -> Bool:
    """The harness's variants of the op's staged path at L = 2^lp (the chunk
    of staged_chunk_log / staged_values_log, registers as
    staged_chunk_cap_threads) with `lean` and `coop` as asked; False
    (nothing enqueued) where no such chunk is compiled."""
    comptime for lcc in range(STAGED_CHUNK_LOG, STAGED_CHUNK_LOG + 3):
        comptime for vbc in range(STAGED_VALUES_LOG, STAGED_VALUES_LOG + 2):
            comptime if _staged_compiled(lcc, vbc):
                if staged_chunk_log(lp) == lcc and staged_values_log(lp) == vbc:
                    _staged_conv[
                        dtype, lcc, vbc, staged_chunk_cap_threads(lcc, vbc), STAGED_PASS_CAP_THREADS, lean, coop
                    ](
                        ctx, result, signal, taps, rows, taps_rows, n_taps, lp, geo,
                        spectrum, spectrum_given, spectrum_ready, batch_pairs, spectrum_elements,
                    )
                    return True
    return False


def _trial_conv[dtype: DType](
    ctx: DeviceContext,
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    signal: Pointer[Scalar[dtype], MutAnyOrigin],
    taps: Pointer[Scalar[dtype], MutAnyOrigin],
    rows: Int,
    taps_rows: Int,
    n_taps: Int,
    lp: Int,
    geo: Blocks,
    spectrum: Pointer[Scalar[dtype], MutAnyOrigin],
    spectrum_given: Bool,
    spectrum_ready: Bool,
    variant: Int,
    chunk_log: Int,
    batch_pairs: Int,
    spectrum_elements: Int,
) raises -> Bool:
    """Run trial variant `variant` (GPU_FUSED_16K, GPU_FUSED_V32 or
    GPU_FUSED_V64) for L = 2^lp where it has kernels of its own; False
    (nothing enqueued) elsewhere. Fused up to 2^TRIAL_MAX_LOG (chunk_log
    0 or >= lp; 16K only where the op's fused kernel is not V = 16); past
    it V32 / V64 run the staged path with chunks of 2^chunk_log (12 .. 14;
    0: 13 for V32, 12 for V64) of their own V. V32 at 2^13 / 2^14, and
    with chunk 2^13 at 2^18 / 2^22 and 2^14 at 2^19, is the op's kernel.
    GPU_FUSED_PLAIN: the op's kernel of every float32 L from
    2^FUSED_MIN_LOG with chunk_log 0, lean=False. GPU_STAGED_SINGLE: the
    op's staged kernels past 2^FUSED_MAX_LOG (chunk_log 0), every global
    pass _staged_pass."""
    if variant == GPU_STAGED_SINGLE:
        if chunk_log != 0 or lp <= FUSED_MAX_LOG:
            return False
        return _op_staged_conv[dtype, True, False](
            ctx, result, signal, taps, rows, taps_rows, n_taps, lp, geo,
            spectrum, spectrum_given, spectrum_ready, batch_pairs, spectrum_elements,
        )
    if variant == GPU_FUSED_PLAIN:
        if chunk_log != 0:
            return False
        if lp <= FUSED_MAX_LOG:
            comptime for lpc in range(FUSED_MIN_LOG, FUSED_MAX_LOG + 1):
                if lp == lpc:
                    comptime vb = fused_values_log(lpc)
                    _fused_conv[dtype, lpc, vb, fused_max_threads(lpc, vb), False](
                        ctx, result, signal, taps, rows, taps_rows, n_taps, geo, spectrum, spectrum_given,
                        spectrum_ready, spectrum_elements,
                    )
                    return True
            return False
        return _op_staged_conv[dtype, False, True](
            ctx, result, signal, taps, rows, taps_rows, n_taps, lp, geo,
            spectrum, spectrum_given, spectrum_ready, batch_pairs, spectrum_elements,
        )
    if lp > TRIAL_MAX_LOG:
        var lc = chunk_log if chunk_log > 0 else (13 if variant == GPU_FUSED_V32 else 12)
        comptime for lcc in range(TRIAL_MIN_LOG, TRIAL_MAX_LOG + 1):
            if lc == lcc:
                if variant == GPU_FUSED_V32:
                    _staged_conv[dtype, lcc, 5, staged_chunk_cap_threads(lcc, 5), STAGED_PASS_CAP_THREADS](
                        ctx, result, signal, taps, rows, taps_rows, n_taps, lp, geo,
                        spectrum, spectrum_given, spectrum_ready, batch_pairs, spectrum_elements,
                    )
                    return True
                if variant == GPU_FUSED_V64:
                    _staged_conv[dtype, lcc, 6, staged_chunk_cap_threads(lcc, 6), STAGED_PASS_CAP_THREADS](
                        ctx, result, signal, taps, rows, taps_rows, n_taps, lp, geo,
                        spectrum, spectrum_given, spectrum_ready, batch_pairs, spectrum_elements,
                    )
                    return True
        return False
    if chunk_log != 0 and chunk_log < lp:
        return False
    comptime for lpc in range(TRIAL_MIN_LOG, TRIAL_MAX_LOG + 1):
        if lp == lpc:
            comptime if lpc > FUSED_MAX_LOG or fused_values_log(lpc) != FUSED_VALUES_LOG:
                if variant == GPU_FUSED_16K:
                    comptime cap = max(fused_threads(lpc, FUSED_VALUES_LOG), fused_cap_threads(FUSED_VALUES_LOG))
                    _fused_conv[dtype, lpc, FUSED_VALUES_LOG, cap](
                        ctx, result, signal, taps, rows, taps_rows, n_taps, geo, spectrum, spectrum_given,
                        spectrum_ready, spectrum_elements,
                    )
                    return True
            if variant == GPU_FUSED_V32:
                _fused_conv[dtype, lpc, 5, max(fused_threads(lpc, 5), fused_cap_threads(5))](
                    ctx, result, signal, taps, rows, taps_rows, n_taps, geo, spectrum, spectrum_given, spectrum_ready,
                    spectrum_elements,
                )
                return True
            if variant == GPU_FUSED_V64:
                _fused_conv[dtype, lpc, 6, max(fused_threads(lpc, 6), fused_cap_threads(6))](
                    ctx, result, signal, taps, rows, taps_rows, n_taps, geo, spectrum, spectrum_given, spectrum_ready,
                    spectrum_elements,
                )
                return True
    return False


def _staged_compiled(lc: Int, vb: Int) -> Bool:
    """Whether the op compiles the new staged path with chunks of 2^lc
    points of 2^vb values: V = 16 in chunks of 2^12 and 2^13 (chunk_log),
    and every chunk of the per-L table (staged_chunk_log, staged_values_log)."""
    if vb == STAGED_VALUES_LOG and (lc == 12 or lc == 13):
        return True
    for lp in range(FUSED_MAX_LOG + 1, 32):
        if staged_chunk_log(lp) == lc and staged_values_log(lp) == vb:
            return True
    return False


def fft_conv_gpu[dtype: DType, trials: Bool = False](
    ctx: DeviceContext,
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
    chunk_log: Int = 0,
    chunk_threads: Int = 0,
    variant: Int = GPU_FUSED,
    batch_pairs: Int = 0,
    spectrum_elements: Int = 0,
) raises:
    """Enqueue the whole GPU op: twiddle tables, taps spectra, correlations.

    The taps' spectra (S rows of L re, then S rows of L im) go to device
    memory `spectrum` if `spectrum_given`, and are read from it without
    being computed again if `spectrum_ready`; else they live in scratch for
    this call. When the buffer holds spectrum_elements (0: just the
    spectra) >= table_offset + the tables' elements (at most 3L), the
    twiddle tables are kept behind the spectra the same way (_tables_kept).

    Row r's outputs are cut into blocks of T = L - K + 1 (L from `block`,
    see fft_points); block b reads L signal samples from b * T - pad, zero
    outside the row, straight from the caller's buffer.

    trials (the harness's build only) adds the trial variants
    GPU_FUSED_16K, GPU_FUSED_V32, GPU_FUSED_V64, GPU_FUSED_PLAIN and
    GPU_STAGED_SINGLE (float32; see _trial_conv); the op leaves them out of
    its GPU compile.

    chunk_log and chunk_threads (0: the tuned defaults) exist for
    research/fft/gpu_check.mojo, which times other chunk sizes and block
    shapes; a chunk_log of at least log2(L) transforms rows whole.
    `variant` (GPU_FUSED, GPU_FUSED_FREE or GPU_OLD) picks the kernels of
    float32 rows of 2^FUSED_MIN_LOG .. 2^FUSED_MAX_LOG points (the fused
    path also needs chunk_log 0 or >= log2(L); V = fused_values_log(lp):
    16 up to 4096, the old kernels' spectrum order, 32 at 8192 and 16384,
    an order of its own). Longer float32 rows take the new staged kernels
    (fft_gpu_staged.mojo) unless variant is GPU_OLD: for chunk_log 0 with
    the chunk of staged_chunk_log / staged_values_log (2^12 points of
    V = 16, the old kernels' order, but V = 32 chunks of 2^13 at L = 2^18
    and 2^22, 2^14 at 2^19); for chunk_log 12 or 13 (also at L = 2^14)
    with V = 16 chunks of that size (12: the old order). Other chunk_log
    values and chunk_threads take the old kernels. GPU_FUSED and
    GPU_FUSED_FREE keep the spectra in the same order at every L.
    batch_pairs (new staged path only; 0: all) runs the block pairs that
    many at a time through one scratch.

    Scratch (tables, spectra, and the global passes' rows when L exceeds
    one chunk) is allocated on the op's stream and freed in stream order
    when this function returns.
    """
    comptime row_log = GPU_ROW_LOG_F32 if dtype == DType.float32 else GPU_ROW_LOG_F64
    comptime default_chunk_log = GPU_CHUNK_LOG_F32 if dtype == DType.float32 else GPU_CHUNK_LOG_F64
    var points = fft_points(block, n_taps, 8)
    var t = points - n_taps + 1
    var blocks = ceildiv(row_outputs, t)
    var pairs = (blocks + 1) // 2
    var lp = _log2(points)
    var v = variant
    comptime if trials:
        if variant >= GPU_FUSED_16K and variant <= GPU_STAGED_SINGLE:
            comptime if dtype == DType.float32:
                var trial_geo = Blocks(length, signal_stride, pad, row_outputs, t, blocks, pairs, taps_rows)
                if _trial_conv[dtype](
                    ctx, result, signal, taps, rows, taps_rows, n_taps, lp, trial_geo,
                    spectrum, spectrum_given, spectrum_ready, variant, chunk_log, batch_pairs,
                    spectrum_elements,
                ):
                    return
            v = GPU_FUSED
    if v != GPU_OLD and v != GPU_FUSED and v != GPU_FUSED_FREE:
        raise Error(
            "fft_conv_gpu: variant must be GPU_OLD (0), GPU_FUSED (1) or GPU_FUSED_FREE (2)",
            " (3 .. 7 in trials builds), not ", variant,
        )
    comptime if dtype == DType.float32:
        if v != GPU_OLD and lp >= FUSED_MIN_LOG and lp <= FUSED_MAX_LOG and (chunk_log == 0 or chunk_log >= lp):
            var rows_geo = Blocks(length, signal_stride, pad, row_outputs, t, blocks, pairs, taps_rows)
            comptime for lpc in range(FUSED_MIN_LOG, FUSED_MAX_LOG + 1):
                if lp == lpc:
                    comptime vb = fused_values_log(lpc)
                    comptime threads = fused_threads(lpc, vb)
                    if v == GPU_FUSED:
                        _fused_conv[dtype, lpc, vb, fused_max_threads(lpc, vb)](
                            ctx, result, signal, taps, rows, taps_rows, n_taps, rows_geo,
                            spectrum, spectrum_given, spectrum_ready, spectrum_elements,
                        )
                    else:
                        _fused_conv[dtype, lpc, vb, threads](
                            ctx, result, signal, taps, rows, taps_rows, n_taps, rows_geo,
                            spectrum, spectrum_given, spectrum_ready, spectrum_elements,
                        )
            return
        var staged_default = chunk_log == 0 and lp > FUSED_MAX_LOG
        var staged_chunk = (chunk_log == 12 or chunk_log == 13) and lp >= STAGED_MIN_LOG
        if v != GPU_OLD and (staged_default or staged_chunk) and chunk_threads == 0:
            var rows_geo = Blocks(length, signal_stride, pad, row_outputs, t, blocks, pairs, taps_rows)
            # The op: the chunk of the per-L table; chunk_log 12 / 13: V = 16
            # chunks of that size (the harness's).
            var lc = staged_chunk_log(lp) if staged_default else chunk_log
            var vb = staged_values_log(lp) if staged_default else STAGED_VALUES_LOG
            comptime for lcc in range(STAGED_CHUNK_LOG, STAGED_CHUNK_LOG + 3):
                comptime for vbc in range(STAGED_VALUES_LOG, STAGED_VALUES_LOG + 2):
                    comptime if _staged_compiled(lcc, vbc):
                        if lc == lcc and vb == vbc:
                            if v == GPU_FUSED:
                                _staged_conv[dtype, lcc, vbc, staged_chunk_cap_threads(lcc, vbc), STAGED_PASS_CAP_THREADS](
                                    ctx, result, signal, taps, rows, taps_rows, n_taps, lp, rows_geo,
                                    spectrum, spectrum_given, spectrum_ready, batch_pairs, spectrum_elements,
                                )
                            else:
                                _staged_conv[dtype, lcc, vbc, fused_threads(lcc, vbc), STAGED_PASS_TPB](
                                    ctx, result, signal, taps, rows, taps_rows, n_taps, lp, rows_geo,
                                    spectrum, spectrum_given, spectrum_ready, batch_pairs, spectrum_elements,
                                )
            return
    var whole = lp <= row_log
    var ls = min(lp, chunk_log) if chunk_log > 0 else (lp if whole else default_chunk_log)
    var threads = chunk_threads if chunk_threads > 0 else (GPU_ROW_TPB if ls == lp else GPU_CHUNK_TPB)
    var lo_bits = (lp + 1) // 2
    var total_pairs = rows * pairs
    var n_tw = (1 << lo_bits) + (1 << (lp - lo_bits))
    var kept = _tables_kept(spectrum_given, spectrum_elements, taps_rows, points, 2 * n_tw)
    var tw = ctx.enqueue_create_buffer[dtype](1 if kept else 2 * n_tw)
    var scratch_spectra = ctx.enqueue_create_buffer[dtype](1 if spectrum_given else 2 * taps_rows * points)
    var scratch_rows = max(total_pairs, taps_rows) if lp > ls else 0
    var x_re = ctx.enqueue_create_buffer[dtype](max(1, scratch_rows * points))
    var x_im = ctx.enqueue_create_buffer[dtype](max(1, scratch_rows * points))
    var scale = Scalar[dtype](1.0 / Float64(points))
    var tw_p = spectrum.unsafe_offset(table_offset(taps_rows, points)) if kept else tw.unsafe_ptr().unsafe_origin_cast[
        MutAnyOrigin
    ]()
    var g_re_p = spectrum if spectrum_given else scratch_spectra.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var g_im_p = g_re_p.unsafe_offset(taps_rows * points)
    var x_re_p = x_re.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var x_im_p = x_im.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()

    if not (kept and spectrum_ready):
        ctx.enqueue_function[_gpu_twiddles[dtype]](
            tw_p, Int64(lp), Int64(lo_bits),
            grid_dim=ceildiv(n_tw, GPU_PASS_TPB), block_dim=GPU_PASS_TPB,
        )
    # Each taps row is one block of its own: K samples from 0, no pairing.
    if not spectrum_ready:
        var spectra = Blocks(n_taps, n_taps, 0, 0, t, 1, 1, taps_rows)
        _transform_rows[dtype, True](
            ctx, x_re_p, x_im_p, taps, result, g_re_p, g_im_p, tw_p,
            taps_rows, lp, ls, lo_bits, spectra, scale, threads,
        )
    var geo = Blocks(length, signal_stride, pad, row_outputs, t, blocks, pairs, taps_rows)
    _transform_rows[dtype, False](
        ctx, x_re_p, x_im_p, signal, result, g_re_p, g_im_p, tw_p,
        total_pairs, lp, ls, lo_bits, geo, scale, threads,
    )
