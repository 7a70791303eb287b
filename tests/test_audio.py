"""Tests for maxconv.audio_read and audio_write: reading, block streaming, atomic writing."""

from __future__ import annotations

import io
import os
import stat
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from maxconv.atomic import discard_uncommitted
from maxconv.audio_read import STDIO, RawFormat, SignalInfo, iter_blocks, read_info, read_signal
from maxconv.audio_write import count_clipped, open_writer, write_signal
from maxconv.errors import InputError, MaxconvError, OutputError


class _Stream:
    """Stand-in for sys.stdin / sys.stdout: only ``.buffer`` is used."""

    def __init__(self, data: bytes = b"") -> None:
        self.buffer = io.BytesIO(data)


def _signal(channels: int = 2, frames: int = 1000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.9, 0.9, size=(channels, frames)).astype(np.float32)


def _wav_bytes(data: np.ndarray, rate: int = 8000, subtype: str = "FLOAT") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, data.T, rate, subtype=subtype, format="WAV")
    return buffer.getvalue()


def _one_line(error: pytest.ExceptionInfo[MaxconvError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_exit_codes_distinguish_failure_kinds() -> None:
    assert MaxconvError.exit_code == 1
    assert (InputError.exit_code, OutputError.exit_code) == (3, 5)
    assert issubclass(InputError, MaxconvError) and issubclass(OutputError, MaxconvError)


# Round trips ---------------------------------------------------------------------------


def test_wav_pcm16_round_trip(tmp_path: Path) -> None:
    data = _signal()
    target = tmp_path / "x.wav"
    assert write_signal(target, data, 8000, "PCM_16") == 0
    back, info = read_signal(target)
    assert info == SignalInfo(8000, 2, 1000, "PCM_16", "WAV")
    assert back.dtype == np.float32 and back.shape == (2, 1000) and back.flags.c_contiguous
    np.testing.assert_allclose(back, data, atol=1e-4)
    assert np.abs(back - data).max() > 0  # really quantised to 16 bits


def test_wav_float_round_trip_is_exact(tmp_path: Path) -> None:
    data = _signal(channels=3)
    target = tmp_path / "x.wav"
    write_signal(target, data, 48000, "FLOAT")
    back, info = read_signal(target, dtype=np.float64)
    assert (info.subtype, info.channels, info.samplerate) == ("FLOAT", 3, 48000)
    assert back.dtype == np.float64
    np.testing.assert_array_equal(back, data)


def test_flac_round_trip_format_from_suffix(tmp_path: Path) -> None:
    data = _signal()
    target = tmp_path / "x.flac"
    write_signal(target, data, 44100, "PCM_24")
    back, info = read_signal(target)
    assert (info.format, info.subtype) == ("FLAC", "PCM_24")
    np.testing.assert_allclose(back, data, atol=1e-6)


def test_npy_1d_reads_as_one_channel(tmp_path: Path) -> None:
    values = np.linspace(-2, 2, 50)
    np.save(tmp_path / "x.npy", values)
    back, info = read_signal(tmp_path / "x.npy")
    assert info == SignalInfo(None, 1, 50, "float64", "NPY", one_dimensional=True)
    assert back.shape == (1, 50) and back.dtype == np.float32
    np.testing.assert_allclose(back[0], values, rtol=1e-6)  # no scaling for arrays


def test_npy_2d_is_channels_by_samples(tmp_path: Path) -> None:
    values = np.arange(12, dtype=np.int16).reshape(3, 4)
    np.save(tmp_path / "x.npy", values)
    back, info = read_signal(tmp_path / "x.npy", dtype=np.float64)
    assert (info.channels, info.frames, info.subtype) == (3, 4, "int16")
    np.testing.assert_array_equal(back, values)


def test_npy_output_round_trip(tmp_path: Path) -> None:
    data = _signal(channels=2, frames=77)
    target = tmp_path / "y.npy"
    write_signal(target, data, None)
    np.testing.assert_array_equal(np.load(target), data)
    back, info = read_signal(target)
    assert info == SignalInfo(None, 2, 77, "float32", "NPY")
    np.testing.assert_array_equal(back, data)


def test_npy_output_keeps_float64_when_asked(tmp_path: Path) -> None:
    data = np.array([[1 / 3, 2 / 3]])
    write_signal(tmp_path / "y.npy", data, None, subtype="float64")
    loaded = np.load(tmp_path / "y.npy")
    assert loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded, data)


def test_read_info_matches_read_signal(tmp_path: Path) -> None:
    write_signal(tmp_path / "x.wav", _signal(), 22050, "PCM_16")
    assert read_info(tmp_path / "x.wav") == read_signal(tmp_path / "x.wav")[1]
    np.save(tmp_path / "x.npy", np.zeros((2, 9)))
    assert read_info(tmp_path / "x.npy") == SignalInfo(None, 2, 9, "float64", "NPY")


# Standard input ------------------------------------------------------------------------


def test_stdin_wav_can_be_inspected_then_read(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _signal()
    monkeypatch.setattr(sys, "stdin", _Stream(_wav_bytes(data)))
    info = read_info(STDIO)
    back, again = read_signal(STDIO)
    assert info == again == SignalInfo(8000, 2, 1000, "FLOAT", "WAV")
    np.testing.assert_array_equal(back, data)
    blocks = list(iter_blocks(STDIO, 256))
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), data)


def test_stdin_flac(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _signal(channels=1)
    buffer = io.BytesIO()
    sf.write(buffer, data.T, 16000, subtype="PCM_16", format="FLAC")
    monkeypatch.setattr(sys, "stdin", _Stream(buffer.getvalue()))
    back, info = read_signal(STDIO)
    assert (info.format, info.samplerate) == ("FLAC", 16000)
    np.testing.assert_allclose(back, data, atol=1e-4)


def test_raw_float_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _signal(channels=2, frames=10)
    monkeypatch.setattr(sys, "stdin", _Stream(data.T.astype("<f4").tobytes()))
    back, info = read_signal(STDIO, raw=RawFormat(8000, 2, "FLOAT"))
    assert (info.samplerate, info.channels, info.frames, info.format) == (8000, 2, 10, "RAW")
    np.testing.assert_array_equal(back, data)


def test_raw_pcm16_stdin_is_scaled(monkeypatch: pytest.MonkeyPatch) -> None:
    samples = np.array([0, 16384, -32768, 32767], dtype="<i2")
    monkeypatch.setattr(sys, "stdin", _Stream(samples.tobytes()))
    back, _ = read_signal(STDIO, raw=RawFormat(8000, 1, "PCM_16"), dtype=np.float64)
    np.testing.assert_allclose(back[0], samples / 32768)


def test_raw_stdin_with_partial_frame_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", _Stream(bytes(10)))  # 2.5 stereo PCM_16 frames
    with pytest.raises(InputError) as error:
        read_signal(STDIO, raw=RawFormat(8000, 2, "PCM_16"))
    assert "stdin" in _one_line(error) and "10 bytes" in str(error.value)


def test_raw_format_rejects_unknown_subtype() -> None:
    with pytest.raises(InputError, match="VORBIS"):
        RawFormat(8000, 1, "VORBIS")
    with pytest.raises(InputError, match="positive"):
        RawFormat(8000, 0)


def test_empty_stdin_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", _Stream(b""))
    with pytest.raises(InputError, match="stdin.*empty"):
        read_signal(STDIO)


# Block iteration -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["x.wav", "x.flac", "x.npy"])
def test_blocks_equal_whole_read(tmp_path: Path, name: str) -> None:
    data = _signal(channels=2, frames=1000)
    write_signal(tmp_path / name, data, 8000, None if name.endswith("npy") else "PCM_16")
    blocks = list(iter_blocks(tmp_path / name, 300))
    assert [block.shape for block in blocks] == [(2, 300)] * 3 + [(2, 100)]
    assert all(block.flags.c_contiguous and block.dtype == np.float32 for block in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), read_signal(tmp_path / name)[0])


def test_blocks_of_plain_c_order_npy(tmp_path: Path) -> None:
    data = np.arange(14.0).reshape(2, 7)
    np.save(tmp_path / "c.npy", data)
    blocks = list(iter_blocks(tmp_path / "c.npy", 3, dtype=np.float64))
    assert [block.shape[1] for block in blocks] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), data)


@pytest.mark.parametrize("name", ["long.wav", "long.npy"])
def test_block_memory_does_not_grow_with_length(tmp_path: Path, name: str) -> None:
    frames = 2_000_000  # 16 MB of float32 stereo
    target = tmp_path / name
    with open_writer(target, 8000, 2, "FLOAT" if name.endswith("wav") else None) as writer:
        chunk = np.full((2, 100_000), 0.25, dtype=np.float32)
        for _ in range(frames // chunk.shape[1]):
            writer.write(chunk)
    tracemalloc.start()
    try:
        seen = sum(block.shape[1] for block in iter_blocks(target, 4096))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seen == frames
    assert peak < 1_000_000, f"peak {peak} bytes while streaming a 16 MB file"


def test_blocksize_must_be_positive(tmp_path: Path) -> None:
    write_signal(tmp_path / "x.wav", _signal(), 8000)
    with pytest.raises(ValueError, match="blocksize"):
        next(iter_blocks(tmp_path / "x.wav", 0))


# Writing -------------------------------------------------------------------------------


def test_streaming_writer_commits_only_on_exit(tmp_path: Path) -> None:
    data = _signal(channels=2, frames=900)
    target = tmp_path / "out.wav"
    with open_writer(target, 8000, 2, "FLOAT") as writer:
        for start in range(0, 900, 256):
            writer.write(data[:, start : start + 256])
        assert not target.exists()
        assert writer.frames == 900
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]
    np.testing.assert_array_equal(read_signal(target)[0], data)


@pytest.mark.parametrize("name", ["out.wav", "out.npy"])
def test_exception_mid_write_leaves_nothing(tmp_path: Path, name: str) -> None:
    with pytest.raises(RuntimeError, match="boom"), open_writer(tmp_path / name, 8000, 1) as writer:
        writer.write(np.zeros((1, 100)))
        assert len(list(tmp_path.iterdir())) == 1  # the temp file exists meanwhile
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_existing_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "out.wav"
    write_signal(target, _signal(seed=1), 8000)
    before = target.read_bytes()
    with pytest.raises(KeyboardInterrupt), open_writer(target, 8000, 2) as writer:
        writer.write(_signal(seed=2))
        raise KeyboardInterrupt
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]


def test_interrupt_while_the_writer_opens_removes_the_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal inside libsndfile's header write, before any `with` block exists."""

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sf, "SoundFile", interrupted)
    with pytest.raises(KeyboardInterrupt):
        open_writer(tmp_path / "out.wav", 8000, 1)
    assert list(tmp_path.iterdir()) == []


def test_discard_uncommitted_removes_a_writer_that_was_never_entered(tmp_path: Path) -> None:
    """What the CLI does on a signal that lands between open_writer and its `with`."""
    kept = tmp_path / "kept.wav"
    write_signal(kept, _signal(), 8000)
    writer = open_writer(tmp_path / "out.wav", 8000, 2)
    writer.write(_signal())
    assert len(list(tmp_path.glob(".maxconv-*.part"))) == 1
    discard_uncommitted()
    assert [p.name for p in tmp_path.iterdir()] == ["kept.wav"]


def test_failure_at_commit_removes_the_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "out.wav"
    with pytest.raises(OutputError, match="out.wav"), open_writer(target, 8000, 1) as writer:
        writer.write(np.zeros((1, 10)))
        target.mkdir()  # os.replace cannot put a file over a folder
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"] and target.is_dir()


def test_wrong_block_shape_is_a_programming_error(tmp_path: Path) -> None:
    with (
        pytest.raises(ValueError, match=r"\(2, n\)"),
        open_writer(tmp_path / "o.wav", 8000, 2) as w,
    ):
        w.write(np.zeros((3, 10)))
    assert list(tmp_path.iterdir()) == []


def test_new_file_gets_normal_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        write_signal(tmp_path / "new.wav", _signal(), 8000)
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "new.wav").stat().st_mode) == 0o644


def test_overwrite_keeps_existing_permissions(tmp_path: Path) -> None:
    target = tmp_path / "old.wav"
    write_signal(target, _signal(), 8000)
    target.chmod(0o640)
    write_signal(target, _signal(seed=3), 8000)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_stdout_gets_a_wav_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    stdout = _Stream()
    monkeypatch.setattr(sys, "stdout", stdout)
    data = _signal()
    write_signal(STDIO, data, 8000, "FLOAT")
    stdout.buffer.seek(0)
    back, rate = sf.read(stdout.buffer, dtype="float32", always_2d=True)
    assert rate == 8000
    np.testing.assert_array_equal(back.T, data)


def test_stdout_gets_nothing_on_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    stdout = _Stream()
    monkeypatch.setattr(sys, "stdout", stdout)
    with pytest.raises(RuntimeError), open_writer(STDIO, 8000, 2) as writer:
        writer.write(_signal())
        raise RuntimeError
    assert stdout.buffer.getvalue() == b""


def test_broken_stdout_pipe_is_an_output_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class _BrokenPipe(io.BytesIO):
        def write(self, data: object) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    stdout = _Stream()
    stdout.buffer = _BrokenPipe()
    monkeypatch.setattr(sys, "stdout", stdout)
    with pytest.raises(OutputError, match="stdout: Broken pipe"):
        write_signal(STDIO, _signal(), 8000)


def test_clipping_is_counted_for_integer_subtypes(tmp_path: Path) -> None:
    data = np.array([[0.5, 1.0, 1.5, -2.0, -1.0]])
    assert count_clipped(data, "PCM_16") == 2
    assert count_clipped(data, "FLOAT") == 0
    assert count_clipped(data, None) == 0
    assert count_clipped(data, "float32") == 0
    assert write_signal(tmp_path / "c.wav", data, 8000, "PCM_16") == 2
    assert write_signal(tmp_path / "f.wav", data, 8000, "FLOAT") == 0
    back, _ = read_signal(tmp_path / "c.wav")
    assert back.max() <= 1.0 and back.min() >= -1.0  # clipped, not wrapped around
    assert back[0, 2] > 0.99 and back[0, 3] == -1.0


# Errors --------------------------------------------------------------------------------


def test_missing_input_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as error:
        read_signal(tmp_path / "nope.wav")
    assert "nope.wav" in _one_line(error) and error.value.exit_code == 3


def test_missing_npy_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.npy"):
        read_info(tmp_path / "nope.npy")


def test_folder_as_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="directory"):
        read_signal(tmp_path)


def test_input_that_is_not_audio(tmp_path: Path) -> None:
    (tmp_path / "x.wav").write_text("hello, I am not a WAV file\n")
    with pytest.raises(InputError) as error:
        read_signal(tmp_path / "x.wav")
    assert "x.wav" in _one_line(error)


@pytest.mark.parametrize("name", ["t.wav", "t.aiff"])
def test_truncated_header_format(tmp_path: Path, name: str) -> None:
    target = tmp_path / name
    write_signal(target, _signal(), 8000, "PCM_16")
    whole = target.read_bytes()
    target.write_bytes(whole[: len(whole) // 2])
    for read in (read_info, read_signal, lambda p: list(iter_blocks(p, 100))):
        with pytest.raises(InputError) as error:
            read(target)
        assert "truncated" in _one_line(error) and name in str(error.value)


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="libsndfile without MP3")
def test_truncated_mp3_is_caught_by_frame_count(tmp_path: Path) -> None:
    # The MP3 header still promises every frame; only the decoder runs dry early.
    target = tmp_path / "t.mp3"
    write_signal(target, _signal(frames=40000) * 0.5, 44100, "MPEG_LAYER_III")
    whole = target.read_bytes()
    target.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match=r"truncated \(\d+ of 40000 frames"):
        read_signal(target)
    with pytest.raises(InputError, match="truncated"):
        list(iter_blocks(target, 4096))


def test_wav_cut_inside_header(tmp_path: Path) -> None:
    (tmp_path / "h.wav").write_bytes(_wav_bytes(_signal())[:30])
    with pytest.raises(InputError, match="h.wav"):
        read_signal(tmp_path / "h.wav")


def test_truncated_flac(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, size=(40000, 2))
    sf.write(buffer, noise, 44100, subtype="PCM_16", format="FLAC")
    whole = buffer.getvalue()
    (tmp_path / "t.flac").write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(InputError, match="t.flac"):
        read_signal(tmp_path / "t.flac")
    blocks = iter_blocks(tmp_path / "t.flac", 1024)
    with pytest.raises(InputError, match="t.flac"):
        for _ in blocks:
            pass


@pytest.mark.parametrize(
    ("array", "problem"),
    [
        (np.array([1, "a"], dtype=object), "allow_pickle"),
        (np.zeros((2, 2, 2)), "3 dimensions"),
        (np.zeros((2, 0)), "empty"),
        (np.array(["a", "b"]), "<U1"),
        (np.array([1 + 2j]), "complex"),
    ],
)
def test_unusable_npy_input(tmp_path: Path, array: np.ndarray, problem: str) -> None:
    np.save(tmp_path / "bad.npy", array, allow_pickle=True)
    with pytest.raises(InputError) as error:
        read_signal(tmp_path / "bad.npy")
    assert problem in _one_line(error) and "bad.npy" in str(error.value)


def test_truncated_npy(tmp_path: Path) -> None:
    np.save(tmp_path / "t.npy", np.zeros(1000))
    (tmp_path / "t.npy").write_bytes((tmp_path / "t.npy").read_bytes()[:500])
    for read in (read_signal, read_info):
        with pytest.raises(InputError, match="t.npy"):
            read(tmp_path / "t.npy")


def test_output_folder_missing(tmp_path: Path) -> None:
    with pytest.raises(OutputError) as error:
        write_signal(tmp_path / "no" / "such" / "out.wav", _signal(), 8000)
    assert "does not exist" in _one_line(error) and error.value.exit_code == 5


def test_output_folder_is_a_regular_file(tmp_path: Path) -> None:
    # Unwritable for every user, root included: no file can be created inside a file.
    blocker = tmp_path / "notes.txt"
    blocker.write_bytes(b"not a folder")
    for target in (blocker / "out.wav", blocker / "out.npy"):
        with pytest.raises(OutputError) as error:
            write_signal(target, _signal(), 8000)
        assert "notes.txt" in _one_line(error) and error.value.exit_code == 5
    assert blocker.read_bytes() == b"not a folder"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


def test_output_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "d.wav").mkdir()
    with pytest.raises(OutputError, match="folder"):
        write_signal(tmp_path / "d.wav", _signal(), 8000)


@pytest.mark.parametrize(
    ("name", "options", "problem"),
    [
        ("out.xyz", {}, "unknown format"),
        ("out.flac", {"subtype": "FLOAT"}, "does not fit FLAC"),
        ("out.npy", {"subtype": "int16"}, "float32"),
        ("out", {"format": "nonsense"}, "unknown format"),
    ],
)
def test_bad_output_format(
    tmp_path: Path, name: str, options: dict[str, str], problem: str
) -> None:
    with pytest.raises(OutputError) as error:
        write_signal(tmp_path / name, _signal(), 8000, **options)
    assert problem in _one_line(error)
    assert list(tmp_path.iterdir()) == []


def test_audio_output_needs_a_rate(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="sample rate"):
        write_signal(tmp_path / "out.wav", _signal(), None)
