# The GPU path of fft_conv1d, standalone: builds every kernel for an H100
# (sm_90) on a machine without a GPU, where MAX would only say "Failed to
# compile the model":
#   .venv/bin/mojo build --target-accelerator=sm_90 -I . \
#       research/fft/gpu_check.mojo -o /tmp/gpu_check
# Run on a GPU machine, it also checks results against a direct float64
# correlation on the host, for one shared-memory size and the multi-pass sizes.
# First the fused float32 kernel (fft_gpu_fused.mojo), one PASS/FAIL line
# per case and a "FUSED CHECKS:" summary, then the same for the new staged
# kernels of L > 16384 (fft_gpu_staged.mojo, "STAGED CHECKS:"; at 2^14
# with chunk_log 12 / 13), then the
# fused timing against the old kernels at N = 2^24 (variant old / fused /
# fused_free), the staged one (sbench), the trial variants' (tbench: the
# fused kernel with 16 values a thread at 2^13 and 2^14, 32 and 64 values a
# thread; built in through fft_conv_gpu[trials=True]), then the original
# error list and timings. Spectra cross only between kernels of one order:
# the op's V = 16 kernels (fused up to 4096, staged chunks of 2^12), 16K and
# the old kernels share one; the op's V = 32 kernels (fused 8192 / 16384,
# staged chunks at 2^18, 2^19, 2^22) each have their own, which
# GPU_FUSED_FREE shares (and V32 where it runs the same chunk).
# lbench times the op's kernels (lean: warp barriers where an exchange
# stays in one warp) against GPU_FUSED_PLAIN (a block barrier at every
# exchange) and the uncapped build, at the planner's L; pbench the op's
# staged path (radix-16 / 32 global passes split over threads) against
# GPU_STAGED_SINGLE (one butterfly a thread).
# Sections by name: ./gpu_check staged sbench
from max.gpu.host import DeviceContext
from maxconv.ops.fft_common import fft_points
from maxconv.ops.fft_gpu_launch import (
    GPU_FUSED,
    GPU_FUSED_16K,
    GPU_FUSED_FREE,
    GPU_FUSED_PLAIN,
    GPU_FUSED_V32,
    GPU_FUSED_V64,
    GPU_OLD,
    GPU_STAGED_SINGLE,
    fft_conv_gpu,
)
from max.gpu.host import HostBuffer
from std.sys import argv
from std.time import perf_counter_ns


def _rand(mut state: UInt64) -> Float64:
    state = state * 6364136223846793005 + 1442695040888963407
    return Float64(Int((state >> 11) & 0xFFFFFFFF)) / 4294967296.0 - 0.5


def _fill[dtype: DType](ctx: DeviceContext, n: Int, seed: UInt64) raises -> HostBuffer[dtype]:
    var h = ctx.enqueue_create_host_buffer[dtype](max(1, n))
    ctx.synchronize()
    var state = seed
    for i in range(n):
        h[i] = Scalar[dtype](_rand(state))
    return h


def _worst[dtype: DType](
    h_sig: HostBuffer[dtype], h_taps: HostBuffer[dtype], h_out: HostBuffer[dtype],
    rows: Int, n: Int, sig_stride: Int, k: Int, taps_rows: Int, pad: Int, t: Int, t_blk: Int,
) -> Float64:
    """Worst |out - float64 host sum| / (0.5 * sum|taps|) over every output
    when the host sum is cheap, else over a sample that includes the first
    and last 3 outputs of every block and ~600 more per row."""
    var worst = 0.0
    var full = rows * t * k <= 200_000_000
    var step = max(1, t // 600)
    for row in range(rows):
        var c = row if taps_rows > 1 else 0
        var hsum = 0.0
        for j in range(k):
            hsum += abs(Float64(h_taps[c * k + j]))
        hsum = max(hsum, 1e-30)
        for i in range(t):
            var w = i % t_blk
            if not (full or i % step == 0 or w < 3 or w >= t_blk - 3 or i >= t - 3):
                continue
            var acc = 0.0
            for j in range(k):
                var x = i + j - pad
                if x >= 0 and x < n:
                    acc += Float64(h_sig[row * sig_stride + x]) * Float64(h_taps[c * k + j])
            var got = Float64(h_out[row * t + i])
            var e = abs(acc - got) / (0.5 * hsum)
            if not (e <= 1e30):  # NaN or inf
                return 1e30
            worst = max(worst, e)
    return worst


def _op[dtype: DType](
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
    chunk_log: Int,
    chunk_threads: Int,
    variant: Int,
    batch_pairs: Int,
    spectrum_elements: Int,
) raises:
    """fft_conv_gpu as the op builds it for the op's own variants (so they
    run and are timed as in production), its trials build for the trial
    variants."""
    if variant >= GPU_FUSED_16K:
        fft_conv_gpu[dtype, True](
            ctx, result, signal, taps, rows, length, signal_stride, taps_rows, pad, row_outputs, n_taps, block,
            spectrum, spectrum_given, spectrum_ready, chunk_log, chunk_threads, variant, batch_pairs,
            spectrum_elements,
        )
    else:
        fft_conv_gpu[dtype](
            ctx, result, signal, taps, rows, length, signal_stride, taps_rows, pad, row_outputs, n_taps, block,
            spectrum, spectrum_given, spectrum_ready, chunk_log, chunk_threads, variant, batch_pairs,
            spectrum_elements,
        )


def check[dtype: DType](
    ctx: DeviceContext, rows: Int, n: Int, k: Int, block: Int, chunk_log: Int = 0, taps_rows: Int = 1,
    variant: Int = GPU_FUSED,
) raises -> Float64:
    """Worst error of the 'full' correlation of `rows` signals of n samples
    (outputs n + K - 1, pad K - 1) against a float64 host sum, relative to
    half the taps' absolute sum (spectrum computed by a first call, the
    second call's outputs checked)."""
    var r = check_case[dtype](ctx, rows, rows, n, k, block, k - 1, n + k - 1, taps_rows, variant, variant, chunk_log)
    return r[1]


comptime GUARD = 4096
comptime SENTINEL = 12345.0


def check_case[dtype: DType](
    ctx: DeviceContext, rows: Int, signal_rows: Int, n: Int, k: Int, block: Int, pad: Int, t: Int,
    taps_rows: Int, variant: Int, spectrum_variant: Int, chunk_log: Int = 0, batch_pairs: Int = 0,
    table_room: Int = 0,
) raises -> Tuple[Float64, Float64, Float64, Bool]:
    """One geometry, three calls into a kept spectrum buffer: (1) `variant`
    computes the taps' spectrum and the outputs; (2) `variant` again with the
    spectrum marked ready; (3) `spectrum_variant` recomputes the spectrum
    (its outputs dropped), then `variant` reads it as ready (the two
    variants must store spectra in the same order). Returns the three
    worst errors and whether the GUARD words past the output (and the
    spectrum's unused tail) kept their sentinel. table_room > 0: the
    spectrum buffer has that many elements more, where the twiddle tables
    are kept (built by calls 1 and 3, read back by 2 and 3's second)."""
    var sig_stride = n if signal_rows > 1 else 0
    var points = fft_points(block, k, 8)
    var t_blk = points - k + 1
    var h_sig = _fill[dtype](ctx, signal_rows * n, 99)
    var h_taps = _fill[dtype](ctx, taps_rows * k, 7 + UInt64(k))
    var n_out = rows * t
    var h_out = ctx.enqueue_create_host_buffer[dtype](n_out + GUARD)
    var d_sig = ctx.enqueue_create_buffer[dtype](max(1, signal_rows * n))
    var d_taps = ctx.enqueue_create_buffer[dtype](taps_rows * k)
    var d_out = ctx.enqueue_create_buffer[dtype](n_out + GUARD)
    var spec_len = 2 * taps_rows * points + table_room
    var spec_elements = spec_len if table_room > 0 else 0
    var d_spectrum = ctx.enqueue_create_buffer[dtype](spec_len + GUARD)
    var h_spec = ctx.enqueue_create_host_buffer[dtype](spec_len + GUARD)
    ctx.synchronize()
    for i in range(n_out + GUARD):
        h_out[i] = Scalar[dtype](SENTINEL)
    for i in range(spec_len + GUARD):
        h_spec[i] = Scalar[dtype](SENTINEL)
    ctx.enqueue_copy(d_sig, h_sig)
    ctx.enqueue_copy(d_taps, h_taps)
    ctx.enqueue_copy(d_spectrum, h_spec)
    var errors = List[Float64]()
    var guard_ok = True
    for call in range(3):
        ctx.enqueue_copy(d_out, h_out)  # sentinel everywhere
        if call == 2:
            _op[dtype](
                ctx, d_out.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](),
                d_sig.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](),
                d_taps.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](),
                rows, n, sig_stride, taps_rows, pad, t, k, block,
                d_spectrum.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](), True, False,
                chunk_log, 0, spectrum_variant, batch_pairs, spec_elements,
            )
            ctx.enqueue_copy(d_out, h_out)
        _op[dtype](
            ctx, d_out.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](),
            d_sig.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](),
            d_taps.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](),
            rows, n, sig_stride, taps_rows, pad, t, k, block,
            d_spectrum.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin](), True, call != 0,
            chunk_log, 0, variant, batch_pairs, spec_elements,
        )
        var h_got = ctx.enqueue_create_host_buffer[dtype](n_out + GUARD)
        ctx.enqueue_copy(h_got, d_out)
        ctx.synchronize()
        errors.append(_worst[dtype](h_sig, h_taps, h_got, rows, n, sig_stride, k, taps_rows, pad, t, t_blk))
        for i in range(n_out, n_out + GUARD):
            if Float64(h_got[i]) != SENTINEL:
                guard_ok = False
    ctx.enqueue_copy(h_spec, d_spectrum)
    ctx.synchronize()
    for i in range(spec_len, spec_len + GUARD):
        if Float64(h_spec[i]) != SENTINEL:
            guard_ok = False
    return (errors[0], errors[1], errors[2], guard_ok)


def report[dtype: DType](
    ctx: DeviceContext, name: String, mut fails: Int, rows: Int, signal_rows: Int, n: Int, k: Int,
    block: Int, mode: String, taps_rows: Int, variant: Int = GPU_FUSED, spectrum_variant: Int = GPU_OLD,
    chunk_log: Int = 0, batch_pairs: Int = 0, table_room: Int = 0,
) raises:
    """Run check_case for one geometry in 'full', 'same' or 'valid' mode; prints
    PASS/FAIL with the three errors."""
    var pad = k - 1 if mode == "full" else ((k - 1) // 2 if mode == "same" else 0)
    var t = n + k - 1 if mode == "full" else (n if mode == "same" else max(1, n - k + 1))
    var tol = 1e-5 if dtype == DType.float32 else 1e-13
    var head = String(name, " ", dtype, " L ", fft_points(block, k, 8), " K ", k, " rows ", rows,
        " signal_rows ", signal_rows, " taps_rows ", taps_rows, " n ", n, " ", mode, " variant ", variant,
        " chunk_log ", chunk_log, " batch ", batch_pairs, " tables ", "kept" if table_room > 0 else "scratch")
    try:
        var r = check_case[dtype](
            ctx, rows, signal_rows, n, k, block, pad, t, taps_rows, variant, spectrum_variant, chunk_log, batch_pairs,
            table_room,
        )
        var ok = r[0] < tol and r[1] < tol and r[2] < tol and r[3]
        if not ok:
            fails += 1
        print(
            "PASS" if ok else "FAIL", head, "| err recomputed", r[0], "kept", r[1],
            "spectrum from variant", spectrum_variant, r[2], "guard", "ok" if r[3] else "OVERWRITTEN",
            flush=True,
        )
    except e:
        fails += 1
        print("FAIL", head, "| raised:", e, flush=True)


def fused_checks(ctx: DeviceContext) raises -> Int:
    """The fused float32 kernel at L = 256 .. 16384 (V = 16 up to 4096, 32
    at 8192 and 16384) against the float64 host sum: modes, broadcast
    signal / taps rows, odd block counts, partial last blocks, K = 1,
    T = 1, rows shorter than a block; then the trial variants' fused
    kernels (16K: V = 16 at 2^13 and 2^14; V32 / V64 at 2^12 .. 2^14).
    Returns the failures."""
    var fails = 0
    comptime F = DType.float32
    # name, rows, signal rows, n, K, block, mode, taps rows
    report[F](ctx, "L256 full", fails, 2, 2, 579, 7, 200, "full", 2)
    report[F](ctx, "L256 same", fails, 3, 3, 1000, 100, 256, "same", 1)
    report[F](ctx, "L256 K=1", fails, 1, 1, 777, 1, 256, "same", 1)
    report[F](ctx, "L512 full", fails, 1, 1, 5000, 129, 512, "full", 1)
    report[F](ctx, "L512 bcast sig", fails, 2, 1, 3333, 256, 512, "same", 2)
    report[F](ctx, "L512 short row", fails, 2, 2, 10, 300, 512, "full", 2)
    report[F](ctx, "L1024 same", fails, 3, 3, 3001, 33, 1024, "same", 3)
    report[F](ctx, "L1024 full", fails, 1, 1, 2047, 512, 1024, "full", 1)
    report[F](ctx, "L1024 valid", fails, 2, 2, 5000, 400, 1024, "valid", 1)
    report[F](ctx, "L2048 full", fails, 2, 2, 9999, 1000, 2048, "full", 1)
    report[F](ctx, "L2048 same", fails, 2, 2, 12345, 1024, 2048, "same", 2)
    report[F](ctx, "L4096 full", fails, 1, 1, 9288, 1000, 4096, "full", 1)
    report[F](ctx, "L4096 same", fails, 2, 2, 20001, 2048, 4096, "same", 2)
    report[F](ctx, "L4096 T=1", fails, 1, 1, 50, 4096, 4096, "full", 1)
    report[F](ctx, "L4096 K=100", fails, 1, 1, 40000, 100, 4096, "same", 1)
    # 8192 and 16384: V = 32, an order of its own (crossed with the
    # uncapped build, GPU_FUSED_FREE; at 16384 the same kernel).
    report[F](ctx, "L8192 full", fails, 2, 2, 3901, 4097, 8000, "full", 2, GPU_FUSED, GPU_FUSED_FREE)
    report[F](ctx, "L8192 same", fails, 1, 1, 100000, 2048, 8192, "same", 1, GPU_FUSED, GPU_FUSED_FREE)
    report[F](ctx, "L8192 K=1", fails, 1, 1, 30000, 1, 8192, "same", 1, GPU_FUSED, GPU_FUSED_FREE)
    report[F](ctx, "L8192 valid", fails, 3, 1, 20000, 3000, 8192, "valid", 3, GPU_FUSED, GPU_FUSED_FREE)
    report[F](ctx, "L16384 full", fails, 2, 2, 40001, 4097, 16384, "full", 2, GPU_FUSED, GPU_FUSED_FREE)
    report[F](ctx, "L16384 same", fails, 1, 1, 147456, 8192, 16384, "same", 1, GPU_FUSED, GPU_FUSED_FREE)
    report[F](ctx, "L16384 bcast sig", fails, 3, 1, 50000, 2048, 16384, "valid", 3, GPU_FUSED, GPU_FUSED_FREE)
    report[F](ctx, "L16384 short row", fails, 2, 2, 100, 8192, 16384, "full", 2, GPU_FUSED, GPU_FUSED_FREE)
    report[F](ctx, "L16384 K=1", fails, 1, 1, 70000, 1, 16384, "same", 1, GPU_FUSED, GPU_FUSED_FREE)
    report[F](ctx, "L16384 T=1", fails, 1, 1, 50, 16384, 16384, "full", 1, GPU_FUSED, GPU_FUSED_FREE)
    # The old kernels on the same geometries, spectra crossing the other way
    # (at 8192 with the V = 16 fused kernel, 16K).
    report[F](ctx, "old L256", fails, 2, 2, 579, 7, 200, "full", 2, GPU_OLD, GPU_FUSED)
    report[F](ctx, "old L2048", fails, 2, 2, 12345, 1024, 2048, "same", 2, GPU_OLD, GPU_FUSED)
    report[F](ctx, "old L4096", fails, 2, 2, 20001, 2048, 4096, "same", 2, GPU_OLD, GPU_FUSED)
    report[F](ctx, "old L8192", fails, 2, 2, 3901, 4097, 8000, "full", 2, GPU_OLD, GPU_FUSED_16K)
    # Uncapped registers: the same kernel compiled apart.
    report[F](ctx, "free L2048", fails, 2, 2, 12345, 1024, 2048, "same", 2, GPU_FUSED_FREE, GPU_FUSED)
    report[F](ctx, "free L4096", fails, 2, 2, 20001, 2048, 4096, "same", 2, GPU_FUSED_FREE, GPU_OLD)
    report[F](ctx, "free L8192", fails, 2, 2, 3901, 4097, 8000, "full", 2, GPU_FUSED_FREE, GPU_FUSED)
    # Without the lean paths (same kernels, same spectrum orders).
    report[F](ctx, "plain L1024", fails, 3, 3, 3001, 33, 1024, "same", 3, GPU_FUSED_PLAIN, GPU_FUSED)
    report[F](ctx, "plain L4096", fails, 2, 2, 20001, 2048, 4096, "same", 2, GPU_FUSED_PLAIN, GPU_FUSED)
    report[F](ctx, "plain L8192", fails, 1, 1, 100000, 2048, 8192, "same", 1, GPU_FUSED_PLAIN, GPU_FUSED)
    report[F](ctx, "plain L16384", fails, 2, 2, 40001, 4097, 16384, "full", 2, GPU_FUSED_PLAIN, GPU_FUSED)
    report[F](ctx, "lean <- plain L16384", fails, 1, 1, 147456, 8192, 16384, "same", 1, GPU_FUSED, GPU_FUSED_PLAIN)
    # float64 keeps the old path whatever the variant.
    report[DType.float64](ctx, "f64 L4096", fails, 2, 2, 20001, 2048, 4096, "same", 2)
    # Trial variants. 16K: V = 16 at L = 2^13 (the op's kernel there
    # before V = 32) and 2^14 (in one kernel), the old kernels' spectrum
    # order (crossed both ways; old <- 16K above at 2^13).
    report[F](ctx, "16K L8192 same", fails, 1, 1, 100000, 2048, 8192, "same", 1, GPU_FUSED_16K, GPU_OLD)
    report[F](ctx, "16K L8192 valid", fails, 3, 1, 20000, 3000, 8192, "valid", 3, GPU_FUSED_16K, GPU_OLD)
    report[F](ctx, "16K full", fails, 2, 2, 40001, 4097, 16384, "full", 2, GPU_FUSED_16K, GPU_OLD)
    report[F](ctx, "16K same", fails, 1, 1, 147456, 8192, 16384, "same", 1, GPU_FUSED_16K, GPU_OLD)
    report[F](ctx, "16K bcast sig", fails, 3, 1, 50000, 2048, 16384, "valid", 3, GPU_FUSED_16K, GPU_OLD)
    report[F](ctx, "16K short row", fails, 2, 2, 100, 8192, 16384, "full", 2, GPU_FUSED_16K, GPU_OLD)
    report[F](ctx, "16K K=1", fails, 1, 1, 70000, 1, 16384, "same", 1, GPU_FUSED_16K, GPU_OLD)
    report[F](ctx, "old <- 16K", fails, 2, 2, 40001, 4097, 16384, "same", 2, GPU_OLD, GPU_FUSED_16K)
    # V32 / V64: spectrum orders of their own (crossed with themselves),
    # fused at L = 2^12 .. 2^14 (V32 at 2^13, 2^14: the op's kernels),
    # staged past it; below, GPU_FUSED (L2048, crossed with GPU_OLD).
    for v in [GPU_FUSED_V32, GPU_FUSED_V64]:
        var tag = String("V32 ") if v == GPU_FUSED_V32 else String("V64 ")
        report[F](ctx, tag + "L2048", fails, 2, 2, 12345, 1024, 2048, "same", 2, v, GPU_OLD)
        report[F](ctx, tag + "L4096 full", fails, 1, 1, 9288, 1000, 4096, "full", 1, v, v)
        report[F](ctx, tag + "L4096 same", fails, 2, 2, 20001, 2048, 4096, "same", 2, v, v)
        report[F](ctx, tag + "L4096 T=1", fails, 1, 1, 50, 4096, 4096, "full", 1, v, v)
        report[F](ctx, tag + "L4096 K=100", fails, 1, 1, 40000, 100, 4096, "same", 1, v, v)
        report[F](ctx, tag + "L8192 full", fails, 2, 2, 3901, 4097, 8000, "full", 2, v, v)
        report[F](ctx, tag + "L8192 valid", fails, 3, 1, 20000, 3000, 8192, "valid", 3, v, v)
        report[F](ctx, tag + "L8192 K=1", fails, 1, 1, 30000, 1, 8192, "same", 1, v, v)
        report[F](ctx, tag + "L16384 same", fails, 2, 2, 40001, 8192, 16384, "same", 2, v, v)
        report[F](ctx, tag + "L16384 short", fails, 1, 1, 100, 5000, 16384, "full", 1, v, v)
        report[F](ctx, tag + "L2^16 staged", fails, 1, 1, 147456, 16384, 65536, "same", 1, v, v)
    # Twiddle tables kept behind the spectra (room for 3L more elements).
    report[F](ctx, "tables L256", fails, 2, 2, 579, 7, 200, "full", 2, GPU_FUSED, GPU_FUSED, 0, 0, 3 * 256)
    report[F](ctx, "tables L4096", fails, 2, 2, 20001, 2048, 4096, "same", 2, GPU_FUSED, GPU_FUSED, 0, 0, 3 * 4096)
    report[F](ctx, "tables L8192", fails, 1, 1, 100000, 2048, 8192, "same", 1, GPU_FUSED, GPU_FUSED, 0, 0, 3 * 8192)
    report[F](ctx, "tables L16384", fails, 2, 2, 40001, 4097, 16384, "full", 2, GPU_FUSED, GPU_FUSED_FREE, 0, 0,
              3 * 16384)
    report[F](ctx, "tables 16K L8192", fails, 1, 1, 100000, 2048, 8192, "same", 1, GPU_FUSED_16K, GPU_FUSED_16K, 0,
              0, 3 * 8192)
    report[F](ctx, "tables old L4096", fails, 2, 2, 20001, 2048, 4096, "same", 2, GPU_OLD, GPU_OLD, 0, 0, 3 * 4096)
    report[F](ctx, "tables 16K", fails, 2, 2, 40001, 4097, 16384, "full", 2, GPU_FUSED_16K, GPU_FUSED_16K, 0, 0,
              3 * 16384)
    report[F](ctx, "tables V32 L8192", fails, 2, 2, 3901, 4097, 8000, "full", 2, GPU_FUSED_V32, GPU_FUSED_V32, 0, 0,
              3 * 8192)
    report[F](ctx, "tables V64 L4096", fails, 2, 2, 20001, 2048, 4096, "same", 2, GPU_FUSED_V64, GPU_FUSED_V64, 0, 0,
              3 * 4096)
    report[DType.float64](ctx, "tables f64 L4096", fails, 2, 2, 20001, 2048, 4096, "same", 2, GPU_FUSED, GPU_FUSED,
                          0, 0, 3 * 4096)
    print("FUSED CHECKS:", fails, "FAILED" if fails > 0 else "(all passed)", flush=True)
    return fails


def staged_checks(ctx: DeviceContext) raises -> Int:
    """The new staged float32 kernels (fft_gpu_staged.mojo, L = 2^14 ..
    2^22; 2^14 with chunk_log 12 / 13) against the float64 host sum:
    modes, broadcast signal / taps rows, odd block counts, rows shorter
    than a block, batches of pairs, the op's chunks (V = 16 chunks of 2^12;
    V = 32 chunks of 2^13 at 2^18 and 2^22, of 2^14 at 2^19), V = 16 chunks
    of 2^12 and 2^13 (chunk_log), spectra crossing to and from the old
    kernels (same order for V = 16 at the same chunk log) or the uncapped
    build (V = 32); then the trial chunks (32 / 64 values a thread, chunks
    of 2^12 .. 2^14). Returns the failures."""
    var fails = 0
    comptime F = DType.float32
    # name, rows, signal rows, n, K, block, mode, taps rows, variant,
    # spectrum variant, chunk log, batch pairs
    # L = 2^14 runs the fused kernel by default: chunk_log 12 for these.
    report[F](ctx, "S c12 L2^14 full", fails, 1, 1, 24573, 4097, 16384, "full", 1, GPU_FUSED, GPU_FUSED, 12)
    report[F](ctx, "S c12 L2^14 same", fails, 2, 2, 40001, 4096, 16384, "same", 2, GPU_FUSED, GPU_OLD, 12)
    report[F](ctx, "S c12 L2^14 K=1", fails, 1, 1, 50000, 1, 16384, "same", 1, GPU_FUSED, GPU_OLD, 12)
    report[F](ctx, "S L2^15 bcast sig", fails, 2, 1, 73728, 8192, 32768, "same", 2, GPU_FUSED, GPU_OLD)
    report[F](ctx, "S L2^15 batch 3", fails, 2, 2, 100000, 8192, 32768, "full", 2, GPU_FUSED, GPU_OLD, 0, 3)
    report[F](ctx, "S L2^16 short row", fails, 2, 2, 100, 16384, 65536, "full", 2, GPU_FUSED, GPU_OLD)
    report[F](ctx, "S c12 L2^14 T=1", fails, 1, 1, 50, 16384, 16384, "full", 1, GPU_FUSED, GPU_OLD, 12)
    report[F](ctx, "S L2^16 valid", fails, 3, 1, 300000, 16384, 65536, "valid", 3, GPU_FUSED, GPU_OLD)
    report[F](ctx, "S L2^16 same", fails, 1, 1, 147456, 16384, 65536, "same", 1, GPU_FUSED, GPU_OLD)
    report[F](ctx, "S L2^16 batch 1", fails, 2, 2, 147456, 16384, 65536, "same", 2, GPU_FUSED, GPU_OLD, 0, 1)
    report[F](ctx, "S L2^17 full", fails, 1, 1, 303216, 30000, 131072, "full", 1, GPU_FUSED, GPU_OLD)
    # 2^18, 2^19, 2^22: the op's V = 32 chunks (2^13, 2^14, 2^13), orders
    # of their own: crossed with the uncapped build.
    report[F](ctx, "S L2^18 same", fails, 1, 1, 589824, 65536, 262144, "same", 1, GPU_FUSED, GPU_FUSED_FREE)
    report[F](ctx, "S L2^18 bcast batch 1", fails, 2, 1, 400000, 65536, 262144, "full", 2, GPU_FUSED, GPU_FUSED_FREE,
              0, 1)
    report[F](ctx, "S L2^19 same", fails, 1, 1, 786431, 131072, 524288, "same", 1, GPU_FUSED, GPU_FUSED_FREE)
    report[F](ctx, "S L2^19 valid", fails, 3, 1, 1000000, 131072, 524288, "valid", 3, GPU_FUSED, GPU_FUSED_FREE)
    report[F](ctx, "S L2^20 full", fails, 2, 2, 948574, 100000, 1048576, "full", 2, GPU_FUSED, GPU_OLD)
    report[F](ctx, "S L2^22 same", fails, 1, 1, 3145726, 1048576, 4194304, "same", 1, GPU_FUSED, GPU_FUSED_FREE)
    report[F](ctx, "S L2^22 batch 1", fails, 1, 1, 9000000, 1048576, 4194304, "same", 1, GPU_FUSED, GPU_FUSED_FREE,
              0, 1)
    # The same Ls with V = 16 chunks of 2^12 (chunk_log 12), the old order.
    report[F](ctx, "S c12 L2^18 same", fails, 1, 1, 589824, 65536, 262144, "same", 1, GPU_FUSED, GPU_OLD, 12)
    report[F](ctx, "S c12 L2^22 same", fails, 1, 1, 3145726, 1048576, 4194304, "same", 1, GPU_FUSED, GPU_OLD, 12)
    # Chunks of 2^13 (another spectrum order, which the old kernels share
    # at chunk log 13).
    report[F](ctx, "S13 L2^14 same", fails, 2, 2, 40001, 4096, 16384, "same", 2, GPU_FUSED, GPU_OLD, 13)
    report[F](ctx, "S13 L2^16 same", fails, 1, 1, 147456, 16384, 65536, "same", 1, GPU_FUSED, GPU_OLD, 13)
    report[F](ctx, "S13 L2^19 batch 1", fails, 1, 1, 786431, 131072, 524288, "same", 1, GPU_FUSED, GPU_OLD, 13, 1)
    # Without the lean paths (chunks with a block barrier at every exchange).
    report[F](ctx, "Splain L2^16 same", fails, 2, 2, 147456, 16384, 65536, "same", 2, GPU_FUSED_PLAIN, GPU_FUSED)
    report[F](ctx, "Splain L2^19 same", fails, 1, 1, 786431, 131072, 524288, "same", 1, GPU_FUSED_PLAIN, GPU_FUSED)
    report[F](ctx, "Splain L2^18 full", fails, 1, 1, 400000, 65536, 262144, "full", 1, GPU_FUSED_PLAIN, GPU_FUSED)
    # Uncapped registers.
    report[F](ctx, "Sfree L2^16 same", fails, 2, 2, 147456, 16384, 65536, "same", 2, GPU_FUSED_FREE, GPU_FUSED)
    report[F](ctx, "Sfree L2^19 same", fails, 1, 1, 786431, 131072, 524288, "same", 1, GPU_FUSED_FREE, GPU_FUSED)
    report[F](ctx, "Sfree L2^17 same", fails, 1, 1, 303216, 30000, 131072, "same", 1, GPU_FUSED_FREE, GPU_OLD)
    # Global passes one butterfly a thread (GPU_STAGED_SINGLE) against the
    # op's split ones (_coop_pass at radix 32): the same transform, so
    # spectra cross both ways (radix 32 at 2^17 .. 2^19, 32 then 16 at 2^22).
    report[F](ctx, "coop <- single L2^18", fails, 1, 1, 589824, 65536, 262144, "same", 1, GPU_FUSED,
              GPU_STAGED_SINGLE)
    report[F](ctx, "single <- coop L2^17", fails, 1, 1, 303216, 30000, 131072, "full", 1, GPU_STAGED_SINGLE,
              GPU_FUSED)
    report[F](ctx, "coop <- single L2^19", fails, 3, 1, 1000000, 131072, 524288, "valid", 3, GPU_FUSED,
              GPU_STAGED_SINGLE)
    report[F](ctx, "single <- coop L2^22", fails, 1, 1, 3145726, 1048576, 4194304, "same", 1, GPU_STAGED_SINGLE,
              GPU_FUSED)
    # The old kernels reading spectra the new ones computed (V = 16 chunks
    # of 2^12: the op's at 2^16, chunk_log 12 at 2^19).
    report[F](ctx, "old L2^16", fails, 2, 2, 147456, 16384, 65536, "same", 2, GPU_OLD, GPU_FUSED)
    report[F](ctx, "old c12 L2^19", fails, 1, 1, 786431, 131072, 524288, "same", 1, GPU_OLD, GPU_FUSED, 12)
    # float64 keeps the old path whatever the variant.
    report[DType.float64](ctx, "f64 L2^16", fails, 2, 2, 166608, 10000, 65536, "same", 2, GPU_FUSED, GPU_OLD)
    # Trial chunks (spectrum orders of their own): 32 values a thread in
    # chunks of 2^13 (chunk log 0) and 2^14, 64 in 2^12 (0), 2^13, 2^14.
    for v in [GPU_FUSED_V32, GPU_FUSED_V64]:
        var tag = String("SV32 ") if v == GPU_FUSED_V32 else String("SV64 ")
        for c in [0, 13, 14]:
            var cl = c
            if v == GPU_FUSED_V64 and c == 0:
                cl = 12
            var ctag = tag + String("c", cl, " ")
            report[F](ctx, ctag + "L2^15 bcast sig", fails, 2, 1, 73728, 8192, 32768, "same", 2, v, v, c)
            report[F](ctx, ctag + "L2^15 batch 3", fails, 2, 2, 100000, 8192, 32768, "full", 2, v, v, c, 3)
            report[F](ctx, ctag + "L2^16 short row", fails, 2, 2, 100, 16384, 65536, "full", 2, v, v, c)
            report[F](ctx, ctag + "L2^16 valid", fails, 3, 1, 300000, 16384, 65536, "valid", 3, v, v, c)
            report[F](ctx, ctag + "L2^17 full", fails, 1, 1, 303216, 30000, 131072, "full", 1, v, v, c)
            report[F](ctx, ctag + "L2^18 same", fails, 1, 1, 589824, 65536, 262144, "same", 1, v, v, c)
            report[F](ctx, ctag + "L2^19 same", fails, 1, 1, 786431, 131072, 524288, "same", 1, v, v, c)
            report[F](ctx, ctag + "L2^22 same", fails, 1, 1, 3145726, 1048576, 4194304, "same", 1, v, v, c)
    # Twiddle tables kept behind the spectra (room for 3L more elements).
    report[F](ctx, "tables S L2^16", fails, 2, 2, 147456, 16384, 65536, "same", 2, GPU_FUSED, GPU_FUSED, 0, 0,
              3 * 65536)
    report[F](ctx, "tables S L2^19 batch 1", fails, 1, 1, 786431, 131072, 524288, "same", 1, GPU_FUSED, GPU_FUSED,
              0, 1, 3 * 524288)
    report[F](ctx, "tables S L2^18", fails, 1, 1, 589824, 65536, 262144, "same", 1, GPU_FUSED, GPU_FUSED_FREE, 0, 0,
              3 * 262144)
    report[F](ctx, "tables S L2^22", fails, 1, 1, 3145726, 1048576, 4194304, "same", 1, GPU_FUSED, GPU_FUSED, 0, 0,
              3 * 4194304)
    report[F](ctx, "tables SV32 c14 L2^19", fails, 1, 1, 786431, 131072, 524288, "same", 1, GPU_FUSED_V32,
              GPU_FUSED_V32, 14, 0, 3 * 524288)
    report[F](ctx, "tables old L2^16", fails, 1, 1, 147456, 16384, 65536, "same", 1, GPU_OLD, GPU_OLD, 0, 0,
              3 * 65536)
    print("STAGED CHECKS:", fails, "FAILED" if fails > 0 else "(all passed)", flush=True)
    return fails


def staged_bench(ctx: DeviceContext) raises:
    """Old against new staged kernels at N = 2^24 float32, L in {2K, 4K,
    8K} (from 2^14 up to 2^23): old, new (chunk 2^12, capped registers),
    new with uncapped registers, new with 2^13 chunks, new with the pairs
    batched so one batch's scratch is ~16 or ~32 MB (L2-resident)."""
    var n24 = 1 << 24
    for k in [8192, 16384, 65536, 131072, 1 << 20]:
        for mult in [2, 4, 8]:
            var points = mult * k
            if points <= 1 << 13 or points > 1 << 23:
                continue
            bench[DType.float32](ctx, n24, k, points, 0, 0, GPU_OLD, 20)
            bench[DType.float32](ctx, n24, k, points, 0, 0, GPU_FUSED, 20)
            bench[DType.float32](ctx, n24, k, points, 0, 0, GPU_FUSED_FREE, 20)
            bench[DType.float32](ctx, n24, k, points, 13, 0, GPU_FUSED, 20)
            for mb in [16, 32]:
                var batch = max(1, (mb << 20) // (8 * points))
                bench[DType.float32](ctx, n24, k, points, 0, 0, GPU_FUSED, 20, batch)


def trial_bench(ctx: DeviceContext) raises:
    """The trial variants against the default at N = 2^24 float32: K =
    512 .. 8192 at every L = 4096 .. 16384 of at least 2K (the default is
    V = 32 at 8192 and 16384, 16K V = 16 there), then K = 8192 .. 2^20 at
    L = 2K, 4K, 8K (2^15 .. 2^23) on the staged path with the trial
    chunks."""
    var n24 = 1 << 24
    for k in [512, 1024, 2048, 4096, 8192]:
        for points in [4096, 8192, 16384]:
            if points < 2 * k:
                continue
            for variant in [GPU_FUSED, GPU_FUSED_V32, GPU_FUSED_V64, GPU_FUSED_16K]:
                # Below 2^13, 16K runs what GPU_FUSED does.
                if variant != GPU_FUSED_16K or points >= 8192:
                    bench[DType.float32](ctx, n24, k, points, 0, 0, variant, 20)
    # Twiddle tables kept behind the spectra (as the engine now allows), the
    # default kernels at the planner's L and beside it.
    for kl in [(512, 4096), (1024, 4096), (2048, 4096), (2048, 8192), (4096, 8192), (4096, 16384),
               (8192, 16384), (8192, 32768), (16384, 65536), (65536, 262144), (131072, 524288),
               (1 << 20, 1 << 22)]:
        bench[DType.float32](ctx, n24, kl[0], kl[1], 0, 0, GPU_FUSED, 20, 0, True)
    # The staged path: the default (chunks by L: staged_chunk_log) against
    # 32 values in chunks of 2^13 / 2^14 and 64 in 2^12 .. 2^14.
    for k in [8192, 16384, 65536, 131072, 1 << 20]:
        for mult in [2, 4, 8]:
            var points = mult * k
            if points <= 1 << 14 or points > 1 << 23:
                continue
            bench[DType.float32](ctx, n24, k, points, 0, 0, GPU_FUSED, 20)
            for c in [13, 14]:
                bench[DType.float32](ctx, n24, k, points, c, 0, GPU_FUSED_V32, 20)
            for c in [12, 13, 14]:
                bench[DType.float32](ctx, n24, k, points, c, 0, GPU_FUSED_V64, 20)


def lean_bench(ctx: DeviceContext) raises:
    """The op's kernels (lean) against GPU_FUSED_PLAIN and the uncapped
    build at N = 2^24 float32, the planner's L for each K, twiddle tables
    kept (as the engine runs them); the default timed again last, to show
    the run's own drift."""
    var n24 = 1 << 24
    for kl in [(512, 4096), (1024, 4096), (2048, 8192), (4096, 16384), (8192, 16384), (16384, 65536),
               (65536, 262144), (131072, 524288), (1 << 20, 1 << 22)]:
        for variant in [GPU_FUSED, GPU_FUSED_PLAIN, GPU_FUSED_FREE, GPU_FUSED]:
            bench[DType.float32](ctx, n24, kl[0], kl[1], 0, 0, variant, 20, 0, True)


def bench[dtype: DType](
    ctx: DeviceContext, n: Int, k: Int, points: Int, chunk_log: Int = 0, chunk_threads: Int = 0,
    variant: Int = GPU_FUSED, repeats: Int = 6, batch_pairs: Int = 0, keep_tables: Bool = False,
) raises:
    """Device-resident timing of the whole op: n 'same'-style outputs of one
    row in blocks of L = points. Per call (enqueue + synchronize): min and
    median of `repeats`; batched: `repeats` calls enqueued back to back, one
    synchronize, the mean. keep_tables: the spectrum buffer has room for
    the twiddle tables (3L more), as the engine gives it."""
    var h_sig = ctx.enqueue_create_host_buffer[dtype](n)
    var h_taps = ctx.enqueue_create_host_buffer[dtype](k)
    ctx.synchronize()
    for i in range(n):
        h_sig[i] = Scalar[dtype](Float64(i % 13) - 6.0)
    for i in range(k):
        h_taps[i] = Scalar[dtype](1.0 / Float64(k))
    var d_sig = ctx.enqueue_create_buffer[dtype](n)
    var d_taps = ctx.enqueue_create_buffer[dtype](k)
    var d_out = ctx.enqueue_create_buffer[dtype](n)
    var spec_elements = 5 * fft_points(points, k, 8) if keep_tables else 0
    var d_spectrum = ctx.enqueue_create_buffer[dtype](max(spec_elements, 2 * fft_points(points, k, 8)))
    ctx.enqueue_copy(d_sig, h_sig)
    ctx.enqueue_copy(d_taps, h_taps)
    ctx.synchronize()
    var o = d_out.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var x = d_sig.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var h = d_taps.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var g = d_spectrum.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    # The taps' spectrum computed on every call, then kept from the first.
    for kept in [False, True]:
        # Warm-up (module load, first-touch, spectrum for the kept case).
        for _ in range(2):
            _op[dtype](ctx, o, x, h, 1, n, n, 1, k - 1, n, k, points, g, True, False,
                       chunk_log, chunk_threads, variant, batch_pairs, spec_elements)
        ctx.synchronize()
        var times = List[Int]()
        for _ in range(repeats):
            var s = perf_counter_ns()
            _op[dtype](ctx, o, x, h, 1, n, n, 1, k - 1, n, k, points, g, True, kept,
                       chunk_log, chunk_threads, variant, batch_pairs, spec_elements)
            ctx.synchronize()
            times.append(Int(perf_counter_ns() - s))
        var s = perf_counter_ns()
        for _ in range(repeats):
            _op[dtype](ctx, o, x, h, 1, n, n, 1, k - 1, n, k, points, g, True, kept,
                       chunk_log, chunk_threads, variant, batch_pairs, spec_elements)
        ctx.synchronize()
        var batched = Float64(Int(perf_counter_ns() - s)) / Float64(repeats)
        sort(times)
        var best = Float64(times[0])
        var med = Float64(times[len(times) // 2])
        print(
            "bench", dtype, "N", n, "K", k, "L", points, "chunk", chunk_log, chunk_threads,
            "variant", _variant_name(variant),
            "batch", batch_pairs, "tables", "kept" if keep_tables else "scratch",
            "spectrum kept" if kept else "spectrum each call",
            "ms", med / 1e6, "GS/s", Float64(n) / med, "| min ms", best / 1e6, "GS/s", Float64(n) / best,
            "| batched ms", batched / 1e6, "GS/s", Float64(n) / batched,
            flush=True,
        )


def _variant_name(variant: Int) -> String:
    """The bench lines' name of a variant."""
    if variant == GPU_OLD:
        return "old"
    if variant == GPU_FUSED:
        return "fused"
    if variant == GPU_FUSED_FREE:
        return "fused_free"
    if variant == GPU_FUSED_16K:
        return "fused16k"
    if variant == GPU_FUSED_PLAIN:
        return "plain"
    if variant == GPU_STAGED_SINGLE:
        return "single"
    return "v32" if variant == GPU_FUSED_V32 else "v64"


def main() raises:
    # Sections, all by default or those named on the command line:
    # fused (the fused kernel's PASS/FAIL cases), staged (the new staged
    # kernels' PASS/FAIL cases), bench (old against fused timings at
    # N = 2^24), sbench (old against new staged timings at N = 2^24), tbench
    # (the trial variants against the default at N = 2^24), lbench (the
    # op's lean kernels against GPU_FUSED_PLAIN and uncapped), orig (the
    # original error list and timings); by name only: lsweep, ksweep (L by
    # K), pbench (split passes), prof (for ncu).
    var args = argv()
    var want = List[String]()
    for i in range(1, len(args)):
        want.append(String(args[i]))
    if len(want) == 0:
        want = ["fused", "staged", "bench", "sbench", "tbench", "orig"]
    var ctx = DeviceContext()
    var fails = -1
    var staged_fails = -1
    if "fused" in want:
        fails = fused_checks(ctx)
    if "staged" in want:
        staged_fails = staged_checks(ctx)
    if "bench" in want:
        var n24 = 1 << 24
        for k in [512, 1024, 2048, 4096]:
            for points in [2048, 4096, 8192]:
                if points >= 2 * k:
                    for variant in [GPU_OLD, GPU_FUSED, GPU_FUSED_FREE]:
                        bench[DType.float32](ctx, n24, k, points, 0, 0, variant, 20)
    if "sbench" in want:
        staged_bench(ctx)
    if "tbench" in want:
        trial_bench(ctx)
    if "lbench" in want:
        lean_bench(ctx)
    if "lsweep" in want:
        # The op's kernels at every L of 2K .. 8K (and 16384) for the K where
        # the planner's choice is closest, tables kept.
        for k in [1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072]:
            for points in [4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576]:
                if points >= 2 * k and points <= 8 * k:
                    bench[DType.float32](ctx, 1 << 24, k, points, 0, 0, GPU_FUSED, 20, 0, True)
    if "ksweep" in want:
        # The planner's first switch points: K between 1024 and 4096 at each
        # fused L of at least 2K, tables kept.
        for k in [1536, 2048, 2560, 3072, 3584]:
            for points in [4096, 8192, 16384]:
                if points >= 2 * k:
                    bench[DType.float32](ctx, 1 << 24, k, points, 0, 0, GPU_FUSED, 20, 0, True)
    if "pbench" in want:
        # The op's staged path (global passes split over threads) against
        # GPU_STAGED_SINGLE at the planner's L, tables kept; the default
        # again last (the run's drift).
        for kl in [(16384, 65536), (32768, 131072), (65536, 262144), (131072, 524288), (1 << 20, 1 << 22)]:
            for variant in [GPU_FUSED, GPU_STAGED_SINGLE, GPU_FUSED]:
                bench[DType.float32](ctx, 1 << 24, kl[0], kl[1], 0, 0, variant, 20, 0, True)
    if "prof" in want:
        # A few calls of the op's kernels at the planner's sizes, for a
        # profiler (ncu) to pick from.
        for kl in [(1024, 4096), (4096, 16384), (8192, 16384), (16384, 65536), (65536, 262144),
                   (131072, 524288)]:
            bench[DType.float32](ctx, 1 << 24, kl[0], kl[1], 0, 0, GPU_FUSED, 2, 0, True)
    if "orig" in want:
        original(ctx)
    if fails >= 0:
        print("FUSED CHECKS:", fails, "FAILED" if fails > 0 else "(all passed)", flush=True)
    if staged_fails >= 0:
        print("STAGED CHECKS:", staged_fails, "FAILED" if staged_fails > 0 else "(all passed)", flush=True)


def original(ctx: DeviceContext) raises:
    """The checks and timings kept from before the fused kernel (its cases
    with the default variant, i.e. fused for float32 L = 256 .. 8192)."""
    # (rows, samples, taps, block, chunk log, taps rows): whole blocks in one
    # thread block (float32 up to 2^13 points, float64 2^12), then global
    # passes of radix 2, 4, 8, 16, 32, 8 x 8, 16 x 8, 16 x 16, 32 x 32 before
    # chunks (2^12 float32, 2^11 float64); lengths leave the last block of a
    # row partial and odd block counts leave a pair half empty.
    print("f32 L=64        ", check[DType.float32](ctx, 2, 129, 7, 50, 0, 2))
    print("f32 L=256       ", check[DType.float32](ctx, 2, 579, 7, 200, 0, 2))
    print("f32 L=4096      ", check[DType.float32](ctx, 1, 9288, 1000, 4096, 0, 1))
    print("f32 L=8192      ", check[DType.float32](ctx, 2, 3901, 4097, 8000, 0, 2))
    print("f32 L=8192 r2   ", check[DType.float32](ctx, 2, 18576, 2000, 8192, 12, 2))
    print("f32 L=16384     ", check[DType.float32](ctx, 1, 24573, 4097, 16384, 0, 1))
    print("f32 L=2^15      ", check[DType.float32](ctx, 2, 73728, 8192, 32768, 0, 2))
    print("f32 L=2^16 r16  ", check[DType.float32](ctx, 1, 147456, 16384, 65536, 12, 1))
    print("f32 L=2^17 r32  ", check[DType.float32](ctx, 1, 303216, 30000, 131072, 12, 1))
    print("f32 L=2^18      ", check[DType.float32](ctx, 1, 589824, 65536, 262144, 0, 1))
    print("f32 L=2^19      ", check[DType.float32](ctx, 1, 786431, 131072, 524288, 0, 1))
    print("f32 L=2^20      ", check[DType.float32](ctx, 2, 948574, 100000, 1048576, 0, 2))
    print("f32 L=2^22      ", check[DType.float32](ctx, 1, 3145726, 1048576, 4194304, 0, 1))
    print("f64 L=2048      ", check[DType.float64](ctx, 2, 5952, 64, 2048, 0, 2))
    print("f64 L=4096      ", check[DType.float64](ctx, 1, 9288, 1000, 4096, 0, 1))
    print("f64 L=8192      ", check[DType.float64](ctx, 1, 12285, 4097, 8192, 0, 1))
    print("f64 L=2^16      ", check[DType.float64](ctx, 2, 166608, 10000, 65536, 0, 2))
    print("f64 L=2^18      ", check[DType.float64](ctx, 2, 196606, 65536, 262144, 0, 2))
    var n = 1 << 24
    # The defaults, then whole rows of up to 2^14 points (256 threads).
    for cfg in [(0, 0), (14, 256)]:
        var cap = cfg[0]
        var thr = cfg[1]
        bench[DType.float32](ctx, n, 2048, 8192, cap, thr)
        bench[DType.float32](ctx, n, 4096, 16384, cap, thr)
        bench[DType.float32](ctx, n, 16384, 65536, cap, thr)
        bench[DType.float32](ctx, n, 131072, 524288, cap, thr)
        bench[DType.float32](ctx, n, 1048576, 4194304, cap, thr)
