# The fused GPU kernel's per-thread phases (maxconv/ops/fft_gpu_fused.mojo)
# run on the CPU, thread by thread, a block barrier being the end of a loop
# over the threads: checks the index math, the twiddle table, the spectrum
# order and the product against a float64 direct sum, with no GPU. Where the
# kernel waits with a warp barrier (_exchange_sync), the stages up to the
# next block barrier run warp by warp, all of warp 0's first: an exchange
# that crossed warps would read values not yet (or already over-) written
# and show as an error.
#   .venv/bin/mojo run -I . research/fft/fused_sim.mojo
# It cannot see other GPU-only faults (shared-memory races inside a warp,
# launch limits): research/fft/gpu_check.mojo checks those on the device.
from max.gpu.memory import AddressSpace
from maxconv.ops.fft_common import _log2, fft_points
from maxconv.ops.fft_gpu_fused import (
    FUSED_VALUES_LOG,
    XPtr,
    _exchange_in_warp,
    _fused_center,
    _fused_first,
    _fused_last,
    _fused_middle,
    _fused_stages,
    fused_tw_entries,
    fused_tw_value,
    fused_values_log,
)
from std.math import ceildiv

comptime G = AddressSpace.GENERIC
comptime F = DType.float32


def _rand(mut state: UInt64) -> Float64:
    state = state * 6364136223846793005 + 1442695040888963407
    return Float64(Int((state >> 11) & 0xFFFFFFFF)) / 4294967296.0 - 0.5


def _ptr(mut v: List[Float32]) -> Pointer[Float32, MutAnyOrigin]:
    return v.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()


def _block[lp: Int, vb: Int, spectrum: Bool](
    mut x: List[Float32],
    mut tw: List[Float32],
    mut src: List[Float32],
    src_off: Int,
    mut dst: List[Float32],
    dst_off: Int,
    mut g: List[Float32],
    g_row: Int,
    g_im_off: Int,
    start: Int,
    t_blk: Int,
    second: Bool,
    n_in: Int,
    at: Int,
    t_out: Int,
):
    """One thread block of _gpu_fused (lean, as the op runs it), thread by
    thread. Phases between the first stage and the last: forward middles
    1 .. S-2, the center, inverse middles S-2 .. 1; a run of phases joined
    by warp barriers runs warp by warp."""
    comptime T = 1 << (lp - vb)
    comptime stages = _fused_stages(lp, vb)
    comptime phases = (stages - 2) + (1 if spectrum else stages - 1)
    var xs = _ptr(x).unsafe_origin_cast[MutUntrackedOrigin]()
    var twp = _ptr(tw)
    var s = _ptr(src).unsafe_offset(src_off)
    var gp = _ptr(g)
    var scale = Float32(1.0 / Float64(1 << lp))
    for t in range(T):
        _fused_first[F, lp, vb, spectrum, G](
            Int32(t), xs, twp, s, Int32(start), Int32(t_blk), second, UInt32(n_in)
        )
    var p = 0
    while p < phases:
        var end = p
        while end < phases - 1 and _warp_after[lp, vb, phases](end):
            end += 1
        var width = 32 if end > p else T
        for w in range(0, T, width):
            for q in range(p, end + 1):
                for t in range(w, min(T, w + width)):
                    _phase[lp, vb, spectrum, phases](q, t, xs, twp, gp, g_row, g_im_off, scale)
        p = end + 1
    comptime if not spectrum:
        var d = _ptr(dst).unsafe_offset(dst_off)
        for t in range(T):
            _fused_last[F, lp, vb, G](
                Int32(t), xs, twp, d, Int32(at), Int32(t_blk), Int32(t_out), second
            )


def _warp_after[lp: Int, vb: Int, phases: Int](q: Int) -> Bool:
    """Whether phase q ends with a warp barrier in the kernel: forward
    middle s (q = s - 1) with the exchange s / s + 1, the center with
    S-2 / S-1, inverse middle s with s - 1 / s."""
    comptime stages = _fused_stages(lp, vb)
    if q < stages - 2:
        return _exchange_in_warp(lp, vb, q + 1)
    if q == stages - 2:
        return _exchange_in_warp(lp, vb, stages - 2)
    return _exchange_in_warp(lp, vb, 2 * stages - 4 - q)


def _phase[lp: Int, vb: Int, spectrum: Bool, phases: Int](
    q: Int,
    t: Int,
    xs: XPtr[F, G],
    twp: Pointer[Float32, MutAnyOrigin],
    gp: Pointer[Float32, MutAnyOrigin],
    g_row: Int,
    g_im_off: Int,
    scale: Float32,
):
    """Phase q of thread t (see _block)."""
    comptime stages = _fused_stages(lp, vb)
    comptime for qq in range(phases):
        if q == qq:
            comptime if qq < stages - 2:
                _fused_middle[F, lp, vb, qq + 1, False, G](Int32(t), xs, twp)
            elif qq == stages - 2:
                _fused_center[F, lp, vb, spectrum, G](
                    Int32(t), xs, gp, gp.unsafe_offset(g_im_off), g_row, scale
                )
            else:
                _fused_middle[F, lp, vb, 2 * stages - 3 - qq, True, G](Int32(t), xs, twp)


def _conv[lp: Int, vb: Int](
    rows: Int, signal_rows: Int, n: Int, k: Int, pad: Int, t_out: Int, taps_rows: Int,
    mut sig: List[Float32], mut taps: List[Float32], mut out: List[Float32],
):
    """fft_conv_gpu's fused path on the CPU (spectra computed, then pairs)."""
    comptime L = 1 << lp
    var t_blk = L - k + 1
    var blocks = ceildiv(t_out, t_blk)
    var pairs = (blocks + 1) // 2
    var sig_stride = n if signal_rows > 1 else 0
    var tw = List[Float32]()
    for e in range(fused_tw_entries(lp, vb)):
        var w = fused_tw_value[lp, vb](e)
        tw.append(Float32(w[0]))
        tw.append(Float32(w[1]))
    var x = List[Float32](length=2 * (L + (L >> vb)), fill=0)
    var g = List[Float32](length=2 * taps_rows * L, fill=-7)
    for c in range(taps_rows):
        _block[lp, vb, True](x, tw, taps, c * k, out, 0, g, c, taps_rows * L, 0, t_blk, False, k, 0, 0)
    for p in range(rows * pairs):
        var r = p // pairs
        var b0 = 2 * (p % pairs)
        var g_row = r if taps_rows > 1 else 0
        _block[lp, vb, False](
            x, tw, sig, r * sig_stride, out, r * t_out, g, g_row, taps_rows * L,
            b0 * t_blk - pad, t_blk, b0 + 1 < blocks, n, b0 * t_blk, t_out,
        )


def sim_case[lp: Int, vb: Int = FUSED_VALUES_LOG](name: String, mut fails: Int, rows: Int, signal_rows: Int, n: Int, k: Int, mode: String, taps_rows: Int) raises:
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
    _conv[lp, vb](rows, signal_rows, n, k, pad, t, taps_rows, sig, taps, out)
    var sig_stride = n if signal_rows > 1 else 0
    var worst = 0.0
    for row in range(rows):
        var c = row if taps_rows > 1 else 0
        var hsum = 0.0
        for j in range(k):
            hsum += abs(Float64(taps[c * k + j]))
        for i in range(t):
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
    print("PASS" if ok else "FAIL", name, "L", 1 << lp, "V", 1 << vb, "K", k, "rows", rows, "n", n, mode, "err", worst, "guard", guard)


def main() raises:
    var fails = 0
    sim_case[8](String("L256 full"), fails, 2, 2, 579, 7, "full", 2)
    sim_case[8](String("L256 K=1"), fails, 1, 1, 777, 1, "same", 1)
    sim_case[9](String("L512 bcast sig"), fails, 2, 1, 3333, 256, "same", 2)
    sim_case[9](String("L512 short row"), fails, 2, 2, 10, 300, "full", 2)
    sim_case[10](String("L1024 same"), fails, 3, 3, 3001, 33, "same", 3)
    sim_case[10](String("L1024 valid"), fails, 2, 2, 5000, 400, "valid", 1)
    sim_case[11](String("L2048 full"), fails, 2, 2, 9999, 1000, "full", 1)
    sim_case[12](String("L4096 same"), fails, 2, 2, 12001, 2048, "same", 2)
    sim_case[12](String("L4096 T=1"), fails, 1, 1, 50, 4096, "full", 1)
    # The op's kernels at 8192 and 16384: V = fused_values_log(lp) (32).
    sim_case[13, fused_values_log(13)](String("L8192 full"), fails, 2, 2, 3901, 4097, "full", 2)
    sim_case[13, fused_values_log(13)](String("L8192 K=1"), fails, 1, 1, 30000, 1, "same", 1)
    sim_case[14, fused_values_log(14)](String("L16384 same"), fails, 2, 2, 30001, 4096, "same", 2)
    sim_case[14, fused_values_log(14)](String("L16384 K=8192 short row"), fails, 1, 1, 100, 8192, "full", 1)
    # The trial variants (fft_gpu_launch: GPU_FUSED_16K: V = 16 at 8192 and
    # 16384; _V32, _V64).
    sim_case[13](String("16K L8192 full"), fails, 2, 2, 3901, 4097, "full", 2)
    sim_case[14](String("16K full"), fails, 2, 2, 20001, 8193, "full", 2)
    sim_case[14](String("16K short row"), fails, 1, 1, 100, 5000, "same", 1)
    sim_case[12, 5](String("V32 L4096 same"), fails, 2, 2, 12001, 2048, "same", 2)
    sim_case[12, 5](String("V32 L4096 K=1"), fails, 1, 1, 9000, 1, "same", 1)
    sim_case[13, 5](String("V32 L8192 full"), fails, 2, 1, 9001, 4097, "full", 2)
    sim_case[14, 5](String("V32 L16384 valid"), fails, 3, 3, 30000, 6000, "valid", 1)
    sim_case[12, 6](String("V64 L4096 full"), fails, 2, 2, 9999, 1000, "full", 2)
    sim_case[12, 6](String("V64 L4096 T=1"), fails, 1, 1, 50, 4096, "full", 1)
    sim_case[13, 6](String("V64 L8192 same"), fails, 1, 1, 20001, 3000, "same", 1)
    sim_case[14, 6](String("V64 L16384 short row"), fails, 2, 2, 300, 8192, "full", 2)
    print("FUSED SIM:", fails, "FAILED" if fails > 0 else "(all passed)")
