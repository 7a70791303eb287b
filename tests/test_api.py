"""The public API's data path and scipy semantics.

Zero copies are proven by memory identity (the op writes the caller's
`out`; the buffers it is handed share the caller's arrays), `out=`, row
broadcasting both ways, ragged batches, every dtype, complex, empty and
0-d inputs, and DLPack objects, all against scipy.signal in float64 on the
same data. CUDA arrays (torch, cupy) carry the `gpu` marker.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.signal
from max import driver

import maxconv
from maxconv.engine import get_engine
from maxconv.rows import correlate_rows


def reference(x, h, mode="full", flip=True):
    """scipy in float64 (complex128 where complex) of the same values."""
    wide = np.complex128 if np.iscomplexobj(x) or np.iscomplexobj(h) else np.float64
    x64, h64 = np.asarray(x).astype(wide), np.asarray(h).astype(wide)
    function = scipy.signal.convolve if flip else scipy.signal.correlate
    return function(x64, h64, mode, method="direct")


def close(result, expected, x, h, rtol=2e-6):
    scale = max(float(np.max(np.abs(x))) * float(np.sum(np.abs(h))), 1e-30)
    assert result.shape == expected.shape
    assert np.max(np.abs(result - expected)) <= rtol * scale * 4


def test_cpu_op_reads_and_writes_the_callers_memory(monkeypatch):
    """The buffers handed to the op share the caller's signal and out arrays."""
    seen = []
    real = driver.Buffer.from_numpy

    def spy(array):
        seen.append(array)
        return real(array)

    monkeypatch.setattr(driver.Buffer, "from_numpy", spy)
    x = np.random.default_rng(0).standard_normal((3, 5000)).astype(np.float32)
    h = np.ones((1, 9), np.float32)
    out = np.empty((3, 5008), np.float32)
    result = correlate_rows(get_engine("cpu"), x, h, 0, 5008, "direct", out=out)
    assert result is out
    assert any(np.shares_memory(array, out) for array in seen)
    assert any(np.shares_memory(array, x) for array in seen)
    expected = np.stack([np.correlate(row, h[0], "full") for row in x.astype(np.float64)])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_out_is_written_in_place(mode):
    x = np.random.default_rng(1).standard_normal(10_001).astype(np.float32)
    h = np.random.default_rng(2).standard_normal(31).astype(np.float32)
    expected = reference(x, h, mode)
    out = np.full(expected.shape, np.nan, np.float32)
    result = maxconv.convolve(x, h, mode, device="cpu", out=out)
    assert result is out
    close(out, expected, x, h)


def test_out_of_another_layout_or_dtype():
    x = np.random.default_rng(3).standard_normal((4, 300))
    h = np.random.default_rng(4).standard_normal((4, 7))
    out = np.empty((306, 4)).T  # right shape, column-major rows: filled by a copy
    maxconv.convolve(x, h, device="cpu", out=out)
    for row in range(4):
        close(out[row], reference(x[row], h[row]), x[row], h[row], rtol=1e-13)
    with pytest.raises(ValueError, match="shape"):
        maxconv.convolve(x, h, device="cpu", out=np.empty((4, 305)))
    with pytest.raises(ValueError, match="dtype"):
        maxconv.convolve(x, h, device="cpu", out=np.empty((4, 306), np.float32))


@pytest.mark.parametrize(
    ("signal_shape", "kernel_shape"),
    [((5, 400), (5, 9)), ((5, 400), (1, 9)), ((1, 400), (5, 9)), ((2, 3, 400), (1, 3, 9))],
)
def test_rows_broadcast_like_scipy_fftconvolve_axes(signal_shape, kernel_shape):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(signal_shape)
    h = rng.standard_normal(kernel_shape)
    for mode in ("full", "same", "valid"):
        result = maxconv.convolve(x, h, mode, axis=-1, device="cpu")
        expected = scipy.signal.fftconvolve(x, h, mode, axes=-1)
        np.testing.assert_allclose(result, expected, atol=1e-9)


def test_rows_along_axis_zero():
    rng = np.random.default_rng(6)
    x, h = rng.standard_normal((300, 3)), rng.standard_normal((8, 3))
    result = maxconv.correlate(x, h, "same", axis=0, device="cpu")
    expected = np.stack(
        [scipy.signal.correlate(x[:, c], h[:, c], "same") for c in range(3)], axis=1
    )
    np.testing.assert_allclose(result, expected, atol=1e-9)


@pytest.mark.parametrize(
    "dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.bool_, np.float16]
)
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_result_dtype_and_values_as_scipy(dtype, method):
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, 500).astype(dtype)
    h = rng.integers(0, 3, 9).astype(dtype)
    for flip in (True, False):
        function = maxconv.convolve if flip else maxconv.correlate
        expected = (scipy.signal.convolve if flip else scipy.signal.correlate)(
            x, h, method="direct"
        )
        result = function(x, h, device="cpu", method=method)
        assert result.dtype == expected.dtype
        if dtype == np.float16:
            np.testing.assert_allclose(result, expected, atol=2e-3 * float(expected.max()))
        else:
            np.testing.assert_array_equal(result, expected)


def test_integer_sums_are_exact_past_float32():
    x = np.full(100, 2**20, np.int64)
    h = np.full(64, 3, np.int64)
    result = maxconv.convolve(x, h, device="cpu", method="fft")
    assert result.dtype == np.int64
    np.testing.assert_array_equal(result, np.convolve(x, h))


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize(
    ("signal_dtype", "kernel_dtype"),
    [
        (np.complex64, np.complex64),
        (np.complex128, np.float64),
        (np.float32, np.complex64),
        (np.complex128, np.complex128),
    ],
)
def test_complex_as_scipy(method, signal_dtype, kernel_dtype):
    rng = np.random.default_rng(8)
    x = (rng.standard_normal(3000) + 1j * rng.standard_normal(3000)).astype(signal_dtype)
    h = (rng.standard_normal(40) + 1j * rng.standard_normal(40)).astype(kernel_dtype)
    tolerance = 2e-6 if np.result_type(x, h) == np.complex64 else 1e-13
    for flip in (True, False):
        function = maxconv.convolve if flip else maxconv.correlate
        for mode in ("full", "same", "valid"):
            result = function(x, h, mode, device="cpu", method=method)
            assert result.dtype == np.result_type(x, h)
            close(result, reference(x, h, mode, flip), x, h, rtol=tolerance)


def test_complex_rows_with_one_kernel_per_row():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 500)) + 1j * rng.standard_normal((3, 500))
    h = rng.standard_normal((1, 12)) + 1j * rng.standard_normal((1, 12))
    result = maxconv.correlate(x, h, device="cpu")
    expected = np.stack([scipy.signal.correlate(row, h[0]) for row in x])
    np.testing.assert_allclose(result, expected, atol=1e-10)


def test_empty_and_zero_rank_as_scipy():
    assert maxconv.convolve(np.array([]), np.array([1.0]), device="cpu").size == 0
    assert maxconv.correlate([5, 6], [], device="cpu").size == 0
    assert maxconv.convolve(np.array(4967), np.array(3920), device="cpu") == 4967 * 3920
    assert maxconv.correlate(np.array(2.0), np.array(3j), device="cpu") == -6j


def test_one_dimensional_signal_refuses_a_two_dimensional_kernel():
    with pytest.raises(ValueError, match="same dimensionality"):
        maxconv.convolve(np.ones(5), np.ones((1, 1)), device="cpu")


def test_fft_method_warns_of_nan_as_scipy_does():
    x = np.ones(1000)
    x[3] = np.nan
    with pytest.warns(RuntimeWarning, match="NAN or inf"):
        maxconv.convolve(x, np.ones(600), device="cpu", method="fft")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = maxconv.convolve(x, np.ones(3), device="cpu", method="direct")
    assert np.isnan(result[3:6]).all() and not np.isnan(result[6:]).any()


def test_dlpack_objects_are_read_in_place():
    class Foreign:
        """A host array of another library: only the DLPack protocol."""

        def __init__(self, array):
            self.array = array

        def __dlpack__(self, **kwargs):
            return self.array.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self.array.__dlpack_device__()

    x = np.random.default_rng(10).standard_normal(777).astype(np.float32)
    h = np.random.default_rng(11).standard_normal(5).astype(np.float32)
    result = maxconv.convolve(Foreign(x), Foreign(h), "same", device="cpu")
    close(np.asarray(result), reference(x, h, "same"), x, h)


def test_lists_and_scalars_still_work():
    np.testing.assert_allclose(
        maxconv.convolve([1, 2, 3], [0, 1, 0.5], device="cpu"), [0, 1, 2.5, 4, 1.5]
    )


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_ragged_batch_equals_one_call_per_row(mode, method):
    rng = np.random.default_rng(12)
    lengths = [1, 50, 51, 64, 999, 1000, 1200, 30_000]
    signals = [rng.standard_normal(n).astype(np.float32) for n in lengths]
    kernels = [rng.standard_normal(k).astype(np.float32) for k in (1, 3, 7, 64, 5, 200, 2, 31)]
    results = maxconv.convolve_batch(signals, kernels, mode, method=method, device="cpu")
    assert len(results) == len(signals)
    for signal, kernel, result in zip(signals, kernels, results, strict=True):
        close(result, reference(signal, kernel, mode), signal, kernel)


def test_ragged_batch_with_one_shared_kernel_and_integers():
    signals = [np.arange(n, dtype=np.int32) for n in (5, 9, 40)]
    kernel = np.array([1, -1, 2], np.int32)
    results = maxconv.convolve_batch(signals, kernel, "same", device="cpu")
    for signal, result in zip(signals, results, strict=True):
        assert result.dtype == np.int32
        np.testing.assert_array_equal(result, scipy.signal.convolve(signal, kernel, "same"))


def test_a_jobs_batch_on_its_engine_equals_the_api_call(cpu_engine):
    """convolve_batch_on (the augment job's) gives convolve_batch's rows, empty ones too."""
    from maxconv.batch import convolve_batch_on

    rng = np.random.default_rng(13)
    signals = [rng.standard_normal(n).astype(np.float32) for n in (0, 40, 41, 700)]
    kernels = [rng.standard_normal(k).astype(np.float32) for k in (3, 5, 300, 31)]
    for start in (0, 1):  # with an empty row (row by row), without (grouped op calls)
        ours = convolve_batch_on(cpu_engine, signals[start:], kernels[start:], method="direct")
        theirs = maxconv.convolve_batch(
            signals[start:], kernels[start:], method="direct", device="cpu"
        )
        for mine, api in zip(ours, theirs, strict=True):
            assert mine.dtype == api.dtype
            np.testing.assert_array_equal(mine, api)


def test_ragged_batch_counts_must_match():
    with pytest.raises(ValueError, match="2 signals but 3 kernels"):
        maxconv.convolve_batch([np.ones(4)] * 2, [np.ones(2)] * 3, device="cpu")


# CUDA arrays: the GPU machine runs these (-m gpu) ----------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_torch_cuda_tensors_stay_on_their_gpu(gpu_device, mode):
    torch = pytest.importorskip("torch")
    x = torch.randn(4, 100_003, device="cuda")
    h = torch.randn(4, 65, device="cuda")
    result = maxconv.convolve(x, h, mode)
    assert isinstance(result, torch.Tensor) and result.is_cuda
    expected = scipy.signal.fftconvolve(
        x.cpu().double().numpy(), h.cpu().double().numpy(), mode, axes=-1
    )
    np.testing.assert_allclose(result.cpu().numpy(), expected, atol=2e-4)


@pytest.mark.gpu
def test_torch_stream_order_is_respected(gpu_device):
    """Work queued on torch's stream before the call is seen; the result is ready after it."""
    torch = pytest.importorskip("torch")
    x = torch.zeros(1 << 24, device="cuda")
    h = torch.ones(16, device="cuda")
    x.add_(1.0)  # queued, maybe still running when convolve starts
    result = maxconv.correlate(x, h, "valid")
    total = result.sum().item()  # queued on torch's stream after the call
    assert total == pytest.approx(16.0 * ((1 << 24) - 15), rel=1e-6)


@pytest.mark.gpu
def test_torch_stream_order_without_host_waits(gpu_device):
    """The call returns once queued: torch work queued after it (on the caller's
    current stream, a side stream here) waits for the op, and the inputs can
    be overwritten at once without changing the result."""
    torch = pytest.importorskip("torch")
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        x = torch.zeros(1 << 24, device="cuda")
        h = torch.ones(64, device="cuda")
        x.add_(2.0)
        result = maxconv.correlate(x, h, "valid")
        x.zero_()  # after the call, on the same stream: the op already read x
        h.zero_()
        total = result.sum()
    side.synchronize()
    assert float(total) == pytest.approx(128.0 * ((1 << 24) - 63), rel=1e-6)


@pytest.mark.gpu
def test_torch_default_stream_and_kept_views(gpu_device):
    """On torch's default stream (which CUDA orders with MAX's queue when that is a
    blocking stream: no events then): inputs overwritten right after each call
    leave its result alone, and the same tensors passed again (their views
    kept) are read afresh every call."""
    torch = pytest.importorskip("torch")
    assert torch.cuda.current_stream().cuda_stream == 0
    x = torch.zeros(1 << 24, device="cuda")
    h = torch.ones(64, device="cuda")
    totals = []
    for step in range(1, 4):
        x.fill_(float(step))
        h.fill_(float(step))
        result = maxconv.correlate(x, h, "valid")
        x.zero_()
        h.zero_()
        totals.append(result.sum())
    torch.cuda.synchronize()
    for step, total in enumerate(totals, start=1):
        assert float(total) == pytest.approx(64.0 * step * step * ((1 << 24) - 63), rel=1e-6)
    y = torch.ones(1 << 20, device="cuda")
    x.set_(y)  # new storage under the same tensor object
    assert float(maxconv.correlate(x, h.fill_(1.0), "valid").sum()) == pytest.approx(
        64.0 * ((1 << 20) - 63), rel=1e-6
    )


@pytest.mark.gpu
def test_torch_memory_reused_by_new_tensors(gpu_device):
    """Views are kept by address: torch's caching allocator puts each new signal,
    kernel and output where the last ones were, with new values, other shapes
    and dtypes; every result is the right one (torch's conv1d as the reference)."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    seen = set()
    for step in range(12):
        dtype = torch.float64 if step % 4 == 3 else torch.float32
        n, k = (50_000, 33) if step % 3 else (40_000, 17)
        x = torch.randn(n, device="cuda", dtype=dtype)
        h = torch.randn(k, device="cuda", dtype=dtype)
        seen.add(x.data_ptr())
        expected = functional.conv1d(x.view(1, 1, -1), h.view(1, 1, -1)).view(-1)
        result = maxconv.correlate(x, h, "valid")
        flipped = maxconv.convolve(x, h.flip(0), "valid")
        tolerance = 1e-9 if dtype == torch.float64 else 1e-3
        assert float((result - expected).abs().max()) < tolerance
        assert float((flipped - expected).abs().max()) < tolerance
        del x, h, result, flipped
    assert len(seen) < 12  # the allocator did reuse addresses, so kept views were hit


@pytest.mark.gpu
@pytest.mark.parametrize("side_stream", [False, True])
def test_replayed_calls_keep_stream_order(gpu_device, side_stream):
    """The same buffers call after call (replayed from a captured device graph
    from the second call on): each call sees the values torch wrote just before
    it and its result is there for torch's next op, on torch's default stream
    and on a side stream."""
    torch = pytest.importorskip("torch")
    from maxconv.engine import get_engine

    stream = torch.cuda.Stream() if side_stream else torch.cuda.current_stream()
    with torch.cuda.stream(stream):
        x = torch.zeros(1 << 22, device="cuda")
        h = torch.ones(32, device="cuda")
        out = torch.empty((1 << 22) - 31, device="cuda")
        totals = []
        for step in range(1, 7):
            x.fill_(float(step))
            maxconv.correlate(x, h, "valid", out=out)
            x.zero_()
            totals.append(out.sum())
            out.fill_(-1.0)
        stream.synchronize()
    assert get_engine("gpu").graphs._graphs  # the loop was replayed
    for step, total in enumerate(totals, start=1):
        assert float(total) == pytest.approx(32.0 * step * ((1 << 22) - 31), rel=1e-6)


@pytest.mark.gpu
def test_strided_cuda_tensors_are_refused(gpu_device):
    torch = pytest.importorskip("torch")
    x = torch.randn(64, 1000, device="cuda").t()  # last axis strided
    with pytest.raises(ValueError, match="contiguous"):
        maxconv.correlate(x, torch.ones(3, device="cuda"))


@pytest.mark.gpu
def test_cupy_stream_order(gpu_device):
    cupy = pytest.importorskip("cupy")
    stream = cupy.cuda.Stream()
    with stream:
        x = cupy.zeros(1 << 22, dtype=cupy.float32)
        x += 1.0
        result = maxconv.correlate(x, cupy.ones(16, dtype=cupy.float32), "valid")
        x[...] = 0
        total = float(result.sum())
    assert total == pytest.approx(16.0 * ((1 << 22) - 15), rel=1e-6)


@pytest.mark.gpu
def test_torch_out_and_ragged_batch(gpu_device):
    torch = pytest.importorskip("torch")
    x = torch.randn(2, 5000, device="cuda", dtype=torch.float64)
    h = torch.randn(2, 33, device="cuda", dtype=torch.float64)
    out = torch.empty(2, 5032, device="cuda", dtype=torch.float64)
    for _ in range(3):  # the same out again (its view kept): each result lands in it
        x.normal_()
        assert maxconv.convolve(x, h, out=out) is out
        expected = scipy.signal.fftconvolve(x.cpu().numpy(), h.cpu().numpy(), axes=-1)
        np.testing.assert_allclose(out.cpu().numpy(), expected, atol=1e-9)
    with pytest.raises(ValueError, match="dtype float64"):
        maxconv.convolve(x, h, out=out.float())
    clips = [torch.randn(n, device="cuda") for n in (4000, 4800, 100)]
    rooms = [torch.randn(k, device="cuda") for k in (700, 64, 9)]
    for clip, room, wet in zip(clips, rooms, maxconv.convolve_batch(clips, rooms), strict=True):
        assert wet.is_cuda
        expected = scipy.signal.convolve(clip.cpu().double().numpy(), room.cpu().double().numpy())
        np.testing.assert_allclose(wet.cpu().numpy(), expected, atol=2e-4)


@pytest.mark.gpu
def test_cupy_arrays(gpu_device):
    cupy = pytest.importorskip("cupy")
    x = cupy.random.standard_normal(70_000, dtype=cupy.float32)
    h = cupy.random.standard_normal(1500, dtype=cupy.float32)
    result = maxconv.convolve(x, h, "same")
    assert isinstance(result, cupy.ndarray)
    expected = scipy.signal.fftconvolve(cupy.asnumpy(x).astype(np.float64), cupy.asnumpy(h), "same")
    np.testing.assert_allclose(cupy.asnumpy(result), expected, atol=5e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize(
    ("n", "k"), [(1, 1), (1000, 7), ((1 << 24) + 5, 4), (5_000_001, 1024), (300, 5000)]
)
def test_numpy_through_the_gpu_in_chunks(gpu_device, method, n, k):
    """Long rows cross the bus in chunks with their K-1 history; short rows in groups."""
    rng = np.random.default_rng(n + k)
    x = rng.standard_normal(n).astype(np.float32)
    h = rng.standard_normal(k).astype(np.float32)
    if method == "direct" and n * k > 1e10:
        pytest.skip("too long for the direct method")
    for mode in ("full", "same", "valid"):
        result = maxconv.convolve(x, h, mode, device=gpu_device, method=method)
        expected = scipy.signal.fftconvolve(x.astype(np.float64), h, mode)
        close(result, expected, x, h, rtol=1e-5)
    rows = rng.standard_normal((37, 3000)).astype(np.float32)
    taps = rng.standard_normal((37, min(k, 500))).astype(np.float32)
    result = maxconv.correlate(rows, taps, device=gpu_device, method=method)
    expected = np.stack(
        [scipy.signal.correlate(r.astype(np.float64), t) for r, t in zip(rows, taps, strict=True)]
    )
    np.testing.assert_allclose(result, expected, atol=1e-3)


@pytest.mark.parametrize(
    ("rows", "n", "k", "start", "count", "signal_rows", "taps_rows"),
    [
        (1, 10_000, 7, 0, 10_006, 1, 1),  # 'full' of a long row, many chunks
        (1, 10_000, 300, 150, 10_000, 1, 1),  # 'same'
        (1, 500, 2000, 499, 1501, 1, 1),  # 'valid' with K > N: chunks past the signal
        (9, 700, 5, 4, 700, 9, 1),  # row groups, one kernel
        (9, 700, 5, 0, 704, 1, 9),  # one signal through nine kernels
        (6, 1000, 33, 32, 968, 6, 6),
    ],
)
def test_gpu_pipeline_logic_on_the_cpu(
    monkeypatch, rows, n, k, start, count, signal_rows, taps_rows
):
    """The host-to-GPU pipeline (chunks, staging, two slots each way), run on the
    CPU device with chunks small enough to make many of them."""
    import maxconv.rows as rows_module

    monkeypatch.setattr(rows_module, "GPU_CHUNK_SAMPLES", 1024)
    rng = np.random.default_rng(rows * n + k)
    signal = rng.standard_normal((signal_rows, n)).astype(np.float32)
    taps = rng.standard_normal((taps_rows, k)).astype(np.float32)
    engine = get_engine("cpu")
    out = np.full((rows, count), np.nan, np.float32)
    method = "direct"
    # A GPU runs copies and ops in the order they are queued (one stream);
    # the CPU device runs buffer copies beside the op, so order them here.
    real = engine.correlate

    def in_stream_order(*args, **kwargs):
        engine.device.synchronize()
        real(*args, **kwargs)
        engine.device.synchronize()

    monkeypatch.setattr(engine, "correlate", in_stream_order)
    rows_module._gpu_from_host(engine, out, signal, taps, k - 1 - start, method, 1)
    monkeypatch.undo()
    expected = correlate_rows(engine, signal, taps, start, count, method)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_fft_block_length_for_long_rows_and_clips():
    from maxconv.planning import fft_block_points

    # Long rows keep 4K rounded up (measured best), capped on a CPU.
    assert fft_block_points(4096, 1 << 24, "gpu", "float64") == 1 << 14
    assert fft_block_points(16384, 1 << 24, "gpu", "float64") == 1 << 16
    assert fft_block_points(65536, 1 << 24, "gpu", "float32") == 1 << 18
    assert fft_block_points(4096, 1 << 24, "cpu", "float32") == 1 << 14
    assert fft_block_points(1_000_000, 1 << 30, "cpu", "float32") == 1 << 21
    # A GPU takes float32 blocks from the measured table (the fused kernel,
    # K <= 8192): 4096 up to K = 2048, 8192 up to 3072, 16384 up to 8192.
    assert fft_block_points(8192, 1 << 24, "gpu", "float32") == 1 << 14
    assert fft_block_points(4096, 1 << 24, "gpu", "float32") == 1 << 14
    assert fft_block_points(3073, 1 << 24, "gpu", "float32") == 1 << 14
    assert fft_block_points(3072, 1 << 24, "gpu", "float32") == 1 << 13
    assert fft_block_points(2049, 1 << 24, "gpu", "float32") == 1 << 13
    assert fft_block_points(2048, 1 << 24, "gpu", "float32") == 1 << 12
    assert fft_block_points(1500, 1 << 24, "gpu", "float32") == 1 << 12
    assert fft_block_points(1024, 1 << 24, "gpu", "float32") == 1 << 12
    assert fft_block_points(512, 1 << 24, "gpu", "float32") == 1 << 12
    # Past 8192 (staged kernels) twice the 4K rule's L from 3/4 of a power of two.
    assert fft_block_points(12288, 1 << 24, "gpu", "float32") == 1 << 16
    assert fft_block_points(12289, 1 << 24, "gpu", "float32") == 1 << 17
    assert fft_block_points(16384, 1 << 24, "gpu", "float32") == 1 << 17
    assert fft_block_points(24576, 1 << 24, "gpu", "float32") == 1 << 17
    assert fft_block_points(32768, 1 << 24, "gpu", "float32") == 1 << 18
    # A clip of a few blocks takes the length with the least transform work:
    # one full pair at 2^16 rather than one half-empty pair at 2^17.
    assert fft_block_points(24_000, 71_999, "gpu", "float32") == 1 << 16
    # Rows sharing their taps pair their blocks across rows on a CPU: 48,000 outputs of
    # a 16,000-tap response are one block at 2^16, half a transform a row, where a lone
    # row takes three blocks at 2^15; a GPU pairs within rows and keeps its choice.
    assert fft_block_points(16_000, 48_000, "cpu", "float32") == 1 << 15
    assert fft_block_points(16_000, 48_000, "cpu", "float32", shared_rows=10) == 1 << 16
    assert fft_block_points(24_000, 48_000, "cpu", "float32", shared_rows=10) == 1 << 16
    for k in (8000, 16_000, 24_000):
        assert fft_block_points(k, 48_000, "gpu", "float32", shared_rows=10) == (
            fft_block_points(k, 48_000, "gpu", "float32")
        )


def test_batch_groups_split_on_kernel_length_too():
    from maxconv.batch import _length_groups

    groups = _length_groups([48_000] * 4, [8_000, 24_000, 9_000, 23_000])
    assert sorted(map(sorted, groups)) == [[0, 2], [1, 3]]


@pytest.mark.parametrize("rows", [1, 3])
def test_fft_taps_spectrum_is_kept_between_calls_with_the_same_taps(rows):
    """The second call with the same taps reads their kept spectrum; other taps
    of the same shape are not mistaken for them."""
    rng = np.random.default_rng(13)
    taps = rng.standard_normal((rows, 700)).astype(np.float32)
    other = rng.standard_normal((rows, 700)).astype(np.float32)
    engine = get_engine("cpu")
    for h in (taps, taps, other, taps):
        x = rng.standard_normal((rows, 20_000)).astype(np.float32)
        result = correlate_rows(engine, x, h, 699, 20_000, "fft")
        expected = np.stack(
            [scipy.signal.correlate(r, t) for r, t in zip(x.astype(np.float64), h, strict=True)]
        )
        np.testing.assert_allclose(result, expected[:, 699 : 699 + 20_000], atol=2e-4)
    assert engine.spectrum(taps, engine.fft_block(700, 20_000, np.float32))[1]


def test_spectra_kept_under_a_key_least_recently_used_dropped(monkeypatch):
    """Keyed spectra: found again under their key (the taps not compared), kept
    within SPECTRA_KEYED_BYTES, the least recently used dropped first."""
    import maxconv.engine as engine_module

    engine = engine_module.Engine("cpu")
    taps = np.ones((1, 700), np.float32)
    first, ready = engine.spectrum(taps, 4096, key="a")
    assert not ready and engine.spectrum(taps, 4096, key="a") == (first, True)
    assert engine.spectrum(taps, 4096, key="b")[1] is False
    assert engine.spectrum(taps, 8192, key="a")[1] is False  # another block length
    size = engine_module._bytes(first)
    monkeypatch.setattr(engine_module, "SPECTRA_KEYED_BYTES", 2 * size)
    engine.spectrum(taps, 4096, key="a")  # a used last: b goes first
    engine.spectrum(taps, 4096, key="c")
    assert engine.spectrum(taps, 4096, key="a")[1] and not engine.spectrum(taps, 4096, key="b")[1]
    assert engine._keyed_bytes <= 2 * size


def test_dtype_names_of_other_libraries():
    from maxconv.device_arrays import _numpy_dtype

    class Tensor:
        def __init__(self, dtype: str) -> None:
            self.dtype = dtype

    assert _numpy_dtype(Tensor("torch.float32")) == np.float32
    assert _numpy_dtype(np.ones(2)) == np.float64
    assert _numpy_dtype(Tensor("torch.bfloat16")) is None  # numpy has no such dtype
    assert _numpy_dtype([1.0]) == np.dtype("O")


def test_stream_order_logic_with_stand_ins(monkeypatch):
    """StreamOrder on the CPU with a stand-in torch: MAX's queue waits for an event
    recorded on the caller's current stream before the op, the caller's stream for
    one recorded on MAX's queue after it; no events where CUDA orders the caller's
    legacy default stream with MAX's queue itself; one order object per engine
    queue; a library without a stream API gets a host synchronize after the op."""
    from types import ModuleType, SimpleNamespace

    import maxconv.device_arrays as device_arrays
    from maxconv.device_arrays import StreamOrder

    log = []

    class Stream:
        def __init__(self, name: str) -> None:
            self.name = name

        def wait_event(self, event) -> None:
            log.append((self.name, "waits for", event.recorded_on))

    class Event:
        recorded_on = None

        def record(self, stream) -> None:
            self.recorded_on = stream.name

    current = {"raw": 5}
    torch = ModuleType("torch")
    torch._C = SimpleNamespace(_cuda_getCurrentRawStream=lambda index: current["raw"])
    torch.cuda = SimpleNamespace(
        ExternalStream=lambda handle, device=None: Stream(f"max queue {handle}"),
        Event=Event,
        current_stream=lambda index: Stream(f"caller {current['raw']}"),
    )

    def engine(handle: int):
        return SimpleNamespace(
            device=SimpleNamespace(
                default_queue=SimpleNamespace(native_stream_handle=handle),
                synchronize=lambda: log.append("host synchronize"),
            )
        )

    # Queue 7 is a blocking stream of the primary context, queue 8 is not.
    monkeypatch.setattr(device_arrays, "legacy_orders", lambda handle, index: handle == 7)
    first = engine(7)
    order = StreamOrder.of(torch, first, 0)
    order.before()
    order.after()
    assert log == [
        ("max queue 7", "waits for", "caller 5"),
        ("caller 5", "waits for", "max queue 7"),
    ]
    assert StreamOrder.of(torch, first, 0) is order
    log.clear()
    current["raw"] = 0  # the legacy default stream: CUDA orders it with queue 7
    order.before()
    order.after()
    assert log == []
    other_queue = StreamOrder.of(torch, engine(8), 0)
    assert other_queue.queue.name == "max queue 8"
    other_queue.before()
    other_queue.after()
    assert log == [
        ("max queue 8", "waits for", "caller 0"),
        ("caller 0", "waits for", "max queue 8"),
    ]
    log.clear()
    other = StreamOrder.of(ModuleType("jax"), first, 0)
    other.before()
    other.after()
    assert log == ["host synchronize"]


def test_legacy_orders_without_a_cuda_driver(monkeypatch):
    """No CUDA driver to ask (this machine): events are used, never assumed away."""
    import ctypes

    from maxconv.device_arrays import legacy_orders

    def missing(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    assert legacy_orders(1234, 0) is False


def test_address_views_reused_by_address_shape_and_dtype():
    """AddressViews makes one MAX view per (address, shape, dtype) and hands it
    back for any array later in that memory; the view reads that memory (host
    memory stands in for a GPU's here); at most VIEWS_KEPT are kept."""
    from maxconv.device_arrays import AddressViews

    views = AddressViews((1, 0))  # DLPack kDLCPU
    a = np.arange(12, dtype=np.float32)
    address = a.ctypes.data
    first = views.get(address, 3, 4, np.dtype(np.float32))
    np.testing.assert_array_equal(first.to_numpy(), a.reshape(3, 4))
    a[5] = -1.0  # the view is the memory itself, not a copy of it
    assert first.to_numpy()[1, 1] == -1.0
    assert views.get(address, 3, 4, np.dtype(np.float32)) is first
    assert views.get(address, 2, 6, np.dtype(np.float32)) is not first
    wide = views.get(address, 3, 2, np.dtype(np.float64))
    np.testing.assert_array_equal(wide.to_numpy(), a.view(np.float64).reshape(3, 2))
    b = np.arange(12, dtype=np.float32) * 2
    second = views.get(b.ctypes.data, 3, 4, np.dtype(np.float32))
    np.testing.assert_array_equal(second.to_numpy(), b.reshape(3, 4))
    assert len(views._views) == 4
    for row in range(AddressViews.VIEWS_KEPT + 5):
        views.get(address, row + 1, 1, np.dtype(np.float32))
    assert len(views._views) == AddressViews.VIEWS_KEPT
    assert views.get(address, 3, 4, np.dtype(np.float32)) is not first  # pushed out: made again


def test_cuda_index_by_array_type():
    """cuda_index reads the GPU index of DLPack CUDA arrays (any library) and
    None for host arrays, numpy and plain values; the reader is per type."""
    from maxconv.arrays import cuda_index

    class Device:
        def __init__(self, kind: int, index: int) -> None:
            self.kind, self.index = kind, index

        def __dlpack__(self, stream=None):
            raise AssertionError("not exported to read the device")

        def __dlpack_device__(self):
            return (self.kind, self.index)

    assert cuda_index(Device(2, 3)) == 3
    assert cuda_index(Device(1, 0)) is None
    assert cuda_index(Device(2, 0)) == 0
    assert cuda_index(np.ones(3)) is None
    assert cuda_index([1.0, 2.0]) is None
    assert cuda_index(2.0) is None


def test_ragged_batch_over_every_gpu_with_stand_in_engines(monkeypatch):
    """device="gpu:all": groups shared out over one engine per GPU (two CPU
    engines stand in here), results in input order and equal to scipy's."""
    import maxconv.batch as batch
    from maxconv.engine import Engine

    stand_ins = {f"gpu:{index}": Engine("cpu") for index in range(2)}
    used = []

    def engine_of(device: str) -> Engine:
        used.append(device)
        return stand_ins[device]

    monkeypatch.setattr(batch, "gpu_count", lambda: 2)
    monkeypatch.setattr(batch, "get_engine", engine_of)
    rng = np.random.default_rng(11)
    lengths = [50, 3000, 51, 3001, 700, 20000, 52, 710]
    signals = [rng.standard_normal(n) for n in lengths]
    kernels = [rng.standard_normal(k) for k in (3, 40, 3, 41, 9, 300, 4, 9)]
    results = maxconv.convolve_batch(signals, kernels, "same", device="gpu:all")
    assert used == ["gpu:0", "gpu:1"]
    assert all(engine.stats.calls > 0 for engine in stand_ins.values())
    for signal, kernel, result in zip(signals, kernels, results, strict=True):
        np.testing.assert_allclose(result, scipy.signal.convolve(signal, kernel, "same"), atol=1e-9)
    monkeypatch.setattr(batch, "gpu_count", lambda: 0)
    with pytest.raises(ValueError, match="no GPU"):
        maxconv.convolve_batch(signals, kernels, device="gpu:all")
