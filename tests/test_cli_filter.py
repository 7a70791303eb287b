"""`maxconv filter` end to end: numbers against numpy/scipy, files, pipes, errors, signals.

Option semantics run in-process through typer's CliRunner (fast, one compiled graph);
pipelines, exit codes, stream cleanliness and signals run as real subprocesses. Every
reference is computed in float64 from the *decoded* input, so PCM_16 outputs must agree
to within one LSB after rounding and float outputs to float32 accuracy.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
from typer.testing import CliRunner

from maxconv.cli import app

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SPEECH = SAMPLES / "speech.wav"  # 16 kHz mono PCM_16
MUSIC = SAMPLES / "music.flac"  # 44.1 kHz stereo PCM_16 FLAC
ROOM = SAMPLES / "room.wav"  # 44.1 kHz mono FLOAT impulse response
LOWPASS = SAMPLES / "lowpass.npy"  # 101 taps
EQ = SAMPLES / "eq.txt"  # 31 taps, SoX fir text format

LSB = 1 / 32768
MAXCONV = [sys.executable, "-m", "maxconv.cli"]
REPORT_KEYS = {
    "input",
    "output",
    "device",
    "samplerate",
    "channels",
    "frames_in",
    "frames_out",
    "taps",
    "kernel_kind",
    "dtype",
    "method",
    "subtype",
    "cache",
    "seconds",
    "clipped",
    "peak_dbfs",
    "samples_per_second",
    "realtime",
}

runner = CliRunner()


# Helpers -------------------------------------------------------------------------------


def cli(*args: object, input: bytes | None = None, code: int = 0):  # noqa: ANN201
    """Run `maxconv filter ARGS --device cpu` in-process and check the exit code."""
    argv = ["filter", *map(str, args)]
    if "--device" not in argv:
        argv += ["--device", "cpu"]
    result = runner.invoke(app, argv, input=input, catch_exceptions=False)
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    return result


def run(*args: object, input: bytes | None = None, cwd: Path | None = None):  # noqa: ANN201
    """Run `python -m maxconv.cli filter ARGS` as a real process (bytes in and out)."""
    argv = [*MAXCONV, "filter", *map(str, args)]
    if "--device" not in argv:
        argv += ["--device", "cpu"]
    return subprocess.run(
        argv, input=input, capture_output=True, cwd=cwd, env=os.environ, timeout=180
    )


def load(path: Path) -> tuple[np.ndarray, sf._SoundFileInfo | None]:
    """Decoded samples as float64 (channels, frames), and soundfile's info (None for .npy)."""
    if path.suffix == ".npy":
        return np.atleast_2d(np.load(path)).astype(np.float64), None
    data, _ = sf.read(path, dtype="float64", always_2d=True)
    return np.ascontiguousarray(data.T), sf.info(str(path))


def full(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Full float64 convolution of each row of x with h (1-D shared, or one row each)."""
    rows = np.broadcast_to(np.atleast_2d(h), (x.shape[0], np.atleast_2d(h).shape[-1]))
    return np.stack([scipy.signal.convolve(xi, hi) for xi, hi in zip(x, rows, strict=True)])


def centred(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """numpy.convolve(x, h, 'same') per row, which is what SoX's fir gives (N >= K)."""
    rows = np.broadcast_to(np.atleast_2d(h), (x.shape[0], np.atleast_2d(h).shape[-1]))
    return np.stack([np.convolve(xi, hi, "same") for xi, hi in zip(x, rows, strict=True)])


def assert_pcm16(out: np.ndarray, reference: np.ndarray) -> None:
    """A PCM_16 output equals the float64 reference rounded to 16 bits (1 LSB slack)."""
    assert out.shape == reference.shape
    expected = np.clip(reference, -1.0, 32767 * LSB)
    error = np.abs(out - expected).max()
    assert error <= 1.0 * LSB, f"max error {error / LSB:.2f} LSB"


def assert_float(out: np.ndarray, reference: np.ndarray, rtol: float = 2e-6) -> None:
    """A float32-computed output equals the float64 reference to float32 accuracy."""
    assert out.shape == reference.shape
    scale = max(np.abs(reference).max(), 1e-30)
    error = np.abs(out - reference).max()
    assert error <= rtol * scale, f"max error {error:.3g} for peak {scale:.3g}"


def parts(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".*.part"))


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load(SPEECH)[0]


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    return load(MUSIC)[0]


@pytest.fixture(scope="module")
def room() -> np.ndarray:
    return load(ROOM)[0][0]


@pytest.fixture(scope="module")
def eq() -> np.ndarray:
    return np.loadtxt(EQ)


@pytest.fixture(scope="module")
def lowpass() -> np.ndarray:
    return np.load(LOWPASS)


def save_kernel(tmp_path: Path, taps: np.ndarray, name: str = "k.npy") -> Path:
    path = tmp_path / name
    np.save(path, np.asarray(taps, dtype=np.float64))
    return path


# Alignment: coefficients centred like SoX fir, impulse responses causal -----------------


def test_text_kernel_is_centred_like_sox_fir(tmp_path, speech, eq):
    out = tmp_path / "out.wav"
    cli(SPEECH, "-k", EQ, "-o", out)
    y, info = load(out)
    assert (info.format, info.subtype, info.samplerate, info.channels, info.frames) == (
        "WAV",
        "PCM_16",
        16000,
        1,
        speech.shape[1],
    )
    assert_pcm16(y, centred(speech, eq))
    # The centring is visible: the causal result differs by far more than rounding.
    assert np.abs(y - full(speech, eq)[:, : speech.shape[1]]).max() > 100 * LSB


def test_npy_kernel_on_stereo_flac_shared_by_both_channels(tmp_path, music, lowpass):
    out = tmp_path / "out.npy"
    cli(MUSIC, "-k", LOWPASS, "-o", out)
    y = np.load(out)
    assert y.dtype == np.float32 and y.shape == music.shape
    assert_float(y.astype(np.float64), centred(music, lowpass))
    assert not np.allclose(y[0], y[1], atol=1e-3)  # really two channels


def test_audio_impulse_response_is_causal(tmp_path, music, room):
    out = tmp_path / "out.wav"
    cli(MUSIC, "-k", ROOM, "-o", out, "--subtype", "FLOAT")
    y, info = load(out)
    assert (info.samplerate, info.channels, info.subtype) == (44100, 2, "FLOAT")
    assert_float(y, full(music, room)[:, : music.shape[1]], rtol=1e-5)


def test_align_causal_overrides_coefficients(tmp_path, speech, eq):
    out = tmp_path / "out.wav"
    cli(SPEECH, "-k", EQ, "-o", out, "--align", "causal", "--subtype", "FLOAT")
    assert_float(load(out)[0], full(speech, eq)[:, : speech.shape[1]])


def test_align_center_overrides_impulse_response(tmp_path, music, room):
    out = tmp_path / "out.wav"
    cli(MUSIC, "-k", ROOM, "-o", out, "--align", "center", "--subtype", "FLOAT")
    start = (room.size - 1) // 2
    assert_float(load(out)[0], full(music, room)[:, start : start + music.shape[1]], rtol=1e-5)


@pytest.mark.parametrize("align", ["causal", "center"])
def test_tail_keeps_the_k_minus_1_tail(tmp_path, speech, eq, align):
    out = tmp_path / "out.wav"
    cli(SPEECH, "-k", EQ, "-o", out, "--tail", "--align", align, "--subtype", "FLOAT")
    reference = full(speech, eq)
    if align == "center":
        reference = reference[:, (eq.size - 1) // 2 :]
    y = load(out)[0]
    assert y.shape[1] == (speech.shape[1] + 30 if align == "causal" else speech.shape[1] + 15)
    assert_float(y, reference)


def test_tail_of_impulse_response_is_the_full_convolution(tmp_path, music, room):
    out = tmp_path / "out.wav"
    cli(MUSIC, "-k", ROOM, "-o", out, "--tail", "--subtype", "FLOAT")
    y = load(out)[0]
    assert y.shape == (2, music.shape[1] + room.size - 1)
    assert_float(y, full(music, room), rtol=1e-5)


# --mode and --correlate: scipy.signal semantics exactly ---------------------------------


@pytest.mark.parametrize("correlate", [False, True])
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_mode_matches_scipy(tmp_path, speech, mode, correlate):
    taps = np.random.default_rng(3).standard_normal(10) / 5  # even K, asymmetric
    kernel = save_kernel(tmp_path, taps)
    out = tmp_path / "out.npy"
    cli(SPEECH, "-k", kernel, "-o", out, "--mode", mode, *(["--correlate"] * correlate))
    function = scipy.signal.correlate if correlate else scipy.signal.convolve
    assert_float(np.load(out).astype(np.float64), function(speech, taps[np.newaxis], mode))


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_mode_with_kernel_longer_than_signal(tmp_path, mode):
    x = np.array([0.5, -1.0, 2.0, 0.25, 1.5])
    taps = np.arange(1.0, 10.0)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    cli(tmp_path / "x.npy", "-k", save_kernel(tmp_path, taps), "-o", out, "--mode", mode)
    y = np.load(out)
    assert y.dtype == np.float64  # float64 .npy in: computed and written in float64
    np.testing.assert_allclose(y.reshape(-1), scipy.signal.convolve(x, taps, mode), atol=1e-12)


def test_correlate_without_mode_is_centred_correlation(tmp_path, speech):
    taps = np.random.default_rng(4).standard_normal(9) / 4
    out = tmp_path / "out.npy"
    cli(SPEECH, "-k", save_kernel(tmp_path, taps), "-o", out, "--correlate")
    reference = scipy.signal.correlate(speech, taps[np.newaxis], "same")
    assert_float(np.load(out).astype(np.float64), reference)
    assert np.abs(reference - centred(speech, taps)).max() > 1e-2  # kernel is asymmetric


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mode", "same", "--align", "causal"], "cannot be combined"),
        (["--mode", "full", "--tail"], "cannot be combined"),
        (["--mode", "sideways"], "--mode must be one of"),
        (["--align", "left"], "--align must be center or causal"),
        (["--mix", "-0.5"], "--mix"),
        (["--taps", "0", "-k", "lowpass:1000"], "--taps must be positive"),
        (["--precision", "float16"], "--precision"),
    ],
)
def test_bad_option_values_exit_1(tmp_path, extra, message):
    result = cli(SPEECH, "-k", EQ, "-o", tmp_path / "out.wav", *extra, code=1)
    assert result.stderr.startswith("error:") and message in result.stderr
    assert list(tmp_path.iterdir()) == []


# Designs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "options", "firwin"),
    [
        ("lowpass:3000", [], dict(numtaps=255, cutoff=3000, window="hamming")),
        (
            "highpass:500",
            ["--taps", "101", "--window", "blackman"],
            dict(numtaps=101, cutoff=500, window="blackman", pass_zero=False),
        ),
        (
            "bandpass:300-3400",
            ["--taps", "128", "--window", "hann"],
            dict(numtaps=128, cutoff=[300, 3400], window="hann", pass_zero=False),
        ),
        (
            "bandstop:1000-2000",
            ["--taps", "201", "--window", "kaiser:8.6"],
            dict(numtaps=201, cutoff=[1000, 2000], window=("kaiser", 8.6)),
        ),
        (
            "lowpass:2000",
            ["--taps", "64", "--window", "rect"],
            dict(numtaps=64, cutoff=2000, window="boxcar"),
        ),
    ],
)
def test_design_matches_scipy_firwin_at_the_input_rate(tmp_path, speech, spec, options, firwin):
    out = tmp_path / "out.wav"
    cli(SPEECH, "-k", spec, "-o", out, "--subtype", "FLOAT", *options)
    taps = scipy.signal.firwin(fs=16000, **firwin)
    assert_float(load(out)[0], centred(speech, taps))


def test_design_uses_each_inputs_own_rate(tmp_path, music):
    out = tmp_path / "out.wav"
    cli(MUSIC, "-k", "lowpass:3000", "-o", out, "--subtype", "FLOAT")
    y = load(out)[0]
    assert_float(y, centred(music, scipy.signal.firwin(255, 3000, fs=44100)))
    # Designed for 16 kHz instead, the result would be clearly different.
    wrong = centred(music, scipy.signal.firwin(255, 3000, fs=16000))
    assert np.abs(y - wrong).max() > 1e-2


def test_highpass_with_even_taps_is_a_kernel_error(tmp_path):
    result = cli(SPEECH, "-k", "highpass:500", "--taps", "100", "-o", tmp_path / "o.wav", code=4)
    assert "odd number of taps" in result.stderr


# Gain, normalize, mix ------------------------------------------------------------------


@pytest.mark.parametrize("db", [-6.0, 3.5])
def test_gain_scales_the_output(tmp_path, speech, eq, db):
    out = tmp_path / "out.wav"
    cli(SPEECH, "-k", EQ, "-o", out, "--gain", db, "--subtype", "FLOAT")
    assert_float(load(out)[0], centred(speech, eq) * 10 ** (db / 20))


def test_normalize_puts_the_peak_at_minus_0_1_dbfs(tmp_path, music, room):
    out = tmp_path / "out.wav"
    cli(MUSIC, "-k", ROOM, "-o", out, "--normalize", "--subtype", "FLOAT")
    y = load(out)[0]
    reference = full(music, room)[:, : music.shape[1]]
    assert np.abs(reference).max() > 1.0  # the reverb alone would clip
    target = 10 ** (-0.1 / 20)
    assert np.abs(y).max() == pytest.approx(target, rel=1e-6)
    assert_float(y, reference * target / np.abs(reference).max(), rtol=1e-5)


def test_normalize_into_pcm16_does_not_clip(tmp_path, music, room):
    out = tmp_path / "out.flac"
    result = cli(MUSIC, "-k", ROOM, "-o", out, "--normalize")
    assert "clipped" not in result.stderr
    y, info = load(out)
    assert info.subtype == "PCM_16"
    assert abs(np.abs(y).max() - 10 ** (-0.1 / 20)) <= 1 * LSB


@pytest.mark.parametrize("wet", [0.0, 0.3, 1.0])
def test_mix_of_centred_coefficients(tmp_path, speech, eq, wet):
    out = tmp_path / "out.wav"
    cli(SPEECH, "-k", EQ, "-o", out, "--mix", wet, "--subtype", "FLOAT")
    assert_float(load(out)[0], (1 - wet) * speech + wet * centred(speech, eq))


def test_mix_of_causal_impulse_response(tmp_path, music, room):
    out = tmp_path / "out.wav"
    cli(MUSIC, "-k", ROOM, "-o", out, "--mix", "0.25", "--subtype", "FLOAT")
    wet = full(music, room)[:, : music.shape[1]]
    assert_float(load(out)[0], 0.75 * music + 0.25 * wet, rtol=1e-5)


def test_mix_with_tail_has_no_dry_signal_after_the_input(tmp_path, speech, eq):
    out = tmp_path / "out.wav"
    cli(SPEECH, "-k", EQ, "-o", out, "--mix", "0.5", "--tail", "--subtype", "FLOAT")
    wet = full(speech, eq)[:, 15:]
    dry = np.pad(speech, ((0, 0), (0, 15)))
    assert_float(load(out)[0], 0.5 * dry + 0.5 * wet)


# Multichannel ---------------------------------------------------------------------------


def test_two_row_kernel_filters_each_channel_with_its_own_row(tmp_path, music, lowpass):
    highpass = scipy.signal.firwin(101, 2000, pass_zero=False, fs=44100)
    rows = np.stack([lowpass, highpass])
    out = tmp_path / "out.wav"
    cli(MUSIC, "-k", save_kernel(tmp_path, rows), "-o", out, "--subtype", "FLOAT")
    y = load(out)[0]
    assert_float(y[:1], centred(music[:1], lowpass))
    assert_float(y[1:], centred(music[1:], highpass))


def test_three_row_kernel_on_stereo_is_a_kernel_error(tmp_path):
    kernel = save_kernel(tmp_path, np.ones((3, 5)))
    result = cli(MUSIC, "-k", kernel, "-o", tmp_path / "out.wav", code=4)
    assert "3 rows" in result.stderr and "2 channels" in result.stderr
    assert not (tmp_path / "out.wav").exists()


# Output formats, subtypes, arrays ---------------------------------------------------------


def test_identity_kernel_is_bit_transparent_for_pcm16(tmp_path):
    out = tmp_path / "out.wav"
    cli(SPEECH, "-k", save_kernel(tmp_path, [1.0]), "-o", out)
    original, _ = sf.read(SPEECH, dtype="int16")
    again, _ = sf.read(out, dtype="int16")
    np.testing.assert_array_equal(again, original)
    assert sf.info(str(out)).subtype == "PCM_16"


@pytest.mark.parametrize(
    ("source", "name", "options", "expected"),
    [
        (MUSIC, "out.flac", [], ("FLAC", "PCM_16", 44100, 2)),
        (MUSIC, "out.wav", [], ("WAV", "PCM_16", 44100, 2)),
        (SPEECH, "out.wav", ["--subtype", "PCM_24"], ("WAV", "PCM_24", 16000, 1)),
        (SPEECH, "out.wav", ["--subtype", "float"], ("WAV", "FLOAT", 16000, 1)),
        (SPEECH, "out.bin", ["--format", "FLAC"], ("FLAC", "PCM_16", 16000, 1)),
        (SPEECH, "out.aiff", [], ("AIFF", "PCM_16", 16000, 1)),
        (ROOM, "out.wav", [], ("WAV", "FLOAT", 44100, 1)),
    ],
)
def test_output_keeps_rate_channels_and_subtype(tmp_path, source, name, options, expected):
    out = tmp_path / name
    cli(source, "-k", LOWPASS, "-o", out, *options)
    info = sf.info(str(out))
    assert (info.format, info.subtype, info.samplerate, info.channels) == expected
    assert info.frames == sf.info(str(source)).frames


def test_format_npy_with_any_name(tmp_path, speech, lowpass):
    out = tmp_path / "out.dat"
    cli(SPEECH, "-k", LOWPASS, "-o", out, "--format", "npy")
    y = np.load(out)
    assert y.dtype == np.float32
    assert_float(y.reshape(1, -1).astype(np.float64), centred(speech, lowpass))


def test_npy_input_1d_round_trip_in_float64(tmp_path, lowpass):
    x = np.random.default_rng(7).standard_normal(3000)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    result = cli(tmp_path / "x.npy", "-k", LOWPASS, "-o", out, "--json")
    assert json.loads(result.stdout)[0]["dtype"] == "float64"
    y = np.load(out)
    assert y.dtype == np.float64 and y.size == x.size and y.shape in ((3000,), (1, 3000))
    np.testing.assert_allclose(y.reshape(-1), np.convolve(x, lowpass, "same"), atol=1e-12)


def test_npy_input_channels_by_samples(tmp_path, lowpass):
    x = np.random.default_rng(8).standard_normal((3, 2000)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    cli(tmp_path / "x.npy", "-k", LOWPASS, "-o", out)
    y = np.load(out)
    assert y.dtype == np.float32 and y.shape == (3, 2000)
    assert_float(y.astype(np.float64), centred(x.astype(np.float64), lowpass))


def test_npy_input_to_audio_needs_a_rate(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(100))
    result = cli(tmp_path / "x.npy", "-k", LOWPASS, "-o", tmp_path / "y.wav", code=5)
    assert "sample rate" in result.stderr
    assert not (tmp_path / "y.wav").exists() and parts(tmp_path) == []


def test_precision_float64(tmp_path, speech, eq):
    out = tmp_path / "out.wav"
    result = cli(
        SPEECH, "-k", EQ, "-o", out, "--precision", "float64", "--subtype", "DOUBLE", "--json"
    )
    assert json.loads(result.stdout)[0]["dtype"] == "float64"
    np.testing.assert_allclose(load(out)[0], centred(speech, eq), atol=1e-12)


# Clipping -------------------------------------------------------------------------------


def test_clipping_pcm16_warns_with_count_and_fix(tmp_path, speech):
    out = tmp_path / "out.wav"
    result = cli(SPEECH, "-k", save_kernel(tmp_path, [4.0]), "-o", out)
    expected = int(np.count_nonzero(np.abs(4 * speech) > 1.0))
    assert expected > 0
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1, result.stderr
    assert f"{expected} samples clipped" in warning[0]
    for fix in ("--gain", "--normalize", "FLOAT"):
        assert fix in warning[0]
    # Saturated at full scale, never wrapped around.
    y = load(out)[0]
    np.testing.assert_array_equal(y[4 * speech > 1], 32767 * LSB)
    np.testing.assert_array_equal(y[4 * speech < -1], -1.0)
    # The suggested gain brings the peak just under full scale.
    gain = float(warning[0].split("--gain ")[1].split(",")[0])
    again = cli(SPEECH, "-k", tmp_path / "k.npy", "-o", tmp_path / "again.wav", "--gain", gain)
    assert "clipped" not in again.stderr
    assert -0.2 < 20 * np.log10(np.abs(load(tmp_path / "again.wav")[0]).max()) < 0


def test_clip_warning_accounts_for_the_gain_already_given(tmp_path):
    result = cli(SPEECH, "-k", save_kernel(tmp_path, [1.0]), "-o", tmp_path / "a.wav", "--gain", 12)
    warning = result.stderr.split("--gain ")[1]
    gain = float(warning.split(",")[0])
    cli(SPEECH, "-k", tmp_path / "k.npy", "-o", tmp_path / "b.wav", "--gain", gain)
    peak = 20 * np.log10(np.abs(load(tmp_path / "b.wav")[0]).max())
    assert -0.2 < peak < 0


def test_float_subtype_keeps_values_beyond_full_scale(tmp_path, speech):
    out = tmp_path / "out.wav"
    result = cli(SPEECH, "-k", save_kernel(tmp_path, [4.0]), "-o", out, "--subtype", "FLOAT")
    assert "clipped" not in result.stderr
    assert_float(load(out)[0], 4 * speech)


# Reports: summary, --quiet, --json ------------------------------------------------------


def test_json_report_to_stdout(tmp_path, speech, eq):
    out = tmp_path / "out.wav"
    result = cli(SPEECH, "-k", EQ, "-o", out, "--json", "--subtype", "FLOAT")
    reports = json.loads(result.stdout)
    assert isinstance(reports, list) and len(reports) == 1
    report = reports[0]
    assert set(report) == REPORT_KEYS
    assert report["input"] == str(SPEECH) and report["output"] == str(out)
    assert (report["samplerate"], report["channels"]) == (16000, 1)
    assert (report["frames_in"], report["frames_out"]) == (32000, 32000)
    assert (report["taps"], report["kernel_kind"], report["dtype"]) == (
        31,
        "coefficients",
        "float32",
    )
    assert (report["subtype"], report["device"], report["clipped"]) == ("FLOAT", "cpu", 0)
    y = load(out)[0]
    assert report["peak_dbfs"] == pytest.approx(20 * np.log10(np.abs(y).max()), abs=1e-4)
    seconds = report["seconds"]
    assert set(seconds) == {"read", "compile", "compute", "write", "total"}
    assert all(value >= 0 for value in seconds.values())
    assert seconds["total"] >= seconds["compute"]
    busy = seconds["total"] - seconds["compile"]  # a cold run's compile is not throughput
    assert report["realtime"] == pytest.approx(2.0 / busy, rel=1e-6)
    assert report["samples_per_second"] == pytest.approx(32000 / busy, rel=1e-6)
    assert "speech.wav" in result.stderr  # the summary still goes to stderr


def test_json_report_of_impulse_response_run(tmp_path):
    result = cli(MUSIC, "-k", ROOM, "-o", tmp_path / "o.wav", "--json", "--tail", "-q")
    report = json.loads(result.stdout)[0]
    taps = sf.info(str(ROOM)).frames
    assert (report["kernel_kind"], report["taps"], report["channels"]) == (
        "impulse_response",
        taps,
        2,
    )
    assert report["frames_out"] == report["frames_in"] + taps - 1
    assert report["clipped"] > 0  # the reverb of full-scale music clips PCM_16
    assert result.stderr.startswith("warning:") and len(result.stderr.splitlines()) == 1


def test_summary_and_quiet_as_a_process(tmp_path):
    loud = run(SPEECH, "-k", EQ, "-o", tmp_path / "a.wav")
    assert loud.returncode == 0 and loud.stdout == b""
    lines = loud.stderr.decode().splitlines()
    assert len(lines) == 1
    assert "speech.wav" in lines[0] and "a.wav" in lines[0] and "32000 frames x 1 ch" in lines[0]
    quiet = run(SPEECH, "-k", EQ, "-o", tmp_path / "b.wav", "--quiet")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, b"", b"")
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


def test_json_goes_to_stderr_when_data_goes_to_stdout(tmp_path, speech, eq):
    result = run(SPEECH, "-k", EQ, "-o", "-", "--json", "--quiet")
    assert result.returncode == 0
    report = json.loads(result.stderr)
    assert set(report[0]) == REPORT_KEYS and report[0]["output"] == "-"
    (tmp_path / "stdout.wav").write_bytes(result.stdout)
    assert_pcm16(load(tmp_path / "stdout.wav")[0], centred(speech, eq))


# Standard input and output, pipelines ------------------------------------------------------


def test_stdout_carries_exactly_the_file_bytes(tmp_path):
    piped = run(SPEECH, "-k", EQ, "-o", "-")
    assert piped.returncode == 0
    assert "-> -" in piped.stderr.decode()  # the summary is on stderr
    cli(SPEECH, "-k", EQ, "-o", tmp_path / "file.wav")
    assert piped.stdout == (tmp_path / "file.wav").read_bytes()


def test_shell_pipeline_equals_two_file_steps(tmp_path):
    mc = shlex.join(MAXCONV)
    out, e1, e2 = (shlex.quote(str(tmp_path / name)) for name in ("out.wav", "e1", "e2"))
    command = (
        f"set -o pipefail; cat {shlex.quote(str(SPEECH))} "
        f"| {mc} filter - -k {shlex.quote(str(EQ))} -o - --device cpu 2>{e1} "
        f"| {mc} filter - -k lowpass:3000 -o - --device cpu 2>{e2} > {out}"
    )
    subprocess.run(["bash", "-c", command], check=True, env=os.environ, timeout=180)
    for log in ("e1", "e2"):
        text = (tmp_path / log).read_text()
        assert "stdin -> -" in text or "- -> -" in text, text
        assert "Traceback" not in text and "error" not in text
    cli(SPEECH, "-k", EQ, "-o", tmp_path / "step1.wav")
    cli(tmp_path / "step1.wav", "-k", "lowpass:3000", "-o", tmp_path / "step2.wav")
    piped, info = load(tmp_path / "out.wav")
    stepped, step_info = load(tmp_path / "step2.wav")
    assert (info.subtype, info.samplerate, info.frames) == ("PCM_16", 16000, 32000)
    assert (step_info.subtype, step_info.samplerate) == ("PCM_16", 16000)
    np.testing.assert_array_equal(piped, stepped)


def test_raw_float_stereo_stdin_as_a_process(tmp_path, lowpass):
    x = np.random.default_rng(9).uniform(-0.5, 0.5, (2, 4000)).astype(np.float32)
    result = run(
        "-",
        "--rate",
        8000,
        "--channels",
        2,
        "-k",
        LOWPASS,
        "-o",
        tmp_path / "o.wav",
        input=x.T.tobytes(),
    )
    assert result.returncode == 0, result.stderr
    y, info = load(tmp_path / "o.wav")
    assert (info.samplerate, info.channels, info.subtype) == (8000, 2, "FLOAT")
    assert_float(y, centred(x.astype(np.float64), lowpass))


def test_raw_pcm16_stdin_to_raw_stdout(lowpass):
    pcm = (np.random.default_rng(10).uniform(-0.4, 0.4, 5000) * 32768).astype("<i2")
    result = cli(
        "-",
        "--rate",
        16000,
        "--channels",
        1,
        "--sample-format",
        "pcm_16",
        "-k",
        LOWPASS,
        "-o",
        "-",
        "--format",
        "RAW",
        input=pcm.tobytes(),
    )
    y = np.frombuffer(result.stdout_bytes, dtype="<i2").astype(np.float64) * LSB
    assert_pcm16(y[np.newaxis], centred(pcm[np.newaxis] * LSB, lowpass))


def test_raw_needs_rate_and_channels():
    result = cli("-", "--rate", 8000, "-k", LOWPASS, "-o", "-", input=b"\0" * 8, code=1)
    assert "--channels" in result.stderr and result.stdout_bytes == b""


def test_raw_partial_frame_is_an_input_error():
    result = cli(
        "-", "--rate", 8000, "--channels", 2, "-k", LOWPASS, "-o", "-", input=b"\0" * 10, code=3
    )
    assert "whole number" in result.stderr and result.stdout_bytes == b""


def test_stdin_flac_with_normalize_reads_stdin_twice(tmp_path, music, lowpass):
    result = cli(
        "-",
        "-k",
        LOWPASS,
        "-o",
        tmp_path / "o.wav",
        "--normalize",
        "--subtype",
        "FLOAT",
        input=MUSIC.read_bytes(),
    )
    assert result.exit_code == 0
    reference = centred(music, lowpass)
    assert_float(
        load(tmp_path / "o.wav")[0], reference * 10 ** (-0.1 / 20) / np.abs(reference).max()
    )


def test_raw_options_do_not_reinterpret_a_wav_file(tmp_path):
    result = runner.invoke(
        app,
        [
            "filter",
            str(SPEECH),
            "-k",
            str(EQ),
            "-o",
            str(tmp_path / "o.wav"),
            "--rate",
            "16000",
            "--channels",
            "1",
            "--sample-format",
            "PCM_16",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code != 0 or sf.info(str(tmp_path / "o.wav")).frames == 32000


# Folders ----------------------------------------------------------------------------------


def test_several_inputs_into_a_folder_keep_their_names(tmp_path, speech, music):
    folder = tmp_path / "out"
    folder.mkdir()
    result = cli(SPEECH, MUSIC, "-k", "lowpass:1000", "-o", folder, "--json", "-q")
    assert sorted(p.name for p in folder.iterdir()) == ["music.flac", "speech.wav"]
    assert [r["output"] for r in json.loads(result.stdout)] == [
        str(folder / "speech.wav"),
        str(folder / "music.flac"),
    ]
    y, info = load(folder / "speech.wav")
    assert (info.format, info.subtype, info.samplerate) == ("WAV", "PCM_16", 16000)
    assert_pcm16(y, centred(speech, scipy.signal.firwin(255, 1000, fs=16000)))
    y, info = load(folder / "music.flac")
    assert (info.format, info.subtype, info.samplerate, info.channels) == (
        "FLAC",
        "PCM_16",
        44100,
        2,
    )
    assert_pcm16(y, centred(music, scipy.signal.firwin(255, 1000, fs=44100)))


def test_stdin_into_a_folder_is_named_stdin_wav(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    cli("-", "-k", EQ, "-o", f"{folder}/", input=SPEECH.read_bytes())
    assert [p.name for p in folder.iterdir()] == ["stdin.wav"]


def test_several_inputs_with_a_file_output_is_an_error(tmp_path):
    result = cli(SPEECH, MUSIC, "-k", "lowpass:1000", "-o", tmp_path / "one.wav", code=1)
    assert "existing output folder" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_several_inputs_with_the_same_name_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    shutil.copy(SPEECH, tmp_path / "a" / "speech.wav")
    (tmp_path / "out").mkdir()
    result = cli(SPEECH, tmp_path / "a" / "speech.wav", "-k", EQ, "-o", tmp_path / "out", code=5)
    assert "share a file name" in result.stderr
    assert list((tmp_path / "out").iterdir()) == []


def test_missing_output_folder_exit_5(tmp_path):
    result = cli(SPEECH, MUSIC, "-k", "lowpass:1000", "-o", f"{tmp_path}/nope/", code=5)
    assert "does not exist" in result.stderr and not (tmp_path / "nope").exists()


# Safety ---------------------------------------------------------------------------------


@pytest.mark.parametrize("force", [False, True])
def test_never_overwrites_the_input(tmp_path, force):
    source = tmp_path / "speech.wav"
    shutil.copy(SPEECH, source)
    before = source.read_bytes()
    result = cli(source, "-k", EQ, "-o", source, *(["--force"] * force), code=5)
    assert "is the input" in result.stderr
    assert source.read_bytes() == before and parts(tmp_path) == []


def test_never_overwrites_the_input_through_a_link(tmp_path):
    source = tmp_path / "speech.wav"
    shutil.copy(SPEECH, source)
    (tmp_path / "link.wav").symlink_to(source)
    os.link(source, tmp_path / "hard.wav")
    before = source.read_bytes()
    for alias in ("link.wav", "hard.wav"):
        cli(source, "-k", EQ, "-o", tmp_path / alias, "--force", code=5)
    assert source.read_bytes() == before


def test_existing_output_needs_force(tmp_path, speech, eq):
    out = tmp_path / "out.wav"
    out.write_bytes(b"precious bytes")
    result = cli(SPEECH, "-k", EQ, "-o", out, code=5)
    assert "--force" in result.stderr
    assert out.read_bytes() == b"precious bytes"
    cli(SPEECH, "-k", EQ, "-o", out, "--force")
    assert_pcm16(load(out)[0], centred(speech, eq))
    assert parts(tmp_path) == []


def test_long_but_valid_output_name(tmp_path):
    out = tmp_path / ("a" * 246 + ".wav")  # 250 characters; the limit is 255
    out.write_bytes(b"")
    out.unlink()  # the file system accepts the name
    cli(SPEECH, "-k", EQ, "-o", out)
    assert sf.info(str(out)).frames == 32000


# Errors as a user sees them: exit code, one stderr line, nothing left behind ---------------


def _write_random(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(11).bytes(5000))
    return path


def _write_truncated(path: Path) -> Path:
    path.write_bytes(SPEECH.read_bytes()[:30000])
    return path


def _write_empty_wav(path: Path) -> Path:
    sf.write(path, np.zeros((0, 1)), 16000, subtype="PCM_16")
    return path


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _write_npy(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def _existing_output(tmp: Path) -> list[object]:
    (tmp / "out" / "y.wav").write_bytes(b"keep me")
    return [SPEECH, "-k", EQ]


ERROR_CASES = {
    "missing input": (3, "nope.wav", lambda t: [t / "nope.wav", "-k", EQ]),
    "not audio": (3, "x.wav", lambda t: [_write_random(t / "x.wav"), "-k", EQ]),
    "truncated wav": (3, "truncated", lambda t: [_write_truncated(t / "x.wav"), "-k", EQ]),
    "zero frames": (3, "no samples", lambda t: [_write_empty_wav(t / "x.wav"), "-k", EQ]),
    "zero bytes": (3, "x.wav", lambda t: [_write_text(t / "x.wav", ""), "-k", EQ]),
    "empty text kernel": (4, "empty", lambda t: [SPEECH, "-k", _write_text(t / "k.txt", "# x\n")]),
    "empty npy kernel": (
        4,
        "empty",
        lambda t: [SPEECH, "-k", _write_npy(t / "k.npy", np.zeros(0))],
    ),
    "2-D kernel, wrong rows": (
        4,
        "2 rows",
        lambda t: [SPEECH, "-k", _write_npy(t / "k.npy", np.ones((2, 5)))],
    ),
    "3-row kernel on stereo": (
        4,
        "3 rows",
        lambda t: [MUSIC, "-k", _write_npy(t / "k.npy", np.ones((3, 5)))],
    ),
    "NaN in kernel": (
        4,
        "NaN",
        lambda t: [SPEECH, "-k", _write_npy(t / "k.npy", np.array([0.5, np.nan, 0.5]))],
    ),
    "garbage text kernel": (
        4,
        "'abc' is not a number",
        lambda t: [SPEECH, "-k", _write_text(t / "k.txt", "0.1\n0.2 abc\n")],
    ),
    "missing kernel": (4, "not found", lambda t: [SPEECH, "-k", t / "nope.txt"]),
    "unknown design": (4, "unknown kernel design", lambda t: [SPEECH, "-k", "notch:50"]),
    "design on .npy input": (
        4,
        "sample rate",
        lambda t: [_write_npy(t / "x.npy", np.ones(50)), "-k", "lowpass:100"],
    ),
    "IR rate mismatch": (4, "44100 Hz but the input at 16000 Hz", lambda t: [SPEECH, "-k", ROOM]),
    "output folder missing": (
        5,
        "does not exist",
        lambda t: [SPEECH, "-k", EQ, "-o", t / "no/y.wav"],
    ),
    "output exists": (5, "--force", _existing_output),
    "subtype unfit for format": (
        5,
        "does not fit FLAC",
        lambda t: [SPEECH, "-k", EQ, "-o", t / "out" / "y.flac", "--subtype", "FLOAT"],
    ),
    "unknown device": (1, "device must be", lambda t: [SPEECH, "-k", EQ, "--device", "tpu"]),
    "mix 2": (1, "--mix", lambda t: [SPEECH, "-k", EQ, "--mix", "2"]),
    "mode with tail": (
        1,
        "cannot be combined",
        lambda t: [SPEECH, "-k", EQ, "--mode", "full", "--tail"],
    ),
}


def _with_existing_output_and_missing_input(tmp: Path) -> list[object]:
    (tmp / "out" / "y.wav").write_bytes(b"keep me")
    return [tmp / "nope.wav", "-k", EQ, "--force"]


@pytest.mark.parametrize(
    ("code", "message", "build"),
    [
        *(pytest.param(*case, id=name) for name, case in ERROR_CASES.items()),
        pytest.param(
            3,
            "nope.wav",
            _with_existing_output_and_missing_input,
            id="missing input, existing output",
        ),
    ],
)
def test_error_exit_code_one_line_and_nothing_left(tmp_path, code, message, build):
    folder = tmp_path / "out"
    folder.mkdir()
    args = build(tmp_path)
    if "-o" not in args:
        args += ["-o", folder / "y.wav"]
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    result = run(*args, cwd=tmp_path)
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr and b"Traceback" not in result.stdout
    assert result.returncode == code, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert message in lines[0]
    assert result.stdout == b""
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert parts(tmp_path) == []


# Against SoX itself ----------------------------------------------------------------------


@pytest.mark.skipif(
    shutil.which("sox") is None and os.environ.get("MAXCONV_REQUIRE_SOX") != "1",
    reason="sox is not installed (apt-get install sox); CI installs it, MAXCONV_REQUIRE_SOX=1",
)
def test_matches_sox_fir(tmp_path):
    sox = shutil.which("sox")
    assert sox, "sox is not on PATH; install it (apt-get install -y sox) to run this check"
    subprocess.run(
        [sox, "-D", str(SPEECH), str(tmp_path / "sox.wav"), "fir", str(EQ)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    cli(SPEECH, "-k", EQ, "-o", tmp_path / "ours.wav")
    theirs, _ = sf.read(tmp_path / "sox.wav", dtype="int16")
    ours, _ = sf.read(tmp_path / "ours.wav", dtype="int16")
    assert ours.shape == theirs.shape
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 2


@pytest.mark.parametrize("method", ["direct", "fft", "auto"])
def test_method_option_gives_the_same_numbers(tmp_path, speech, method):
    out = tmp_path / "out.wav"
    taps = np.hanning(301)
    kernel = save_kernel(tmp_path, taps / taps.sum())
    result = cli(
        SPEECH, "-k", kernel, "-o", out, "--method", method, "--subtype", "FLOAT", "--json"
    )
    assert json.loads(result.stdout)[0]["method"] == ("fft" if method == "auto" else method)
    assert_float(load(out)[0], centred(speech, taps / taps.sum()))
