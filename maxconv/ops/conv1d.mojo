"""The `conv1d` custom op: direct 1-D correlation of rows, in place.

For each row r of the [R, T] output:

    output[r, i] = sum_{j < K} signal[r', i + j - P] * taps[r'', j]

with the signal zero outside [0, N), r' = r unless the signal has one row
(then 0, one signal through R kernels), r'' likewise for the taps. P, the
zeros before the signal, comes from the shape of the `window` input [P, B, F, 0]
(it holds no data; its other dimensions are the FFT op's). So any slice of the full
correlation ('full', 'same', 'valid', a streamed chunk) is one call over the
caller's own memory: the op reads the signal where it lies and writes the
output buffer it is given, with no tiles, halo copies or padding on the host.
All sizes are runtime values: one compiled graph serves every (R, N, K, T, P).
"""

from extensibility import InputTensor, _MutableInputTensor as MutableInputTensor
import extensibility
from max.gpu.host import DeviceContext

from .conv1d_cpu import conv1d_cpu
from .conv1d_gpu import KERNEL_BY_K, enqueue_conv1d_gpu


@extensibility.register("conv1d")
struct Conv1D:
    """Correlate each output row with its signal row and taps row (on a GPU
    with the kernel for K, see conv1d_gpu.mojo).

    Args:
        output: [R, T] results, written in place.
        signal: [R, N] or [1, N] signal rows.
        taps: [R, K] or [1, K] taps rows.
        window: [P, B, F, 0]: P zeros precede the signal (B and F: the FFT op's).
        ctx: the device context MAX hands the op.
    """

    @staticmethod
    def execute[target: StaticString](
        output: MutableInputTensor[rank=2, ...],
        signal: InputTensor[dtype=output.dtype, rank=2, ...],
        taps: InputTensor[dtype=output.dtype, rank=2, ...],
        window: InputTensor[rank=4, ...],
        ctx: DeviceContext,
    ) raises:
        var rows = output.dim_size(0)
        var t = output.dim_size(1)
        var n = signal.dim_size(1)
        var k = taps.dim_size(1)
        var pad = window.dim_size(0)
        var signal_rows = signal.dim_size(0)
        var taps_rows = taps.dim_size(0)
        if (signal_rows != rows and signal_rows != 1) or (taps_rows != rows and taps_rows != 1):
            raise Error("conv1d: signal and taps need one row, or one per output row")
        if rows == 0 or t == 0:
            return
        if n == 0 or k == 0:
            raise Error("conv1d: empty signal or taps")
        var signal_stride = n if signal_rows > 1 else 0
        var taps_stride = k if taps_rows > 1 else 0
        var out_ptr = output.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
        var in_ptr = signal.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
        var tap_ptr = taps.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()

        comptime if target == "gpu":
            enqueue_conv1d_gpu[output.dtype](
                ctx, KERNEL_BY_K, out_ptr, in_ptr, tap_ptr, rows, n, signal_stride, taps_stride,
                pad, t, k,
            )
        elif target == "cpu":
            conv1d_cpu[output.dtype](
                out_ptr, in_ptr, tap_ptr, rows, n, signal_stride, taps_stride, pad, t, k
            )
        else:
            raise Error("conv1d: no implementation for target ", target)
