# Single-core timing of one row-pair transform (forward, product, inverse) by
# L, for tuning; min over many repeats, so a busy shared machine matters less:
#   .venv/bin/mojo run -I . research/fft/micro_cpu.mojo
from maxconv.ops.fft_cpu import _transform_block
from maxconv.ops.fft_cpu_stages import _alloc, _build_tables
from std.sys import simd_width_of
from std.time import perf_counter_ns
from std.math import log2


def one[dtype: DType](points: Int, skew: Int, repeats: Int) -> Float64:
    comptime lanes = simd_width_of[dtype]()
    var rows = points // lanes
    var col_re = _alloc[dtype](rows)
    var col_im = _alloc[dtype](rows)
    var row_re = _alloc[dtype](points)
    var row_im = _alloc[dtype](points)
    _build_tables[dtype, lanes](points, col_re, col_im, row_re, row_im, 0, 1)
    var g_re = _alloc[dtype](points)
    var g_im = _alloc[dtype](points)
    var buf = _alloc[dtype](2 * points + skew)
    var re = buf
    var im = buf.unsafe_offset(points + skew)
    for i in range(points):
        g_re[unsafe_offset=i] = Scalar[dtype](1.0 / Float64(points))
        g_im[unsafe_offset=i] = 0
        re[unsafe_offset=i] = Scalar[dtype](Float64(i % 7) - 3.0)
        im[unsafe_offset=i] = Scalar[dtype](Float64(i % 5) - 2.0)
    var best = Int.MAX
    for _ in range(repeats):
        var s = perf_counter_ns()
        _transform_block[dtype, lanes, False](
            re, im, g_re, g_im, rows, 0, rows, col_re, col_im, row_re, row_im, Scalar[dtype](1)
        )
        best = min(best, Int(perf_counter_ns() - s))
    var lg = log2(Float64(points))
    buf.unsafe_free()
    col_re.unsafe_free()
    col_im.unsafe_free()
    row_re.unsafe_free()
    row_im.unsafe_free()
    g_re.unsafe_free()
    g_im.unsafe_free()
    # GFLOP/s in the usual 5 N log2 N per complex transform, two transforms.
    return 10.0 * Float64(points) * lg / Float64(best)


def main() raises:
    var p = 4096
    while p <= 1 << 20:
        var reps = max(5, (1 << 22) // p)
        print("L", p, "f32 skew0", one[DType.float32](p, 0, reps), "skew128", one[DType.float32](p, 128, reps),
              "| f64 skew128", one[DType.float64](p, 128, reps))
        p *= 2
