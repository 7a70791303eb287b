"""CPU path of the FFT op, the transform's pieces: twiddle tables, column
stages (whole-vector butterflies between rows), the V-point DFTs across
lanes on V x V register blocks, and the fused product pass.

See fft_conv.mojo for the method; fft_cpu.mojo schedules these pieces.
"""

from std.math import cos, sin, pi
from std.memory.alloc import unsafe_alloc

from .fft_common import _log2


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
