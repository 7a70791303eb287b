"""Helpers shared by the FFT op's CPU and GPU paths."""


def _log2(n: Int) -> Int:
    """log2 of a power of two (the exponent of the next one for others)."""
    var r = 0
    while (1 << r) < n:
        r += 1
    return r


def fft_points(block: Int, n_taps: Int, lanes: Int) -> Int:
    """The transform length L for a requested block length: a power of two,
    at least `block`, the taps (L - K + 1 >= 1 outputs a block) and lanes^2
    (the CPU's V x V blocks; the GPU passes lanes = 8)."""
    return 1 << _log2(max(block, n_taps, lanes * lanes))


def table_offset(taps_rows: Int, points: Int) -> Int:
    """Where the twiddle tables start in a spectrum buffer (both devices):
    behind the spectra (taps_rows rows of L re, then as many of L im)."""
    return 2 * taps_rows * points
