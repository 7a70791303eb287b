"""CPU path of the FFT op: overlap-save correlation with SIMD radix-4 FFTs.

See fft_conv.mojo for the method; this file holds the CPU transform (column
stages, V x V register blocks across lanes, a cache-blocked schedule) and
the driver that reads overlap-save blocks straight from the caller's rows.
"""

from max.algorithm import sync_parallelize
from std.math import ceildiv, cos, sin, pi
from std.memory.alloc import unsafe_alloc
from std.sys import simd_width_of, num_physical_cores, size_of

from .fft_common import _log2, fft_points


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
# Small helpers
# ---------------------------------------------------------------------------


def _alloc[dtype: DType](n: Int) -> Pointer[Scalar[dtype], MutAnyOrigin]:
    """A 64-byte-aligned heap buffer, typed like the tensor pointers."""
    return unsafe_alloc[Scalar[dtype]](max(n, 1), alignment=64).unsafe_origin_cast[
        MutAnyOrigin
    ]()


def _digit_reversed(p: Int, rows: Int) -> Int:
    """The frequency held at row p after the forward column stages.

    The stages are one radix-2 stage when log2(rows) is odd, then radix-4
    ones; a stage of radix r over blocks of n rows puts the sub-DFT of
    frequencies r*k + rho in sub-block rho, so the frequency is the
    mixed-radix digit reversal of p (shifts and masks only: this runs once
    per row per call).
    """
    var bits = _log2(rows)
    var k = 0
    var shift = 0
    var rest = p
    if bits % 2 == 1:
        bits -= 1
        k = rest >> bits
        rest &= (1 << bits) - 1
        shift = 1
    while bits > 0:
        bits -= 2
        k |= (rest >> bits) << shift
        rest &= (1 << bits) - 1
        shift += 2
    return k


# ---------------------------------------------------------------------------
# Twiddle tables
# ---------------------------------------------------------------------------


def _build_tables[dtype: DType, lanes: Int](
    points: Int,
    col_re: Pointer[Scalar[dtype], MutAnyOrigin],
    col_im: Pointer[Scalar[dtype], MutAnyOrigin],
    row_re: Pointer[Scalar[dtype], MutAnyOrigin],
    row_im: Pointer[Scalar[dtype], MutAnyOrigin],
    part: Int,
    parts: Int,
):
    """Fill share `part` of `parts` of the column twiddles W_M^t (t < M) and
    the row twiddles W_L^(l*k1(p)).

    Everything is derived in float64 from two exact tables, lo[j] = W_L^j for
    j < S and hi[j] = W_L^(j*S), so the tables cost O(L) multiplies and about
    2*sqrt(L) sin/cos; each entry carries a few float64 roundings at most.
    """
    var rows = points // lanes
    var s = 1 << ((_log2(points) + 1) // 2)
    var n_hi = points // s
    var lo_re = _alloc[DType.float64](s)
    var lo_im = _alloc[DType.float64](s)
    var hi_re = _alloc[DType.float64](n_hi)
    var hi_im = _alloc[DType.float64](n_hi)
    var step = -2.0 * pi / Float64(points)
    for j in range(s):
        lo_re[unsafe_offset=j] = cos(step * Float64(j))
        lo_im[unsafe_offset=j] = sin(step * Float64(j))
    for j in range(n_hi):
        hi_re[unsafe_offset=j] = cos(step * Float64(j * s))
        hi_im[unsafe_offset=j] = sin(step * Float64(j * s))

    var lo_bits = _log2(s)
    var mask = points - 1

    var first = part * rows // parts
    var last = (part + 1) * rows // parts
    # W_M^t = W_L^(lanes*t).
    for t in range(first, last):
        var u = (lanes * t) & mask
        var a = u >> lo_bits
        var b = u & (s - 1)
        col_re[unsafe_offset=t] = Scalar[dtype](
            hi_re[unsafe_offset=a] * lo_re[unsafe_offset=b] - hi_im[unsafe_offset=a] * lo_im[unsafe_offset=b]
        )
        col_im[unsafe_offset=t] = Scalar[dtype](
            hi_re[unsafe_offset=a] * lo_im[unsafe_offset=b] + hi_im[unsafe_offset=a] * lo_re[unsafe_offset=b]
        )
    # Row p holds frequency k1 = digit_reversed(p); lane l needs W_L^(l*k1):
    # w = W_L^k1 from the exact tables, then its powers (lanes <= 16
    # float64 products, far below float32 rounding and near float64's).
    for p in range(first, last):
        var k1 = _digit_reversed(p, rows)
        var a = k1 >> lo_bits
        var b = k1 & (s - 1)
        var wr = hi_re[unsafe_offset=a] * lo_re[unsafe_offset=b] - hi_im[unsafe_offset=a] * lo_im[unsafe_offset=b]
        var wi = hi_re[unsafe_offset=a] * lo_im[unsafe_offset=b] + hi_im[unsafe_offset=a] * lo_re[unsafe_offset=b]
        var pr = 1.0
        var pi_ = 0.0
        for l in range(lanes):
            row_re[unsafe_offset=p * lanes + l] = Scalar[dtype](pr)
            row_im[unsafe_offset=p * lanes + l] = Scalar[dtype](pi_)
            var nr = pr * wr - pi_ * wi
            pi_ = pr * wi + pi_ * wr
            pr = nr
    lo_re.unsafe_free()
    lo_im.unsafe_free()
    hi_re.unsafe_free()
    hi_im.unsafe_free()


# ---------------------------------------------------------------------------
# CPU: column stages (whole-vector butterflies between rows)
# ---------------------------------------------------------------------------


@always_inline
def _dif2_stage[dtype: DType, lanes: Int](
    re: Pointer[Scalar[dtype], MutAnyOrigin],
    im: Pointer[Scalar[dtype], MutAnyOrigin],
    rows: Int,
    first: Int,
    last: Int,
    n: Int,
    tw_re: Pointer[Scalar[dtype], MutAnyOrigin],
    tw_im: Pointer[Scalar[dtype], MutAnyOrigin],
    j_first: Int = 0,
    j_last: Int = Int.MAX,
):
    """Radix-2 decimation in frequency over blocks of n rows: (a+b, (a-b)w^j)."""
    var h = n // 2
    var stride = rows // n
    for s in range(first, last, n):
        for j in range(j_first, min(j_last, h)):
            var wr = SIMD[dtype, lanes](tw_re[unsafe_offset=j * stride])
            var wi = SIMD[dtype, lanes](tw_im[unsafe_offset=j * stride])
            var o0 = (s + j) * lanes
            var o1 = o0 + h * lanes
            var ar = re.unsafe_load[width=lanes](o0)
            var ai = im.unsafe_load[width=lanes](o0)
            var br = re.unsafe_load[width=lanes](o1)
            var bi = im.unsafe_load[width=lanes](o1)
            var dr = ar - br
            var di = ai - bi
            re.unsafe_store(o0, ar + br)
            im.unsafe_store(o0, ai + bi)
            re.unsafe_store(o1, dr * wr - di * wi)
            im.unsafe_store(o1, dr * wi + di * wr)


@always_inline
def _dit2_stage[dtype: DType, lanes: Int](
    re: Pointer[Scalar[dtype], MutAnyOrigin],
    im: Pointer[Scalar[dtype], MutAnyOrigin],
    rows: Int,
    first: Int,
    last: Int,
    n: Int,
    tw_re: Pointer[Scalar[dtype], MutAnyOrigin],
    tw_im: Pointer[Scalar[dtype], MutAnyOrigin],
    j_first: Int = 0,
    j_last: Int = Int.MAX,
):
    """The mirror of _dif2_stage (up to a factor 2): b *= conj(w^j); (a+b, a-b)."""
    var h = n // 2
    var stride = rows // n
    for s in range(first, last, n):
        for j in range(j_first, min(j_last, h)):
            var wr = SIMD[dtype, lanes](tw_re[unsafe_offset=j * stride])
            var wi = SIMD[dtype, lanes](tw_im[unsafe_offset=j * stride])
            var o0 = (s + j) * lanes
            var o1 = o0 + h * lanes
            var ar = re.unsafe_load[width=lanes](o0)
            var ai = im.unsafe_load[width=lanes](o0)
            var xr = re.unsafe_load[width=lanes](o1)
            var xi = im.unsafe_load[width=lanes](o1)
            var br = xr * wr + xi * wi
            var bi = xi * wr - xr * wi
            re.unsafe_store(o0, ar + br)
            im.unsafe_store(o0, ai + bi)
            re.unsafe_store(o1, ar - br)
            im.unsafe_store(o1, ai - bi)


@always_inline
def _dif4_stage[dtype: DType, lanes: Int](
    re: Pointer[Scalar[dtype], MutAnyOrigin],
    im: Pointer[Scalar[dtype], MutAnyOrigin],
    rows: Int,
    first: Int,
    last: Int,
    n: Int,
    tw_re: Pointer[Scalar[dtype], MutAnyOrigin],
    tw_im: Pointer[Scalar[dtype], MutAnyOrigin],
    j_first: Int = 0,
    j_last: Int = Int.MAX,
):
    """Radix-4 decimation in frequency over blocks of n rows.

    y_r = sum_m a_m (-i)^(r m), then y_r *= W_n^(r j); sub-block r (rows
    r*n/4 ..) holds the frequencies 4k + r of the block.
    """
    var q = n // 4
    var stride = rows // n
    for s in range(first, last, n):
        for j in range(j_first, min(j_last, q)):
            var t = j * stride
            var w1r = SIMD[dtype, lanes](tw_re[unsafe_offset=t])
            var w1i = SIMD[dtype, lanes](tw_im[unsafe_offset=t])
            var w2r = SIMD[dtype, lanes](tw_re[unsafe_offset=2 * t])
            var w2i = SIMD[dtype, lanes](tw_im[unsafe_offset=2 * t])
            var w3r = SIMD[dtype, lanes](tw_re[unsafe_offset=3 * t])
            var w3i = SIMD[dtype, lanes](tw_im[unsafe_offset=3 * t])
            var o0 = (s + j) * lanes
            var o1 = o0 + q * lanes
            var o2 = o1 + q * lanes
            var o3 = o2 + q * lanes
            var a0r = re.unsafe_load[width=lanes](o0)
            var a0i = im.unsafe_load[width=lanes](o0)
            var a1r = re.unsafe_load[width=lanes](o1)
            var a1i = im.unsafe_load[width=lanes](o1)
            var a2r = re.unsafe_load[width=lanes](o2)
            var a2i = im.unsafe_load[width=lanes](o2)
            var a3r = re.unsafe_load[width=lanes](o3)
            var a3i = im.unsafe_load[width=lanes](o3)
            var t0r = a0r + a2r
            var t0i = a0i + a2i
            var t1r = a0r - a2r
            var t1i = a0i - a2i
            var t2r = a1r + a3r
            var t2i = a1i + a3i
            var t3r = a1r - a3r
            var t3i = a1i - a3i
            re.unsafe_store(o0, t0r + t2r)
            im.unsafe_store(o0, t0i + t2i)
            # y1 = t1 - i t3, y2 = t0 - t2, y3 = t1 + i t3
            var y1r = t1r + t3i
            var y1i = t1i - t3r
            var y2r = t0r - t2r
            var y2i = t0i - t2i
            var y3r = t1r - t3i
            var y3i = t1i + t3r
            re.unsafe_store(o1, y1r * w1r - y1i * w1i)
            im.unsafe_store(o1, y1r * w1i + y1i * w1r)
            re.unsafe_store(o2, y2r * w2r - y2i * w2i)
            im.unsafe_store(o2, y2r * w2i + y2i * w2r)
            re.unsafe_store(o3, y3r * w3r - y3i * w3i)
            im.unsafe_store(o3, y3r * w3i + y3i * w3r)


@always_inline
def _dit4_stage[dtype: DType, lanes: Int](
    re: Pointer[Scalar[dtype], MutAnyOrigin],
    im: Pointer[Scalar[dtype], MutAnyOrigin],
    rows: Int,
    first: Int,
    last: Int,
    n: Int,
    tw_re: Pointer[Scalar[dtype], MutAnyOrigin],
    tw_im: Pointer[Scalar[dtype], MutAnyOrigin],
    j_first: Int = 0,
    j_last: Int = Int.MAX,
):
    """The mirror of _dif4_stage (up to a factor 4): y_r *= conj(W_n^(r j)),
    a_m = sum_r y_r i^(r m)."""
    var q = n // 4
    var stride = rows // n
    for s in range(first, last, n):
        for j in range(j_first, min(j_last, q)):
            var t = j * stride
            var w1r = SIMD[dtype, lanes](tw_re[unsafe_offset=t])
            var w1i = SIMD[dtype, lanes](tw_im[unsafe_offset=t])
            var w2r = SIMD[dtype, lanes](tw_re[unsafe_offset=2 * t])
            var w2i = SIMD[dtype, lanes](tw_im[unsafe_offset=2 * t])
            var w3r = SIMD[dtype, lanes](tw_re[unsafe_offset=3 * t])
            var w3i = SIMD[dtype, lanes](tw_im[unsafe_offset=3 * t])
            var o0 = (s + j) * lanes
            var o1 = o0 + q * lanes
            var o2 = o1 + q * lanes
            var o3 = o2 + q * lanes
            var y0r = re.unsafe_load[width=lanes](o0)
            var y0i = im.unsafe_load[width=lanes](o0)
            var x1r = re.unsafe_load[width=lanes](o1)
            var x1i = im.unsafe_load[width=lanes](o1)
            var x2r = re.unsafe_load[width=lanes](o2)
            var x2i = im.unsafe_load[width=lanes](o2)
            var x3r = re.unsafe_load[width=lanes](o3)
            var x3i = im.unsafe_load[width=lanes](o3)
            var y1r = x1r * w1r + x1i * w1i
            var y1i = x1i * w1r - x1r * w1i
            var y2r = x2r * w2r + x2i * w2i
            var y2i = x2i * w2r - x2r * w2i
            var y3r = x3r * w3r + x3i * w3i
            var y3i = x3i * w3r - x3r * w3i
            var u0r = y0r + y2r
            var u0i = y0i + y2i
            var u1r = y0r - y2r
            var u1i = y0i - y2i
            var u2r = y1r + y3r
            var u2i = y1i + y3i
            var u3r = y1r - y3r
            var u3i = y1i - y3i
            # a0 = u0 + u2, a1 = u1 + i u3, a2 = u0 - u2, a3 = u1 - i u3
            re.unsafe_store(o0, u0r + u2r)
            im.unsafe_store(o0, u0i + u2i)
            re.unsafe_store(o1, u1r - u3i)
            im.unsafe_store(o1, u1i + u3r)
            re.unsafe_store(o2, u0r - u2r)
            im.unsafe_store(o2, u0i - u2i)
            re.unsafe_store(o3, u1r + u3i)
            im.unsafe_store(o3, u1i - u3r)


def _forward_stages[dtype: DType, lanes: Int](
    re: Pointer[Scalar[dtype], MutAnyOrigin],
    im: Pointer[Scalar[dtype], MutAnyOrigin],
    rows: Int,
    first: Int,
    n: Int,
    tw_re: Pointer[Scalar[dtype], MutAnyOrigin],
    tw_im: Pointer[Scalar[dtype], MutAnyOrigin],
):
    """All forward column stages of the n-row sub-transform at rows [first, first+n).

    Radix 2 exactly when log2(n) is odd (so only at the top), else radix 4:
    the same rule at every depth keeps every schedule on one stage order.
    """
    var size = n
    if _log2(size) % 2 == 1:
        _dif2_stage[dtype, lanes](re, im, rows, first, first + n, size, tw_re, tw_im)
        size //= 2
    while size >= 4:
        _dif4_stage[dtype, lanes](re, im, rows, first, first + n, size, tw_re, tw_im)
        size //= 4


def _inverse_stages[dtype: DType, lanes: Int](
    re: Pointer[Scalar[dtype], MutAnyOrigin],
    im: Pointer[Scalar[dtype], MutAnyOrigin],
    rows: Int,
    first: Int,
    n: Int,
    tw_re: Pointer[Scalar[dtype], MutAnyOrigin],
    tw_im: Pointer[Scalar[dtype], MutAnyOrigin],
):
    """_forward_stages undone, stage by stage in reverse order."""
    var odd = _log2(n) % 2 == 1
    var top = n // 2 if odd else n
    var size = 4
    while size <= top:
        _dit4_stage[dtype, lanes](re, im, rows, first, first + n, size, tw_re, tw_im)
        size *= 4
    if odd:
        _dit2_stage[dtype, lanes](re, im, rows, first, first + n, n, tw_re, tw_im)


# ---------------------------------------------------------------------------
# CPU: the V-point DFTs across lanes, on V x V register blocks
# ---------------------------------------------------------------------------


@always_inline
def _transpose[dtype: DType, lanes: Int](x: SIMD[dtype, lanes * lanes]) -> SIMD[dtype, lanes * lanes]:
    """Transpose a lanes x lanes block held row-major in one wide SIMD value.

    Interleaving rows i and i + lanes/2 into rows 2i, 2i+1 rotates the
    2*log2(lanes)-bit element index left by one; log2(lanes) rounds swap
    the row and column bits.
    """
    comptime half = lanes // 2
    comptime rounds = _log2(lanes)
    var cur = x
    comptime for _r in range(rounds):
        var nxt = SIMD[dtype, lanes * lanes](0)
        comptime for i in range(half):
            var pair = cur.slice[lanes, offset = i * lanes]().interleave(
                cur.slice[lanes, offset = (i + half) * lanes]()
            )
            nxt = nxt.insert[offset = 2 * i * lanes](pair)
        cur = nxt
    return cur


@always_inline
def _dif_across[dtype: DType, lanes: Int](mut xr: SIMD[dtype, lanes * lanes], mut xi: SIMD[dtype, lanes * lanes]):
    """Radix-2 DIF DFT of length `lanes` across the block's row vectors."""
    comptime rounds = _log2(lanes)
    comptime for st in range(rounds):
        comptime h = lanes >> (st + 1)
        comptime for s in range(lanes // (2 * h)):
            comptime for j in range(h):
                comptime i0 = (s * 2 * h + j) * lanes
                comptime i1 = i0 + h * lanes
                var ar = xr.slice[lanes, offset=i0]()
                var ai = xi.slice[lanes, offset=i0]()
                var br = xr.slice[lanes, offset=i1]()
                var bi = xi.slice[lanes, offset=i1]()
                xr = xr.insert[offset=i0](ar + br)
                xi = xi.insert[offset=i0](ai + bi)
                var dr = ar - br
                var di = ai - bi
                comptime if j == 0:
                    xr = xr.insert[offset=i1](dr)
                    xi = xi.insert[offset=i1](di)
                elif 4 * j == 2 * h:
                    # times -i
                    xr = xr.insert[offset=i1](di)
                    xi = xi.insert[offset=i1](-dr)
                else:
                    comptime c = cos(2.0 * pi * Float64(j) / Float64(2 * h))
                    comptime sn = -sin(2.0 * pi * Float64(j) / Float64(2 * h))
                    var wr = SIMD[dtype, lanes](Scalar[dtype](c))
                    var wi = SIMD[dtype, lanes](Scalar[dtype](sn))
                    xr = xr.insert[offset=i1](dr * wr - di * wi)
                    xi = xi.insert[offset=i1](dr * wi + di * wr)


@always_inline
def _dit_across[dtype: DType, lanes: Int](mut xr: SIMD[dtype, lanes * lanes], mut xi: SIMD[dtype, lanes * lanes]):
    """The mirror of _dif_across (up to a factor `lanes`)."""
    comptime rounds = _log2(lanes)
    comptime for st_rev in range(rounds):
        comptime st = rounds - 1 - st_rev
        comptime h = lanes >> (st + 1)
        comptime for s in range(lanes // (2 * h)):
            comptime for j in range(h):
                comptime i0 = (s * 2 * h + j) * lanes
                comptime i1 = i0 + h * lanes
                var ar = xr.slice[lanes, offset=i0]()
                var ai = xi.slice[lanes, offset=i0]()
                var xr1 = xr.slice[lanes, offset=i1]()
                var xi1 = xi.slice[lanes, offset=i1]()
                var br = xr1
                var bi = xi1
                comptime if j == 0:
                    pass
                elif 4 * j == 2 * h:
                    # times +i
                    br = -xi1
                    bi = xr1
                else:
                    comptime c = cos(2.0 * pi * Float64(j) / Float64(2 * h))
                    comptime sn = sin(2.0 * pi * Float64(j) / Float64(2 * h))
                    var wr = SIMD[dtype, lanes](Scalar[dtype](c))
                    var wi = SIMD[dtype, lanes](Scalar[dtype](sn))
                    br = xr1 * wr - xi1 * wi
                    bi = xr1 * wi + xi1 * wr
                xr = xr.insert[offset=i0](ar + br)
                xi = xi.insert[offset=i0](ai + bi)
                xr = xr.insert[offset=i1](ar - br)
                xi = xi.insert[offset=i1](ai - bi)


def _rows_pass[dtype: DType, lanes: Int, spectrum_only: Bool](
    re: Pointer[Scalar[dtype], MutAnyOrigin],
    im: Pointer[Scalar[dtype], MutAnyOrigin],
    g_re: Pointer[Scalar[dtype], MutAnyOrigin],
    g_im: Pointer[Scalar[dtype], MutAnyOrigin],
    first: Int,
    count: Int,
    tw_re: Pointer[Scalar[dtype], MutAnyOrigin],
    tw_im: Pointer[Scalar[dtype], MutAnyOrigin],
    scale: Scalar[dtype],
):
    """The forward tail, the product and the inverse head, one V x V block at a time.

    With spectrum_only, stop after the forward tail and store
    scale * conj(X) into g: the taps' spectrum ready for the product
    (conjugate for a correlation, scale = 1/L for the unnormalised inverse).
    """
    comptime block = lanes * lanes
    for b in range(first // lanes, (first + count) // lanes):
        var base = b * block
        var vr = re.unsafe_load[width=block](base)
        var vi = im.unsafe_load[width=block](base)
        var wr = tw_re.unsafe_load[width=block](base)
        var wi = tw_im.unsafe_load[width=block](base)
        var xr = _transpose[dtype, lanes](vr * wr - vi * wi)
        var xi = _transpose[dtype, lanes](vr * wi + vi * wr)
        _dif_across[dtype, lanes](xr, xi)
        comptime if spectrum_only:
            var sc = SIMD[dtype, block](scale)
            g_re.unsafe_store(base, xr * sc)
            g_im.unsafe_store(base, -(xi * sc))
        else:
            var gr = g_re.unsafe_load[width=block](base)
            var gi = g_im.unsafe_load[width=block](base)
            var yr = xr * gr - xi * gi
            var yi = xr * gi + xi * gr
            _dit_across[dtype, lanes](yr, yi)
            var zr = _transpose[dtype, lanes](yr)
            var zi = _transpose[dtype, lanes](yi)
            re.unsafe_store(base, zr * wr + zi * wi)
            im.unsafe_store(base, zi * wr - zr * wi)


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


@always_inline
def _load_row[dtype: DType, lanes: Int](
    dst: Pointer[Scalar[dtype], MutAnyOrigin],
    src: Pointer[Scalar[dtype], MutAnyOrigin],
    offset: Int,
    count: Int,
    points: Int,
):
    """dst[0:count] = src[offset:offset+count], zeros up to `points`."""
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
    while i < points:
        dst.unsafe_store(i, SIMD[dtype, lanes](0))
        i += lanes


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
    max_workers: Int = 0,
):
    """The whole CPU op: tables, one spectrum per taps row, block pairs over cores.

    The taps' spectra (S rows of L re, then S rows of L im) go to `spectrum`
    if `spectrum_given`, and are read from it without being computed again
    if `spectrum_ready` (a stream of chunks through the same taps); else
    they live in scratch for this call.

    Row r's outputs are cut into blocks of T = L - K + 1; block b reads the
    L signal samples from b * T - pad (zero outside the row) and writes
    outputs [b * T, b * T + T). Blocks 2p and 2p + 1 of a row share one
    complex transform. Tasks (a taps row, or a block pair) are dealt to
    `workers` (all cores, or max_workers) in full rounds, each worker
    reusing one pair of L-point scratch arrays; the tasks left over after
    the last full round run one at a time with every core inside the
    transform (_transform_parallel), so 3 pairs on 2 cores do not leave a
    core idle for a third of the call.
    """
    comptime lanes = simd_width_of[dtype]()
    var points = fft_points(block, n_taps, lanes)
    var t = points - n_taps + 1
    var blocks = ceildiv(row_outputs, t)
    var rows_l = points // lanes
    var workers = num_physical_cores() if max_workers <= 0 else min(max_workers, num_physical_cores())
    workers = max(1, workers)
    var col_re = _alloc[dtype](rows_l)
    var col_im = _alloc[dtype](rows_l)
    var row_re = _alloc[dtype](points)
    var row_im = _alloc[dtype](points)

    def tables(part: Int) {var col_re, var col_im, var row_re, var row_im, var points, var workers}:
        _build_tables[dtype, lanes](points, col_re, col_im, row_re, row_im, part, workers)

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

    var pairs = (blocks + 1) // 2
    var tasks = rows * pairs
    full = (tasks // workers) * workers

    @always_inline
    def pair_in(
        task: Int,
        re: Pointer[Scalar[dtype], MutAnyOrigin],
        im: Pointer[Scalar[dtype], MutAnyOrigin],
    ) {var signal, var signal_stride, var length, var pad, var pairs, var blocks, var t, var points} -> Int:
        """Load block pair `task` into re and im; returns its row."""
        var r = task // pairs
        var b = 2 * (task % pairs)
        var row = signal.unsafe_offset(r * signal_stride)
        _load_block[dtype, lanes](re, row, b * t - pad, length, points)
        if b + 1 < blocks:
            _load_block[dtype, lanes](im, row, (b + 1) * t - pad, length, points)
        else:
            _load_row[dtype, lanes](im, row, 0, 0, points)
        return r

    @always_inline
    def pair_out(
        task: Int,
        re: Pointer[Scalar[dtype], MutAnyOrigin],
        im: Pointer[Scalar[dtype], MutAnyOrigin],
    ) {var result, var row_outputs, var pairs, var blocks, var t}:
        """Store block pair `task`'s outputs from re and im."""
        var r = task // pairs
        var b = 2 * (task % pairs)
        var at = r * row_outputs + b * t
        _store_row[dtype, lanes](result, at, re, min(t, row_outputs - b * t))
        if b + 1 < blocks:
            _store_row[dtype, lanes](result, at + t, im, min(t, row_outputs - (b + 1) * t))

    def work(worker: Int) {
        var g_re, var g_im, var col_re, var col_im, var row_re, var row_im, var points,
        var rows_l, var full, var workers, var scale, var taps_rows, var pair_in, var pair_out
    }:
        var re = _alloc[dtype](2 * points + CPU_SKEW)
        var im = re.unsafe_offset(points + CPU_SKEW)
        var task = worker
        while task < full:
            var r = pair_in(task, re, im)
            var c = r if taps_rows > 1 else 0
            _transform_block[dtype, lanes, False](
                re, im, g_re.unsafe_offset(c * points), g_im.unsafe_offset(c * points), rows_l, 0,
                rows_l, col_re, col_im, row_re, row_im, scale,
            )
            pair_out(task, re, im)
            task += workers
        re.unsafe_free()

    if full > 0:
        sync_parallelize(work, workers)

    for task in range(full, tasks):
        var r = pair_in(task, re, im)
        var c = r if taps_rows > 1 else 0
        _transform_parallel[dtype, lanes, False](
            re, im, g_re.unsafe_offset(c * points), g_im.unsafe_offset(c * points), rows_l,
            col_re, col_im, row_re, row_im, scale, workers,
        )
        pair_out(task, re, im)

    re.unsafe_free()
    col_re.unsafe_free()
    col_im.unsafe_free()
    row_re.unsafe_free()
    row_im.unsafe_free()
    if not spectrum_given:
        g_re.unsafe_free()
