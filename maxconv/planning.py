"""Planning: which op runs a correlation, and the FFT op's block length.

Pure functions of the kernel length, the output count, the device kind and
a calibration record: no MAX, no I/O, importing nothing from maxconv, so
help texts, the README check and every caller read the same numbers.
scipy.signal's `choose_conv_method` and `_calc_oa_lens` are the model.
"""

from __future__ import annotations

METHODS = ("direct", "fft")
METHOD_CHOICES = ("auto", *METHODS)
MODES = ("full", "same", "valid")

# Kernel lengths from which method="auto" takes the FFT op, per device kind,
# where `maxconv calibrate` has not measured this device: on the 2-core CPU
# machine the FFT op won from K of 32-256 (taken a step higher, where it
# surely wins); on an H100 from 512 (the direct op still won at 256, 0.21
# against 0.30 ms at N = 2^24).
FFT_FROM_TAPS = {"cpu": 128, "gpu": 512}

# FFT blocks: L = 4K rounded up to a power of two, at least 2^14 points (where
# a transform still runs from cache at full speed), measured best or within
# 15 % of it for K from 64 to 65536 (research/fft/README.md).
FFT_MIN_POINTS = 1 << 14
# On a CPU, no more than this many points unless 2K needs them: past it a
# transform fits no cache level, and at K = 10^6 on a 2-core EPYC, L = 2^21
# (2.1 K) ran 83 MS/s where 2^22 (4.2 K) ran 60 (at K = 16384 and 240,000 the
# 4K rule stayed best or level).
FFT_MAX_POINTS = {"cpu": 1 << 21, "gpu": None}
# GPU float32 block lengths, measured: (K at most, L) in rising K, the first
# that fits K wins; past the last K the 4K rule. Each L is the best one the
# harness (research/fft/gpu_check.mojo lsweep / ksweep) measured for those K
# with the op's default kernels (ops/fft_gpu_launch.mojo): the fused kernel
# (one per block pair; 16 values a thread up to 4096, 32 at 8192 and 16384)
# beats the staged kernels of longer blocks up to K = 8192. On an H200,
# N = 2^24, ms a call, taps' spectrum and twiddle tables kept, two runs each
# (research/fft/results/gpu_h200_ksweep_2026-11-29.txt, K < 4096, and
# gpu_h200_direct_addresses_ab_2026-11-29.txt): K = 1024: L = 4096
# 0.073, 8192 0.084; K = 1536: 4096 0.081, 8192 0.090; K = 2048: 4096
# 0.093-0.095, 8192 0.093-0.095 (level; 4096 0.085 against 0.085 in a loop);
# K = 2560: 8192 0.099, 16384 0.109; K = 3072: 8192 0.105, 16384 0.109;
# K = 3584: 16384 0.109, 8192 0.112; K = 4096: 16384 0.116, 8192 0.123;
# K = 8192: 16384 0.144, staged 65536 0.157. Past 8192 the staged kernels,
# with the radix-32 global passes split over threads (ops/fft_gpu_staged.mojo
# _coop_pass), run twice the 4K rule's L at K = 16384 (2^17 0.169 against
# 2^16 0.173) and 32768 (2^18 and 2^17 within 1 %; 0.178 against 0.184 in
# gpu_h200_coop_pass_2026-11-29.txt); the 4K rule stays at 65536 and 131072
# (2^18 0.205, 2^19 0.237; twice: 0.210, 0.263). Between those K the doubled
# L's cost a transformed point (11-13 % more, from the same pairs of runs)
# against its larger share of outputs puts the switch at 3/4 of the power of
# two: K <= 12288 keeps 2^16, 16385 .. 24576 keep 2^17.
FFT_GPU_F32_POINTS = (
    (2048, 1 << 12),
    (3072, 1 << 13),
    (8192, 1 << 14),
    (12288, 1 << 16),
    (16384, 1 << 17),
    (24576, 1 << 17),
    (32768, 1 << 18),
)
# The GPU op's fused float32 kernel transforms L = 2^8 .. 2^14 (FUSED_MIN_LOG,
# FUSED_MAX_LOG in ops/fft_gpu_fused.mojo): a call of it with the taps'
# spectrum and tables kept and ready enqueues that one kernel and allocates
# nothing, so it may be captured in a device graph and replayed.
GPU_FUSED_POINTS = (1 << 8, 1 << 14)


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of 'full', 'same', 'valid', not {mode!r}")


def check_method(method: str) -> None:
    if method not in METHOD_CHOICES:
        raise ValueError(f"method must be one of 'auto', 'direct', 'fft', not {method!r}")


def choose_method(method: str, n_taps: int, fft_from_taps: int) -> str:
    """'direct' or 'fft': `method` itself, or for 'auto' the FFT op from
    `fft_from_taps` taps on (the device's calibrated or default crossover)."""
    check_method(method)
    if method != "auto":
        return method
    return "fft" if n_taps >= fft_from_taps else "direct"


# Rows cut into at most this many blocks (short rows: clips) choose their
# block length by the transform work of the row (see fft_block_points).
FFT_FEW_BLOCKS = 8


def fft_block_points(
    n_taps: int, outputs: int, device_kind: str, dtype: str, shared_rows: int = 1
) -> int:
    """The FFT op's block length L (a power of two) for `outputs` results a row
    of `dtype` ('float32' or 'float64'), in a call of `shared_rows` rows that
    share one taps row.

    4K rounded up, at least FFT_MIN_POINTS, capped on a CPU (never below 2K,
    where half of each block is still output); on a GPU in float32, the
    measured table FFT_GPU_F32_POINTS where it covers K (K <= 32768); never longer than
    one block covering all the outputs. A short row, a few blocks long, may take
    a shorter L down to 2K where that needs less transform work: blocks go
    in pairs through one complex transform each way, plus one transform for
    the taps, so a 72,000-output row of a 24,000-tap response is one
    half-empty pair at L = 2^17 but one full pair at 2^16. The CPU op pairs
    blocks across rows that share their taps, so there R rows of b blocks
    take R * b / 2 pairs (rounded up) for one taps transform: 48,000 outputs
    of a 16,000-tap response are one block at L = 2^16, half a pair a row
    (0.11 ms a row on the 2-core machine, 10 rows a call, spectrum kept;
    L = 2^15, three blocks: 0.14).
    """
    double = 1 << (2 * n_taps - 1).bit_length()
    points = max(1 << (4 * n_taps - 1).bit_length(), FFT_MIN_POINTS)
    if device_kind == "gpu" and dtype == "float32":
        points = next((p for k, p in FFT_GPU_F32_POINTS if n_taps <= k), points)
    cap = FFT_MAX_POINTS[device_kind]
    if cap is not None:
        points = min(points, max(cap, double))
    points = min(points, 1 << (outputs + n_taps - 2).bit_length())
    if _ceil(outputs, block_outputs(n_taps, points)) > FFT_FEW_BLOCKS:
        return points
    least = min(points, max(double, 64))
    rows = max(1, shared_rows) if device_kind == "cpu" else 1
    candidates = []
    while points >= least:
        pairs = _ceil(rows * _ceil(outputs, block_outputs(n_taps, points)), 2)
        candidates.append(((2 * pairs + 1) * points * points.bit_length(), -points))
        points //= 2
    return -min(candidates)[1]


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def block_outputs(n_taps: int, points: int) -> int:
    """Outputs one FFT block of `points` yields: T = L - K + 1."""
    return max(1, points - n_taps + 1)


def full_slice(mode: str, length: int, n_taps: int) -> tuple[int, int]:
    """(start, count) of the full result that `mode` keeps, as scipy.signal does."""
    check_mode(mode)
    if mode == "full":
        return 0, length + n_taps - 1
    if mode == "same":
        return (n_taps - 1) // 2, length
    return min(length, n_taps) - 1, abs(length - n_taps) + 1


def op_points(block: int, n_taps: int, least: int) -> int:
    """The FFT op's transform length L for `block`: the power of two at least
    block, K and `least` (fft_points in ops/fft_common.mojo: lanes^2, 64 on a
    GPU, at most 256 on a CPU)."""
    return 1 << (max(block, n_taps, least) - 1).bit_length()


def gpu_fft_single_kernel(n_taps: int, block: int, dtype: str) -> bool:
    """Whether a GPU FFT-op call of K = `n_taps` at `block` runs the fused kernel
    (once spectra and tables are kept and ready: one kernel, no allocation)."""
    points = op_points(block, n_taps, 64)
    return dtype == "float32" and GPU_FUSED_POINTS[0] <= points <= GPU_FUSED_POINTS[1]
