"""maxconv.filtering: which outputs `filter` writes (output_span) and filter_file streaming.

output_span is checked as pure index arithmetic against numpy/scipy slices. filter_file
runs on float64 .npy data, so the whole pipeline computes in float64 and can be held to
1e-10; small chunk sizes force many chunks (and chunks shorter than the kernel), so the
rolling window, the dry path of --mix and the two-pass --normalize are checked across
chunk boundaries, which the sample files (shorter than one default chunk) never reach.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from maxconv.engine import get_engine
from maxconv.filtering import FilterOptions, filter_file, output_span
from maxconv.stream import chunk_outputs, stream_correlate

SIZES = [(n, k) for n in (1, 2, 7, 16, 33) for k in (1, 2, 5, 8, 17)]


def _pair(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n * 100 + k)
    return rng.standard_normal(n), rng.standard_normal(k)


# output_span ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["coefficients", "impulse_response"])
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_mode_span_is_scipys_slice_of_the_full_result(mode, kind):
    for n, k in SIZES:
        x, h = _pair(n, k)
        span = output_span(n, k, kind, FilterOptions(kernel="", mode=mode))
        assert span.start >= 0 and span.delay == (k - 1) // 2
        np.testing.assert_allclose(
            np.convolve(x, h)[span.start : span.start + span.count],
            scipy.signal.convolve(x, h, mode),
            err_msg=f"N={n} K={k}",
        )


@pytest.mark.parametrize("tail", [False, True])
@pytest.mark.parametrize(
    ("kind", "align", "effective"),
    [
        ("coefficients", None, "center"),
        ("impulse_response", None, "causal"),
        ("coefficients", "causal", "causal"),
        ("impulse_response", "center", "center"),
        ("coefficients", "center", "center"),
        ("impulse_response", "causal", "causal"),
    ],
)
def test_alignment_span(kind, align, effective, tail):
    for n, k in SIZES:
        x, h = _pair(n, k)
        whole = np.convolve(x, h)
        centre = (k - 1) // 2
        span = output_span(n, k, kind, FilterOptions(kernel="", align=align, tail=tail))
        got = whole[span.start : span.start + span.count]
        if effective == "center":
            expected = whole[centre:] if tail else scipy.signal.convolve(x, h, "same")
            assert span.delay == centre
        else:
            expected = whole if tail else whole[:n]
            assert span.delay == 0
        assert span.count == expected.size, f"N={n} K={k}"
        np.testing.assert_allclose(got, expected, err_msg=f"N={n} K={k}")


def test_centred_span_equals_numpy_same():
    for n, k in SIZES:
        if n >= k:
            x, h = _pair(n, k)
            span = output_span(n, k, "coefficients", FilterOptions(kernel=""))
            np.testing.assert_allclose(
                np.convolve(x, h)[span.start : span.start + span.count], np.convolve(x, h, "same")
            )


# filter_file, streamed in many chunks --------------------------------------------------

FRAMES = 5003
TAPS = 257


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    folder = tmp_path_factory.mktemp("filtering")
    rng = np.random.default_rng(21)
    x = rng.standard_normal((2, FRAMES))
    x[1, FRAMES - 40] = 25.0  # the peak sits in the last chunk
    h = rng.standard_normal((2, TAPS)) / 10
    np.save(folder / "x.npy", x)
    np.save(folder / "k.npy", h)
    return folder / "x.npy", folder / "k.npy", x, h


def _per_channel(function, x: np.ndarray, h: np.ndarray, mode: str) -> np.ndarray:  # noqa: ANN001
    return np.stack([function(xi, hi, mode) for xi, hi in zip(x, h, strict=True)])


def _expected(options: dict, x: np.ndarray, h: np.ndarray) -> np.ndarray:
    centre = (TAPS - 1) // 2
    full = _per_channel(scipy.signal.convolve, x, h, "full")
    if "mode" in options:
        function = scipy.signal.correlate if options.get("correlate") else scipy.signal.convolve
        return _per_channel(function, x, h, options["mode"])
    if options.get("correlate"):
        return _per_channel(scipy.signal.correlate, x, h, "same")
    causal = options.get("align") == "causal"
    tail = options.get("tail", False)
    start = 0 if causal else centre
    wet = full[:, start:] if tail else full[:, start : start + FRAMES]
    dry = np.pad(x, ((0, 0), (0, wet.shape[1] - FRAMES)))
    mix = options.get("mix", 1.0)
    out = (1 - mix) * dry + mix * wet
    if options.get("normalize"):
        out = out * 10 ** (-0.1 / 20) / np.abs(out).max()
    return out * 10 ** (options.get("gain_db", 0.0) / 20)


CONFIGS = {
    "centred": {},
    "centred tail": {"tail": True},
    "causal": {"align": "causal"},
    "causal tail": {"align": "causal", "tail": True},
    "mode full": {"mode": "full"},
    "mode valid": {"mode": "valid"},
    "correlate": {"correlate": True},
    "correlate full": {"correlate": True, "mode": "full"},
    "mix": {"mix": 0.4},
    "mix causal tail": {"mix": 0.4, "align": "causal", "tail": True},
    "mix centred tail": {"mix": 0.7, "tail": True},
    "gain": {"gain_db": -3.0},
    "normalize": {"normalize": True},
    "normalize mix gain": {"normalize": True, "mix": 0.5, "gain_db": -6.0},
}


@pytest.mark.parametrize("chunk", [100, 1000, 1 << 20, None])
@pytest.mark.parametrize("name", CONFIGS)
def test_streamed_filter_matches_reference(tmp_path, data, name, chunk, cpu_engine):
    source, kernel, x, h = data
    options = CONFIGS[name]
    target = tmp_path / "y.npy"
    calls: list[tuple[int, int]] = []
    report = filter_file(
        str(source),
        str(target),
        FilterOptions(kernel=str(kernel), chunk=chunk, **options),
        cpu_engine,
        lambda done, total: calls.append((done, total)),
    )
    expected = _expected(options, x, h)
    y = np.load(target)
    assert y.dtype == np.float64 and y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-10 * np.abs(expected).max())
    # Really streamed: one progress call per chunk, then one more just before the commit.
    count = expected.shape[1]
    per_call = chunk or chunk_outputs(TAPS, "auto", cpu_engine, np.float64)
    assert len(calls) == -(-count // per_call) + 1
    assert [done for done, _ in calls[:-1]] == sorted({done for done, _ in calls})
    assert calls[-2] == calls[-1] == (count, count)
    assert (report.frames_in, report.frames_out, report.channels) == (FRAMES, count, 2)
    assert (report.taps, report.kernel_kind, report.dtype) == (TAPS, "coefficients", "float64")
    assert (report.subtype, report.samplerate, report.realtime, report.clipped) == (
        "float64",
        None,
        None,
        0,
    )
    assert report.peak_dbfs == pytest.approx(20 * np.log10(np.abs(expected).max()), abs=1e-9)


def test_float32_precision_stays_close(tmp_path, data, cpu_engine):
    source, kernel, x, h = data
    target = tmp_path / "y.npy"
    report = filter_file(
        str(source),
        str(target),
        FilterOptions(kernel=str(kernel), chunk=700, precision="float32"),
        cpu_engine,
    )
    y = np.load(target)
    assert report.dtype == "float32" and y.dtype == np.float64  # output keeps the input dtype
    expected = _per_channel(scipy.signal.convolve, x, h, "same")
    np.testing.assert_allclose(y, expected, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, RuntimeError])
def test_interruption_mid_stream_leaves_the_target_untouched(
    tmp_path, data, interruption, cpu_engine
):
    source, kernel, _, _ = data
    target = tmp_path / "y.npy"
    target.write_bytes(b"old contents")
    calls = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 2:
            raise interruption()

    with pytest.raises(interruption):
        filter_file(
            str(source),
            str(target),
            FilterOptions(kernel=str(kernel), chunk=1000),
            cpu_engine,
            progress,
        )
    assert len(calls) == 2
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.npy"]


def test_pcm16_target_counts_clipped_samples(tmp_path, cpu_engine):
    x = np.random.default_rng(22).uniform(-0.6, 0.6, (3000, 1))
    sf.write(tmp_path / "x.wav", x, 8000, subtype="FLOAT")
    np.save(tmp_path / "k.npy", np.array([3.0]))
    report = filter_file(
        str(tmp_path / "x.wav"),
        str(tmp_path / "y.wav"),
        FilterOptions(kernel=str(tmp_path / "k.npy"), subtype="PCM_16", chunk=512),
        cpu_engine,
    )
    x32 = x.astype(np.float32)
    assert report.clipped == np.count_nonzero(np.abs(3 * x32) > 1) > 0
    assert report.peak_dbfs == pytest.approx(20 * np.log10(np.abs(3 * x32).max()), abs=1e-4)
    assert (report.subtype, report.samplerate) == ("PCM_16", 8000)
    busy = report.seconds["total"] - report.seconds["compile"]  # a compile is not throughput
    assert report.realtime == pytest.approx(3000 / 8000 / busy)


def test_a_wav_past_4_gib_is_written_as_rf64():
    from maxconv.audio_format import large_wav_as_rf64

    quarter_billion = 2**28  # float32 samples: exactly 1 GiB
    assert large_wav_as_rf64("WAV", "FLOAT", 3 * quarter_billion) == "WAV"
    assert large_wav_as_rf64("WAV", "FLOAT", 4 * quarter_billion) == "RF64"
    assert large_wav_as_rf64("WAV", "PCM_16", 4 * quarter_billion) == "WAV"
    assert large_wav_as_rf64("WAV", "PCM_16", 8 * quarter_billion) == "RF64"
    assert large_wav_as_rf64("FLAC", "PCM_16", 8 * quarter_billion) == "FLAC"


def test_one_dimensional_npy_stays_one_dimensional(tmp_path, cpu_engine):
    x = np.random.default_rng(5).standard_normal(5000)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "h.txt").write_text("0.25 0.5 0.25")
    filter_file(
        str(tmp_path / "x.npy"),
        str(tmp_path / "y.npy"),
        FilterOptions(kernel=str(tmp_path / "h.txt")),
        cpu_engine,
    )
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (5000,)
    np.testing.assert_allclose(y, np.convolve(x, [0.25, 0.5, 0.25], "same"), atol=1e-12)
    np.save(tmp_path / "x2.npy", x[np.newaxis])
    filter_file(
        str(tmp_path / "x2.npy"),
        str(tmp_path / "y2.npy"),
        FilterOptions(kernel=str(tmp_path / "h.txt")),
        cpu_engine,
    )
    assert np.load(tmp_path / "y2.npy").shape == (1, 5000)


@pytest.mark.parametrize("device", ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_streaming_over_ragged_blocks_matches_the_whole_signal(method: str, device: str):
    """Blocks of any sizes, smaller and larger than a chunk, straddling its halo."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 5000))
    taps = rng.standard_normal((2, 300))
    sizes = [1, 7, 299, 300, 301, 1024, 3, 2000]
    edges = np.cumsum([0, *sizes])
    blocks = [x[:, a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)]
    blocks.append(x[:, edges[-1] :])
    count = x.shape[1] + taps.shape[1] - 1
    chunks = list(
        stream_correlate(
            blocks, taps, 0, count, engine=get_engine(device), method=method, chunk=700
        )
    )
    streamed = np.concatenate([chunk.wet for chunk in chunks], axis=1)
    padded = np.pad(x, ((0, 0), (299, 299)))
    expected = np.stack([np.correlate(r, t, "valid") for r, t in zip(padded, taps, strict=True)])
    np.testing.assert_allclose(streamed, expected, atol=1e-9 * np.abs(expected).max())
    dry = np.concatenate([chunk.dry for chunk in chunks], axis=1)
    np.testing.assert_array_equal(dry[:, : x.shape[1]], x)


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("chunk", [1000, None])
def test_streamed_filter_on_the_gpu_matches_reference(tmp_path, data, method, chunk):
    """The write pipeline and the chunking on the GPU, against scipy."""
    source, kernel, x, h = data
    target = tmp_path / "y.npy"
    filter_file(
        str(source),
        str(target),
        FilterOptions(kernel=str(kernel), method=method, chunk=chunk),
        get_engine("gpu"),
    )
    expected = _expected({}, x, h)
    np.testing.assert_allclose(np.load(target), expected, atol=1e-10 * np.abs(expected).max())
