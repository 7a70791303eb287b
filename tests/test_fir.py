"""Tests for maxconv.fir: file sources, designs against SciPy, and validation errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from maxconv.errors import KernelError, MaxconvError
from maxconv.fir import DESIGNS, Kernel, design_fir, load_kernel

SAMPLES = Path(__file__).resolve().parent.parent / "samples"

# Our window spec -> the equivalent scipy.signal.get_window spec.
WINDOWS = {
    "hamming": "hamming",
    "hann": "hann",
    "blackman": "blackman",
    "kaiser:8.6": ("kaiser", 8.6),
    "rect": "boxcar",
}

# (response, cutoff, pass_zero) as scipy.signal.firwin spells them.
RESPONSES = [
    ("lowpass", 1000.0, True),
    ("highpass", 300.0, False),
    ("bandpass", (300.0, 3400.0), False),
    ("bandstop", (50.0, 60.0), True),
]


def _message(error: pytest.ExceptionInfo[MaxconvError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    assert error.value.exit_code == 4
    return message


def _gain(taps: np.ndarray, frequency: float, rate: float) -> float:
    n = np.arange(len(taps))
    return float(abs(np.sum(taps * np.exp(-2j * np.pi * frequency / rate * n))))


# Designs -------------------------------------------------------------------------------


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize(("response", "cutoff", "pass_zero"), RESPONSES)
@pytest.mark.parametrize("taps", [1, 31, 255])
def test_design_matches_scipy_firwin(
    response: str, cutoff: float | tuple[float, float], pass_zero: bool, window: str, taps: int
) -> None:
    ours = design_fir(response, cutoff, 16000, taps=taps, window=window)
    expected = scipy.signal.firwin(
        taps, cutoff, window=WINDOWS[window], pass_zero=pass_zero, scale=True, fs=16000
    )
    assert ours.dtype == np.float64 and ours.shape == (taps,)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


def test_bandpass_with_even_taps_matches_scipy() -> None:
    ours = design_fir("bandpass", (1000.0, 2000.0), 44100, taps=64, window="hann")
    expected = scipy.signal.firwin(64, (1000, 2000), window="hann", pass_zero=False, fs=44100)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


def test_designs_have_unity_gain_where_documented() -> None:
    rate = 16000
    assert _gain(design_fir("lowpass", 1000, rate), 0, rate) == pytest.approx(1, abs=1e-12)
    assert _gain(design_fir("bandstop", (50, 60), rate), 0, rate) == pytest.approx(1, abs=1e-12)
    assert _gain(design_fir("highpass", 300, rate), 8000, rate) == pytest.approx(1, abs=1e-12)
    band = design_fir("bandpass", (300, 3400), rate)
    assert _gain(band, 1850, rate) == pytest.approx(1, abs=1e-12)


def test_lowpass_attenuates_its_stopband() -> None:
    taps = design_fir("lowpass", 1000, 16000, taps=255, window="blackman")
    assert _gain(taps, 500, 16000) == pytest.approx(1, abs=1e-3)
    assert max(_gain(taps, f, 16000) for f in range(1300, 8000, 50)) < 1e-3  # below -60 dB


def test_load_kernel_design_string() -> None:
    kernel = load_kernel("bandpass:300-3400", 16000, channels=2, taps=101, window="kaiser:8.6")
    assert kernel.kind == "coefficients" and kernel.samplerate == 16000
    np.testing.assert_array_equal(
        kernel.taps, design_fir("bandpass", (300, 3400), 16000, taps=101, window="kaiser:8.6")
    )


@pytest.mark.parametrize("response", ["highpass", "bandstop"])
def test_even_taps_rejected_where_nyquist_must_pass(response: str) -> None:
    cutoff = 300.0 if response == "highpass" else (300.0, 400.0)
    with pytest.raises(KernelError) as error:
        design_fir(response, cutoff, 16000, taps=254)
    assert "odd" in _message(error) and "255" in str(error.value)


@pytest.mark.parametrize(
    "spec", ["lowpass:0", "lowpass:8000", "highpass:9000", "bandpass:100-8000"]
)
def test_cutoff_must_lie_inside_nyquist(spec: str) -> None:
    with pytest.raises(KernelError) as error:
        load_kernel(spec, 16000, channels=1)
    assert "between 0 and 8000 Hz" in _message(error)


def test_band_edges_must_be_ordered() -> None:
    with pytest.raises(KernelError, match="lower edge first"):
        load_kernel("bandpass:3400-300", 16000, channels=1)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("bandpass:300", "two frequencies"),
        ("lowpass:300-400", "one frequency"),
        ("lowpass:fast", "one frequency"),
        ("lowpass:-5", "one frequency"),
    ],
)
def test_malformed_design_frequencies(spec: str, problem: str) -> None:
    with pytest.raises(KernelError) as error:
        load_kernel(spec, 16000, channels=1)
    assert problem in _message(error)


def test_unknown_design_lists_the_allowed_ones() -> None:
    with pytest.raises(KernelError) as error:
        load_kernel("notch:50", 16000, channels=1)
    message = _message(error)
    assert "notch" in message and all(name in message for name in DESIGNS)


@pytest.mark.parametrize(
    ("window", "problem"),
    [
        ("gauss", "use one of hamming, hann, blackman, kaiser:BETA, rect"),
        ("kaiser", "needs a beta"),
    ],
)
def test_bad_window(window: str, problem: str) -> None:
    with pytest.raises(KernelError) as error:
        load_kernel("lowpass:1000", 16000, channels=1, window=window)
    assert problem in _message(error) and f"'{window}'" in str(error.value)


def test_design_needs_a_sample_rate() -> None:
    with pytest.raises(KernelError, match="sample rate"):
        load_kernel("lowpass:1000", None, channels=1)


def test_design_needs_at_least_one_tap() -> None:
    with pytest.raises(KernelError, match="at least 1 tap"):
        load_kernel("lowpass:1000", 16000, channels=1, taps=0)


def test_existing_file_wins_over_design_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("lowpass:1000").write_text("0.5 0.5\n")
    kernel = load_kernel("lowpass:1000", 16000, channels=1)
    np.testing.assert_array_equal(kernel.taps, [0.5, 0.5])


# .npy kernels --------------------------------------------------------------------------


def test_npy_1d_kernel(tmp_path: Path) -> None:
    np.save(tmp_path / "k.npy", np.array([1, 2, 3], dtype=np.int32))
    kernel = load_kernel(str(tmp_path / "k.npy"), 44100, channels=2)
    assert kernel == Kernel(kernel.taps, "coefficients", None)
    assert kernel.taps.dtype == np.float64
    np.testing.assert_array_equal(kernel.taps, [1.0, 2.0, 3.0])


def test_npy_2d_kernel_one_row_per_channel(tmp_path: Path) -> None:
    taps = np.arange(6.0).reshape(2, 3)
    np.save(tmp_path / "k.npy", taps)
    np.testing.assert_array_equal(load_kernel(str(tmp_path / "k.npy"), None, channels=2).taps, taps)


def test_npy_single_row_is_shared(tmp_path: Path) -> None:
    np.save(tmp_path / "k.npy", np.array([[0.25, 0.75]]))
    assert load_kernel(str(tmp_path / "k.npy"), None, channels=4).taps.shape == (2,)


def test_npy_rows_must_match_channels(tmp_path: Path) -> None:
    np.save(tmp_path / "k.npy", np.ones((3, 5)))
    with pytest.raises(KernelError) as error:
        load_kernel(str(tmp_path / "k.npy"), None, channels=2)
    assert "3 rows" in _message(error) and "2 channels" in str(error.value)


@pytest.mark.parametrize(
    ("array", "problem"),
    [
        (np.ones((2, 2, 2)), "3 dimensions"),
        (np.zeros(0), "empty"),
        (np.zeros((2, 0)), "empty"),
        (np.array(["a"]), "<U1"),
        (np.array([1, None], dtype=object), "Python objects"),
    ],
)
def test_unusable_npy_kernel(tmp_path: Path, array: np.ndarray, problem: str) -> None:
    np.save(tmp_path / "k.npy", array, allow_pickle=True)
    with pytest.raises(KernelError) as error:
        load_kernel(str(tmp_path / "k.npy"), None, channels=2)
    assert problem in _message(error) and "k.npy" in str(error.value)


def test_nan_in_kernel_is_located(tmp_path: Path) -> None:
    taps = np.ones(20)
    taps[12] = np.nan
    np.save(tmp_path / "k.npy", taps)
    with pytest.raises(KernelError) as error:
        load_kernel(str(tmp_path / "k.npy"), None, channels=1)
    assert _message(error) == f"kernel '{tmp_path / 'k.npy'}' contains NaN or Inf at index 12"


def test_inf_in_2d_kernel_is_located(tmp_path: Path) -> None:
    taps = np.ones((2, 5))
    taps[1, 3] = -np.inf
    np.save(tmp_path / "k.npy", taps)
    with pytest.raises(KernelError, match="row 1, index 3"):
        load_kernel(str(tmp_path / "k.npy"), None, channels=2)


def test_missing_kernel_file(tmp_path: Path) -> None:
    with pytest.raises(KernelError) as error:
        load_kernel(str(tmp_path / "nope.npy"), 44100, channels=1)
    assert "nope.npy" in _message(error) and "not found" in str(error.value)


# Text kernels (SoX fir format) ---------------------------------------------------------


def test_text_kernel_with_comments(tmp_path: Path) -> None:
    (tmp_path / "k.txt").write_text(
        "# header comment\n"
        "\n"
        "0.25 0.5   # inline comment 9 9 9\n"
        "\t-1e-3\n"
        "   # indented comment\n"
        "2.5E+1 +3 .5\n"
    )
    kernel = load_kernel(str(tmp_path / "k.txt"), 44100, channels=2)
    assert kernel.kind == "coefficients" and kernel.samplerate is None
    np.testing.assert_array_equal(kernel.taps, [0.25, 0.5, -1e-3, 25.0, 3.0, 0.5])


def test_text_garbage_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "k.txt").write_text("# taps\n0.1\n0.2 0.3\n0.4 zero\n")
    with pytest.raises(KernelError) as error:
        load_kernel(str(tmp_path / "k.txt"), None, channels=1)
    assert "line 4" in _message(error) and "'zero'" in str(error.value)


def test_text_with_only_comments_is_empty(tmp_path: Path) -> None:
    (tmp_path / "k.txt").write_text("# nothing here\n\n")
    with pytest.raises(KernelError, match="empty"):
        load_kernel(str(tmp_path / "k.txt"), None, channels=1)


def test_text_nan_is_located(tmp_path: Path) -> None:
    (tmp_path / "k.txt").write_text("1\n2 nan\n")
    with pytest.raises(KernelError, match="index 2"):
        load_kernel(str(tmp_path / "k.txt"), None, channels=1)


def test_binary_file_is_not_a_text_kernel(tmp_path: Path) -> None:
    (tmp_path / "k.bin").write_bytes(b"\x80\x81\xfe\xff" * 10)
    with pytest.raises(KernelError, match="not a text file"):
        load_kernel(str(tmp_path / "k.bin"), None, channels=1)


# Impulse responses ---------------------------------------------------------------------


def test_mono_impulse_response_is_shared(tmp_path: Path) -> None:
    response = np.array([1.0, 0.5, -0.25, 0.125])
    sf.write(tmp_path / "ir.wav", response, 48000, subtype="FLOAT")
    kernel = load_kernel(str(tmp_path / "ir.wav"), 48000, channels=2)
    assert kernel.kind == "impulse_response" and kernel.samplerate == 48000
    assert kernel.taps.dtype == np.float64
    np.testing.assert_array_equal(kernel.taps, response)


def test_stereo_impulse_response_per_channel(tmp_path: Path) -> None:
    response = np.array([[1.0, 0.5], [0.0, -0.5], [0.25, 0.0]])  # frames x channels
    sf.write(tmp_path / "ir.flac", response, 44100, subtype="PCM_24")
    kernel = load_kernel(str(tmp_path / "ir.flac"), 44100, channels=2)
    assert kernel.taps.shape == (2, 3)
    np.testing.assert_allclose(kernel.taps, response.T, atol=1e-6)


def test_impulse_response_channels_must_match(tmp_path: Path) -> None:
    sf.write(tmp_path / "ir.wav", np.zeros((10, 2)) + 0.1, 44100)
    with pytest.raises(KernelError) as error:
        load_kernel(str(tmp_path / "ir.wav"), 44100, channels=3)
    assert "2 channels" in _message(error) and "3 channels" in str(error.value)


def test_impulse_response_rate_mismatch_names_both(tmp_path: Path) -> None:
    sf.write(tmp_path / "ir.wav", np.ones(8) * 0.1, 48000)
    with pytest.raises(KernelError) as error:
        load_kernel(str(tmp_path / "ir.wav"), 44100, channels=1)
    assert "48000 Hz" in _message(error) and "44100 Hz" in str(error.value)


def test_impulse_response_for_rateless_input_keeps_its_rate(tmp_path: Path) -> None:
    sf.write(tmp_path / "ir.wav", np.ones(8) * 0.1, 22050)
    assert load_kernel(str(tmp_path / "ir.wav"), None, channels=1).samplerate == 22050


def test_truncated_impulse_response(tmp_path: Path) -> None:
    sf.write(tmp_path / "ir.wav", np.ones(1000) * 0.1, 44100, subtype="PCM_16")
    whole = (tmp_path / "ir.wav").read_bytes()
    (tmp_path / "ir.wav").write_bytes(whole[:500])
    with pytest.raises(KernelError) as error:
        load_kernel(str(tmp_path / "ir.wav"), 44100, channels=1)
    assert "truncated" in _message(error) and "ir.wav" in str(error.value)


def test_non_audio_with_audio_suffix(tmp_path: Path) -> None:
    (tmp_path / "ir.wav").write_text("0.1 0.2\n")
    with pytest.raises(KernelError, match="ir.wav"):
        load_kernel(str(tmp_path / "ir.wav"), 44100, channels=1)


# Shipped samples -----------------------------------------------------------------------


def test_sample_kernels_load() -> None:
    lowpass = load_kernel(str(SAMPLES / "lowpass.npy"), 44100, channels=2)
    np.testing.assert_array_equal(lowpass.taps, design_fir("lowpass", 4000, 44100, taps=101))
    eq = load_kernel(str(SAMPLES / "eq.txt"), 16000, channels=1)
    assert eq.taps.shape == (31,)
    assert _gain(eq.taps, 2000, 16000) == pytest.approx(2.0, rel=1e-6)  # +6 dB presence
    room = load_kernel(str(SAMPLES / "room.wav"), 44100, channels=2)
    assert room.kind == "impulse_response" and room.taps[0] == 1.0
