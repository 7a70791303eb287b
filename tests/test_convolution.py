"""Parity of maxconv.convolve / correlate / conv1d with numpy and scipy.

The reference is always scipy.signal (or numpy) in float64 on the same data;
the tolerance is relative to the largest value a sum could reach
(max|x| * sum|h|), which is what float rounding in a K-term sum scales with.
Shapes cover tile edges (multiples of the 65536-output tile, +/- 1), K = 1,
K > N, odd lengths, multichannel both ways round, float32 and float64.
GPU variants carry the `gpu` marker and run on the GPU machine (-m gpu).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

import maxconv

RTOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-13}
DEVICES = ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)]
# A length past the CPU op's task and edge sizes and the GPU kernels' spans.
T = 1 << 16


def assert_matches(result: np.ndarray, expected: np.ndarray, x: np.ndarray, h: np.ndarray):
    """Equal shapes, and values within rounding of a K-term sum."""
    assert result.shape == expected.shape
    scale = max(float(np.max(np.abs(x))) * float(np.sum(np.abs(h), axis=-1).max()), 1e-30)
    error = float(np.max(np.abs(result - expected))) if result.size else 0.0
    assert error <= RTOL[result.dtype] * scale * 4, f"error {error:g} vs scale {scale:g}"


def signal_pair(n: int, k: int, dtype, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 7919 * n + k)
    return rng.standard_normal(n).astype(dtype), rng.standard_normal(k).astype(dtype)


SHAPES = [
    (1, 1),
    (2, 5),
    (15, 4),
    (17, 1),
    (100, 99),
    (100, 100),
    (100, 101),
    (3, 4096),
    (1001, 257),
    (T - 1, 16),
    (T, 16),
    (T + 1, 16),
    (2 * T - 5, 4),
    (2 * T + 3, 1024),
    (3 * T, 4096),
    (1_000_003, 33),
]


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("n", "k"), SHAPES)
def test_modes_match_scipy(n: int, k: int, dtype, device: str, method: str):
    x, h = signal_pair(n, k, dtype)
    x64, h64 = x.astype(np.float64), h.astype(np.float64)
    for mode in ("full", "same", "valid"):
        expected_conv = scipy.signal.convolve(
            x64, h64, mode=mode, method="direct" if n * k < 1e7 else "fft"
        )
        result = maxconv.convolve(x, h, mode, device=device, method=method)
        assert result.dtype == np.dtype(dtype)
        assert_matches(result, expected_conv, x64, h64)
        expected_corr = scipy.signal.correlate(
            x64, h64, mode=mode, method="direct" if n * k < 1e7 else "fft"
        )
        ours = maxconv.correlate(x, h, mode, device=device, method=method)
        assert_matches(ours, expected_corr, x64, h64)


@pytest.mark.parametrize("device", DEVICES)
def test_reference_example(device: str):
    result = maxconv.conv1d(
        np.arange(15, dtype=np.float32), np.arange(4, dtype=np.float32), device=device
    )
    expected = [14, 20, 26, 32, 38, 44, 50, 56, 62, 68, 74, 80, 41, 14, 0]
    np.testing.assert_array_equal(result, np.array(expected, dtype=np.float32))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("n", "k"), [(1, 1), (10, 3), (5, 9), (T + 1, 100), (300_001, 7)])
def test_conv1d_is_correlation_zero_past_end(n: int, k: int, device: str):
    x, h = signal_pair(n, k, np.float64, seed=3)
    expected = np.correlate(np.concatenate([x, np.zeros(k - 1)]), h, mode="valid")
    assert_matches(maxconv.conv1d(x, h, device=device), expected, x, h)


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("axis", [-1, 0])
def test_multichannel_matches_per_channel_scipy(
    axis: int, per_channel: bool, dtype, device: str, method: str
):
    rng = np.random.default_rng(11)
    channels, n, k = 3, T + 77, 31
    x = rng.standard_normal((channels, n)).astype(dtype)
    h = rng.standard_normal((channels, k) if per_channel else k).astype(dtype)
    x_in = x if axis == -1 else x.T
    h_in = h.T if per_channel and axis == 0 else h
    for mode in ("full", "same", "valid"):
        result = maxconv.convolve(x_in, h_in, mode, axis=axis, device=device, method=method)
        result = result if axis == -1 else result.T
        for c in range(channels):
            kernel = h[c] if per_channel else h
            expected = scipy.signal.convolve(
                x[c].astype(np.float64), kernel.astype(np.float64), mode
            )
            assert_matches(result[c], expected, x[c].astype(np.float64), kernel.astype(np.float64))


@pytest.mark.parametrize(
    ("x_dtype", "h_dtype", "expected"),
    [
        (np.float32, np.float32, np.float32),
        (np.int16, np.float32, np.float32),
        (np.float16, np.float16, np.float16),
        (np.float32, np.float64, np.float64),
        (np.int64, np.float32, np.float64),
        (np.int32, np.int32, np.int32),
    ],
)
def test_dtype_rules(x_dtype, h_dtype, expected):
    """scipy's result dtype: numpy.result_type of the inputs."""
    x = np.arange(20).astype(x_dtype)
    h = np.array([1, 2, 1]).astype(h_dtype)
    result = maxconv.convolve(x, h, device="cpu")
    assert result.dtype == np.dtype(expected) == scipy.signal.convolve(x, h).dtype
    np.testing.assert_allclose(result, np.convolve(x.astype(np.float64), [1, 2, 1]))


def test_nan_reaches_only_outputs_whose_window_covers_it():
    x = np.ones(50)
    x[20] = np.nan
    result = maxconv.convolve(x, np.ones(5), "same", device="cpu")
    assert np.isnan(result[18:23]).all()
    assert np.isfinite(np.delete(result, range(18, 23))).all()


def test_list_input_and_kernel_longer_than_signal():
    result = maxconv.convolve([1.0, 2.0], [1.0, 1.0, 1.0, 1.0], "valid", device="cpu")
    np.testing.assert_allclose(
        result, scipy.signal.convolve([1.0, 2.0], [1.0, 1.0, 1.0, 1.0], "valid")
    )


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3000),
    k=st.integers(1, 300),
    channels=st.integers(1, 3),
    mode=st.sampled_from(["full", "same", "valid"]),
    correlate=st.booleans(),
    double=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_matches_scipy(n, k, channels, mode, correlate, double, seed):
    dtype = np.float64 if double else np.float32
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (channels, n)).astype(dtype)
    h = rng.uniform(-1, 1, k).astype(dtype)
    ours = (maxconv.correlate if correlate else maxconv.convolve)(x, h, mode, device="cpu")
    theirs = scipy.signal.correlate if correlate else scipy.signal.convolve
    for c in range(channels):
        expected = theirs(x[c].astype(np.float64), h.astype(np.float64), mode, method="direct")
        assert_matches(ours[c], expected, x[c].astype(np.float64), h.astype(np.float64))


@pytest.mark.parametrize(
    ("x", "h", "kwargs", "message"),
    [
        (np.ones(5), np.ones((1, 3)), {}, "same dimensionality"),
        (np.ones((2, 2, 2)), np.ones((2, 3)), {}, "same dimensionality"),
        (np.ones((3, 10)), np.ones((2, 4)), {}, r"do not broadcast .* each must be equal or 1"),
        (np.ones(10), np.ones(3), {"axis": 1}, "axis 1 is out of bounds for 1-D in1"),
        (
            np.ones(10),
            np.ones(3),
            {"mode": "spam"},
            "mode must be one of 'full', 'same', 'valid', not 'spam'",
        ),
        (
            np.ones(10),
            np.ones(3),
            {"device": "tpu"},
            "device must be 'auto', 'cpu', 'gpu' or 'gpu:N', not 'tpu'",
        ),
    ],
)
def test_bad_arguments_raise_value_error(x, h, kwargs, message):
    with pytest.raises(ValueError, match=message):
        maxconv.convolve(x, h, **kwargs)


def test_unknown_method_says_what_to_use():
    with pytest.raises(
        ValueError, match="method must be one of 'auto', 'direct', 'fft', not 'fast'"
    ):
        maxconv.convolve(np.ones(10), np.ones(3), method="fast")


def test_auto_method_takes_fft_only_for_long_kernels_on_cpu(monkeypatch):
    from maxconv.engine import get_engine

    chosen = []
    engine = get_engine("cpu")
    real = engine.correlate
    monkeypatch.setattr(
        engine, "correlate", lambda *args, **kw: chosen.append(args[4]) or real(*args, **kw)
    )
    maxconv.convolve(np.ones(1000), np.ones(127), device="cpu")
    maxconv.convolve(np.ones(1000), np.ones(128), device="cpu")
    assert chosen == ["direct", "fft"]


def test_non_numeric_input_is_a_type_error():
    with pytest.raises(TypeError, match="numeric"):
        maxconv.correlate(np.array(["a", "b"]), np.ones(2))


def test_gpu_where_there_is_none_says_what_to_do(monkeypatch):
    monkeypatch.setattr("maxconv.devices.gpu_count", lambda: 0)
    with pytest.raises(ValueError, match="no GPU; use --device cpu or auto"):
        maxconv.convolve(np.ones(10), np.ones(3), device="gpu:1")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fft_past_the_cpu_transform_cap_matches_scipy(dtype):
    """K = 600,000: L is capped at 2^21 on the CPU (not 4K = 2^22), tiles of 1.5 M outputs."""
    n, k = 2_500_000, 600_000
    x, h = signal_pair(n, k, dtype)
    x64, h64 = x.astype(np.float64), h.astype(np.float64)
    result = maxconv.convolve(x, h, "full", device="cpu", method="fft")
    assert_matches(result, scipy.signal.fftconvolve(x64, h64), x64, h64)


# Every block-length class of the GPU FFT op: fused blocks of 256-16384
# points (float32, 16 values a thread up to 4096, 32 above; short rows
# choose short blocks), staged blocks with one or more global passes and
# each chunk of the per-L table, and kernels up to 2^20 taps. (n, K) and the
# float32 L they get.
FFT_CLASSES = [
    (200, 60),  # L = 128 (a short row)
    (700, 200),  # 1024
    (5_000, 700),  # 2048-4096, a few blocks
    (300_001, 1_024),  # 4096
    (300_001, 2_000),  # 8192 (fused, 32 values a thread)
    (400_003, 8_192),  # 16384 (fused, 32 values a thread)
    (600_000, 16_384),  # 2^16: staged, one global pass
    (600_000, 65_536),  # 2^18: chunks of 2^13, 32 values a thread
    (1_500_000, 131_072),  # 2^19: chunks of 2^14, 32 values a thread
    (1 << 21, 1 << 20),  # 2^21: two global passes
    (1 << 22, 1 << 20),  # 2^22: chunks of 2^13, 32 values a thread, two passes
]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("n", "k"), FFT_CLASSES)
def test_gpu_fft_block_classes_match_scipy(n: int, k: int, dtype):
    """Within float32 rounding of scipy's float64 result: 1e-5 of the output's peak."""
    x, h = signal_pair(n, k, dtype, seed=k)
    x64, h64 = x.astype(np.float64), h.astype(np.float64)
    expected = scipy.signal.fftconvolve(x64, h64)
    result = maxconv.convolve(x, h, device="gpu", method="fft")
    error = np.abs(result - expected).max() / np.abs(expected).max()
    assert error <= (1e-5 if dtype == np.float32 else 1e-10)
