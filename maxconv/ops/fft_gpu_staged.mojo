"""GPU path of the FFT op for float32 rows longer than the fused kernel's
(L > 2^FUSED_MAX_LOG): global passes, then one shared-memory chunk kernel,
written the way fft_gpu_fused.mojo is.

Global DIF passes of radix 2^_pass_bits(lp - lc, 5, i), then chunks of
2^lc points (a head of radix 2^(lc % vb), then radix V = 2^vb). The op's
chunk is a per-L table (staged_chunk_log, staged_values_log: H200
figures): 2^12 points of V = 16 (STAGED_CHUNK_LOG, STAGED_VALUES_LOG), the
old staged kernels' transform and spectrum order, so a spectrum kept by
either path serves the other; but V = 32 chunks of 2^13 at L = 2^18 and
2^22 and of 2^14 at 2^19, orders of their own. The op keeps one L's
spectra for one kernel (maxconv/engine.py keys them on the taps and the
block length). chunk_log = 13 (V = 16) is one more order, kept for
measurement; the harness's trial variants run V = 32 / 64 chunks of
2^12 .. 2^14 at any L.

- _staged_pass: one r-point butterfly per thread, as _gpu_pass, but 32-bit
  in-row index math (only the row base is 64-bit), each twiddle W_L^u read
  as two coalescing-free table loads (lo/hi tables of ~sqrt(L) entries, L1
  resident) and applied as soon as it is read (no r-wide twiddle arrays in
  registers), registers capped through nvvm.maxntid. The first forward pass
  reads the signal straight from the caller's rows: consecutive threads read
  consecutive samples (coalesced), zeros outside the row by one unsigned
  compare; the last inverse pass writes the outputs.
- _coop_pass: the radix-32 passes (coop_pass), each butterfly split over 4
  threads of 8 values with one shared-memory exchange (40-64 registers
  instead of 254; 3-7 % faster on the H200 at K = 32768 .. 2^20), same
  points, order and outputs as _staged_pass.
- _staged_chunk: the fused kernel's structure for a chunk of 2^lc points of
  a scratch row (lc a compile-time parameter, 2^(lc-vb) threads with
  V = 2^vb complex values each: 16, or 32 in the op's chunks of 2^13 and
  2^14, which save a global pass each way at L = 2^18 (chunk 2^13) and
  2^19 (2^14); V = 32 / 64 with chunks of 2^12 .. 2^14 in the trial
  variants; ptxas -v, sm_90: V = 32 chunks 106-128 registers, no spills,
  V = 64 212-255, spills 0-36 bytes; one barrier per shared-memory
  exchange, a warp's where it stays in one warp (_exchange_sync: 1 % faster
  at L = 2^16 .. 2^22 on the H200), the exact per-stage twiddle table of
  fused_tw_value[lc, vb]):
  stage 0 loads straight from the scratch rows (coalesced) and the last
  inverse stage stores straight back; the product with the taps' spectrum sits in registers
  between the last forward and first inverse stage.
- A call may run the block pairs in batches (`batch_pairs`), reusing one
  scratch of batch_pairs rows, so that the scratch stays in L2 between the
  passes of a batch (H200: 50 MB of L2).

The global passes' own twiddles are applied by the passes (DIF: after the
butterfly, forward; before it, inverse): a chunk is a plain 2^lc-point
transform.
"""

from max.gpu import block_dim, block_idx, thread_idx
from max.gpu.memory import AddressSpace, external_memory
from max.gpu.sync import barrier
from std.sys import size_of
from std.utils import StaticTuple

from .fft_common import _log2
from .fft_gpu import _bitrev, _reg_dif, _reg_dit, _rotate, _unit_root
from .fft_gpu_fused import (
    FUSED_VALUES_LOG,
    XPtr,
    _exchange_sync,
    _fused_center,
    _fused_middle,
    _fused_radix_log,
    _fused_span_log,
    _fused_stages,
    _kept_outputs,
    _apply_powers,
    _cmul,
    _powers_width,
    _slot_load,
    _slot_store,
    _twiddles,
    fused_cap_threads,
    fused_threads,
)


# The op's chunk at most L's: 2^STAGED_CHUNK_LOG points (2^(lc-4) threads, 16
# values each), the old kernels' chunk size and V, so the spectrum order
# is the old one; staged_chunk_log / staged_values_log say where not.
comptime STAGED_CHUNK_LOG = 12
comptime STAGED_VALUES_LOG = FUSED_VALUES_LOG
# The op runs this path for L > 2^FUSED_MAX_LOG; the harness reaches it
# from 2^STAGED_MIN_LOG with chunk_log 12 or 13.
comptime STAGED_MIN_LOG = 14


def staged_chunk_log(lp: Int) -> Int:
    """The log2 of the op's staged chunk at L = 2^lp (L > 2^FUSED_MAX_LOG).

    A table by L from the H200 figures (research/fft/results/
    gpu_h200_trials_2026-11-29.txt; ms a call at N = 2^24, taps' spectrum
    kept, twiddle tables in scratch, this chunk against 2^12 of V = 16):

        L     chunk, V   K: ms
        2^18  2^13, 32   65536: 0.254 / 0.307; 131072: 0.340 / 0.421
        2^19  2^14, 32   131072: 0.292 / 0.331; 65536: 0.260 / 0.299
        2^22  2^13, 32   2^20: 0.446 / 0.464
        other 2^12, 16   2^15, 2^16: V = 32 chunks lost (K = 16384, 2^16:
                         0.227 / 0.197); 2^20, 2^21 within 1 %

    At 2^18 and 2^19 the bigger chunk leaves 5 bits to the global passes,
    one pass each way instead of two; at 2^22 (two either way) V = 32's
    fewer shared-memory exchanges still gain 4 %. Not taken: 2^17 (V = 32
    chunks of 2^13 2.5-3 % faster at K = 16384 and 65536, neither of
    which the planner runs there) and 2^23 (2^14 chunks 8 % faster at
    K = 2^20, planned at 2^22): unmeasured at their planned K.
    """
    if lp == 18 or lp == 22:
        return 13
    if lp == 19:
        return 14
    return STAGED_CHUNK_LOG


def staged_values_log(lp: Int) -> Int:
    """The log2 of the values a thread of the op's staged chunk at L = 2^lp.

    32 in the chunks of 2^13 / 2^14 that staged_chunk_log picks, else 16.
    """
    return STAGED_VALUES_LOG if staged_chunk_log(lp) == STAGED_CHUNK_LOG else 5


def staged_chunk_cap_threads(lc: Int, vb: Int) -> Int:
    """The nvvm.maxntid of the op's chunk kernel.

    Chunks of V = 32 keep within 128 registers (512); chunks of V = 16 run
    uncapped (their own thread count: 68 registers at 2^12, three blocks an
    SM), 0.5-1.6 % faster on the H200 than within 64 (K = 16384 .. 131072
    wherever they run; gpu_h200_caps_ab_2026-11-29.txt).
    """
    if vb == FUSED_VALUES_LOG:
        return fused_threads(lc, vb)
    return max(fused_threads(lc, vb), fused_cap_threads(vb))


# Registers: a global pass of radix up to 32 (64 data registers) declared
# for 512 threads keeps within 128 (chunks: staged_chunk_cap_threads).
comptime STAGED_PASS_CAP_THREADS = 512
comptime STAGED_PASS_TPB = 256
comptime STAGED_PASS_BITS = 5


@always_inline
def _lohi_root[dtype: DType](tw: Pointer[Scalar[dtype], MutAnyOrigin], u: Int32, lo_bits: Int32) -> SIMD[dtype, 2]:
    """W_L^u (0 <= u < L) = hi[u >> lo_bits] * lo[u & mask] from the
    tables of _gpu_twiddles (lo first, 2^lo_bits entries, then hi)."""
    var lo = tw.unsafe_load[width=2, alignment=8](Int(2 * (u & ((Int32(1) << lo_bits) - 1))))
    var hi = tw.unsafe_load[width=2, alignment=8](Int((Int32(2) << lo_bits) + 2 * (u >> lo_bits)))
    return _cmul(hi, lo)


@always_inline
def _pass_twiddles[dtype: DType, rb: Int, inverse: Bool](
    tw: Pointer[Scalar[dtype], MutAnyOrigin],
    ustep: Int32,
    lo_bits: Int32,
    mut vr: SIMD[dtype, 1 << rb],
    mut vi: SIMD[dtype, 1 << rb],
):
    """Frequency p (register bitrev(p)) of a pass's butterfly times W_L^(p
    ustep) (inverse: its conjugate). Radix >= 8: only W^(2^b ustep) come
    from the tables (_lohi_root, two reads each), the others are their
    products (_apply_powers): 10 reads instead of 62 at radix 32."""
    comptime r = 1 << rb
    comptime if r < 8:
        comptime for p in range(1, r):
            _rotate[dtype, inverse, _bitrev(p, rb)](vr, vi, _lohi_root[dtype](tw, Int32(p) * ustep, lo_bits))
    else:
        comptime HB = _powers_width(rb)
        var hr = SIMD[dtype, HB](0)
        var hi = SIMD[dtype, HB](0)
        comptime for b in range(rb - 3):
            var w = _lohi_root[dtype](tw, Int32(8 << b) * ustep, lo_bits)
            hr[b] = w[0]
            hi[b] = w[1]
        _apply_powers[dtype, rb, inverse](
            _lohi_root[dtype](tw, ustep, lo_bits),
            _lohi_root[dtype](tw, 2 * ustep, lo_bits),
            _lohi_root[dtype](tw, 4 * ustep, lo_bits),
            hr, hi, vr, vi,
        )


@always_inline
def _read_pair[dtype: DType, n: Int, spectrum: Bool](
    source: Pointer[Scalar[dtype], MutAnyOrigin],
    pair: Int32,
    first: Int32,
    stride: Int32,
    length: Int32,
    signal_stride: Int64,
    pad: Int32,
    block_outputs: Int32,
    blocks: Int32,
    pairs: Int32,
    mut vr: SIMD[dtype, n],
    mut vi: SIMD[dtype, n],
):
    """Points first + q stride (q < n) of block pair `pair` from the source
    rows: its first block's into vr, its second's (if any; not for
    spectrum) into vi, zeros outside the row (one unsigned compare)."""
    var r_row = pair // pairs
    var b0 = 2 * (pair - r_row * pairs)
    var src = source.unsafe_offset(Int(r_row) * Int(signal_stride))
    var v0 = b0 * block_outputs - pad + first
    var n_in = length.cast[DType.uint32]()
    comptime for q in range(n):
        var v = v0 + Int32(q) * stride
        if v.cast[DType.uint32]() < n_in:
            vr[q] = src[unsafe_offset=Int(v)]
    comptime if not spectrum:
        if b0 + 1 < blocks:
            comptime for q in range(n):
                var v = v0 + block_outputs + Int32(q) * stride
                if v.cast[DType.uint32]() < n_in:
                    vi[q] = src[unsafe_offset=Int(v)]


@always_inline
def _write_pair[dtype: DType, n: Int](
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    pair: Int32,
    first: Int32,
    stride: Int32,
    row_outputs: Int32,
    block_outputs: Int32,
    blocks: Int32,
    pairs: Int32,
    vr: SIMD[dtype, n],
    vi: SIMD[dtype, n],
):
    """The mirror of _read_pair for the last inverse pass: points first +
    q stride that are outputs of block pair `pair` (inside the block's
    valid part and the result row) written from vr (first block) and vi
    (second, if any)."""
    var r_row = pair // pairs
    var b0 = 2 * (pair - r_row * pairs)
    var t_blk = block_outputs
    var at = b0 * t_blk
    var dst = result.unsafe_offset(Int(r_row) * Int(row_outputs))
    var room0 = _kept_outputs(t_blk, row_outputs, at)
    comptime for q in range(n):
        var p = first + Int32(q) * stride
        if p < room0:
            dst[unsafe_offset=Int(at + p)] = vr[q]
    if b0 + 1 < blocks:
        var room1 = _kept_outputs(t_blk, row_outputs, at + t_blk)
        comptime for q in range(n):
            var p = first + Int32(q) * stride
            if p < room1:
                dst[unsafe_offset=Int(at + t_blk + p)] = vi[q]


@always_inline
def _staged_pass_body[dtype: DType, rb: Int, inverse: Bool, io: Bool, spectrum: Bool](
    e: Int32,
    re: Pointer[Scalar[dtype], MutAnyOrigin],
    im: Pointer[Scalar[dtype], MutAnyOrigin],
    source: Pointer[Scalar[dtype], MutAnyOrigin],
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    tw: Pointer[Scalar[dtype], MutAnyOrigin],
    n_rows: Int32,
    pair0: Int32,
    log_points: Int32,
    log_block: Int32,
    lo_bits: Int32,
    length: Int32,
    signal_stride: Int64,
    pad: Int32,
    row_outputs: Int32,
    block_outputs: Int32,
    blocks: Int32,
    pairs: Int32,
):
    """Thread e of _staged_pass: one radix-2^rb DIF butterfly (inverse: its
    mirror) of a stage over blocks of 2^log_block points of n_rows scratch
    rows.

    Scratch row i is block pair pair0 + i (spectrum: taps row i, one block
    from sample 0, pad 0). io: the first forward pass reads the points from
    the source; the last inverse pass writes the outputs. Rows of up to
    2^31 points, grids of up to 2^31 threads.
    """
    comptime r = 1 << rb
    var lp = log_points
    var per_row_log = lp - Int32(rb)
    var row = e >> per_row_log
    if row >= n_rows:
        return
    var k = e & ((Int32(1) << per_row_log) - 1)
    var lb = log_block
    var lm = lb - Int32(rb)
    var m = Int32(1) << lm
    var j = k & (m - 1)
    var offset = ((k >> lm) << lb) + j
    var row_re = re.unsafe_offset(Int(row) << Int(lp))
    var row_im = im.unsafe_offset(Int(row) << Int(lp))
    # W_L^(p * (j << (lp - lb))) for frequency p of this butterfly.
    var ustep = j << (lp - lb)
    var vr = SIMD[dtype, r](0)
    var vi = SIMD[dtype, r](0)
    comptime if not inverse:
        comptime if io:
            _read_pair[dtype, r, spectrum](
                source, pair0 + row, offset, m, length, signal_stride, pad, block_outputs, blocks, pairs, vr, vi
            )
        else:
            comptime for q in range(r):
                vr[q] = row_re[unsafe_offset=Int(offset + Int32(q) * m)]
                vi[q] = row_im[unsafe_offset=Int(offset + Int32(q) * m)]
        _reg_dif[dtype, r](vr, vi)
        if j != 0:
            _pass_twiddles[dtype, rb, False](tw, ustep, lo_bits, vr, vi)
        comptime for p in range(r):
            comptime i = _bitrev(p, rb)
            row_re[unsafe_offset=Int(offset + Int32(p) * m)] = vr[i]
            row_im[unsafe_offset=Int(offset + Int32(p) * m)] = vi[i]
    else:
        comptime for p in range(r):
            comptime i = _bitrev(p, rb)
            vr[i] = row_re[unsafe_offset=Int(offset + Int32(p) * m)]
            vi[i] = row_im[unsafe_offset=Int(offset + Int32(p) * m)]
        if j != 0:
            _pass_twiddles[dtype, rb, True](tw, ustep, lo_bits, vr, vi)
        _reg_dit[dtype, r](vr, vi)
        comptime if io:
            _write_pair[dtype, r](result, pair0 + row, offset, m, row_outputs, block_outputs, blocks, pairs, vr, vi)
        else:
            comptime for q in range(r):
                row_re[unsafe_offset=Int(offset + Int32(q) * m)] = vr[q]
                row_im[unsafe_offset=Int(offset + Int32(q) * m)] = vi[q]


@__llvm_metadata(`nvvm.maxntid`=StaticTuple[Int32, 1](Int32(max_threads)))
def _staged_pass[dtype: DType, rb: Int, inverse: Bool, io: Bool, spectrum: Bool, max_threads: Int](
    re: Pointer[Scalar[dtype], MutAnyOrigin],
    im: Pointer[Scalar[dtype], MutAnyOrigin],
    source: Pointer[Scalar[dtype], MutAnyOrigin],
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    tw: Pointer[Scalar[dtype], MutAnyOrigin],
    n_rows: Int32,
    pair0: Int32,
    log_points: Int32,
    log_block: Int32,
    lo_bits: Int32,
    length: Int32,
    signal_stride: Int64,
    pad: Int32,
    row_outputs: Int32,
    block_outputs: Int32,
    blocks: Int32,
    pairs: Int32,
):
    """One radix-2^rb DIF stage (inverse: its mirror) over blocks of
    2^log_block points of n_rows scratch rows, one butterfly per thread
    (_staged_pass_body). Scratch row i is block pair pair0 + i (spectrum:
    taps row pair0 + i). max_threads: see STAGED_PASS_CAP_THREADS."""
    var e = Int32(Int(block_idx.x)) * Int32(Int(block_dim.x)) + Int32(Int(thread_idx.x))
    _staged_pass_body[dtype, rb, inverse, io, spectrum](
        e, re, im, source, result, tw, n_rows, pair0, log_points, log_block, lo_bits, length,
        signal_stride, pad, row_outputs, block_outputs, blocks, pairs,
    )


# Global passes of radix 2^COOP_MIN_BITS and up split each butterfly over
# G = radix / 8 threads of 8 values (_coop_pass): a radix-32 pass holding a
# whole butterfly a thread needed 254 registers, one block of 8 warps an SM,
# and moved 44-50 % of the H200's DRAM peak (ncu, L = 2^18 and 2^19); radix
# 16 at 128 registers 57-65 %. Radix 8 and below keep _staged_pass.
comptime COOP_VALUES_LOG = 3
comptime COOP_TPB = 128
comptime COOP_MIN_BITS = 5
# nvvm.maxntid of _coop_pass: 64 registers a thread.
comptime COOP_CAP_THREADS = 1024
# Shared words of _coop_pass's re (then im) rows.
comptime COOP_WORDS = (1 << COOP_VALUES_LOG) * COOP_TPB


def coop_smem_bytes[dtype: DType]() -> Int:
    """_coop_pass's dynamic shared memory: re and im rows."""
    return 2 * COOP_WORDS * size_of[dtype]()


def coop_pass(bits: Int) -> Bool:
    """Whether the global pass of radix 2^bits runs as _coop_pass."""
    return bits >= COOP_MIN_BITS


def coop_blocks(n_rows: Int, lp: Int, bits: Int) -> Int:
    """_coop_pass's grid: 2^(lp - bits) butterflies a row, 2^cb a block."""
    return (n_rows << (lp - bits)) >> (_log2(COOP_TPB) - (bits - COOP_VALUES_LOG))


@always_inline
def _coop_inner_twiddles[dtype: DType, rb: Int, inverse: Bool](
    g: Int32, mut vr: SIMD[dtype, 1 << COOP_VALUES_LOG], mut vi: SIMD[dtype, 1 << COOP_VALUES_LOG]
):
    """Frequency s (register bitrev(s)) of thread group g's 8-point DFT
    times W_R^(g s) (inverse: its conjugate), R = 2^rb: compile-time
    constants, one branch a warp (g is uniform in a warp)."""
    comptime ub = COOP_VALUES_LOG
    comptime U = 1 << ub
    comptime R = 1 << rb
    comptime G = R // U
    comptime for gg in range(1, G):
        if g == Int32(gg):
            comptime for s in range(1, U):
                comptime w = _unit_root((gg * s) % R, R)
                _rotate[dtype, inverse, _bitrev(s, ub)](
                    vr, vi, SIMD[dtype, 2](Scalar[dtype](w[0]), Scalar[dtype](w[1]))
                )


@always_inline
def _coop_root[dtype: DType, G: Int, t: Int](base: SIMD[dtype, 2], wp: SIMD[dtype, 2 * G]) -> SIMD[dtype, 2]:
    """base * W^(U t ustep), the powers' pairs in wp (t = 0: base)."""
    comptime if t == 0:
        return base
    else:
        return _cmul(base, SIMD[dtype, 2](wp[2 * t], wp[2 * t + 1]))


@always_inline
def _coop_phase[
    dtype: DType, rb: Int, inverse: Bool, io: Bool, spectrum: Bool, second: Bool, space: AddressSpace
](
    blk: Int32,
    tid: Int32,
    sr: XPtr[dtype, space],
    si: XPtr[dtype, space],
    re: Pointer[Scalar[dtype], MutAnyOrigin],
    im: Pointer[Scalar[dtype], MutAnyOrigin],
    source: Pointer[Scalar[dtype], MutAnyOrigin],
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    tw: Pointer[Scalar[dtype], MutAnyOrigin],
    n_rows: Int32,
    pair0: Int32,
    log_points: Int32,
    log_block: Int32,
    lo_bits: Int32,
    length: Int32,
    signal_stride: Int64,
    pad: Int32,
    row_outputs: Int32,
    block_outputs: Int32,
    blocks: Int32,
    pairs: Int32,
):
    """Thread tid of block blk of _coop_pass, before (second = False) or
    after its barrier: the radix-R butterflies of _staged_pass_body (same
    points, same order, same outputs), R = 2^rb = G * U with U = 8.

    Element q = g + G u of butterfly c of the block is read by thread
    (g, c) (tid = g * C + c), frequency f = s + U t written by thread
    (s // (U / G), c): X_f = sum_g W_G^(g t) W_R^(g s) sum_u W_U^(u s) x_q.
    Forward: the U-point DFTs and W_R^(g s) (first phase), the shared
    rows [s][g][c], the G-point DFTs and W_L^(f ustep) (second); inverse:
    the mirror. Warps read and write 32 consecutive points of one row."""
    comptime ub = COOP_VALUES_LOG
    comptime U = 1 << ub
    comptime gb = rb - ub
    comptime G = 1 << gb
    comptime H = U // G
    comptime cb = _log2(COOP_TPB) - gb
    comptime C = 1 << cb
    var g = tid >> Int32(cb)
    var c = tid & Int32(C - 1)
    var lp = log_points
    var per_row_log = lp - Int32(rb)
    var e = blk * Int32(C) + c
    var row = e >> per_row_log
    if row >= n_rows:
        return
    var k = e & ((Int32(1) << per_row_log) - 1)
    var lb = log_block
    var lm = lb - Int32(rb)
    var m = Int32(1) << lm
    var j = k & (m - 1)
    var offset = ((k >> lm) << lb) + j
    var row_re = re.unsafe_offset(Int(row) << Int(lp))
    var row_im = im.unsafe_offset(Int(row) << Int(lp))
    # The U side: thread group g's points q = g + G u and the U-point DFT.
    comptime if second == inverse:
        var vr = SIMD[dtype, U](0)
        var vi = SIMD[dtype, U](0)
        comptime if not inverse:
            comptime if io:
                _read_pair[dtype, U, spectrum](
                    source, pair0 + row, offset + g * m, Int32(G) * m, length, signal_stride, pad, block_outputs,
                    blocks, pairs, vr, vi,
                )
            else:
                comptime for u in range(U):
                    var at = Int(offset + (g + Int32(u * G)) * m)
                    vr[u] = row_re[unsafe_offset=at]
                    vi[u] = row_im[unsafe_offset=at]
            _reg_dif[dtype, U](vr, vi)
            _coop_inner_twiddles[dtype, rb, False](g, vr, vi)
            comptime for s in range(U):
                var at = Int((((Int32(s) << Int32(gb)) + g) << Int32(cb)) + c)
                sr[unsafe_offset=at] = vr[_bitrev(s, ub)]
                si[unsafe_offset=at] = vi[_bitrev(s, ub)]
        else:
            comptime for s in range(U):
                var at = Int((((Int32(s) << Int32(gb)) + g) << Int32(cb)) + c)
                vr[_bitrev(s, ub)] = sr[unsafe_offset=at]
                vi[_bitrev(s, ub)] = si[unsafe_offset=at]
            _coop_inner_twiddles[dtype, rb, True](g, vr, vi)
            _reg_dit[dtype, U](vr, vi)
            comptime if io:
                _write_pair[dtype, U](
                    result, pair0 + row, offset + g * m, Int32(G) * m, row_outputs, block_outputs, blocks, pairs,
                    vr, vi,
                )
            else:
                comptime for u in range(U):
                    var at = Int(offset + (g + Int32(u * G)) * m)
                    row_re[unsafe_offset=at] = vr[u]
                    row_im[unsafe_offset=at] = vi[u]
    else:
        # The G side: frequencies f = s0 + i + U t (i < H, t < G), their
        # G-point DFTs and the pass's twiddles W_L^(f ustep): base_i =
        # W^((s0 + i) ustep) read, W^(U t ustep) powers of one read.
        var ustep = j << (lp - lb)
        var s0 = g * Int32(H)
        var wu = _lohi_root[dtype](tw, Int32(U) * ustep, lo_bits)
        var wp = SIMD[dtype, 2 * G](0)
        var power = wu
        comptime for t in range(1, G):
            comptime if t > 1:
                power = _cmul(power, wu)
            wp[2 * t] = power[0]
            wp[2 * t + 1] = power[1]
        comptime for i in range(H):
            var base = _lohi_root[dtype](tw, (s0 + Int32(i)) * ustep, lo_bits)
            var br = SIMD[dtype, G](0)
            var bi = SIMD[dtype, G](0)
            comptime if not inverse:
                comptime for gg in range(G):
                    var at = Int((((s0 + Int32(i)) << Int32(gb)) + Int32(gg)) << Int32(cb)) + Int(c)
                    br[gg] = sr[unsafe_offset=at]
                    bi[gg] = si[unsafe_offset=at]
                _reg_dif[dtype, G](br, bi)
                comptime for t in range(G):
                    _rotate[dtype, False, _bitrev(t, gb)](br, bi, _coop_root[dtype, G, t](base, wp))
                    var at = Int(offset + (s0 + Int32(i + U * t)) * m)
                    row_re[unsafe_offset=at] = br[_bitrev(t, gb)]
                    row_im[unsafe_offset=at] = bi[_bitrev(t, gb)]
            else:
                comptime for t in range(G):
                    var at = Int(offset + (s0 + Int32(i + U * t)) * m)
                    br[_bitrev(t, gb)] = row_re[unsafe_offset=at]
                    bi[_bitrev(t, gb)] = row_im[unsafe_offset=at]
                    _rotate[dtype, True, _bitrev(t, gb)](br, bi, _coop_root[dtype, G, t](base, wp))
                _reg_dit[dtype, G](br, bi)
                comptime for gg in range(G):
                    var at = Int((((s0 + Int32(i)) << Int32(gb)) + Int32(gg)) << Int32(cb)) + Int(c)
                    sr[unsafe_offset=at] = br[gg]
                    si[unsafe_offset=at] = bi[gg]


@__llvm_metadata(`nvvm.maxntid`=StaticTuple[Int32, 1](Int32(max_threads)))
def _coop_pass[dtype: DType, rb: Int, inverse: Bool, io: Bool, spectrum: Bool, max_threads: Int](
    re: Pointer[Scalar[dtype], MutAnyOrigin],
    im: Pointer[Scalar[dtype], MutAnyOrigin],
    source: Pointer[Scalar[dtype], MutAnyOrigin],
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    tw: Pointer[Scalar[dtype], MutAnyOrigin],
    n_rows: Int32,
    pair0: Int32,
    log_points: Int32,
    log_block: Int32,
    lo_bits: Int32,
    length: Int32,
    signal_stride: Int64,
    pad: Int32,
    row_outputs: Int32,
    block_outputs: Int32,
    blocks: Int32,
    pairs: Int32,
):
    """_staged_pass's stage with each butterfly split over G threads
    (_coop_phase), COOP_TPB threads a block, one shared-memory exchange."""
    var sr = external_memory[Scalar[dtype], address_space = AddressSpace.SHARED, alignment=16]()
    var si = sr.unsafe_offset(COOP_WORDS)
    var blk = Int32(Int(block_idx.x))
    var tid = Int32(Int(thread_idx.x))
    _coop_phase[dtype, rb, inverse, io, spectrum, False, AddressSpace.SHARED](
        blk, tid, sr, si, re, im, source, result, tw, n_rows, pair0, log_points, log_block, lo_bits, length,
        signal_stride, pad, row_outputs, block_outputs, blocks, pairs,
    )
    barrier()
    _coop_phase[dtype, rb, inverse, io, spectrum, True, AddressSpace.SHARED](
        blk, tid, sr, si, re, im, source, result, tw, n_rows, pair0, log_points, log_block, lo_bits, length,
        signal_stride, pad, row_outputs, block_outputs, blocks, pairs,
    )


@always_inline
def _staged_chunk_offsets[spectrum: Bool](
    c: Int32, lp: Int32, lc: Int, pair0: Int32, pairs: Int32, taps_rows: Int32
) -> Tuple[Int, Int]:
    """(scratch offset, spectrum offset) of chunk c: 2^lc points of scratch
    row c >> (lp - lc); the spectrum of channel ch, chunk ci sits at
    (ch << lp) + (ci << lc)."""
    var above = lp - Int32(lc)
    var row = c >> above
    var ci = c & ((Int32(1) << above) - 1)
    var channel: Int
    comptime if spectrum:
        channel = Int(pair0 + row)
    else:
        channel = Int((pair0 + row) // pairs) if taps_rows > 1 else 0
    return ((Int(row) << Int(lp)) + (Int(ci) << lc), (channel << Int(lp)) + (Int(ci) << lc))


@always_inline
def _chunk_first[dtype: DType, lc: Int, vb: Int, space: AddressSpace, derive: Bool = True](
    t: Int32,
    x: XPtr[dtype, space],
    tw: Pointer[Scalar[dtype], MutAnyOrigin],
    src_re: Pointer[Scalar[dtype], MutAnyOrigin],
    src_im: Pointer[Scalar[dtype], MutAnyOrigin],
):
    """Thread t: load points t + T q of the chunk (T = 2^(lc-vb)) from the
    scratch rows (coalesced), run forward stage 0 of the 2^lc-point
    transform (as _fused_first), store to the exchange rows."""
    comptime V = 1 << vb
    comptime L = 1 << lc
    comptime T = L >> vb
    comptime rl0 = _fused_radix_log(lc, 0, vb)
    comptime r0 = 1 << rl0
    comptime c0 = V // r0
    comptime lm0 = _fused_span_log(lc, 0, vb)
    var vr = SIMD[dtype, V](0)
    var vi = SIMD[dtype, V](0)
    var at_re = src_re.unsafe_offset(Int(t))
    var at_im = src_im.unsafe_offset(Int(t))
    comptime for q in range(V):
        vr[q] = at_re[unsafe_offset = T * q]
        vi[q] = at_im[unsafe_offset = T * q]
    comptime for c in range(c0):
        var ar = SIMD[dtype, r0](0)
        var ai = SIMD[dtype, r0](0)
        comptime for p in range(r0):
            ar[p] = vr[c + c0 * p]
            ai[p] = vi[c + c0 * p]
        _reg_dif[dtype, r0](ar, ai)
        _twiddles[dtype, rl0, False, derive](tw, Int32(T * c) + t, 1 << lm0, ar, ai)
        comptime for p in range(r0):
            comptime i = _bitrev(p, rl0)
            vr[c + c0 * p] = ar[i]
            vi[c + c0 * p] = ai[i]
    var pt = t + (t >> Int32(vb))
    comptime for q in range(V):
        comptime o = T * q + ((T * q) >> vb)
        _slot_store(x, pt + Int32(o), vr[q], vi[q])


@always_inline
def _chunk_last[dtype: DType, lc: Int, vb: Int, space: AddressSpace, derive: Bool = True](
    t: Int32,
    x: XPtr[dtype, space],
    tw: Pointer[Scalar[dtype], MutAnyOrigin],
    dst_re: Pointer[Scalar[dtype], MutAnyOrigin],
    dst_im: Pointer[Scalar[dtype], MutAnyOrigin],
):
    """Thread t: inverse stage 0 (as _fused_last) from slots t + T q, then
    the points back to the scratch rows (coalesced)."""
    comptime V = 1 << vb
    comptime L = 1 << lc
    comptime T = L >> vb
    comptime rl0 = _fused_radix_log(lc, 0, vb)
    comptime r0 = 1 << rl0
    comptime c0 = V // r0
    comptime lm0 = _fused_span_log(lc, 0, vb)
    var pt = t + (t >> Int32(vb))
    var vr = SIMD[dtype, V](0)
    var vi = SIMD[dtype, V](0)
    comptime for q in range(V):
        comptime o = T * q + ((T * q) >> vb)
        var v = _slot_load(x, pt + Int32(o))
        vr[q] = v[0]
        vi[q] = v[1]
    comptime for c in range(c0):
        var ar = SIMD[dtype, r0](0)
        var ai = SIMD[dtype, r0](0)
        comptime for p in range(r0):
            comptime i = _bitrev(p, rl0)
            ar[i] = vr[c + c0 * p]
            ai[i] = vi[c + c0 * p]
        _twiddles[dtype, rl0, True, derive](tw, Int32(T * c) + t, 1 << lm0, ar, ai)
        _reg_dit[dtype, r0](ar, ai)
        comptime for q in range(r0):
            vr[c + c0 * q] = ar[q]
            vi[c + c0 * q] = ai[q]
    var at_re = dst_re.unsafe_offset(Int(t))
    var at_im = dst_im.unsafe_offset(Int(t))
    comptime for q in range(V):
        at_re[unsafe_offset = T * q] = vr[q]
        at_im[unsafe_offset = T * q] = vi[q]


@__llvm_metadata(`nvvm.maxntid`=StaticTuple[Int32, 1](Int32(max_threads)))
def _staged_chunk[dtype: DType, lc: Int, vb: Int, spectrum: Bool, max_threads: Int, lean: Bool = True](
    re: Pointer[Scalar[dtype], MutAnyOrigin],
    im: Pointer[Scalar[dtype], MutAnyOrigin],
    g_re: Pointer[Scalar[dtype], MutAnyOrigin],
    g_im: Pointer[Scalar[dtype], MutAnyOrigin],
    tw: Pointer[Scalar[dtype], MutAnyOrigin],
    log_points: Int32,
    pair0: Int32,
    pairs: Int32,
    taps_rows: Int32,
    scale: Scalar[dtype],
):
    """Chunk `block_idx.x` (2^lc points of scratch row block_idx.x >> (lp -
    lc)) through every shared-memory stage, 2^(lc-vb) threads of 2^vb
    values (staged_values_log for the op): forward, then scale * conj(X) to the spectrum rows (spectrum: scratch row i is
    taps row pair0 + i) or the product with them (scratch row i is block
    pair pair0 + i), inverse, back in place.

    The spectrum of channel c, chunk ci sits at (c << lp) + (ci << lc), in
    the order of the old _gpu_chunk when lc is its chunk log and V = 16.
    max_threads: see staged_chunk_cap_threads. lean: warp barriers where
    an exchange stays in one warp (fft_gpu_fused._exchange_sync) and
    derived twiddles (_twiddles).
    """
    comptime stages = _fused_stages(lc, vb)
    var x = external_memory[Scalar[dtype], address_space = AddressSpace.SHARED, alignment=16]()
    var t = Int32(Int(thread_idx.x))
    var at = _staged_chunk_offsets[spectrum](Int32(Int(block_idx.x)), log_points, lc, pair0, pairs, taps_rows)
    var row_re = re.unsafe_offset(at[0])
    var row_im = im.unsafe_offset(at[0])
    var g_off = at[1]
    _chunk_first[dtype, lc, vb, AddressSpace.SHARED, lean](t, x, tw, row_re, row_im)
    barrier()
    comptime for s in range(1, stages - 1):
        _fused_middle[dtype, lc, vb, s, False, AddressSpace.SHARED, lean](t, x, tw)
        _exchange_sync[lc, vb, s, lean]()
    _fused_center[dtype, lc, vb, spectrum, AddressSpace.SHARED](
        t, x, g_re.unsafe_offset(g_off), g_im.unsafe_offset(g_off), 0, scale
    )
    comptime if not spectrum:
        _exchange_sync[lc, vb, stages - 2, lean]()
        comptime for s_rev in range(1, stages - 1):
            _fused_middle[dtype, lc, vb, stages - 1 - s_rev, True, AddressSpace.SHARED, lean](t, x, tw)
            _exchange_sync[lc, vb, stages - 2 - s_rev, lean]()
        _chunk_last[dtype, lc, vb, AddressSpace.SHARED, lean](t, x, tw, row_re, row_im)
