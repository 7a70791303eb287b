"""The augment job's per-clip file path: plain WAVs read and written with few calls.

A job reads and writes thousands of short files, so what a file costs apart
from its samples counts. `maxconv.audio_read` opens a clip four times to read it
(twice to check it, twice through libsndfile: ~90 system calls) and writes
through libsndfile's callbacks into a Python file (~45 system calls, and
soundfile's format look-ups each time): 0.6-1.2 ms of CPU a clip even for a
100-sample clip, most of it Python holding the GIL that the job's threads
share; here it is 0.1 ms. Here:

- `read_clip` reads a plain WAV (one RIFF ``fmt `` and one ``data`` chunk that
  ends the file, 16/24/32-bit integer or 32/64-bit float samples) with one
  ``open`` and one ``read`` and decodes it with NumPy exactly as libsndfile
  does (an integer times the same power of two, in float32); anything else
  (other formats, ``.npy``, a damaged or unusual WAV) goes to
  `audio_read.read_signal`, which gives its error messages too.
- `OutputFiles.write` writes a WAV of those subtypes as libsndfile's own
  header (taken once per rate, channels, subtype and length from libsndfile
  writing silence into memory) followed by the samples, which are the
  integers `audio_write` would round them to: one ``open``, one ``writev``, one
  ``close`` and one ``rename`` into place. The first clip of each subtype and
  channel count is also encoded by libsndfile and compared, byte for byte;
  where they differ, that kind goes through `audio_write.open_writer` from then on.
  Other formats go through `audio_write.open_writer`.

Either way the files hold the same bytes as `audio_write` writes, and an output
appears only once complete (written under a temp name beside it, then renamed).
"""

from __future__ import annotations

import io
import os
import stat
import struct
import threading
from pathlib import Path

import numpy as np
import soundfile as sf

from ..atomic import commit, create_temp, discard
from ..audio_read import SignalInfo, read_signal
from ..errors import OutputError

# (WAVE format tag, bits) -> libsndfile subtype, for the WAVs read here.
_WAV_READ = {
    (1, 16): "PCM_16",
    (1, 24): "PCM_24",
    (1, 32): "PCM_32",
    (3, 32): "FLOAT",
    (3, 64): "DOUBLE",
}
# Chunks a plain WAV may hold besides fmt and data (libsndfile's float WAVs have both).
_WAV_EXTRA_CHUNKS = frozenset({b"fact", b"PEAK"})
# libsndfile's sndfile.h: whether a float WAV/AIFF gets a PEAK chunk (time-stamped).
SFC_SET_ADD_PEAK_CHUNK = 0x1050


def read_clip(path: str) -> tuple[np.ndarray, SignalInfo]:
    """`read_signal(path, np.float32)`, with plain WAVs decoded here.

    Raises
    ------
    InputError
        As `read_signal` does (it reads every file this does not).
    """
    if path[-4:].lower() == ".wav":
        try:
            with open(path, "rb", buffering=0) as handle:
                data = handle.readall()
        except OSError:
            data = b""  # read_signal says why
        decoded = _decode_wav(data)
        if decoded is not None:
            return decoded
    return read_signal(path, np.float32)


def _decode_wav(data: bytes) -> tuple[np.ndarray, SignalInfo] | None:
    """The samples and description of a plain WAV, or None for anything else."""
    size = len(data)
    if size < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    if struct.unpack_from("<I", data, 4)[0] != size - 8:
        return None
    position = 12
    found = None
    while position + 8 <= size:
        name = data[position : position + 4]
        length = struct.unpack_from("<I", data, position + 4)[0]
        body = position + 8
        if body + length > size:
            return None
        if name == b"fmt ":
            if found is not None or length not in (16, 18):
                return None
            if length == 18 and struct.unpack_from("<H", data, body + 16)[0] != 0:
                return None
            tag, channels, rate, byte_rate, align, bits = struct.unpack_from("<HHIIHH", data, body)
            subtype = _WAV_READ.get((tag, bits))
            width = bits // 8
            if subtype is None or channels < 1 or rate < 1 or align != channels * width:
                return None
            if byte_rate != rate * align:
                return None
            found = (subtype, channels, rate, width)
        elif name == b"data":
            if found is None or body + length + (length & 1) != size or length == 0:
                return None
            subtype, channels, rate, width = found
            if length % (channels * width):
                return None
            frames = length // (channels * width)
            samples = _decode_samples(data, body, frames, channels, subtype)
            return samples, SignalInfo(rate, channels, frames, subtype, "WAV")
        elif name not in _WAV_EXTRA_CHUNKS:
            return None
        position = body + length + (length & 1)
    return None


def _decode_samples(
    data: bytes, offset: int, frames: int, channels: int, subtype: str
) -> np.ndarray:
    """``(channels, frames)`` float32 as libsndfile reads them: int * 2^-(bits-1) in float32."""
    count = frames * channels
    if subtype == "PCM_24":
        packed = np.frombuffer(data, np.uint8, count * 3, offset).reshape(count, 3)
        widened = np.zeros((count, 4), np.uint8)
        widened[:, 1:] = packed  # the sample in the top three bytes, as libsndfile holds it
        stored = widened.view("<i4").reshape(frames, channels)
        scale = np.float32(2.0**-31)
    else:
        dtype, scale = {
            "PCM_16": ("<i2", np.float32(2.0**-15)),
            "PCM_32": ("<i4", np.float32(2.0**-31)),
            "FLOAT": ("<f4", None),
            "DOUBLE": ("<f8", None),
        }[subtype]
        stored = np.frombuffer(data, dtype, count, offset).reshape(frames, channels)
    out = np.empty((channels, frames), np.float32)
    if scale is None:
        out[...] = stored.T
    else:
        np.multiply(stored.T, scale, out=out, dtype=np.float32, casting="unsafe")
    return out


# Writing ------------------------------------------------------------------------------------

# Subtype -> (bits of the integer samples or 0 for float, container dtype libsndfile is given,
# bytes per sample in the file). PCM_24 is given as int32 (the sample << 8), as `audio_write` does.
_WAV_WRITE = {
    "PCM_16": (16, np.dtype("<i2"), 2),
    "PCM_24": (24, np.dtype("<i4"), 3),
    "PCM_32": (32, np.dtype("<i4"), 4),
    "FLOAT": (0, np.dtype("<f4"), 4),
    "DOUBLE": (0, np.dtype("<f8"), 8),
}
_TEMPLATES_KEPT = 1024

_templates: dict[tuple[int, int, str, int], bytes | None] = {}
_checked: dict[tuple[str, int], bool] = {}  # (subtype, channels) -> our bytes were libsndfile's
_lock = threading.Lock()


def _container(samples: np.ndarray, subtype: str) -> np.ndarray:
    """``(frames, channels)`` of what `audio_write`'s writer hands libsndfile for these samples."""
    bits, container, _ = _WAV_WRITE[subtype]
    if not bits:
        return np.ascontiguousarray(samples.T, dtype=np.float32)
    # audio_write._to_pcm: round with the reading scale, clip, shift into the container; it
    # works in float64 and int64. For 16 and 24 bits float32 gives the same integers:
    # scaling by a power of two is exact (an overflow to inf clips like the huge
    # float64 it stands for), and the bounds are float32 values. Not for NaN
    # (where the casts differ): such samples take audio_write's own steps.
    top = 2.0 ** (bits - 1)
    if bits <= 24 and samples.dtype == np.float32:
        ints = _container_float32(samples, top, container)
        if ints is not None:
            if bits == 24:
                ints <<= 8
            return ints
    scaled = samples.astype(np.float64)
    scaled *= top
    np.rint(scaled, out=scaled)
    np.clip(scaled, -top, top - 1, out=scaled)
    wide = scaled.astype(np.int64)
    if bits == 24:
        wide <<= 8
    return np.ascontiguousarray(wide.T, dtype=container)


def _container_float32(samples: np.ndarray, top: float, container: np.dtype) -> np.ndarray | None:
    """`_container`'s integers for float32 samples of at most 24 bits, in float32;
    None for NaN (whose casts differ).

    Samples within [-2, 2] (any clip of a job normalized to its input) take
    three passes, no clipping pass unless one passes full scale: 0.04 ms for
    48,000 samples where scaling, rounding, clipping and a NaN check took 0.09.
    """
    low, high = float(samples.min(initial=0.0)), float(samples.max(initial=0.0))
    if low >= -2.0 and high <= 2.0:
        scaled = np.multiply(samples, np.float32(top))
        np.rint(scaled, out=scaled)
        if low * top < -top or high * top > top - 1:
            np.minimum(scaled, np.float32(top - 1), out=scaled)
            np.maximum(scaled, np.float32(-top), out=scaled)
    else:
        with np.errstate(over="ignore"):
            scaled = samples * np.float32(top)
        np.rint(scaled, out=scaled)
        np.clip(scaled, np.float32(-top), np.float32(top - 1), out=scaled)
        if np.isnan(scaled.min(initial=0.0)):
            return None
    return scaled.T.astype(container, order="C")


def clipped_samples(samples: np.ndarray) -> int:
    """How many samples lie beyond full scale (|x| > 1), with a quick look at the extremes first."""
    if samples.size == 0 or (samples.min() >= -1.0 and samples.max() <= 1.0):
        return 0
    return int(np.count_nonzero(np.abs(samples) > 1.0))


def _payload(frames: np.ndarray, subtype: str) -> np.ndarray:
    """The data chunk's bytes (as an array) for the container frames."""
    if subtype == "PCM_24":
        return np.ascontiguousarray(frames.view(np.uint8).reshape(-1, 4)[:, 1:])
    if subtype == "DOUBLE":
        return frames.astype("<f8")
    return frames


def _libsndfile_bytes(frames: np.ndarray, rate: int, subtype: str) -> bytes:
    """A WAV of these container frames as `audio_write`'s writer has libsndfile write it."""
    buffer = io.BytesIO()
    with sf.SoundFile(
        buffer, "w", samplerate=rate, channels=frames.shape[1], subtype=subtype, format="WAV"
    ) as sound:
        sf._snd.sf_command(sound._file, SFC_SET_ADD_PEAK_CHUNK, sf._ffi.NULL, 0)
        sound.write(frames)
    return buffer.getvalue()


def _template(rate: int, channels: int, subtype: str, count: int) -> bytes | None:
    """libsndfile's header for a WAV of `count` frames; None if its layout is not header+data."""
    key = (rate, channels, subtype, count)
    found = _templates.get(key, False)
    if found is not False:
        return found
    _, container, width = _WAV_WRITE[subtype]
    whole = _libsndfile_bytes(np.zeros((count, channels), container), rate, subtype)
    data_bytes = count * channels * width
    head = len(whole) - data_bytes - (data_bytes & 1)  # an odd chunk gets a pad byte
    header = None
    if head > 8 and not any(whole[head:]) and whole[head - 8 : head - 4] == b"data":
        header = whole[:head]
    with _lock:
        if len(_templates) >= _TEMPLATES_KEPT:
            _templates.clear()
        _templates[key] = header
    return header


def wav_bytes(samples: np.ndarray, rate: int, subtype: str) -> list | None:
    """The parts of the WAV that `audio_write`'s writer would write for these samples, or None.

    None when the subtype is not one of these or the first check of this kind
    (subtype, channels) found the bytes differ from libsndfile's.
    """
    if subtype not in _WAV_WRITE or samples.shape[1] == 0:
        return None
    channels = samples.shape[0]
    kind = (subtype, channels)
    if _checked.get(kind) is False:
        return None
    frames = _container(samples, subtype)
    header = _template(rate, channels, subtype, samples.shape[1])
    if header is None:
        return None
    parts = [header, _payload(frames, subtype)]
    if parts[1].nbytes & 1:
        parts.append(b"\0")
    if kind not in _checked:
        same = b"".join(bytes(part) for part in parts) == _libsndfile_bytes(frames, rate, subtype)
        with _lock:
            _checked[kind] = same
        if not same:
            return None
    return parts


class OutputFiles:
    """Writes a job's outputs: folders made once, plain WAVs with one write each.

    Parameters
    ----------
    existing
        Outputs (relative names) that existed when the job was planned: they
        keep their permissions, as `audio_write`'s writer keeps an overwritten
        file's. None: look at each target.
    """

    def __init__(self, existing: set[str] | frozenset[str] | None = None) -> None:
        self.existing = existing
        self._folders: set[Path] = set()

    def folder(self, target: Path) -> None:
        """Make the target's folder (once per folder)."""
        parent = target.parent
        if parent not in self._folders:
            parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(parent)

    def put(self, target: Path, parts: list, name: str | None = None) -> None:
        """Write the parts to a temp file beside `target` and rename it over the target.

        Raises
        ------
        OutputError
            If the file cannot be written; no temp file is left.
        """
        label = f"'{os.fspath(target)}'"
        mode = self._mode(target, name)
        try:
            temp, descriptor = create_temp(target.parent, mode=0o666, flags=os.O_WRONLY)
        except OSError as exc:
            raise OutputError(
                f"cannot write {label}: {_reason(exc)}; check that folder "
                f"'{target.parent}' is writable"
            ) from exc
        try:
            try:
                _write_all(descriptor, parts)
            finally:
                os.close(descriptor)
            commit(temp, target, mode)
        except OSError as exc:
            discard(temp)
            if isinstance(exc, IsADirectoryError) or target.is_dir():
                reason = "it is a folder; give a file name"
            else:
                reason = _reason(exc)
            raise OutputError(f"cannot write {label}: {reason}") from exc
        except BaseException:
            discard(temp)
            raise

    def _mode(self, target: Path, name: str | None) -> int | None:
        """The permissions to give the output: an overwritten file's; None: the umask's."""
        if self.existing is not None and name is not None and name not in self.existing:
            return None
        try:
            return stat.S_IMODE(os.stat(target).st_mode)
        except OSError:
            return None


def _write_all(descriptor: int, parts: list) -> None:
    views = [memoryview(part).cast("B") for part in parts]
    while views:
        written = os.writev(descriptor, views)
        if written == 0:
            raise OSError(28, os.strerror(28))  # ENOSPC: a regular file takes what fits
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def _reason(exc: OSError) -> str:
    return " ".join((exc.strerror or str(exc)).split()).rstrip(".")
