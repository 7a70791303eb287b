"""The `fft_conv1d` custom op: overlap-save correlation through FFTs.

Same contract as maxconv's direct `conv1d` op, so the engine's tiling serves
both. For every channel c and tile b:

    output[c, b, i] = sum_{j < K} signal[c, b, i + j] * taps[c, j]

with i < T = W - K + 1. Each tile row is one overlap-save block: it is
zero-padded to L = next_pow2(max(W, V*V)) points (V: see below), transformed, multiplied by the
conjugate spectrum of the channel's taps (conjugate: a correlation, not a
convolution), transformed back; outputs 0..T-1 of the circular result are
exact because the K-1 halo absorbs the wrap-around. The caller should pick
W = L (T = L - K + 1), else the padding is wasted work.

Why this FFT (all choices follow from "only a pointwise product happens in
the frequency domain"):

- No reordering pass. The forward transform is decimation in frequency
  (natural input, digit-reversed output), the inverse is its exact mirror
  (decimation in time, digit-reversed input, natural output). The taps'
  spectrum goes through the same forward code, so it sits in the same
  permuted order and the product is taken as stored. A Stockham transform
  would spend a buffer and a pass on an order nobody looks at.
- Two real rows per complex transform. Rows a and b of one channel travel as
  z = a + i*b; since the taps are real, IFFT(FFT(z) * G) = (a (*) g) +
  i (b (*) g), so the real part is row a's result and the imaginary part
  row b's, with no split/merge post-processing (the usual real FFT via a
  half-length complex FFT needs one each way, and breaks the no-reordering
  trick above). An odd last row of a channel rides with zeros.
- SIMD over columns. A length-L complex signal (split re/im arrays) is
  viewed as M = L/V rows of V = SIMD-width lanes, x[V*a + l]. The L-point DFT
  factors as V interleaved M-point DFTs (over a, one per lane l: every
  butterfly is whole vectors, whatever the stride), a twiddle
  W_L^(l*k1), and M V-point DFTs across lanes. The last step is done V rows
  at a time: transpose the V x V block in registers (log2(V) rounds of
  interleaves) and run the V-point DFT across the V vectors with
  compile-time twiddles. Forward tail, product with the taps' spectrum and
  inverse head are fused into one pass over each V x V block.
- Radix 4 (one radix-2 stage when log2(M) is odd) halves the passes over
  memory against radix 2; twiddles come from tables built once per call in
  float64 from two small exact tables (w^t = hi[t / S] * lo[t % S]), so a
  call costs O(L) multiplies, not O(L) sin/cos.

The GPU path uses the same ordering and pairing tricks with radix-16
stages: a row of up to 2^GPU_ROW_LOG points is transformed by one thread
block in shared memory, each thread running a 16-point DFT in registers per
stage, with the product fused between the last forward and first inverse
stage; longer rows first go through radix-2..32 passes in global memory
(decimation in frequency leaves independent contiguous sub-DFTs) down to
chunks of 2^GPU_CHUNK_LOG points, then mirrored passes back (see the GPU
kernels section).
"""

from extensibility import InputTensor, OutputTensor
import extensibility
from max.algorithm import sync_parallelize
from max.gpu import block_dim, block_idx, thread_idx
from max.gpu.host import DeviceContext, FuncAttribute
from max.gpu.memory import AddressSpace, external_memory
from max.gpu.sync import barrier
from std.math import ceildiv, cos, sin, pi
from std.memory.alloc import unsafe_alloc
from std.sys import simd_width_of, num_physical_cores, size_of


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
# Small helpers
# ---------------------------------------------------------------------------


def _log2(n: Int) -> Int:
    """log2 of a power of two (the exponent of the next one for others)."""
    var r = 0
    while (1 << r) < n:
        r += 1
    return r


def fft_points(width: Int, lanes: Int) -> Int:
    """The transform length for tiles of `width` samples: a power of two,
    at least lanes^2 (the CPU's V x V blocks; the GPU passes lanes = 8)."""
    return 1 << _log2(max(width, lanes * lanes))


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
    channels: Int,
    batch: Int,
    width: Int,
    n_taps: Int,
    max_workers: Int = 0,
):
    """The whole CPU op: tables, one taps spectrum per channel, row pairs over cores.

    Tasks (a channel's taps, or a channel's row pair) are dealt to
    `workers` (all cores, or max_workers) in full rounds, each worker reusing one pair of
    L-point scratch arrays; the tasks left over after the last full round
    run one at a time with every core inside the transform
    (_transform_parallel), so 3 row pairs on 2 cores do not leave a core
    idle for a third of the call.
    """
    comptime lanes = simd_width_of[dtype]()
    var t = width - n_taps + 1
    var points = fft_points(width, lanes)
    var rows = points // lanes
    var workers = num_physical_cores() if max_workers <= 0 else min(max_workers, num_physical_cores())
    workers = max(1, workers)
    var col_re = _alloc[dtype](rows)
    var col_im = _alloc[dtype](rows)
    var row_re = _alloc[dtype](points)
    var row_im = _alloc[dtype](points)

    def tables(part: Int) {var col_re, var col_im, var row_re, var row_im, var points, var workers}:
        _build_tables[dtype, lanes](points, col_re, col_im, row_re, row_im, part, workers)

    sync_parallelize(tables, workers)

    var g_re = _alloc[dtype](channels * points)
    var g_im = _alloc[dtype](channels * points)
    var scale = Scalar[dtype](1.0 / Float64(points))

    # The taps' spectra: channel c's taps in re, zeros in im.
    var full = (channels // workers) * workers

    def spectra(worker: Int) {
        var taps, var g_re, var g_im, var col_re, var col_im, var row_re, var row_im,
        var points, var rows, var n_taps, var full, var workers, var scale
    }:
        var re = _alloc[dtype](2 * points + CPU_SKEW)
        var im = re.unsafe_offset(points + CPU_SKEW)
        var c = worker
        while c < full:
            _load_row[dtype, lanes](re, taps, c * n_taps, n_taps, points)
            _load_row[dtype, lanes](im, taps, 0, 0, points)
            _transform_block[dtype, lanes, True](
                re, im, g_re.unsafe_offset(c * points), g_im.unsafe_offset(c * points), rows, 0,
                rows, col_re, col_im, row_re, row_im, scale,
            )
            c += workers
        re.unsafe_free()

    if full > 0:
        sync_parallelize(spectra, workers)

    var re = _alloc[dtype](2 * points + CPU_SKEW)
    var im = re.unsafe_offset(points + CPU_SKEW)
    for c in range(full, channels):
        _load_row[dtype, lanes](re, taps, c * n_taps, n_taps, points)
        _load_row[dtype, lanes](im, taps, 0, 0, points)
        _transform_parallel[dtype, lanes, True](
            re, im, g_re.unsafe_offset(c * points), g_im.unsafe_offset(c * points), rows,
            col_re, col_im, row_re, row_im, scale, workers,
        )

    # Row pairs: rows 2p and 2p+1 of one channel share one complex transform.
    var pairs = (batch + 1) // 2
    var tasks = channels * pairs
    full = (tasks // workers) * workers

    def work(worker: Int) {
        var result, var signal, var g_re, var g_im, var col_re, var col_im, var row_re,
        var row_im, var points, var rows, var width, var t, var batch, var pairs, var full,
        var workers, var scale
    }:
        var re = _alloc[dtype](2 * points + CPU_SKEW)
        var im = re.unsafe_offset(points + CPU_SKEW)
        var task = worker
        while task < full:
            var c = task // pairs
            var first = c * batch + 2 * (task % pairs)
            var second = 2 * (task % pairs) + 1 < batch
            _load_row[dtype, lanes](re, signal, first * width, width, points)
            _load_row[dtype, lanes](im, signal, (first + 1) * width, width if second else 0, points)
            _transform_block[dtype, lanes, False](
                re, im, g_re.unsafe_offset(c * points), g_im.unsafe_offset(c * points), rows, 0,
                rows, col_re, col_im, row_re, row_im, scale,
            )
            _store_row[dtype, lanes](result, first * t, re, t)
            if second:
                _store_row[dtype, lanes](result, (first + 1) * t, im, t)
            task += workers
        re.unsafe_free()

    if full > 0:
        sync_parallelize(work, workers)

    for task in range(full, tasks):
        var c = task // pairs
        var first = c * batch + 2 * (task % pairs)
        var second = 2 * (task % pairs) + 1 < batch
        _load_row[dtype, lanes](re, signal, first * width, width, points)
        _load_row[dtype, lanes](im, signal, (first + 1) * width, width if second else 0, points)
        _transform_parallel[dtype, lanes, False](
            re, im, g_re.unsafe_offset(c * points), g_im.unsafe_offset(c * points), rows,
            col_re, col_im, row_re, row_im, scale, workers,
        )
        _store_row[dtype, lanes](result, first * t, re, t)
        if second:
            _store_row[dtype, lanes](result, (first + 1) * t, im, t)

    re.unsafe_free()
    col_re.unsafe_free()
    col_im.unsafe_free()
    row_re.unsafe_free()
    row_im.unsafe_free()
    g_re.unsafe_free()
    g_im.unsafe_free()


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
    below 1e-22 there).
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
    var k = 20
    while k > 0:
        c = 1.0 - x2 / Float64(k * (k - 1)) * c
        s = 1.0 - x2 / Float64((k + 1) * k) * s
        k -= 2
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
def _reg_dif[dtype: DType, r: Int](mut vr: SIMD[dtype, r], mut vi: SIMD[dtype, r]):
    """r-point DFT in registers, radix-2 DIF: natural in, X_p at index bitrev(p)."""
    comptime for st in range(_log2(r)):
        comptime h = r >> (st + 1)
        comptime for s in range(r // (2 * h)):
            comptime for j in range(h):
                comptime i0 = s * 2 * h + j
                comptime i1 = i0 + h
                var ar = vr[i0]
                var ai = vi[i0]
                var br = vr[i1]
                var bi = vi[i1]
                vr[i0] = ar + br
                vi[i0] = ai + bi
                var dr = ar - br
                var di = ai - bi
                comptime if j == 0:
                    vr[i1] = dr
                    vi[i1] = di
                elif 4 * j == 2 * h:
                    # times -i
                    vr[i1] = di
                    vi[i1] = -dr
                else:
                    # float64 sin/cos do not exist on NVIDIA GPUs, even at
                    # compile time: the series of _unit_root does.
                    comptime w = _unit_root(j, 2 * h)
                    comptime c = Scalar[dtype](w[0])
                    comptime sn = Scalar[dtype](w[1])
                    vr[i1] = dr * c - di * sn
                    vi[i1] = dr * sn + di * c


@always_inline
def _reg_dit[dtype: DType, r: Int](mut vr: SIMD[dtype, r], mut vi: SIMD[dtype, r]):
    """The mirror of _reg_dif (up to a factor r): index bitrev(p) in, natural out."""
    comptime stages = _log2(r)
    comptime for st_rev in range(stages):
        comptime h = r >> (stages - st_rev)
        comptime for s in range(r // (2 * h)):
            comptime for j in range(h):
                comptime i0 = s * 2 * h + j
                comptime i1 = i0 + h
                var ar = vr[i0]
                var ai = vi[i0]
                var xr = vr[i1]
                var xi = vi[i1]
                var br = xr
                var bi = xi
                comptime if j == 0:
                    pass
                elif 4 * j == 2 * h:
                    # times +i
                    br = -xi
                    bi = xr
                else:
                    comptime w = _unit_root(j, 2 * h)
                    comptime c = Scalar[dtype](w[0])
                    comptime sn = Scalar[dtype](-w[1])
                    br = xr * c - xi * sn
                    bi = xr * sn + xi * c
                vr[i0] = ar + br
                vi[i0] = ai + bi
                vr[i1] = ar - br
                vi[i1] = ai - bi


@always_inline
def _twiddle_out[dtype: DType, r: Int](
    mut vr: SIMD[dtype, r], mut vi: SIMD[dtype, r], wr: SIMD[dtype, r], wi: SIMD[dtype, r]
):
    """Forward: frequency p (register bitrev(p)) times W^(p*j)."""
    comptime for p in range(1, r):
        comptime i = _bitrev(p, _log2(r))
        var a = vr[i]
        var b = vi[i]
        vr[i] = a * wr[p] - b * wi[p]
        vi[i] = a * wi[p] + b * wr[p]


@always_inline
def _twiddle_in[dtype: DType, r: Int](
    mut vr: SIMD[dtype, r], mut vi: SIMD[dtype, r], wr: SIMD[dtype, r], wi: SIMD[dtype, r]
):
    """Inverse: frequency p (register bitrev(p)) times conj(W^(p*j))."""
    comptime for p in range(1, r):
        comptime i = _bitrev(p, _log2(r))
        var a = vr[i]
        var b = vi[i]
        vr[i] = a * wr[p] + b * wi[p]
        vi[i] = b * wr[p] - a * wi[p]


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
            _twiddle_out[dtype, r](vr, vi, wr, wi)
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
            _twiddle_in[dtype, r](vr, vi, wr, wi)
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
    batch: Int64,
    pairs: Int64,
    width: Int64,
    outputs: Int64,
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
    var w = Int(width)
    var bt = Int(batch)
    var channel = row if spectrum else row // Int(pairs)
    var first = channel * bt + 2 * (row - channel * Int(pairs))
    var second = first + 1 < (channel + 1) * bt

    # GPU_LOAD_UNROLL loads in flight per thread: a loop of dependent
    # load-store pairs would wait a full memory latency per point.
    var i = tid
    while i < size:
        var vr = SIMD[dtype, GPU_LOAD_UNROLL](0)
        var vi = SIMD[dtype, GPU_LOAD_UNROLL](0)
        comptime for u in range(GPU_LOAD_UNROLL):
            var n = i + u * threads
            comptime if direct:
                comptime if spectrum:
                    if n < w:
                        vr[u] = source[unsafe_offset=row * w + n]
                else:
                    if n < w:
                        vr[u] = source[unsafe_offset=first * w + n]
                        if second:
                            vi[u] = source[unsafe_offset=(first + 1) * w + n]
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
        var t = Int(outputs)
        i = tid
        while i < size:
            comptime if direct:
                if i < t:
                    result[unsafe_offset=first * t + i] = xr[unsafe_offset=_pad(i)]
                    if second:
                        result[unsafe_offset=(first + 1) * t + i] = xi[unsafe_offset=_pad(i)]
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
    batch: Int64,
    pairs: Int64,
    width: Int64,
    outputs: Int64,
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
    var w = Int(width)
    var bt = Int(batch)
    var channel = row if spectrum else row // Int(pairs)
    var first = channel * bt + 2 * (row - channel * Int(pairs))
    var second = first + 1 < (channel + 1) * bt
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
                var n = offset + q * m
                comptime if spectrum:
                    vr[q] = source[unsafe_offset=row * w + n] if n < w else 0
                else:
                    var inside = n < w
                    vr[q] = source[unsafe_offset=first * w + n] if inside else 0
                    vi[q] = source[unsafe_offset=(first + 1) * w + n] if (inside and second) else 0
            else:
                vr[q] = re[unsafe_offset=base + q * m]
                vi[q] = im[unsafe_offset=base + q * m]
        _reg_dif[dtype, r](vr, vi)
        if j != 0:
            _twiddle_out[dtype, r](vr, vi, wr, wi)
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
            _twiddle_in[dtype, r](vr, vi, wr, wi)
        _reg_dit[dtype, r](vr, vi)
        var t = Int(outputs)
        comptime for q in range(r):
            comptime if io:
                var n = offset + q * m
                if n < t:
                    result[unsafe_offset=first * t + n] = vr[q]
                    if second:
                        result[unsafe_offset=(first + 1) * t + n] = vi[q]
            else:
                re[unsafe_offset=base + q * m] = vr[q]
                im[unsafe_offset=base + q * m] = vi[q]


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
    batch: Int,
    pairs: Int,
    width: Int,
    outputs: Int,
) raises:
    """Launch one global pass of radix 2^bits (1..5)."""
    var grid = ceildiv(n_rows << (lp - bits), GPU_PASS_TPB)
    comptime for b in range(1, 6):
        if bits == b:
            ctx.enqueue_function[_gpu_pass[dtype, 1 << b, inverse, io, spectrum]](
                re, im, source, result, tw, Int64(n_rows), Int64(lp), Int64(lb), Int64(lo_bits),
                Int64(batch), Int64(pairs), Int64(width), Int64(outputs),
                grid_dim=grid, block_dim=GPU_PASS_TPB,
            )


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
    batch: Int,
    pairs: Int,
    width: Int,
    outputs: Int,
    scale: Scalar[dtype],
    chunk_threads: Int,
) raises:
    """Enqueue every pass for n_rows rows: the taps' spectra (spectrum) or
    the tile pairs' correlations."""
    comptime max_bits = GPU_PASS_BITS_F32 if dtype == DType.float32 else GPU_PASS_BITS_F64
    var smem_bytes = 2 * _pad(1 << ls) * size_of[dtype]()
    var chunks = n_rows << (lp - ls)
    var above = lp - ls
    if above == 0:
        ctx.enqueue_function[_gpu_chunk[dtype, True, spectrum]](
            re, im, source, result, g_re, g_im, tw, Int64(lp), Int64(ls), Int64(lo_bits),
            Int64(batch), Int64(pairs), Int64(width), Int64(outputs), scale,
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
                ctx, bits, re, im, source, result, tw, n_rows, lp, lb, lo_bits, batch, pairs, width, outputs
            )
        else:
            _enqueue_pass[dtype, False, False, spectrum](
                ctx, bits, re, im, source, result, tw, n_rows, lp, lb, lo_bits, batch, pairs, width, outputs
            )
        lb -= bits
    ctx.enqueue_function[_gpu_chunk[dtype, False, spectrum]](
        re, im, source, result, g_re, g_im, tw, Int64(lp), Int64(ls), Int64(lo_bits),
        Int64(batch), Int64(pairs), Int64(width), Int64(outputs), scale,
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
                    ctx, bits, re, im, source, result, tw, n_rows, lp, lb, lo_bits, batch, pairs, width, outputs
                )
            else:
                _enqueue_pass[dtype, True, False, spectrum](
                    ctx, bits, re, im, source, result, tw, n_rows, lp, lb, lo_bits, batch, pairs, width, outputs
                )


def fft_conv_gpu[dtype: DType](
    ctx: DeviceContext,
    result: Pointer[Scalar[dtype], MutAnyOrigin],
    signal: Pointer[Scalar[dtype], MutAnyOrigin],
    taps: Pointer[Scalar[dtype], MutAnyOrigin],
    channels: Int,
    batch: Int,
    width: Int,
    n_taps: Int,
    chunk_log: Int = 0,
    chunk_threads: Int = 0,
) raises:
    """Enqueue the whole GPU op: twiddle tables, taps spectra, correlations.

    chunk_log and chunk_threads (0: the tuned defaults) exist for
    research/fft/gpu_check.mojo, which times other chunk sizes and block
    shapes; a chunk_log of at least log2(L) transforms rows whole.

    Scratch (tables, spectra, and the global passes' rows when L exceeds
    one chunk) is allocated on the op's stream and freed in stream order
    when this function returns.
    """
    comptime row_log = GPU_ROW_LOG_F32 if dtype == DType.float32 else GPU_ROW_LOG_F64
    comptime default_chunk_log = GPU_CHUNK_LOG_F32 if dtype == DType.float32 else GPU_CHUNK_LOG_F64
    var t = width - n_taps + 1
    var points = fft_points(width, 8)
    var lp = _log2(points)
    var whole = lp <= row_log
    var ls = min(lp, chunk_log) if chunk_log > 0 else (lp if whole else default_chunk_log)
    var threads = chunk_threads if chunk_threads > 0 else (GPU_ROW_TPB if ls == lp else GPU_CHUNK_TPB)
    var lo_bits = (lp + 1) // 2
    var pairs = (batch + 1) // 2
    var total_pairs = channels * pairs
    var n_tw = (1 << lo_bits) + (1 << (lp - lo_bits))
    var tw = ctx.enqueue_create_buffer[dtype](2 * n_tw)
    var g_re = ctx.enqueue_create_buffer[dtype](channels * points)
    var g_im = ctx.enqueue_create_buffer[dtype](channels * points)
    var scratch_rows = max(total_pairs, channels) if lp > ls else 0
    var x_re = ctx.enqueue_create_buffer[dtype](max(1, scratch_rows * points))
    var x_im = ctx.enqueue_create_buffer[dtype](max(1, scratch_rows * points))
    var scale = Scalar[dtype](1.0 / Float64(points))
    var tw_p = tw.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var g_re_p = g_re.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var g_im_p = g_im.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var x_re_p = x_re.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var x_im_p = x_im.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()

    ctx.enqueue_function[_gpu_twiddles[dtype]](
        tw_p, Int64(lp), Int64(lo_bits),
        grid_dim=ceildiv(n_tw, GPU_PASS_TPB), block_dim=GPU_PASS_TPB,
    )
    _transform_rows[dtype, True](
        ctx, x_re_p, x_im_p, taps, result, g_re_p, g_im_p, tw_p,
        channels, lp, ls, lo_bits, 1, 1, n_taps, 0, scale, threads,
    )
    _transform_rows[dtype, False](
        ctx, x_re_p, x_im_p, signal, result, g_re_p, g_im_p, tw_p,
        total_pairs, lp, ls, lo_bits, batch, pairs, width, t, scale, threads,
    )


# ---------------------------------------------------------------------------
# The op
# ---------------------------------------------------------------------------


@extensibility.register("fft_conv1d")
struct FFTConv1D:
    """Correlate each tile row with its channel's taps by overlap-save FFTs.

    The `threads` parameter of `execute` caps the CPU workers: 0 is one
    per core; benchmarks pass 1 to compare one core with single-threaded
    peers.

    Args:
        output: [C, B, T] results, T = W - K + 1.
        signal: [C, B, W] tiles, each with its K-1 halo already in place;
            W a power of two (>= 64) wastes no work.
        taps: [C, K] one row of taps per channel.
        ctx: the device context MAX hands the op.
    """

    @staticmethod
    def execute[target: StaticString, threads: Int](
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
            raise Error("fft_conv1d: tile, halo and tap shapes disagree")
        if channels * batch == 0 or t <= 0:
            return
        comptime if target == "gpu":
            fft_conv_gpu[output.dtype](
                ctx, output.unsafe_ptr(), signal.unsafe_ptr(), taps.unsafe_ptr(),
                channels, batch, w, k,
            )
        elif target == "cpu":
            fft_conv_cpu[output.dtype](
                output.unsafe_ptr(), signal.unsafe_ptr(), taps.unsafe_ptr(), channels, batch, w, k,
                threads,
            )
        else:
            raise Error("fft_conv1d: no implementation for target ", target)
