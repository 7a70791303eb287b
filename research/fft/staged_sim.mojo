# The new staged GPU path's per-thread phases (maxconv/ops/fft_gpu_staged.mojo:
# _staged_pass_body, the chunk phases of _staged_chunk) run on the CPU,
# thread by thread, in the order fft_gpu_launch._staged_conv enqueues them
# (a kernel or a barrier being the end of a loop over threads): checks the
# index math, batching, the twiddle tables, the spectrum rows and the product
# against a float64 direct sum, with no GPU.
#   .venv/bin/mojo run -I . research/fft/staged_sim.mojo
# It cannot see GPU-only faults (a missing barrier, shared-memory races,
# launch limits, register spills): research/fft/gpu_check.mojo staged checks
# those on the device.
from max.gpu.memory import AddressSpace
from maxconv.ops.fft_gpu import _unit_root
from maxconv.ops.fft_gpu_fused import (
    FUSED_VALUES_LOG,
    _fused_center,
    _fused_middle,
    _fused_stages,
    fused_tw_entries,
    fused_tw_value,
)
from maxconv.ops.fft_gpu_launch import _pass_bits
from maxconv.ops.fft_gpu_staged import (
    COOP_TPB,
    COOP_VALUES_LOG,
    STAGED_PASS_BITS,
    _coop_phase,
    _chunk_first,
    _chunk_last,
    _staged_chunk_offsets,
    _staged_pass_body,
    coop_blocks,
    coop_pass,
    staged_chunk_log,
    staged_values_log,
)
from std.math import ceildiv

comptime G = AddressSpace.GENERIC
comptime F = DType.float32


def _rand(mut state: UInt64) -> Float64:
    state = state * 6364136223846793005 + 1442695040888963407
    return Float64(Int((state >> 11) & 0xFFFFFFFF)) / 4294967296.0 - 0.5


def _ptr(mut v: List[Float32]) -> Pointer[Float32, MutAnyOrigin]:
    return v.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()


@fieldwise_init
struct Geo(Copyable):
    var length: Int
    var signal_stride: Int
    var pad: Int
    var row_outputs: Int
    var block_outputs: Int
    var blocks: Int
    var pairs: Int
    var taps_rows: Int


def _pass[rb: Int, inverse: Bool, io: Bool, spectrum: Bool](
    mut xre: List[Float32], mut xim: List[Float32], mut src: List[Float32], mut dst: List[Float32],
    mut tw: List[Float32], n_rows: Int, pair0: Int, lp: Int, lb: Int, lo_bits: Int, geo: Geo,
):
    """Every thread of one global pass launch: _coop_pass block by block
    (every thread's first phase, then every thread's second: the barrier),
    or _staged_pass (the grid rounded up to 256 threads, as launched)."""
    comptime if coop_pass(rb):
        var words = (1 << COOP_VALUES_LOG) * COOP_TPB
        var shared = List[Float32](length=2 * words, fill=0)
        var sr = _ptr(shared).unsafe_origin_cast[MutUntrackedOrigin]()
        var si = sr.unsafe_offset(words)
        for blk in range(coop_blocks(n_rows, lp, rb)):
            comptime for second in [False, True]:
                for tid in range(COOP_TPB):
                    _coop_phase[F, rb, inverse, io, spectrum, second, G](
                        Int32(blk), Int32(tid), sr, si, _ptr(xre), _ptr(xim), _ptr(src), _ptr(dst), _ptr(tw),
                        Int32(n_rows), Int32(pair0), Int32(lp), Int32(lb), Int32(lo_bits), Int32(geo.length),
                        Int64(geo.signal_stride), Int32(geo.pad), Int32(geo.row_outputs), Int32(geo.block_outputs),
                        Int32(geo.blocks), Int32(geo.pairs),
                    )
        return
    var threads = ceildiv(n_rows << (lp - rb), 256) * 256
    for e in range(threads):
        _staged_pass_body[F, rb, inverse, io, spectrum](
            Int32(e), _ptr(xre), _ptr(xim), _ptr(src), _ptr(dst), _ptr(tw), Int32(n_rows), Int32(pair0),
            Int32(lp), Int32(lb), Int32(lo_bits), Int32(geo.length), Int64(geo.signal_stride), Int32(geo.pad),
            Int32(geo.row_outputs), Int32(geo.block_outputs), Int32(geo.blocks), Int32(geo.pairs),
        )


def _pass_any[inverse: Bool, io: Bool, spectrum: Bool](
    bits: Int, mut xre: List[Float32], mut xim: List[Float32], mut src: List[Float32], mut dst: List[Float32],
    mut tw: List[Float32], n_rows: Int, pair0: Int, lp: Int, lb: Int, lo_bits: Int, geo: Geo,
):
    comptime for b in range(1, STAGED_PASS_BITS + 1):
        if bits == b:
            _pass[b, inverse, io, spectrum](xre, xim, src, dst, tw, n_rows, pair0, lp, lb, lo_bits, geo)


def _chunks[lc: Int, vb: Int, spectrum: Bool](
    mut xre: List[Float32], mut xim: List[Float32], mut g: List[Float32], g_im_off: Int,
    mut tw_c: List[Float32], n_rows: Int, pair0: Int, lp: Int, geo: Geo,
):
    """Every thread block of one _staged_chunk launch, thread by thread."""
    comptime T = 1 << (lc - vb)
    comptime stages = _fused_stages(lc, vb)
    var x = List[Float32](length=2 * ((1 << lc) + T), fill=0)
    var xs = _ptr(x).unsafe_origin_cast[MutUntrackedOrigin]()
    var twp = _ptr(tw_c)
    var scale = Float32(1.0 / Float64(1 << lp))
    for c in range(n_rows << (lp - lc)):
        var at = _staged_chunk_offsets[spectrum](Int32(c), Int32(lp), lc, Int32(pair0), Int32(geo.pairs), Int32(geo.taps_rows))
        var row_re = _ptr(xre).unsafe_offset(at[0])
        var row_im = _ptr(xim).unsafe_offset(at[0])
        var g_re = _ptr(g).unsafe_offset(at[1])
        var g_im = _ptr(g).unsafe_offset(g_im_off + at[1])
        for t in range(T):
            _chunk_first[F, lc, vb, G](Int32(t), xs, twp, row_re, row_im)
        comptime for s in range(1, stages - 1):
            for t in range(T):
                _fused_middle[F, lc, vb, s, False, G](Int32(t), xs, twp)
        for t in range(T):
            _fused_center[F, lc, vb, spectrum, G](Int32(t), xs, g_re, g_im, 0, scale)
        comptime if not spectrum:
            comptime for s_rev in range(1, stages - 1):
                for t in range(T):
                    _fused_middle[F, lc, vb, stages - 1 - s_rev, True, G](Int32(t), xs, twp)
            for t in range(T):
                _chunk_last[F, lc, vb, G](Int32(t), xs, twp, row_re, row_im)


def _rows[lc: Int, vb: Int, spectrum: Bool](
    mut xre: List[Float32], mut xim: List[Float32], mut src: List[Float32], mut dst: List[Float32],
    mut g: List[Float32], g_im_off: Int, mut tw: List[Float32], mut tw_c: List[Float32],
    n_rows: Int, pair0: Int, lp: Int, lo_bits: Int, geo: Geo,
):
    """fft_gpu_launch._staged_rows on the CPU."""
    var above = lp - lc
    var passes = ceildiv(above, STAGED_PASS_BITS)
    var lb = lp
    for index in range(passes):
        var bits = _pass_bits(above, STAGED_PASS_BITS, index)
        if index == 0:
            _pass_any[False, True, spectrum](bits, xre, xim, src, dst, tw, n_rows, pair0, lp, lb, lo_bits, geo)
        else:
            _pass_any[False, False, spectrum](bits, xre, xim, src, dst, tw, n_rows, pair0, lp, lb, lo_bits, geo)
        lb -= bits
    _chunks[lc, vb, spectrum](xre, xim, g, g_im_off, tw_c, n_rows, pair0, lp, geo)
    comptime if not spectrum:
        for step in range(passes):
            var index = passes - 1 - step
            var bits = _pass_bits(above, STAGED_PASS_BITS, index)
            lb += bits
            if index == 0:
                _pass_any[True, True, spectrum](bits, xre, xim, src, dst, tw, n_rows, pair0, lp, lb, lo_bits, geo)
            else:
                _pass_any[True, False, spectrum](bits, xre, xim, src, dst, tw, n_rows, pair0, lp, lb, lo_bits, geo)


def _conv[lc: Int, vb: Int](
    lp: Int, rows: Int, signal_rows: Int, n: Int, k: Int, pad: Int, t_out: Int, taps_rows: Int, batch_pairs: Int,
    mut sig: List[Float32], mut taps: List[Float32], mut out: List[Float32],
):
    """fft_gpu_launch._staged_conv on the CPU (spectra computed, then the
    block pairs in batches of batch_pairs, 0: all)."""
    var L = 1 << lp
    var t_blk = L - k + 1
    var blocks = ceildiv(t_out, t_blk)
    var pairs = (blocks + 1) // 2
    var total = rows * pairs
    var batch = total if batch_pairs <= 0 else min(batch_pairs, total)
    var scratch_rows = max(batch, taps_rows)
    var lo_bits = (lp + 1) // 2
    var tw = List[Float32]()
    for e in range((1 << lo_bits) + (1 << (lp - lo_bits))):
        var u = e if e < (1 << lo_bits) else (e - (1 << lo_bits)) << lo_bits
        var w = _unit_root(u, L)
        tw.append(Float32(w[0]))
        tw.append(Float32(w[1]))
    var tw_c = List[Float32]()
    for e in range(fused_tw_entries(lc, vb)):
        var w = fused_tw_value[lc, vb](e)
        tw_c.append(Float32(w[0]))
        tw_c.append(Float32(w[1]))
    # Scratch filled with garbage: every point must be written before it is read.
    var xre = List[Float32](length=scratch_rows * L, fill=3.0e7)
    var xim = List[Float32](length=scratch_rows * L, fill=-3.0e7)
    var g = List[Float32](length=2 * taps_rows * L, fill=-7)
    var spectra = Geo(k, k, 0, 0, t_blk, 1, 1, taps_rows)
    _rows[lc, vb, True](xre, xim, taps, out, g, taps_rows * L, tw, tw_c, taps_rows, 0, lp, lo_bits, spectra)
    var sig_stride = n if signal_rows > 1 else 0
    var geo = Geo(n, sig_stride, pad, t_out, t_blk, blocks, pairs, taps_rows)
    var first = 0
    while first < total:
        var nb = min(batch, total - first)
        _rows[lc, vb, False](xre, xim, sig, out, g, taps_rows * L, tw, tw_c, nb, first, lp, lo_bits, geo)
        first += nb


def sim_case[lc: Int, vb: Int = FUSED_VALUES_LOG](
    name: String, mut fails: Int, lp: Int, rows: Int, signal_rows: Int, n: Int, k: Int, mode: String,
    taps_rows: Int, batch_pairs: Int,
) raises:
    var pad = k - 1 if mode == "full" else ((k - 1) // 2 if mode == "same" else 0)
    var t = n + k - 1 if mode == "full" else (n if mode == "same" else max(1, n - k + 1))
    var state: UInt64 = 99
    var sig = List[Float32]()
    for _ in range(signal_rows * n):
        sig.append(Float32(_rand(state)))
    var taps = List[Float32]()
    for _ in range(taps_rows * k):
        taps.append(Float32(_rand(state)))
    var out = List[Float32](length=rows * t + 64, fill=12345)
    _conv[lc, vb](lp, rows, signal_rows, n, k, pad, t, taps_rows, batch_pairs, sig, taps, out)
    var sig_stride = n if signal_rows > 1 else 0
    var t_blk = (1 << lp) - k + 1
    var step = max(1, t // 300)
    var worst = 0.0
    for row in range(rows):
        var c = row if taps_rows > 1 else 0
        var hsum = 0.0
        for j in range(k):
            hsum += abs(Float64(taps[c * k + j]))
        for i in range(t):
            var w = i % t_blk
            if not (i % step == 0 or w < 3 or w >= t_blk - 3 or i >= t - 3):
                continue
            var acc = 0.0
            for j in range(k):
                var xx = i + j - pad
                if xx >= 0 and xx < n:
                    acc += Float64(sig[row * sig_stride + xx]) * Float64(taps[c * k + j])
            var e = abs(acc - Float64(out[row * t + i])) / (0.5 * hsum)
            if not (e <= 1e30):
                e = 1e30
            worst = max(worst, e)
    var guard = True
    for i in range(rows * t, rows * t + 64):
        if out[i] != 12345:
            guard = False
    var ok = worst < 2e-6 and guard
    if not ok:
        fails += 1
    print(
        "PASS" if ok else "FAIL", name, "L", 1 << lp, "chunk", 1 << lc, "V", 1 << vb, "K", k, "rows", rows, "n", n, mode,
        "taps_rows", taps_rows, "batch", batch_pairs, "err", worst, "guard", guard, flush=True,
    )


def main() raises:
    var fails = 0
    # L = 2^14 .. 2^18: one global pass of radix 2, 4, 32 (2^17 / 2^12),
    # two passes (2^18: 3 + 3 bits); chunks of 2^12 and 2^13 (radix-2 head).
    sim_case[12](String("L2^14 full"), fails, 14, 2, 2, 20001, 4097, "full", 2, 0)
    sim_case[12](String("L2^14 same batch1"), fails, 14, 2, 2, 30000, 5000, "same", 1, 1)
    sim_case[13](String("L2^14 c13 same"), fails, 14, 2, 2, 30000, 5000, "same", 2, 0)
    sim_case[12](String("L2^15 bcast sig"), fails, 15, 2, 1, 50000, 8192, "same", 2, 3)
    sim_case[12](String("L2^15 short row"), fails, 15, 2, 2, 100, 9000, "full", 2, 0)
    sim_case[12](String("L2^16 valid"), fails, 16, 1, 1, 200000, 16384, "valid", 1, 0)
    sim_case[13](String("L2^16 c13 same"), fails, 16, 1, 1, 100000, 16384, "same", 1, 1)
    sim_case[12](String("L2^17 full"), fails, 17, 1, 1, 70000, 30000, "full", 1, 0)
    sim_case[12](String("c12 L2^18 same"), fails, 18, 1, 1, 300000, 65536, "same", 1, 2)
    # The op's chunks at L = 2^18, 2^19, 2^22 (staged_chunk_log,
    # staged_values_log: V = 32 chunks of 2^13, 2^14, 2^13).
    sim_case[staged_chunk_log(18), staged_values_log(18)](String("op L2^18 same"), fails, 18, 1, 1, 300000, 65536, "same", 1, 0)
    sim_case[staged_chunk_log(18), staged_values_log(18)](String("op L2^18 bcast batch 1"), fails, 18, 2, 1, 200000, 30000, "full", 2, 1)
    sim_case[staged_chunk_log(19), staged_values_log(19)](String("op L2^19 full"), fails, 19, 1, 1, 600000, 131072, "full", 1, 0)
    sim_case[staged_chunk_log(22), staged_values_log(22)](String("op L2^22 same"), fails, 22, 1, 1, 3000000, 1000, "same", 1, 0)
    sim_case[staged_chunk_log(16), staged_values_log(16)](String("op L2^16 full"), fails, 16, 1, 1, 100000, 16384, "full", 1, 0)
    # Trial chunks (fft_gpu_launch._trial_conv): 32 values a thread in
    # chunks of 2^13 / 2^14, 64 in chunks of 2^12 .. 2^14.
    sim_case[13, 5](String("V32 c13 L2^15 same"), fails, 15, 2, 2, 50000, 8192, "same", 2, 0)
    sim_case[14, 5](String("V32 c14 L2^16 full"), fails, 16, 1, 1, 70000, 16384, "full", 1, 0)
    sim_case[14, 5](String("V32 c14 L2^19 same"), fails, 19, 1, 1, 300000, 131072, "same", 1, 0)
    sim_case[12, 6](String("V64 c12 L2^15 bcast sig"), fails, 15, 2, 1, 50000, 8192, "same", 2, 3)
    sim_case[13, 6](String("V64 c13 L2^16 short row"), fails, 16, 2, 2, 100, 9000, "full", 2, 0)
    sim_case[14, 6](String("V64 c14 L2^18 same"), fails, 18, 1, 1, 300000, 65536, "same", 1, 1)
    print("STAGED SIM:", fails, "FAILED" if fails > 0 else "(all passed)")
