"""The FFT op's CPU path through the engine, against scipy in float64.

Several K and block lengths (so several transform lengths L), float32 and
float64, and the buffers kept between calls: the taps' spectra and the
twiddle tables the op keeps behind them (maxconv/ops/fft_cpu.mojo). A
stream of calls through one engine mixes taps, L and dtypes, so a kept
table that went stale would show as a wrong result; corrupting the kept
tables proves they are read back, not rebuilt.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from max import driver

from maxconv.engine import get_engine

RTOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-13}


def reference(signal: np.ndarray, taps: np.ndarray, pad: int, count: int) -> np.ndarray:
    """out[r, i] = sum_j signal[r, i + j - pad] * taps[r, j] (signal zero outside
    its row), from scipy in float64."""
    rows = max(signal.shape[0], taps.shape[0])
    k = taps.shape[1]
    x = np.zeros((signal.shape[0], pad + max(signal.shape[1], count + k)))
    x[:, pad : pad + signal.shape[1]] = signal
    result = np.zeros((rows, count))
    for r in range(rows):
        xr = x[min(r, signal.shape[0] - 1)]
        hr = taps[min(r, taps.shape[0] - 1)].astype(np.float64)
        result[r] = scipy.signal.correlate(xr, hr, mode="valid", method="fft")[:count]
    return result


def assert_close(result: np.ndarray, want: np.ndarray, signal: np.ndarray, taps: np.ndarray):
    """Within rounding of a K-term sum: max|x| * sum|h| times the dtype's epsilon."""
    scale = float(np.max(np.abs(signal))) * float(np.abs(taps).sum(axis=1).max())
    error = float(np.max(np.abs(result - want)))
    assert error <= 4 * RTOL[result.dtype] * scale, f"error {error:g} vs scale {scale:g}"


def run_op(signal, taps, pad, count, block, spectrum=None):
    """One fft_conv1d call on the CPU engine; `spectrum` is (numpy buffer, ready)."""
    engine = get_engine("cpu")
    out = np.full((max(signal.shape[0], taps.shape[0]), count), np.nan, signal.dtype)
    kept = None
    if spectrum is not None:
        kept = (driver.Buffer.from_numpy(spectrum[0]), spectrum[1])
    engine.correlate(
        driver.Buffer.from_numpy(out),
        driver.Buffer.from_numpy(np.ascontiguousarray(signal)),
        driver.Buffer.from_numpy(np.ascontiguousarray(taps)),
        pad,
        "fft",
        block,
        spectrum=kept,
    )
    engine.device.synchronize()
    return out


def data(rows: int, n: int, k: int, dtype, seed: int):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((rows, n)).astype(dtype),
        rng.standard_normal((rows, k)).astype(dtype),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("k", "block"),
    [(1, 1), (7, 256), (300, 512), (300, 4096), (4097, 8192), (4097, 1 << 15), (20_000, 1 << 15)],
)
def test_fft_op_matches_scipy_at_several_lengths(k: int, block: int, dtype):
    signal, taps = data(2, 70_000, k, dtype, seed=k + block)
    count = 70_000 + k - 1
    want = reference(signal, taps, k - 1, count)
    assert_close(run_op(signal, taps, k - 1, count, block), want, signal, taps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kept_spectra_and_tables_across_taps_lengths_and_dtypes(dtype):
    """One engine, a stream of calls: the same taps again (spectra and tables
    read back), other taps, other block lengths (other L), the other dtype
    in between; every result matches scipy."""
    engine = get_engine("cpu")
    other = np.float64 if dtype == np.float32 else np.float32
    signal, taps = data(2, 50_000, 900, dtype, seed=1)
    _, taps2 = data(2, 50_000, 900, dtype, seed=2)
    plan = [
        (taps, 4096, dtype),
        (taps, 4096, dtype),
        (taps, 1 << 14, dtype),
        (taps2, 4096, dtype),
        (taps, 4096, other),
        (taps, 1 << 14, dtype),
        (taps, 4096, dtype),
        (taps[:1, :500], 2048, dtype),
        (taps, 4096, dtype),
    ]
    for h, block, kind in plan:
        x = signal.astype(kind)
        h = h.astype(kind)
        count = 50_000
        spectrum = engine.spectrum(h, block)
        result = np.full((2, count), np.nan, kind)
        engine.correlate(
            driver.Buffer.from_numpy(result),
            driver.Buffer.from_numpy(x),
            driver.Buffer.from_numpy(h),
            h.shape[1] - 1,
            "fft",
            block,
            spectrum=spectrum,
        )
        engine.device.synchronize()
        assert_close(result, reference(x, h, h.shape[1] - 1, count), x, h)
    assert engine.spectrum(taps, 4096)[1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kept_tables_are_read_back_and_rebuilt_with_the_spectra(dtype):
    """Behind the spectra (2 * S * L elements) the op keeps its tables: with
    the spectra marked ready they are read, so spoiling them spoils the
    result; marked not ready they are built again; a buffer with no room
    for them (W = 2L) keeps the spectra only and builds tables every call."""
    k, block, count = 1000, 4096, 30_000
    signal, taps = data(2, count, k, dtype, seed=3)
    want = reference(signal, taps, k - 1, count)
    roomy = np.zeros((2, 2 * block + 3 * block // 2), dtype)
    assert_close(run_op(signal, taps, k - 1, count, block, (roomy, False)), want, signal, taps)
    flat = roomy.reshape(-1)
    tables = flat[2 * 2 * block :]
    assert np.any(tables != 0)  # the tables were written behind the spectra
    assert_close(run_op(signal, taps, k - 1, count, block, (roomy, True)), want, signal, taps)
    tables[:] = 0
    spoiled = run_op(signal, taps, k - 1, count, block, (roomy, True))
    assert not np.allclose(spoiled, want, atol=1e-3)
    assert_close(run_op(signal, taps, k - 1, count, block, (roomy, False)), want, signal, taps)

    narrow = np.zeros((2, 2 * block), dtype)
    assert_close(run_op(signal, taps, k - 1, count, block, (narrow, False)), want, signal, taps)
    assert_close(run_op(signal, taps, k - 1, count, block, (narrow, True)), want, signal, taps)


def test_reverb_shaped_call_many_pairs_over_both_workers():
    """A stereo chunk of several block pairs a row (the reverb stream's shape,
    smaller), spectra and tables kept: the pairs go to the workers from a
    shared counter, and every pair lands in its place."""
    k, block = 3000, 1 << 13
    count = 9 * (block - k + 1) + 17
    signal, taps = data(2, count + k - 1, k, np.float32, seed=4)
    want = reference(signal, taps, k - 1, count)
    engine = get_engine("cpu")
    spectrum = engine.spectrum(taps, block)
    for _ in range(3):
        result = np.full((2, count), np.nan, np.float32)
        engine.correlate(
            driver.Buffer.from_numpy(result),
            driver.Buffer.from_numpy(signal),
            driver.Buffer.from_numpy(taps),
            k - 1,
            "fft",
            block,
            spectrum=spectrum,
        )
        engine.device.synchronize()
        assert_close(result, want, signal, taps)
        spectrum = engine.spectrum(taps, block)
        assert spectrum[1]


# Block pairs across rows (one taps row for all) -------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("rows", "n", "count"),
    [
        (1, 3000, 3000),  # one block: half a transform
        (2, 3000, 3000),  # one block a row: the rows fill one transform
        (3, 3000, 3000),  # odd: the last row's block rides with zeros
        (7, 3000, 3000),  # more pairs than workers, leftovers in parallel
        (5, 9000, 9000),  # three blocks a row: pairs straddle rows
        (4, 2500, 3500),  # outputs past the signal (a tail), one block a row
        (3, 6000, 4000),  # fewer outputs than samples
    ],
)
def test_shared_taps_pair_blocks_across_rows(rows: int, n: int, count: int, dtype):
    k, block = 1000, 4096  # T = 3097 outputs a block
    signal, taps = data(rows, n, k, dtype, seed=rows * n + count)
    taps = taps[:1]
    pad = k - 1 - 37  # the outputs start 37 samples into the full correlation
    want = reference(signal, taps, pad, count)
    assert_close(run_op(signal, taps, pad, count, block), want, signal, taps)


def test_shared_taps_with_kept_spectrum_and_a_broadcast_signal():
    """Rows of one block sharing kept spectra, called again (spectra ready);
    and one signal row for many taps rows still pairs within a row."""
    k, block, count = 1500, 4096, 2500
    signal, taps = data(6, count, k, np.float32, seed=9)
    want = reference(signal, taps[:1], k - 1, count)
    kept = np.zeros((1, 5 * block), np.float32)
    for ready in (False, True, True):
        result = run_op(signal, taps[:1], k - 1, count, block, (kept, ready))
        assert_close(result, want, signal, taps[:1])
    one = signal[:1]
    want = reference(one, taps, k - 1, count)
    assert_close(run_op(one, taps, k - 1, count, block), want, one, taps)


def test_rows_of_a_shared_call_match_the_rows_alone():
    """A row's result does not depend on its pair partner beyond rounding:
    each row equals its own one-row call within float32 rounding."""
    k, block, count = 800, 2048, 1200
    signal, taps = data(5, count, k, np.float32, seed=10)
    together = run_op(signal, taps[:1], k - 1, count, block)
    for r in range(5):
        alone = run_op(signal[r : r + 1], taps[:1], k - 1, count, block)
        assert_close(together[r : r + 1], alone.astype(np.float64), signal, taps[:1])


@pytest.mark.parametrize("rows", [1, 2, 5, 9])
def test_one_worker_gives_the_same_bytes_as_every_core(rows: int):
    """The window's F = ready + 2 * workers caps the op's cores: the same pairs,
    the same arithmetic, the same bytes whether the leftovers run on one core or
    split over every core."""
    k, block, count = 1200, 4096, 2800
    signal, taps = data(rows, count, k, np.float32, seed=20 + rows)
    engine = get_engine("cpu")
    results = []
    for workers in (0, 1, 0, 2):
        out = np.full((rows, count), np.nan, np.float32)
        engine.correlate(
            driver.Buffer.from_numpy(out),
            driver.Buffer.from_numpy(signal),
            driver.Buffer.from_numpy(taps[:1]),
            k - 1,
            "fft",
            block,
            workers=workers,
        )
        engine.device.synchronize()
        results.append(out)
    assert_close(results[0], reference(signal, taps[:1], k - 1, count), signal, taps[:1])
    for other in results[1:]:
        assert other.tobytes() == results[0].tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_short_rows_of_shared_taps_with_leading_zeros_not_a_multiple_of_the_lanes(dtype):
    """Blocks behind K - 1 leading zeros (P not a multiple of the SIMD lanes) in the
    second half of a pair: the loader stops at L exactly. It once wrote a last
    vector past the scratch, which corrupted the heap now and then (a crash, or
    another row's block: scipy's oaconvolve suite, complex 3 x 50 through 1 x 4)."""
    rng = np.random.default_rng(30)
    for rows, n, k in [(3, 50, 4), (3, 47, 4), (2, 300, 20), (5, 61, 7), (6, 50, 47)] * 6:
        signal = rng.random((rows, n)).astype(dtype)
        taps = rng.random((1, k)).astype(dtype)
        count = n + k - 1
        result = run_op(signal, taps, k - 1, count, 64)
        assert_close(result, reference(signal, taps, k - 1, count), signal, taps)
