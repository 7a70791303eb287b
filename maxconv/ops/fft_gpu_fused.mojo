"""GPU path of the FFT op for float32 rows of up to 2^FUSED_MAX_LOG points:
one kernel per block pair, everything in registers and shared memory.

Each thread holds V = 2^vb complex values, vb a compile-time parameter.
The op's kernels (fused_values_log) use V = 16 up to L = 4096, which the
text below describes, and V = 32 at L = 8192 and 16384 (H200, N = 2^24, ms
a call, taps' spectrum kept, twiddle tables in scratch unless "kept",
research/fft/results/gpu_h200_trials_2026-11-29.txt: K = 2048 at L = 8192
0.112 against V = 16 0.131, and 0.122 kept at the former L = 4096; K =
4096 at 16384 0.138 against V = 16 at 8192 0.172 kept; K = 8192 at 16384
0.176 against the staged path at 32768 0.190 kept / 65536 0.178; at L =
4096 V = 16 stays: K = 1024 0.096 against V = 32 0.104). The harness's
trial variants (fft_gpu_launch: fft_conv_gpu[trials=True]) also run V = 32
and 64 at L = 2^12 .. 2^14 and V = 16 at 2^13 and 2^14 (at 2^14: 1024
threads, 64 registers, 136 KB of shared memory, one block per SM). With V
= 2^vb the stages are radix V after a head of radix 2^(lp % vb), lp >= 2
vb, and the pad is one slot per V points, conflict-free by the same
argument as for 16 (a middle stage's stride is a multiple of V, so a
half-warp reads 16 consecutive slots; the last stage's slots (V + 1) t + q
of a half-warp start in banks 2 t mod 32, all different). A bigger V needs
fewer exchanges (L = 8192 and 16384: 2 a direction at V = 32 against 3 at
16; L = 4096: 1 at V = 64 against 2)
at more registers (ptxas -v, sm_90, capped by fused_cap_threads: V = 32
128 registers, spills 0-4 bytes; V = 64 207-255, spills 0-8 bytes; V = 16
at L = 2^14 64, 16-20 bytes) and fewer threads, and its spectrum order is
its own: only V = 16 shares the old kernels' (the op keeps one L's spectra
for one kernel: maxconv/engine.py keys them on the taps and the block
length).

At V = 16, the same transform as _gpu_chunk[direct=True] in fft_gpu.mojo
(decimation in frequency, stages of radix 2^(lp % 4) first then radix 16,
outputs in the same digit-reversed order, so a spectrum kept by either
kernel serves the other), laid out for speed:

- L = 2^lp is a compile-time parameter: every stride, shift and loop bound
  is a constant, and in-row index math is 32-bit (Int32).
- Each of the L/16 threads holds 16 complex values in registers. The first
  forward stage (stride L/r0 >= L/16) needs only the values a thread loads
  itself, x[t + (L/16) q]: straight from the signal row, coalesced (a warp
  reads 32 consecutive samples per load), zeros outside the row with one
  unsigned compare. The last inverse stage mirrors it into the result.
- Between stages the values go through shared memory, one (re, im) slot
  of 8 bytes a point (one load or store instruction a value, half the
  shared-memory instructions of split re and im rows), one pad slot per
  16 points: bank-conflict free at every stride used (an 8-byte access is
  served a half-warp at a time).
  A stage reads and writes the same slots in place, so one barrier per
  exchange suffices: lp = 12 runs 3 radix-16 stages with 2 exchanges each
  way, lp = 13 one radix-2 and 3 radix-16. An exchange whose points stay
  in one warp waits with a warp barrier (_exchange_sync: at lp = 12 the
  one between stages 1 and 2 each way, so 2 block barriers a pair, not 4;
  3-4 % faster at every fused L on the H200, 1 % on the staged chunks,
  research/fft/results/gpu_h200_warp_sync_2026-11-29.txt).
- The last forward stage (16 consecutive points per thread), the product
  with the taps' spectrum and the first inverse stage run in registers
  with no exchange.
- Twiddles come from one exact table per L (rounded from float64), laid
  out per stage as [p - 1][j] for W_{r m}^(p j): a thread reads the
  entries of p = 1, 2, 4, 8 of a stage (coalesced 8-byte loads from
  L1/L2) and forms the other 11 as products (_twiddles).
"""

from max.gpu import block_dim, block_idx, thread_idx
from max.gpu.memory import AddressSpace, external_memory
from max.gpu.sync import barrier, syncwarp
from std.sys import size_of
from std.utils import StaticTuple

from .fft_common import _log2
from .fft_gpu import _bitrev, _reg_dif, _reg_dit, _rotate, _unit_root


# Rows of 2^FUSED_MIN_LOG .. 2^FUSED_MAX_LOG points run through _gpu_fused
# with 2^(lp - vb) threads per block (V = 16: 16 .. 256 at L <= 4096; V =
# 32: 256 at 8192, 512 at 16384).
comptime FUSED_MIN_LOG = 8
comptime FUSED_MAX_LOG = 14
comptime FUSED_TW_TPB = 256
# With max_threads = FUSED_CAP_THREADS, ptxas keeps _gpu_fused within 64
# registers (sm_90, ptxas -v on its PTX: 56-64 registers, spills of 0-16
# bytes), so 1024 threads fit an SM (L = 8192: two blocks, not one at the
# 90 registers it takes uncapped; L = 4096: four, not three at 71).
comptime FUSED_CAP_THREADS = 1024
# log2 of the values a thread holds (V = 16), the default up to L = 4096
# and the staged path's 2^12-point chunks'.
comptime FUSED_VALUES_LOG = 4
# From L = 2^FUSED_V32_FROM_LOG on, the op's fused kernel holds 32 values a
# thread (fused_values_log).
comptime FUSED_V32_FROM_LOG = 13


def fused_values_log(lp: Int) -> Int:
    """The log2 of the values a thread of the op's fused kernel at
    L = 2^lp: 16 (FUSED_VALUES_LOG) up to 4096, 32 at 8192 and 16384
    (FUSED_V32_FROM_LOG), where 2 shared-memory exchanges a direction
    replace 3. H200 (gpu_h200_trials_2026-11-29.txt, ms, N = 2^24, taps'
    spectrum kept): L = 8192 V = 32 0.112 / V = 16 0.131 (K = 2048), 0.148 /
    0.176 (K = 4096); L = 16384 V = 32 0.138 (K = 4096) and 0.176 (8192)
    against V = 16 0.160 / 0.200 (trial fused16k); L = 4096 V = 16 0.086 /
    V = 32 0.094 (K = 512). Its spectrum order is that of the old kernels
    only at 16."""
    return 5 if lp >= FUSED_V32_FROM_LOG else FUSED_VALUES_LOG


def fused_cap_threads(vb: Int) -> Int:
    """The nvvm.maxntid of a capped kernel with 2^vb values a thread: 4
    registers a value (64 at V = 16, 128 at 32, 255 at 64)."""
    return FUSED_CAP_THREADS >> (vb - FUSED_VALUES_LOG)


# Up to L = 2^FUSED_FREE_MAX_LOG the op's fused kernel runs uncapped; from
# 4096 on it is capped (fused_cap_threads). With one 8-byte shared-memory
# slot a point and per-thread base addresses the L = 4096 kernel needs 71
# registers uncapped (three blocks an SM) and 64 capped with no spills (four):
# capped ran 2.5-3.5 % faster on the H200 (N = 2^24, ms a call / in a loop,
# tables and spectrum kept: K = 1024 0.0698 / 0.0614 against 0.0702 /
# 0.0630, 1536 0.0756 / 0.0687 against 0.0781 / 0.0711, 2048 0.0887 /
# 0.0813 against 0.0913 / 0.0843; research/fft/results/
# gpu_h200_caps_ab_2026-11-29.txt). From 8192 on capping wins by more (K =
# 2048 at 8192: 0.103 against 0.127 uncapped).
comptime FUSED_FREE_MAX_LOG = 11


def fused_max_threads(lp: Int, vb: Int) -> Int:
    """The nvvm.maxntid of the op's fused kernel at L = 2^lp: its own
    thread count (uncapped) up to FUSED_FREE_MAX_LOG, else capped
    (fused_cap_threads)."""
    var threads = fused_threads(lp, vb)
    return threads if lp <= FUSED_FREE_MAX_LOG else max(threads, fused_cap_threads(vb))


def _fused_stages(lp: Int, vb: Int) -> Int:
    """Forward stages of an L = 2^lp transform with 2^vb values a thread: a
    head of radix 2^(lp % vb), then radix 2^vb."""
    return lp // vb + (1 if lp % vb != 0 else 0)


def _fused_radix_log(lp: Int, s: Int, vb: Int) -> Int:
    """log2 of the radix of forward stage s."""
    if s == 0 and lp % vb != 0:
        return lp % vb
    return vb


def _fused_span_log(lp: Int, s: Int, vb: Int) -> Int:
    """log2 of the stride m of forward stage s (blocks of radix * m points)."""
    var lm = lp
    for i in range(s + 1):
        lm -= _fused_radix_log(lp, i, vb)
    return lm


def _fused_tw_offset(lp: Int, s: Int, vb: Int) -> Int:
    """First twiddle-table entry of stage s: stage i holds (r_i - 1) * m_i."""
    var off = 0
    for i in range(s):
        off += ((1 << _fused_radix_log(lp, i, vb)) - 1) << _fused_span_log(lp, i, vb)
    return off


def fused_tw_entries(lp: Int, vb: Int) -> Int:
    """Complex entries of the twiddle table for L = 2^lp (the last stage's
    V - 1 ones included)."""
    return _fused_tw_offset(lp, _fused_stages(lp, vb), vb)


def _exchange_in_warp(lp: Int, vb: Int, s: Int) -> Bool:
    """Whether the shared-memory exchange between forward stages s and s + 1
    (and its mirror in the inverse) stays inside one warp. For s >= 1 the
    points of a stage-s block (radix * m_s of them, m_s its stride) are
    read and written, in stage s and in stage s + 1 alike (the center
    included), by the m_s consecutive threads with the same t >> log2(m_s):
    m_s <= 32 keeps them in one warp. Stage 0's block is the whole row.
    The kernel must be at least a warp wide (a syncwarp's mask is full)."""
    return s >= 1 and _fused_span_log(lp, s, vb) <= 5 and lp - vb >= 5


@always_inline
def _exchange_sync[lp: Int, vb: Int, s: Int, lean: Bool]():
    """Wait for the exchange between forward stages s and s + 1: a warp's
    barrier where it stays in one warp (_exchange_in_warp) and `lean`, the
    thread block's otherwise. With 3 stages (L = 4096 at V = 16, 8192 and
    16384 at V = 32) two of the four barriers a block pair become warp
    barriers, so a warp goes on while others of its block are still in
    the previous stage (H200, N = 2^24, ms, taps' spectrum kept, against
    a block barrier at every exchange in the same run, both with table
    twiddles: K = 1024 at L = 4096 0.085 / 0.089, 2048
    at 8192 0.104 / 0.109, 4096 at 16384 0.128 / 0.131, 8192 at 16384
    0.160 / 0.166; gpu_h200_warp_sync_2026-11-29.txt. Unchecked loads and
    stores for pairs inside the row, tried with it, made V = 32 7-11 %
    slower: gpu_h200_lean_2026-11-29.txt)."""
    comptime if lean and _exchange_in_warp(lp, vb, s):
        syncwarp()
    else:
        barrier()


def fused_threads(lp: Int, vb: Int) -> Int:
    """Threads per block of _gpu_fused: 2^vb complex values each."""
    return 1 << (lp - vb)


def fused_smem_bytes[dtype: DType](lp: Int, vb: Int) -> Int:
    """Dynamic shared memory of _gpu_fused: padded re and im rows."""
    var n = 1 << lp
    return 2 * (n + (n >> vb)) * size_of[dtype]()


def fused_tw_value[lp: Int, vb: Int](e: Int) -> SIMD[DType.float64, 2]:
    """Entry e of the twiddle table: off_s + (p - 1) * m + j holds
    W_{r m}^(p j) for stage s (radix r, stride m), 1 <= p < r, j < m, in
    float64 (_unit_root). Stage bounds are compile-time constants."""
    var w = SIMD[DType.float64, 2](1, 0)
    comptime for s in range(_fused_stages(lp, vb)):
        comptime rl = _fused_radix_log(lp, s, vb)
        comptime lm = _fused_span_log(lp, s, vb)
        comptime off = _fused_tw_offset(lp, s, vb)
        if e >= off and e < off + (((1 << rl) - 1) << lm):
            var k = e - off
            var p = (k >> lm) + 1
            var j = k & ((1 << lm) - 1)
            # W_{r m}^(p j) = W_L^(p j L / (r m)); p j < r m, so u < L.
            w = _unit_root((p * j) << (lp - lm - rl), 1 << lp)
    return w


def _gpu_fused_twiddles[dtype: DType, lp: Int, vb: Int](tw: Pointer[Scalar[dtype], MutAnyOrigin]):
    """Fill the twiddle table (fused_tw_value), as (re, im) pairs rounded once."""
    var e = Int(block_idx.x) * Int(block_dim.x) + Int(thread_idx.x)
    if e < fused_tw_entries(lp, vb):
        var w = fused_tw_value[lp, vb](e)
        tw[unsafe_offset=2 * e] = Scalar[dtype](w[0])
        tw[unsafe_offset=2 * e + 1] = Scalar[dtype](w[1])


@always_inline
def _cmul[dtype: DType](a: SIMD[dtype, 2], b: SIMD[dtype, 2]) -> SIMD[dtype, 2]:
    """The complex product of two (re, im) pairs."""
    return SIMD[dtype, 2](a[0] * b[0] - a[1] * b[1], a[0] * b[1] + a[1] * b[0])


@always_inline
def _twiddles[dtype: DType, rl: Int, inverse: Bool, derive: Bool](
    tw: Pointer[Scalar[dtype], MutAnyOrigin],
    base: Int32,
    stride: Int,
    mut vr: SIMD[dtype, 1 << rl],
    mut vi: SIMD[dtype, 1 << rl],
):
    """Multiply frequency p (register bitrev(p)) of a radix-2^rl butterfly,
    1 <= p < 2^rl, by table entry base + (p - 1) * stride (forward) or by
    its conjugate (inverse). The entries hold W^p for one W, so with
    `derive` (radix >= 8) only those of p = 1, 2, 4, 8, ... are read and
    the others are products of them, W^p = W^(p % 8) * W^(p - p % 8), each
    at most five roundings deep: 4 of 15 table reads at radix 16, 5 of 31
    at 32, for 11 and 26 more complex products. The reads go through the
    L1 cache that the shared-memory exchanges use; ncu on the H200 found
    its load/store pipe ~69 % busy in the fused kernel at L = 4096 (83 %
    with split re/im exchange rows), and reading every entry from the
    table ran 5-25 % slower."""
    comptime R = 1 << rl
    comptime if not derive or R < 8:
        var row = tw.unsafe_offset(Int(2 * base))
        comptime for p in range(1, R):
            var w = row.unsafe_load[width=2, alignment=8](2 * (p - 1) * stride)
            _rotate[dtype, inverse, _bitrev(p, rl)](vr, vi, w)
    else:
        _derived_twiddles[dtype, rl, inverse](tw, base, stride, vr, vi)


@always_inline
def _derived_twiddles[dtype: DType, rl: Int, inverse: Bool](
    tw: Pointer[Scalar[dtype], MutAnyOrigin],
    base: Int32,
    stride: Int,
    mut vr: SIMD[dtype, 1 << rl],
    mut vi: SIMD[dtype, 1 << rl],
):
    """_twiddles with derive, radix 2^rl >= 8: the table's W^1, W^2, W^4,
    W^8, W^16, ... (entry p - 1 of each), then _apply_powers."""
    comptime HB = _powers_width(rl)
    var row = tw.unsafe_offset(Int(2 * base))
    var hr = SIMD[dtype, HB](0)
    var hi = SIMD[dtype, HB](0)
    comptime for b in range(rl - 3):
        var w = row.unsafe_load[width=2, alignment=8](2 * ((8 << b) - 1) * stride)
        hr[b] = w[0]
        hi[b] = w[1]
    _apply_powers[dtype, rl, inverse](
        row.unsafe_load[width=2, alignment=8](0),
        row.unsafe_load[width=2, alignment=8](2 * stride),
        row.unsafe_load[width=2, alignment=8](6 * stride),
        hr, hi, vr, vi,
    )


def _powers_width(rl: Int) -> Int:
    """Lanes holding W^8, W^16, ... for radix 2^rl (rl - 3 of them, at
    least one lane, a power of two as SIMD wants)."""
    return 1 << _log2(max(rl - 3, 1))


@always_inline
def _apply_powers[dtype: DType, rl: Int, inverse: Bool](
    b1: SIMD[dtype, 2],
    b2: SIMD[dtype, 2],
    b4: SIMD[dtype, 2],
    br: SIMD[dtype, _powers_width(rl)],
    bi: SIMD[dtype, _powers_width(rl)],
    mut vr: SIMD[dtype, 1 << rl],
    mut vi: SIMD[dtype, 1 << rl],
):
    """Multiply frequency p (register bitrev(p)) of a radix-R butterfly
    (R = 2^rl >= 8) by W^p (inverse: its conjugate), given b1, b2, b4 =
    W^1, W^2, W^4 and (br, bi)[b] = W^(8 * 2^b): W^p = W^(p % 8) * W^(p -
    p % 8), the low part from b1, b2, b4 (W^3 = b1 b2, W^7 = W^3 b4), the
    high part hw[h] = W^(8 h) = hw[h - top] * W^(8 top) (top the highest
    bit of h), so each W^p is at most five roundings deep."""
    comptime R = 1 << rl
    comptime H = R // 8
    var w3 = _cmul(b1, b2)
    var hr = SIMD[dtype, H](1)
    var hi = SIMD[dtype, H](0)
    comptime for h in range(1, H):
        comptime top = 1 << (_log2(h + 1) - 1)
        var w = SIMD[dtype, 2](br[_log2(top)], bi[_log2(top)])
        comptime if top != h:
            w = _cmul(SIMD[dtype, 2](hr[h - top], hi[h - top]), w)
        hr[h] = w[0]
        hi[h] = w[1]
    comptime for low in range(8):
        var wl = SIMD[dtype, 2](1, 0)
        comptime if low == 1:
            wl = b1
        elif low == 2:
            wl = b2
        elif low == 3:
            wl = w3
        elif low == 4:
            wl = b4
        elif low == 5:
            wl = _cmul(b1, b4)
        elif low == 6:
            wl = _cmul(b2, b4)
        elif low == 7:
            wl = _cmul(w3, b4)
        comptime for h in range(H):
            comptime p = low + 8 * h
            comptime if p != 0:
                var w = wl
                comptime if h != 0:
                    var wh = SIMD[dtype, 2](hr[h], hi[h])
                    w = wh if low == 0 else _cmul(wl, wh)
                _rotate[dtype, inverse, _bitrev(p, rl)](vr, vi, w)


# The exchange rows: shared memory on the GPU, any memory for
# research/fft/fused_sim.mojo, which runs the same per-thread phases on the
# CPU thread by thread, a barrier being the end of a loop over threads.
comptime XPtr[dtype: DType, space: AddressSpace] = Pointer[Scalar[dtype], MutUntrackedOrigin, address_space=space]


@always_inline
def _slot_load[dtype: DType, space: AddressSpace](x: XPtr[dtype, space], slot: Int32) -> SIMD[dtype, 2]:
    """The (re, im) pair in exchange slot `slot`: one 8-byte access."""
    return x.unsafe_load[width=2, alignment = 2 * size_of[dtype]()](Int(2 * slot))


@always_inline
def _slot_store[dtype: DType, space: AddressSpace](
    x: XPtr[dtype, space], slot: Int32, re: Scalar[dtype], im: Scalar[dtype]
):
    """Store (re, im) to exchange slot `slot`: one 8-byte access."""
    x.unsafe_store[alignment = 2 * size_of[dtype]()](Int(2 * slot), SIMD[dtype, 2](re, im))


@always_inline
def _fused_first[dtype: DType, lp: Int, vb: Int, spectrum: Bool, space: AddressSpace, derive: Bool = True](
    t: Int32,
    x: XPtr[dtype, space],
    tw: Pointer[Scalar[dtype], MutAnyOrigin],
    src: Pointer[Scalar[dtype], MutAnyOrigin],
    start: Int32,
    t_blk: Int32,
    second: Bool,
    n_in: UInt32,
):
    """Thread t: load x[t + T q] of both blocks (row samples from `start`
    and `start + t_blk`, zeros outside [0, n_in); im: the second block,
    zero unless `second`), run forward stage 0, store to the exchange rows.

    Stage 0 has radix r0 and stride m0 = L / r0 = c0 * T (T = L / V):
    butterfly c (j = t + T c) holds the thread's values q = c + c0 p, and
    its output p goes back to the same slot.
    """
    comptime V = 1 << vb
    comptime L = 1 << lp
    comptime T = L >> vb
    comptime rl0 = _fused_radix_log(lp, 0, vb)
    comptime r0 = 1 << rl0
    comptime c0 = V // r0
    comptime lm0 = _fused_span_log(lp, 0, vb)
    # Each load addresses the thread's first sample plus a compile-time
    # offset (no 64-bit index math a load); the bound stays one unsigned
    # compare of the 32-bit sample index.
    var src0 = start + t
    var block0 = src.unsafe_offset(Int(src0))
    var vr = SIMD[dtype, V](0)
    var vi = SIMD[dtype, V](0)
    comptime for q in range(V):
        if (src0 + Int32(T * q)).cast[DType.uint32]() < n_in:
            vr[q] = block0[unsafe_offset = T * q]
    comptime if not spectrum:
        if second:
            var src1 = src0 + t_blk
            var block1 = block0.unsafe_offset(Int(t_blk))
            comptime for q in range(V):
                if (src1 + Int32(T * q)).cast[DType.uint32]() < n_in:
                    vi[q] = block1[unsafe_offset = T * q]
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
    # Slot of point t + T q: padded, (t + T q) + ((t + T q) >> vb).
    var pt = t + (t >> Int32(vb))
    comptime for q in range(V):
        comptime o = T * q + ((T * q) >> vb)
        _slot_store(x, pt + Int32(o), vr[q], vi[q])


@always_inline
def _fused_middle[dtype: DType, lp: Int, vb: Int, s: Int, inverse: Bool, space: AddressSpace, derive: Bool = True](
    t: Int32, x: XPtr[dtype, space], tw: Pointer[Scalar[dtype], MutAnyOrigin],
):
    """Thread t: radix-V stage s (stride m >= V), butterfly t, in place
    in the exchange rows; inverse: its mirror."""
    comptime V = 1 << vb
    comptime lm = _fused_span_log(lp, s, vb)
    comptime m = 1 << lm
    comptime off = _fused_tw_offset(lp, s, vb)
    var j = t & Int32(m - 1)
    var base = ((t >> Int32(lm)) << Int32(lm + vb)) + j
    # base + m q, padded: m q is a multiple of V.
    var pb = base + (base >> Int32(vb))
    var vr = SIMD[dtype, V](0)
    var vi = SIMD[dtype, V](0)
    comptime if not inverse:
        comptime for q in range(V):
            comptime o = m * q + ((m * q) >> vb)
            var v = _slot_load(x, pb + Int32(o))
            vr[q] = v[0]
            vi[q] = v[1]
        _reg_dif[dtype, V](vr, vi)
        _twiddles[dtype, vb, False, derive](tw, Int32(off) + j, m, vr, vi)
        comptime for p in range(V):
            comptime i = _bitrev(p, vb)
            comptime o = m * p + ((m * p) >> vb)
            _slot_store(x, pb + Int32(o), vr[i], vi[i])
    else:
        comptime for p in range(V):
            comptime i = _bitrev(p, vb)
            comptime o = m * p + ((m * p) >> vb)
            var v = _slot_load(x, pb + Int32(o))
            vr[i] = v[0]
            vi[i] = v[1]
        _twiddles[dtype, vb, True, derive](tw, Int32(off) + j, m, vr, vi)
        _reg_dit[dtype, V](vr, vi)
        comptime for q in range(V):
            comptime o = m * q + ((m * q) >> vb)
            _slot_store(x, pb + Int32(o), vr[q], vi[q])


@always_inline
def _fused_center[dtype: DType, lp: Int, vb: Int, spectrum: Bool, space: AddressSpace](
    t: Int32,
    x: XPtr[dtype, space],
    g_re: Pointer[Scalar[dtype], MutAnyOrigin],
    g_im: Pointer[Scalar[dtype], MutAnyOrigin],
    g_row: Int,
    scale: Scalar[dtype],
):
    """Thread t: the last forward stage over points V t + q (slots
    (V + 1) t + q), then either store scale * conj(X) to spectrum row g_row,
    or multiply by it, run the first inverse stage and store back in place."""
    comptime V = 1 << vb
    var p17 = Int32(V + 1) * t
    var g_at = (g_row << lp) + Int(Int32(V) * t)
    var vr = SIMD[dtype, V](0)
    var vi = SIMD[dtype, V](0)
    comptime for q in range(V):
        var v = _slot_load(x, p17 + Int32(q))
        vr[q] = v[0]
        vi[q] = v[1]
    _reg_dif[dtype, V](vr, vi)
    comptime if spectrum:
        var sr = SIMD[dtype, V](0)
        var si = SIMD[dtype, V](0)
        comptime for p in range(V):
            comptime i = _bitrev(p, vb)
            sr[p] = vr[i] * scale
            si[p] = -vi[i] * scale
        comptime for h in range(V // 4):
            g_re.unsafe_store[alignment=16](g_at + 4 * h, sr.slice[4, offset=4 * h]())
            g_im.unsafe_store[alignment=16](g_at + 4 * h, si.slice[4, offset=4 * h]())
    else:
        comptime for h in range(V // 4):
            var gr = g_re.unsafe_load[width=4, alignment=16](g_at + 4 * h)
            var gi = g_im.unsafe_load[width=4, alignment=16](g_at + 4 * h)
            comptime for e in range(4):
                comptime i = _bitrev(4 * h + e, vb)
                var a = vr[i]
                var c = vi[i]
                vr[i] = a * gr[e] - c * gi[e]
                vi[i] = a * gi[e] + c * gr[e]
        _reg_dit[dtype, V](vr, vi)
        comptime for q in range(V):
            _slot_store(x, p17 + Int32(q), vr[q], vi[q])


@always_inline
def _kept_outputs(t_blk: Int32, t_out: Int32, at: Int32) -> Int32:
    """Outputs n of a block whose first output is row position `at` are
    written when n < this: inside the block's t_blk valid outputs and the
    row's t_out."""
    return min(t_blk, t_out - at)


@always_inline
def _fused_last[dtype: DType, lp: Int, vb: Int, space: AddressSpace, derive: Bool = True](
    t: Int32,
    x: XPtr[dtype, space],
    tw: Pointer[Scalar[dtype], MutAnyOrigin],
    dst: Pointer[Scalar[dtype], MutAnyOrigin],
    at: Int32,
    t_blk: Int32,
    t_out: Int32,
    second: Bool,
):
    """Thread t: inverse stage 0 (the mirror of _fused_first's) from slots
    t + T q, then outputs n = t + T q < t_blk of the first block to
    dst[at + n] and of the second to dst[at + t_blk + n], below t_out."""
    comptime V = 1 << vb
    comptime L = 1 << lp
    comptime T = L >> vb
    comptime rl0 = _fused_radix_log(lp, 0, vb)
    comptime r0 = 1 << rl0
    comptime c0 = V // r0
    comptime lm0 = _fused_span_log(lp, 0, vb)
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
    # Output n = t + T q is kept when T q < _kept_outputs(...) - t: one
    # compare with a constant a store, which addresses the thread's first
    # output plus a compile-time offset.
    var out0 = dst.unsafe_offset(Int(at + t))
    var room0 = _kept_outputs(t_blk, t_out, at) - t
    comptime for q in range(V):
        if Int32(T * q) < room0:
            out0[unsafe_offset = T * q] = vr[q]
    if second:
        var out1 = out0.unsafe_offset(Int(t_blk))
        var room1 = _kept_outputs(t_blk, t_out, at + t_blk) - t
        comptime for q in range(V):
            if Int32(T * q) < room1:
                out1[unsafe_offset = T * q] = vi[q]


@__llvm_metadata(`nvvm.maxntid`=StaticTuple[Int32, 1](Int32(max_threads)))
def _gpu_fused[dtype: DType, lp: Int, vb: Int, spectrum: Bool, max_threads: Int, lean: Bool = True](
    source: Pointer[Scalar[dtype], MutAnyOrigin],
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    g_re: Pointer[Scalar[dtype], MutAnyOrigin],
    g_im: Pointer[Scalar[dtype], MutAnyOrigin],
    tw: Pointer[Scalar[dtype], MutAnyOrigin],
    length: Int32,
    signal_stride: Int64,
    pad: Int32,
    row_outputs: Int32,
    block_outputs: Int32,
    blocks: Int32,
    pairs: Int32,
    taps_rows: Int32,
    scale: Scalar[dtype],
):
    """One block pair per thread block (2^(lp-vb) threads, 2^vb values
    each; lp >= 2 vb): load, forward
    transform, product with the kept spectrum, inverse, store.

    Pair `block_idx.x` is blocks b0 = 2 * (p % pairs) and b0 + 1 of signal
    row p // pairs, read from b0 * block_outputs - pad (zeros outside the
    row's `length` samples) as re and im; outputs [b0 * block_outputs, ...)
    of the `row_outputs`-long result row. spectrum: the thread block is taps
    row `block_idx.x` (one block, from 0), and the forward transform's
    scale * conj(X) goes to g_re/g_im row block_idx.x instead.
    Rows of up to 2^31 samples (32-bit in-row index math).

    max_threads (nvvm.maxntid, at least the 2^(lp-4) launched) caps the
    registers ptxas may use at 65536 / max_threads: see FUSED_CAP_THREADS.
    lean (the op's): warp barriers for the exchanges that stay in one warp
    (_exchange_sync) and twiddles derived from a few table reads
    (_twiddles); False (the harness's GPU_FUSED_PLAIN): a block barrier
    for every exchange and every twiddle read.
    """
    comptime stages = _fused_stages(lp, vb)
    var x = external_memory[Scalar[dtype], address_space = AddressSpace.SHARED, alignment=16]()
    var t = Int32(Int(thread_idx.x))
    var pair = Int32(Int(block_idx.x))
    var r = pair // pairs
    var b0 = 2 * (pair - r * pairs)
    var second = b0 + 1 < blocks
    var t_blk = block_outputs
    var src = source.unsafe_offset(Int(r) * Int(signal_stride))
    _fused_first[dtype, lp, vb, spectrum, AddressSpace.SHARED, lean](
        t, x, tw, src, b0 * t_blk - pad, t_blk, second, length.cast[DType.uint32]()
    )
    barrier()
    comptime for s in range(1, stages - 1):
        _fused_middle[dtype, lp, vb, s, False, AddressSpace.SHARED, lean](t, x, tw)
        _exchange_sync[lp, vb, s, lean]()
    var g_row = Int(pair) if spectrum else (Int(r) if taps_rows > 1 else 0)
    _fused_center[dtype, lp, vb, spectrum, AddressSpace.SHARED](t, x, g_re, g_im, g_row, scale)
    comptime if not spectrum:
        _exchange_sync[lp, vb, stages - 2, lean]()
        comptime for s_rev in range(1, stages - 1):
            _fused_middle[dtype, lp, vb, stages - 1 - s_rev, True, AddressSpace.SHARED, lean](t, x, tw)
            _exchange_sync[lp, vb, stages - 2 - s_rev, lean]()
        _fused_last[dtype, lp, vb, AddressSpace.SHARED, lean](
            t, x, tw, result.unsafe_offset(Int(r) * Int(row_outputs)), b0 * t_blk, t_blk,
            row_outputs, second,
        )
