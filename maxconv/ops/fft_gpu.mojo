"""GPU path of the FFT op: overlap-save correlation with radix-16 shared-memory
stages and radix-2..32 global passes.

See fft_conv.mojo for the method. The first forward pass reads each block
pair straight from the caller's rows (zeros outside them) and the last
inverse pass writes the outputs in place, so nobody copies tiles.
"""

from max.gpu import block_dim, block_idx, thread_idx
from max.gpu.host import DeviceContext, FuncAttribute
from max.gpu.memory import AddressSpace, external_memory
from max.gpu.sync import barrier
from std.math import ceildiv, pi
from std.sys import size_of

from .fft_common import _log2, fft_points


# GPU: a row of up to 2^GPU_ROW_LOG points is transformed whole by one
# thread block of GPU_ROW_TPB threads in shared memory (70 KB with padding,
# for either dtype); longer rows go through global passes down to chunks of
# 2^GPU_CHUNK_LOG points, one block of GPU_CHUNK_TPB threads each. Smaller
# blocks keep more of them resident per SM, which beat larger chunks (fewer
# global passes) on an H100, N = 2^24 float32 (research/fft/gpu_check.mojo,
# ms for chunk 2^14/256 threads, 2^13/256, 2^12/128, 2^11/128): L = 2^14:
# 0.36, 0.39, 0.32, 0.32; L = 2^16: 0.52, 0.42, 0.33, 0.34; L = 2^19: 0.59,
# 0.58, 0.49, 0.47; L = 2^22: 0.81, 0.75, 0.69, 0.83. At L = 2^13 the whole
# row in one block (0.26) beat a global pass plus 2^12 chunks (0.32).
comptime GPU_ROW_LOG_F32 = 13
comptime GPU_ROW_LOG_F64 = 12
comptime GPU_ROW_TPB = 256
comptime GPU_CHUNK_LOG_F32 = 12
comptime GPU_CHUNK_LOG_F64 = 11
comptime GPU_CHUNK_TPB = 128
comptime GPU_LOAD_UNROLL = 8
# GPU global-memory passes: threads per block, and the largest radix (as
# bits: 32 complex float32 values per thread fit its registers).
comptime GPU_PASS_TPB = 256
comptime GPU_PASS_BITS_F32 = 5
comptime GPU_PASS_BITS_F64 = 4


# ---------------------------------------------------------------------------
# GPU kernels
# ---------------------------------------------------------------------------
# Split re/im arrays, one complex row of L points per pair of tile rows. The
# forward transform is a sequence of decimation-in-frequency stages of radix
# r = 2..32 (each one pass in which a thread loads r points a stride m apart,
# runs an r-point DFT in registers, twiddles and stores them back); the
# inverse is the same sequence mirrored. Stages whose stride exceeds one
# thread block's chunk run as global passes (_gpu_pass; the first reads the
# tiles straight from the signal, the last writes the outputs); the rest run
# inside one thread block (_gpu_chunk) per chunk, which also takes the
# product with the taps' spectrum in registers between the last forward and
# first inverse stage.
# Index math uses shifts and masks only (64-bit division is slow on a GPU).


@always_inline
def _gid() -> Int:
    return Int(block_idx.x) * Int(block_dim.x) + Int(thread_idx.x)


@always_inline
def _pad(i: Int) -> Int:
    """Shared-memory slot of point i: one pad word per 16 keeps the strides
    of the last stages (16, 8, 4 words across a warp) free of bank conflicts."""
    return i + (i >> 4)


def _bitrev(p: Int, bits: Int) -> Int:
    var r = 0
    for b in range(bits):
        r |= ((p >> b) & 1) << (bits - 1 - b)
    return r


def _unit_root(t: Int, n: Int) -> SIMD[DType.float64, 2]:
    """(cos, -sin) of 2*pi*t/n for 0 <= t < n, n a power of two >= 8, in float64.

    Mojo has no float64 sin/cos on NVIDIA GPUs, so: exact integer reduction
    to an angle of at most pi/4, then Taylor series to x^20 (truncation
    below 1e-22 there), unrolled, its divisors' reciprocals compile-time
    constants (a float64 division is a long instruction sequence on a GPU;
    every call builds its tables with this).
    """
    var half = n // 2
    var negate = t >= half
    var quarter = n // 4
    var u = t - half if negate else t
    var rotate = u >= quarter
    if rotate:
        u -= quarter
    var mirror = 8 * u > n
    if mirror:
        u = quarter - u
    var x = 2.0 * pi * Float64(u) / Float64(n)
    var x2 = x * x
    var c = 1.0
    var s = 1.0
    comptime for i in range(10):
        comptime k = 20 - 2 * i
        comptime inv_c = 1.0 / Float64(k * (k - 1))
        comptime inv_s = 1.0 / Float64((k + 1) * k)
        c = 1.0 - x2 * inv_c * c
        s = 1.0 - x2 * inv_s * s
    s *= x
    # W = exp(-i x') with x' the reduced angle: (c, -s).
    var wr = c
    var wi = -s
    if mirror:
        # exp(-i (pi/2 - x)) = sin x - i cos x
        wr = s
        wi = -c
    if rotate:
        # times exp(-i pi/2) = -i
        var r = wr
        wr = wi
        wi = -r
    if negate:
        wr = -wr
        wi = -wi
    return SIMD[DType.float64, 2](wr, wi)


def _gpu_twiddles[dtype: DType](
    tw: Pointer[Scalar[dtype], MutAnyOrigin], log_points: Int64, lo_bits: Int64,
):
    """The two exact tables of W_L^t = hi[t >> lo_bits] * lo[t & mask], as
    interleaved (re, im) pairs: lo[j] = W_L^j, then hi[j] = W_L^(j << lo_bits).

    Two small tables (2 * sqrt(L) entries, cache-resident) instead of one of
    L: a twiddle costs two loads and a complex product (about one rounding
    more), and a call builds O(sqrt(L)) float64 roots, not O(L).
    """
    var e = _gid()
    var lp = Int(log_points)
    var lb = Int(lo_bits)
    var n_lo = 1 << lb
    var n_hi = 1 << (lp - lb)
    if e < n_lo + n_hi:
        var t = e if e < n_lo else (e - n_lo) << lb
        var w = _unit_root(t, 1 << lp)
        tw[unsafe_offset=2 * e] = Scalar[dtype](w[0])
        tw[unsafe_offset=2 * e + 1] = Scalar[dtype](w[1])


@always_inline
def _root[dtype: DType](tw: Pointer[Scalar[dtype], MutAnyOrigin], u: Int, lo_bits: Int) -> SIMD[dtype, 2]:
    """W_L^u for 0 <= u < L from the two tables."""
    var lo = tw.unsafe_load[width=2](2 * (u & ((1 << lo_bits) - 1)))
    var hi = tw.unsafe_load[width=2]((2 << lo_bits) + 2 * (u >> lo_bits))
    return SIMD[dtype, 2](hi[0] * lo[0] - hi[1] * lo[1], hi[0] * lo[1] + hi[1] * lo[0])


@always_inline
def _stage_twiddles[dtype: DType, r: Int](
    tw: Pointer[Scalar[dtype], MutAnyOrigin],
    t: Int,
    lo_bits: Int,
    mut wr: SIMD[dtype, r],
    mut wi: SIMD[dtype, r],
):
    """wr[p] + i*wi[p] = W_L^(p*t), p < r: powers of two from the tables, the
    others as products of those (at most log2(r) - 1 deep)."""
    wr[0] = 1
    wi[0] = 0
    comptime for b in range(_log2(r)):
        comptime p = 1 << b
        var w = _root[dtype](tw, p * t, lo_bits)
        wr[p] = w[0]
        wi[p] = w[1]
    comptime for p in range(3, r):
        comptime if (p & (p - 1)) != 0:
            comptime hb = 1 << (_log2(p + 1) - 1)
            comptime rest = p - hb
            wr[p] = wr[hb] * wr[rest] - wi[hb] * wi[rest]
            wi[p] = wr[hb] * wi[rest] + wi[hb] * wr[rest]


@always_inline
def _times_root[dtype: DType, e: Int, n: Int, conj: Bool](mut re: Scalar[dtype], mut im: Scalar[dtype]):
    """(re + i im) *= W_n^e (conj: its conjugate), W_n = exp(-2 pi i / n), e
    and n compile-time; the quarter turns (e a multiple of n / 4) are swaps
    and sign changes, no multiplication."""
    comptime q = (4 * e) // n if (4 * e) % n == 0 else -1
    comptime turn = q if q < 0 or not conj else (4 - q) % 4
    comptime if turn == 0:
        pass
    elif turn == 1:
        # times -i
        var r = re
        re = im
        im = -r
    elif turn == 2:
        re = -re
        im = -im
    elif turn == 3:
        # times +i
        var r = re
        re = -im
        im = r
    else:
        # float64 sin/cos do not exist on NVIDIA GPUs, even at compile
        # time: the series of _unit_root does.
        comptime w = _unit_root(e, n)
        _rotate[dtype, conj, 0](re, im, SIMD[dtype, 2](Scalar[dtype](w[0]), Scalar[dtype](w[1])))


@always_inline
def _adjacent_pairs[dtype: DType, r: Int](mut vr: SIMD[dtype, r], mut vi: SIMD[dtype, r]):
    """The radix-2 stage of stride 1 (no twiddles): (x[2s], x[2s + 1]) ->
    (x[2s] + x[2s + 1], x[2s] - x[2s + 1]); its own inverse up to 2."""
    comptime for s in range(r // 2):
        var ar = vr[2 * s]
        var ai = vi[2 * s]
        vr[2 * s] = ar + vr[2 * s + 1]
        vi[2 * s] = ai + vi[2 * s + 1]
        vr[2 * s + 1] = ar - vr[2 * s + 1]
        vi[2 * s + 1] = ai - vi[2 * s + 1]


@always_inline
def _reg_dif[dtype: DType, r: Int](mut vr: SIMD[dtype, r], mut vi: SIMD[dtype, r]):
    """r-point DFT in registers, radix-2 DIF: natural in, X_p at index bitrev(p).

    Stages go in pairs as radix 2^2 (the radix-2 flow graph, so the same
    output order): in a pair of strides h and h / 2 the first stage's
    twiddle W_2h^j (j < h) splits into W_2h^(j mod h/2), moved past the
    second stage's butterfly, and a quarter turn. Per block of 2h points
    3 (h/2 - 1) products remain: radix 16 needs 8 complex products where
    plain radix 2 needs 10, radix 32 28 instead of 34. An odd last stage
    (h = 1) has no twiddles."""
    comptime stages = _log2(r)
    comptime for pair in range(stages // 2):
        comptime h = r >> (2 * pair + 1)
        comptime for s in range(r // (2 * h)):
            comptime for j in range(h // 2):
                comptime a = s * 2 * h + j
                comptime b = a + h // 2
                comptime c = a + h
                comptime d = c + h // 2
                var ar = vr[a] + vr[c]
                var ai = vi[a] + vi[c]
                var cr = vr[a] - vr[c]
                var ci = vi[a] - vi[c]
                var br = vr[b] + vr[d]
                var bi = vi[b] + vi[d]
                # (b - d) times -i
                var dr = vi[b] - vi[d]
                var di = vr[d] - vr[b]
                vr[a] = ar + br
                vi[a] = ai + bi
                var pr = ar - br
                var pi_ = ai - bi
                var qr = cr + dr
                var qi = ci + di
                var ur = cr - dr
                var ui = ci - di
                _times_root[dtype, 2 * j, 2 * h, False](pr, pi_)
                _times_root[dtype, j, 2 * h, False](qr, qi)
                _times_root[dtype, 3 * j, 2 * h, False](ur, ui)
                vr[b] = pr
                vi[b] = pi_
                vr[c] = qr
                vi[c] = qi
                vr[d] = ur
                vi[d] = ui
    comptime if stages % 2 == 1:
        _adjacent_pairs[dtype, r](vr, vi)


@always_inline
def _reg_dit[dtype: DType, r: Int](mut vr: SIMD[dtype, r], mut vi: SIMD[dtype, r]):
    """The mirror of _reg_dif (up to a factor r): index bitrev(p) in, natural
    out; its stage pairs in reverse, with conjugate twiddles."""
    comptime stages = _log2(r)
    comptime if stages % 2 == 1:
        _adjacent_pairs[dtype, r](vr, vi)
    comptime for pair_rev in range(stages // 2):
        comptime h = r >> (2 * (stages // 2 - 1 - pair_rev) + 1)
        comptime for s in range(r // (2 * h)):
            comptime for j in range(h // 2):
                comptime a = s * 2 * h + j
                comptime b = a + h // 2
                comptime c = a + h
                comptime d = c + h // 2
                var br = vr[b]
                var bi = vi[b]
                var cr = vr[c]
                var ci = vi[c]
                var dr = vr[d]
                var di = vi[d]
                _times_root[dtype, 2 * j, 2 * h, True](br, bi)
                _times_root[dtype, j, 2 * h, True](cr, ci)
                _times_root[dtype, 3 * j, 2 * h, True](dr, di)
                var pr = vr[a] + br
                var pi_ = vi[a] + bi
                var qr = vr[a] - br
                var qi = vi[a] - bi
                var sr = cr + dr
                var si = ci + di
                # (c - d) times +i
                var tr = di - ci
                var ti = cr - dr
                vr[a] = pr + sr
                vi[a] = pi_ + si
                vr[c] = pr - sr
                vi[c] = pi_ - si
                vr[b] = qr + tr
                vi[b] = qi + ti
                vr[d] = qr - tr
                vi[d] = qi - ti


@always_inline
def _rotate[dtype: DType, inverse: Bool, i: Int](
    mut vr: SIMD[dtype, _], mut vi: SIMD[dtype, _], w: SIMD[dtype, 2]
):
    """(vr[i] + i vi[i]) *= w (forward) or conj(w) (inverse); the index a
    compile-time parameter, as every caller's is."""
    var a = vr[i]
    var b = vi[i]
    comptime if inverse:
        vr[i] = a * w[0] + b * w[1]
        vi[i] = b * w[0] - a * w[1]
    else:
        vr[i] = a * w[0] - b * w[1]
        vi[i] = a * w[1] + b * w[0]


@always_inline
def _twiddle_all[dtype: DType, r: Int, inverse: Bool](
    mut vr: SIMD[dtype, r], mut vi: SIMD[dtype, r], wr: SIMD[dtype, r], wi: SIMD[dtype, r]
):
    """Frequency p (register bitrev(p)) times (wr[p], wi[p]) = W^(p*j)
    (forward) or its conjugate (inverse)."""
    comptime for p in range(1, r):
        _rotate[dtype, inverse, _bitrev(p, _log2(r))](vr, vi, SIMD[dtype, 2](wr[p], wi[p]))


comptime SharedPtr[dtype: DType] = Pointer[Scalar[dtype], MutUntrackedOrigin, address_space = AddressSpace.SHARED]


def _smem_dif[dtype: DType, r: Int](
    xr: SharedPtr[dtype], xi: SharedPtr[dtype], tw: Pointer[Scalar[dtype], MutAnyOrigin],
    size: Int, lp: Int, lb: Int, lo_bits: Int,
):
    """One forward stage of radix r over blocks of 2^lb points of the chunk."""
    comptime rb = _log2(r)
    var lm = lb - rb
    var m = 1 << lm
    var b = Int(thread_idx.x)
    while b < size >> rb:
        var j = b & (m - 1)
        var base = ((b >> lm) << lb) + j
        var vr = SIMD[dtype, r](0)
        var vi = SIMD[dtype, r](0)
        comptime for q in range(r):
            var at = _pad(base + q * m)
            vr[q] = xr[unsafe_offset=at]
            vi[q] = xi[unsafe_offset=at]
        _reg_dif[dtype, r](vr, vi)
        if j != 0:
            var wr = SIMD[dtype, r](0)
            var wi = SIMD[dtype, r](0)
            _stage_twiddles[dtype, r](tw, j << (lp - lb), lo_bits, wr, wi)
            _twiddle_all[dtype, r, False](vr, vi, wr, wi)
        comptime for p in range(r):
            comptime i = _bitrev(p, rb)
            var at = _pad(base + p * m)
            xr[unsafe_offset=at] = vr[i]
            xi[unsafe_offset=at] = vi[i]
        b += Int(block_dim.x)
    barrier()


def _smem_dit[dtype: DType, r: Int](
    xr: SharedPtr[dtype], xi: SharedPtr[dtype], tw: Pointer[Scalar[dtype], MutAnyOrigin],
    size: Int, lp: Int, lb: Int, lo_bits: Int,
):
    """The mirror of _smem_dif."""
    comptime rb = _log2(r)
    var lm = lb - rb
    var m = 1 << lm
    var b = Int(thread_idx.x)
    while b < size >> rb:
        var j = b & (m - 1)
        var base = ((b >> lm) << lb) + j
        var vr = SIMD[dtype, r](0)
        var vi = SIMD[dtype, r](0)
        comptime for p in range(r):
            comptime i = _bitrev(p, rb)
            var at = _pad(base + p * m)
            vr[i] = xr[unsafe_offset=at]
            vi[i] = xi[unsafe_offset=at]
        if j != 0:
            var wr = SIMD[dtype, r](0)
            var wi = SIMD[dtype, r](0)
            _stage_twiddles[dtype, r](tw, j << (lp - lb), lo_bits, wr, wi)
            _twiddle_all[dtype, r, True](vr, vi, wr, wi)
        _reg_dit[dtype, r](vr, vi)
        comptime for q in range(r):
            var at = _pad(base + q * m)
            xr[unsafe_offset=at] = vr[q]
            xi[unsafe_offset=at] = vi[q]
        b += Int(block_dim.x)
    barrier()


def _smem_stage[dtype: DType, inverse: Bool](
    xr: SharedPtr[dtype], xi: SharedPtr[dtype], tw: Pointer[Scalar[dtype], MutAnyOrigin],
    size: Int, lp: Int, lb: Int, bits: Int, lo_bits: Int,
):
    """A stage of radix 2^bits (1..4), dispatched to its compiled form."""
    comptime if inverse:
        if bits == 4:
            _smem_dit[dtype, 16](xr, xi, tw, size, lp, lb, lo_bits)
        elif bits == 3:
            _smem_dit[dtype, 8](xr, xi, tw, size, lp, lb, lo_bits)
        elif bits == 2:
            _smem_dit[dtype, 4](xr, xi, tw, size, lp, lb, lo_bits)
        else:
            _smem_dit[dtype, 2](xr, xi, tw, size, lp, lb, lo_bits)
    else:
        if bits == 4:
            _smem_dif[dtype, 16](xr, xi, tw, size, lp, lb, lo_bits)
        elif bits == 3:
            _smem_dif[dtype, 8](xr, xi, tw, size, lp, lb, lo_bits)
        elif bits == 2:
            _smem_dif[dtype, 4](xr, xi, tw, size, lp, lb, lo_bits)
        else:
            _smem_dif[dtype, 2](xr, xi, tw, size, lp, lb, lo_bits)


def _smem_middle[dtype: DType, r: Int, spectrum: Bool](
    xr: SharedPtr[dtype], xi: SharedPtr[dtype],
    g_re: Pointer[Scalar[dtype], MutAnyOrigin], g_im: Pointer[Scalar[dtype], MutAnyOrigin],
    size: Int, g_base: Int, scale: Scalar[dtype],
):
    """The last forward stage (blocks of r points, no twiddles), then either
    store scale * conj(X) as the spectrum, or multiply by it and run the
    first inverse stage, all in registers."""
    comptime rb = _log2(r)
    var b = Int(thread_idx.x)
    while b < size >> rb:
        var base = b << rb
        var vr = SIMD[dtype, r](0)
        var vi = SIMD[dtype, r](0)
        comptime for q in range(r):
            vr[q] = xr[unsafe_offset=_pad(base + q)]
            vi[q] = xi[unsafe_offset=_pad(base + q)]
        _reg_dif[dtype, r](vr, vi)
        comptime if spectrum:
            comptime for p in range(r):
                comptime i = _bitrev(p, rb)
                g_re[unsafe_offset=g_base + base + p] = vr[i] * scale
                g_im[unsafe_offset=g_base + base + p] = -vi[i] * scale
        else:
            var gr = g_re.unsafe_load[width=r](g_base + base)
            var gi = g_im.unsafe_load[width=r](g_base + base)
            comptime for p in range(r):
                comptime i = _bitrev(p, rb)
                var a = vr[i]
                var c = vi[i]
                vr[i] = a * gr[p] - c * gi[p]
                vi[i] = a * gi[p] + c * gr[p]
            _reg_dit[dtype, r](vr, vi)
            comptime for q in range(r):
                xr[unsafe_offset=_pad(base + q)] = vr[q]
                xi[unsafe_offset=_pad(base + q)] = vi[q]
        b += Int(block_dim.x)
    barrier()


@always_inline
def _head_bits(ls: Int) -> Int:
    """Chunk stages: one of radix 2^(ls % 4) first when ls > 4, then radix 16."""
    return ls % 4 if ls > 4 else 0


def _gpu_chunk[dtype: DType, direct: Bool, spectrum: Bool](
    re: Pointer[Scalar[dtype], MutAnyOrigin],
    im: Pointer[Scalar[dtype], MutAnyOrigin],
    source: Pointer[Scalar[dtype], MutAnyOrigin],
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    g_re: Pointer[Scalar[dtype], MutAnyOrigin],
    g_im: Pointer[Scalar[dtype], MutAnyOrigin],
    tw: Pointer[Scalar[dtype], MutAnyOrigin],
    log_points: Int64,
    log_chunk: Int64,
    lo_bits: Int64,
    length: Int64,
    signal_stride: Int64,
    pad: Int64,
    row_outputs: Int64,
    block_outputs: Int64,
    blocks: Int64,
    pairs: Int64,
    taps_rows: Int64,
    scale: Scalar[dtype],
):
    """One thread block runs every shared-memory stage of one chunk of
    2^log_chunk points.

    direct (L fits one chunk): the chunk is a whole row, read from the
    source (tile pairs, or taps when computing the spectrum) and, for the
    signal, written to the result. Else it is a chunk of the scratch row
    left by the global passes, read and written in place.
    spectrum: forward only, storing scale * conj(X) into g (one row per
    channel); else forward, product with g, inverse.
    """
    var xr = external_memory[Scalar[dtype], address_space = AddressSpace.SHARED, alignment=16]()
    var ls = Int(log_chunk)
    var size = 1 << ls
    var xi = xr.unsafe_offset(_pad(size))
    var lp = Int(log_points)
    var lob = Int(lo_bits)
    var tid = Int(thread_idx.x)
    var threads = Int(block_dim.x)
    var base = Int(block_idx.x) << ls
    var row = base >> lp
    # Pair `row` is blocks b0 and b0 + 1 of signal row r (spectrum: taps row
    # `row`, one block); block b reads the signal from b * T - pad.
    var r = row // Int(pairs)
    var b0 = 2 * (row - r * Int(pairs))
    var second = b0 + 1 < Int(blocks)
    var n_in = Int(length)
    var t_blk = Int(block_outputs)
    var src0 = b0 * t_blk - Int(pad)
    var src_row = r * Int(signal_stride)
    var channel = row if spectrum else (r if Int(taps_rows) > 1 else 0)

    # GPU_LOAD_UNROLL loads in flight per thread: a loop of dependent
    # load-store pairs would wait a full memory latency per point.
    var i = tid
    while i < size:
        var vr = SIMD[dtype, GPU_LOAD_UNROLL](0)
        var vi = SIMD[dtype, GPU_LOAD_UNROLL](0)
        comptime for u in range(GPU_LOAD_UNROLL):
            var n = i + u * threads
            comptime if direct:
                var v = src0 + n
                if n < size and v >= 0 and v < n_in:
                    vr[u] = source[unsafe_offset=src_row + v]
                comptime if not spectrum:
                    if second and n < size and v + t_blk >= 0 and v + t_blk < n_in:
                        vi[u] = source[unsafe_offset=src_row + v + t_blk]
            else:
                if n < size:
                    vr[u] = re[unsafe_offset=base + n]
                    vi[u] = im[unsafe_offset=base + n]
        comptime for u in range(GPU_LOAD_UNROLL):
            var n = i + u * threads
            if n < size:
                xr[unsafe_offset=_pad(n)] = vr[u]
                xi[unsafe_offset=_pad(n)] = vi[u]
        i += GPU_LOAD_UNROLL * threads
    barrier()

    var head = _head_bits(ls)
    var last = 4
    var lb = ls
    if head > 0:
        _smem_stage[dtype, False](xr, xi, tw, size, lp, lb, head, lob)
        lb -= head
    while lb > last:
        _smem_stage[dtype, False](xr, xi, tw, size, lp, lb, 4, lob)
        lb -= 4
    var g_base = (channel << lp) + (base - (row << lp))
    _smem_middle[dtype, 16, spectrum](xr, xi, g_re, g_im, size, g_base, scale)

    comptime if not spectrum:
        lb = last + 4
        while lb <= ls - head:
            _smem_stage[dtype, True](xr, xi, tw, size, lp, lb, 4, lob)
            lb += 4
        if head > 0:
            _smem_stage[dtype, True](xr, xi, tw, size, lp, ls, head, lob)
        var t = Int(row_outputs)
        var at = b0 * t_blk
        i = tid
        while i < size:
            comptime if direct:
                if i < t_blk and at + i < t:
                    result[unsafe_offset=r * t + at + i] = xr[unsafe_offset=_pad(i)]
                    if second and at + t_blk + i < t:
                        result[unsafe_offset=r * t + at + t_blk + i] = xi[unsafe_offset=_pad(i)]
            else:
                re[unsafe_offset=base + i] = xr[unsafe_offset=_pad(i)]
                im[unsafe_offset=base + i] = xi[unsafe_offset=_pad(i)]
            i += threads


def _gpu_pass[dtype: DType, r: Int, inverse: Bool, io: Bool, spectrum: Bool](
    re: Pointer[Scalar[dtype], MutAnyOrigin],
    im: Pointer[Scalar[dtype], MutAnyOrigin],
    source: Pointer[Scalar[dtype], MutAnyOrigin],
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    tw: Pointer[Scalar[dtype], MutAnyOrigin],
    n_rows: Int64,
    log_points: Int64,
    log_block: Int64,
    lo_bits: Int64,
    length: Int64,
    signal_stride: Int64,
    pad: Int64,
    row_outputs: Int64,
    block_outputs: Int64,
    blocks: Int64,
    pairs: Int64,
    taps_rows: Int64,
):
    """One radix-r stage over blocks of 2^log_block points in global memory,
    one r-point butterfly per thread (a warp covers 32 consecutive columns,
    so every load and store is coalesced).

    io: the first forward pass reads its points from the source (tile pairs,
    or taps for the spectrum) instead of the scratch rows; the last inverse
    pass writes the outputs instead.
    """
    comptime rb = _log2(r)
    var e = _gid()
    var lp = Int(log_points)
    if e >= Int(n_rows) << (lp - rb):
        return
    var lb = Int(log_block)
    var lm = lb - rb
    var m = 1 << lm
    var row = e >> (lp - rb)
    var k = e & ((1 << (lp - rb)) - 1)
    var j = k & (m - 1)
    var offset = ((k >> lm) << lb) + j
    var base = (row << lp) + offset
    # Pair `row` is blocks b0 and b0 + 1 of signal row r (spectrum: taps row
    # `row`, one block); block b reads the signal from b * T - pad.
    var r_row = row // Int(pairs)
    var b0 = 2 * (row - r_row * Int(pairs))
    var second = b0 + 1 < Int(blocks)
    var n_in = Int(length)
    var t_blk = Int(block_outputs)
    var src0 = b0 * t_blk - Int(pad)
    var src_row = r_row * Int(signal_stride)
    var channel = row if spectrum else (r if Int(taps_rows) > 1 else 0)
    var vr = SIMD[dtype, r](0)
    var vi = SIMD[dtype, r](0)
    var wr = SIMD[dtype, r](0)
    var wi = SIMD[dtype, r](0)
    var lob = Int(lo_bits)
    if j != 0:
        _stage_twiddles[dtype, r](tw, j << (lp - lb), lob, wr, wi)

    comptime if not inverse:
        comptime for q in range(r):
            comptime if io:
                var v = src0 + offset + q * m
                vr[q] = source[unsafe_offset=src_row + v] if (v >= 0 and v < n_in) else 0
                comptime if not spectrum:
                    var v2 = v + t_blk
                    vi[q] = source[unsafe_offset=src_row + v2] if (second and v2 >= 0 and v2 < n_in) else 0
            else:
                vr[q] = re[unsafe_offset=base + q * m]
                vi[q] = im[unsafe_offset=base + q * m]
        _reg_dif[dtype, r](vr, vi)
        if j != 0:
            _twiddle_all[dtype, r, False](vr, vi, wr, wi)
        comptime for p in range(r):
            comptime i = _bitrev(p, rb)
            re[unsafe_offset=base + p * m] = vr[i]
            im[unsafe_offset=base + p * m] = vi[i]
    else:
        comptime for p in range(r):
            comptime i = _bitrev(p, rb)
            vr[i] = re[unsafe_offset=base + p * m]
            vi[i] = im[unsafe_offset=base + p * m]
        if j != 0:
            _twiddle_all[dtype, r, True](vr, vi, wr, wi)
        _reg_dit[dtype, r](vr, vi)
        var t = Int(row_outputs)
        var at = b0 * t_blk
        comptime for q in range(r):
            comptime if io:
                var n = offset + q * m
                if n < t_blk and at + n < t:
                    result[unsafe_offset=r_row * t + at + n] = vr[q]
                    if second and at + t_blk + n < t:
                        result[unsafe_offset=r_row * t + at + t_blk + n] = vi[q]
            else:
                re[unsafe_offset=base + q * m] = vr[q]
                im[unsafe_offset=base + q * m] = vi[q]
