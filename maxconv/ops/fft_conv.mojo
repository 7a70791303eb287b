"""The `fft_conv1d` custom op: overlap-save correlation through FFTs.

Same contract as the direct `conv1d` op (see conv1d.mojo): an [R, T] output
written in place from [R or 1, N] signal rows, [R or 1, K] taps rows and P
leading zeros, the window input's shape [P, B, F, 0] carrying P, the block
length B, whether the taps' spectra are already in the spectrum input and
the CPU cores to use. Each row's outputs are cut into overlap-save blocks: with L the
power of two at least max(B, K, V*V) (V: see below) and T = L - K + 1,
block b reads the L signal samples from b * T - P (zeros outside the row)
in place, transforms them, multiplies by the conjugate spectrum of the
row's taps (conjugate: a correlation, not a convolution) and transforms
back; outputs 0..T-1 of the circular result are exact because the K-1
halo absorbs the wrap-around.

Why this FFT (all choices follow from "only a pointwise product happens in
the frequency domain"):

- No reordering pass. The forward transform is decimation in frequency
  (natural input, digit-reversed output), the inverse is its exact mirror
  (decimation in time, digit-reversed input, natural output). The taps'
  spectrum goes through the same forward code, so it sits in the same
  permuted order and the product is taken as stored. A Stockham transform
  would spend a buffer and a pass on an order nobody looks at.
- Two real blocks per complex transform. Blocks a and b of one row travel as
  z = a + i*b; since the taps are real, IFFT(FFT(z) * G) = (a (*) g) +
  i (b (*) g), so the real part is block a's result and the imaginary part
  block b's, with no split/merge post-processing (the usual real FFT via a
  half-length complex FFT needs one each way, and breaks the no-reordering
  trick above). An odd last block of a row rides with zeros.
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
  memory against radix 2; twiddles come from tables built in float64
  from two small exact tables (w^t = hi[t / S] * lo[t % S]), so they cost
  O(L) multiplies, not O(L) sin/cos. They are built once beside the kept
  taps' spectra where the buffer has room (a stream's later chunks read
  them back; both devices), else once per call.

The GPU path uses the same ordering and pairing tricks with radix-16
stages: a row of up to 2^GPU_ROW_LOG points is transformed by one thread
block in shared memory, each thread running a 16-point DFT in registers per
stage, with the product fused between the last forward and first inverse
stage; longer rows first go through radix-2..32 passes in global memory
(decimation in frequency leaves independent contiguous sub-DFTs) down to
chunks of 2^GPU_CHUNK_LOG points, then mirrored passes back (see the GPU
kernels section). float32 rows of 2^FUSED_MIN_LOG .. 2^FUSED_MAX_LOG points
take a fused one-kernel path instead (fft_gpu_fused.mojo: compile-time L,
16 values per thread in registers up to 4096 points, with the same stages
and spectrum order; 32 at 8192 and 16384, an order of their own), longer
ones the staged path of fft_gpu_staged.mojo (chunks by L).
"""


from extensibility import InputTensor, _MutableInputTensor as MutableInputTensor
import extensibility
from max.gpu.host import DeviceContext

from std.sys import simd_width_of

from .fft_common import fft_points
from .fft_cpu import fft_conv_cpu
from .fft_gpu_launch import fft_conv_gpu


@extensibility.register("fft_conv1d")
struct FFTConv1D:
    """Correlate each output row with its signal row and taps row by
    overlap-save FFTs.

    Args:
        output: [R, T] results, written in place.
        signal: [R, N] or [1, N] signal rows.
        taps: [R, K] or [1, K] taps rows.
        spectrum: [S, W]: with S > 0, where the taps' spectra are kept
            between calls (S = the taps rows, W >= 2L; see fft_conv_cpu),
            and the twiddle tables too where S * W leaves room for them
            behind the spectra (CPU: 2L + 2L/V elements, V the SIMD width;
            GPU: at most 2L; 3L always suffices); [0, 0] for scratch of
            this call only.
        window: [P, B, F, 0]: P zeros precede the signal; B the block
            length asked for (rounded up to a power of two >= K); F = R +
            2 * W: R = 1 when `spectrum` already holds these taps' spectra,
            W the CPU cores to use at most (0: all; the GPU ignores it).
        ctx: the device context MAX hands the op.
    """

    @staticmethod
    def execute[target: StaticString](
        output: MutableInputTensor[rank=2, ...],
        signal: InputTensor[dtype=output.dtype, rank=2, ...],
        taps: InputTensor[dtype=output.dtype, rank=2, ...],
        spectrum: MutableInputTensor[dtype=output.dtype, rank=2, ...],
        window: InputTensor[rank=4, ...],
        ctx: DeviceContext,
    ) raises:
        var rows = output.dim_size(0)
        var t = output.dim_size(1)
        var n = signal.dim_size(1)
        var k = taps.dim_size(1)
        var pad = window.dim_size(0)
        var block = window.dim_size(1)
        var spectrum_ready = window.dim_size(2) % 2 == 1
        var max_workers = window.dim_size(2) // 2
        var signal_rows = signal.dim_size(0)
        var taps_rows = taps.dim_size(0)
        var spectrum_given = spectrum.dim_size(0) > 0
        if spectrum_given and spectrum.dim_size(0) != taps_rows:
            raise Error("fft_conv1d: the spectrum buffer needs one row per taps row")
        if spectrum_ready and not spectrum_given:
            raise Error("fft_conv1d: spectra marked ready but no spectrum buffer given")
        if (signal_rows != rows and signal_rows != 1) or (taps_rows != rows and taps_rows != 1):
            raise Error("fft_conv1d: signal and taps need one row, or one per output row")
        if rows == 0 or t == 0:
            return
        if n == 0 or k == 0:
            raise Error("fft_conv1d: empty signal or taps")
        var signal_stride = n if signal_rows > 1 else 0
        var out_ptr = output.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
        var in_ptr = signal.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
        var tap_ptr = taps.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
        var spectrum_ptr = spectrum.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
        comptime if target == "gpu":
            if spectrum_given and spectrum.dim_size(1) < 2 * fft_points(block, k, 8):
                raise Error("fft_conv1d: the spectrum buffer is too narrow")
            fft_conv_gpu[output.dtype](
                ctx, out_ptr, in_ptr, tap_ptr, rows, n, signal_stride, taps_rows, pad, t, k, block,
                spectrum_ptr, spectrum_given, spectrum_ready,
                spectrum_elements=spectrum.dim_size(0) * spectrum.dim_size(1),
            )
        elif target == "cpu":
            comptime lanes = simd_width_of[output.dtype]()
            if spectrum_given and spectrum.dim_size(1) < 2 * fft_points(block, k, lanes):
                raise Error("fft_conv1d: the spectrum buffer is too narrow")
            fft_conv_cpu[output.dtype](
                out_ptr, in_ptr, tap_ptr, rows, n, signal_stride, taps_rows, pad, t, k, block,
                spectrum_ptr, spectrum_given, spectrum_ready,
                spectrum.dim_size(0) * spectrum.dim_size(1), max_workers,
            )
        else:
            raise Error("fft_conv1d: no implementation for target ", target)
