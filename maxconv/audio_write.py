"""Writing signals atomically: files, .npy arrays and standard output, block by block.

Blocks arrive as ``(channels, n)`` arrays. Outputs are written beside the
target and renamed over it only when complete (maxconv.atomic), so an
interrupted or failed run never leaves a half-written file that looks
finished; standard output is assembled in a spooled temp file, because
finishing a WAV header needs a seek. Integer PCM is rounded here with the
scale it is read with. Which format and subtype an output gets from its input
is decided in maxconv.audio_format.
Unwritable output surfaces as :class:`~maxconv.errors.OutputError` with a
one-line message.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
import soundfile as sf

from maxconv.atomic import commit, create_temp, discard, new_file_mode
from maxconv.audio_format import checked_subtype, resolve_format
from maxconv.audio_read import PathArg, is_stdio, label_of, reason
from maxconv.errors import OutputError

# Subtypes that store floating-point samples, so values beyond +-1 survive and are not clipped.
_FLOAT_SUBTYPES = frozenset({"FLOAT", "DOUBLE", "VORBIS", "OPUS"})
# Integer PCM written as integers we round ourselves: (bits of precision,
# left shift into the container dtype, container). libsndfile reads PCM as
# int / 2^(bits-1) but writes float as x * (2^(bits-1) - 1), so letting it
# convert would make even an identity filter change every sample by up to
# one LSB; rounding with the reading scale keeps a pass-through bit-exact.
_PCM_LAYOUT = {
    "PCM_S8": (8, 8, np.int16),
    "PCM_U8": (8, 8, np.int16),
    "PCM_16": (16, 0, np.int16),
    "PCM_24": (24, 8, np.int32),
    "PCM_32": (32, 0, np.int32),
}


# Standard output is assembled in memory up to this size, then in an anonymous temp file.
_STDOUT_SPOOL_BYTES = 64 * 2**20


def _to_pcm(block: np.ndarray, subtype: str) -> np.ndarray:
    """Round full-scale floats to the integers an integer PCM subtype stores, clipped."""
    layout = _PCM_LAYOUT.get(subtype)
    if layout is None:
        return block
    bits, shift, container = layout
    top = 2.0 ** (bits - 1)
    ints = np.clip(np.rint(block.astype(np.float64) * top), -top, top - 1).astype(np.int64)
    return (ints << shift).astype(container)


def count_clipped(block: np.ndarray, subtype: str | None) -> int:
    """Count samples that an integer output subtype cannot represent.

    libsndfile clips values beyond full scale when writing fixed-point data, which
    is audible distortion the user should hear about; float subtypes (and ``.npy``)
    keep such values, so nothing is lost there.

    Parameters
    ----------
    block
        Samples in any shape, full scale being 1.0.
    subtype
        Output subtype name (``'PCM_16'``, ``'FLOAT'``, a NumPy dtype name, or ``None``).

    Returns
    -------
    int
        Number of samples with ``|x| > 1`` if ``subtype`` is fixed-point, else 0.
    """
    if subtype is None or subtype in _FLOAT_SUBTYPES or subtype not in sf.available_subtypes():
        return 0
    return int(np.count_nonzero(np.abs(block) > 1.0))


class SignalWriter:
    """Streams ``(channels, n)`` blocks to a file that appears only once complete.

    Use it as a context manager (see :func:`open_writer`): a clean exit renames the
    finished temp file over the target; an exception deletes the temp file, so the
    target is either the complete new signal or untouched. ``frames`` and
    ``clipped`` count what has been written so far.
    """

    def __init__(
        self,
        path: PathArg,
        samplerate: int | None,
        channels: int,
        subtype: str | None = None,
        format: str | None = None,
        one_dimensional: bool = False,
    ) -> None:
        self.label = label_of(path, writing=True)
        self.one_dimensional = one_dimensional and channels == 1
        self.format = resolve_format(path, format, self.label)
        self.subtype = checked_subtype(self.format, subtype, self.label)
        self.channels = channels
        self.frames = 0
        self.clipped = 0
        if self.format != "NPY" and samplerate is None:
            raise OutputError(
                f"cannot write {self.label}: {self.format} needs a sample rate and none is known; "
                "give one with --rate, or write .npy"
            )
        self._target: _AtomicFile | _StdoutSpool = (
            _StdoutSpool() if is_stdio(path) else _AtomicFile(Path(path), self.label)
        )
        self._sound: sf.SoundFile | None = None
        self._io: _ErrorRecordingFile | None = None
        try:
            if self.format == "NPY":
                self._npy_header_bytes = self._write_npy_header()
            else:
                self._io = _ErrorRecordingFile(self._target.file)
                self._sound = sf.SoundFile(
                    self._io,
                    "w",
                    samplerate=samplerate,
                    channels=channels,
                    subtype=self.subtype,
                    format=self.format,
                )
        except BaseException as exc:
            self._target.discard()
            if isinstance(exc, (OSError, sf.LibsndfileError)):
                raise OutputError(f"cannot write {self.label}: {reason(exc)}") from exc
            raise

    def write(self, block: np.ndarray) -> None:
        """Append one ``(channels, n)`` block.

        Parameters
        ----------
        block
            Samples with full scale 1.0; values beyond it are counted in ``clipped``
            for fixed-point subtypes.

        Raises
        ------
        ValueError
            If the block's shape does not match the writer (a programming error).
        OutputError
            If the data cannot be written (disk full, I/O error).
        """
        self.write_frames(self.interleave(block))

    def interleave(self, block: np.ndarray) -> np.ndarray:
        """The ``(n, channels)`` frames that :meth:`write_frames` stores for a block.

        Split from the write so that a pipeline can run this copy (and the
        integer rounding) beside the I/O; ``clipped`` is counted here.
        """
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"expected a ({self.channels}, n) block, got shape {block.shape}")
        if self._sound is None:
            return np.ascontiguousarray(block.T, dtype=self.subtype)
        self.clipped += count_clipped(block, self.subtype)
        return np.ascontiguousarray(_to_pcm(block, self.subtype).T)

    def write_frames(self, frames: np.ndarray) -> None:
        """Append frames made by :meth:`interleave`."""
        try:
            if self._sound is None:
                self._target.file.write(frames.data)
            else:
                self._sound.write(frames)
        except (OSError, sf.LibsndfileError, AssertionError) as exc:
            raise OutputError(f"cannot write {self.label}: {self._cause(exc)}") from exc
        self.frames += frames.shape[0]

    def __enter__(self) -> SignalWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self._commit()
        else:
            self._discard()

    def _write_npy_header(self) -> int:
        # numpy pads the header so the growth axis (the last one in Fortran order) can
        # later reach 21 digits in place; that lets the frame count be filled in at the end.
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, self._npy_header(0))
        self._target.file.write(header.getvalue())
        return len(header.getvalue())

    def _npy_header(self, frames: int) -> dict[str, object]:
        return {
            "descr": np.lib.format.dtype_to_descr(np.dtype(self.subtype)),
            "fortran_order": True,
            "shape": (frames,) if self.one_dimensional else (self.channels, frames),
        }

    def _commit(self) -> None:
        try:
            if self._sound is None:
                header = io.BytesIO()
                np.lib.format.write_array_header_1_0(header, self._npy_header(self.frames))
                if len(header.getvalue()) != self._npy_header_bytes:
                    raise OutputError(f"cannot write {self.label}: .npy header changed size")
                self._target.file.seek(0)
                self._target.file.write(header.getvalue())
            else:
                self._sound.close()
            self._target.commit()
        except BaseException as exc:
            self._target.discard()
            if isinstance(exc, (OSError, sf.LibsndfileError, AssertionError)):
                raise OutputError(f"cannot write {self.label}: {self._cause(exc)}") from exc
            raise

    def _cause(self, exc: BaseException) -> str:
        """The real reason: an OSError swallowed in soundfile's callback, if there was one."""
        recorded = self._io.error if self._io is not None else None
        return reason(recorded or exc)

    def _discard(self) -> None:
        if self._sound is not None:
            with contextlib.suppress(OSError, sf.LibsndfileError):
                self._sound.close()
        self._target.discard()


def open_writer(
    path: PathArg,
    samplerate: int | None,
    channels: int,
    subtype: str | None = None,
    format: str | None = None,
    one_dimensional: bool = False,
) -> SignalWriter:
    """Start writing a signal block by block, committed only on a clean exit.

    Parameters
    ----------
    path
        Target file, or ``"-"`` for standard output. The folder must exist.
    samplerate
        Rate in Hz; may be ``None`` only for ``.npy`` output.
    channels
        Rows of every block that will be written.
    subtype
        libsndfile subtype (``'PCM_16'``, ``'FLOAT'``, ...), defaulting to the
        format's usual one; for ``.npy`` a float dtype name, default ``'float32'``.
    format
        libsndfile format name or ``'NPY'``; by default taken from the suffix, and
        ``'WAV'`` for standard output. Standard output is assembled in a spooled
        temp file and copied out on commit, because finishing a WAV header needs
        a seek that a pipe cannot do.
    one_dimensional
        Write a single-channel ``.npy`` as a 1-D array (the input was 1-D).

    Returns
    -------
    SignalWriter
        Use it in a ``with`` block and call ``write`` for each block.

    Raises
    ------
    OutputError
        If the folder is missing or not writable, or the format/subtype is unknown
        or incompatible.
    """
    return SignalWriter(path, samplerate, channels, subtype, format, one_dimensional)


def write_signal(
    path: PathArg,
    data: np.ndarray,
    samplerate: int | None,
    subtype: str | None = None,
    format: str | None = None,
) -> int:
    """Write a whole ``(channels, frames)`` signal atomically.

    Same rules as :func:`open_writer`; a failure leaves no partial file behind and
    an existing target untouched.

    Parameters
    ----------
    path
        Target file, or ``"-"`` for standard output.
    data
        Samples of shape ``(channels, frames)`` with full scale 1.0.
    samplerate, subtype, format
        As for :func:`open_writer`.

    Returns
    -------
    int
        Number of samples clipped by a fixed-point subtype, so the caller can warn.

    Raises
    ------
    OutputError
        If the signal cannot be written there.
    """
    data = np.asarray(data)
    if data.ndim != 2:
        raise ValueError(f"expected (channels, frames) data, got shape {data.shape}")
    with open_writer(path, samplerate, data.shape[0], subtype, format) as writer:
        writer.write(data)
    return writer.clipped


class _ErrorRecordingFile:
    """A file wrapper that keeps the OSError of a failed write.

    soundfile writes through Python callbacks that run inside cffi, which
    swallows their exceptions (soundfile then fails an assert), so without
    this a full disk would surface as an AssertionError, not its cause.
    """

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def __getattr__(self, name: str) -> object:
        return getattr(self.file, name)


class _AtomicFile:
    """A temp file beside the target that is renamed over it on commit, deleted on discard."""

    def __init__(self, target: Path, label: str) -> None:
        folder = target.parent
        if not folder.is_dir():
            raise OutputError(f"cannot write {label}: folder '{folder}' does not exist; create it")
        if target.is_dir():
            raise OutputError(f"cannot write {label}: it is a folder; give a file name")
        self.target = target
        try:
            self.temp, descriptor = create_temp(folder)
        except OSError as exc:
            raise OutputError(
                f"cannot write {label}: {reason(exc)}; check that folder '{folder}' is writable"
            ) from exc
        self.file: BinaryIO = os.fdopen(descriptor, "w+b")

    def commit(self) -> None:
        self.file.close()
        # The temp file is created 0600; give the result the permissions a plain open would.
        commit(self.temp, self.target, new_file_mode(self.target))

    def discard(self) -> None:
        self.file.close()
        discard(self.temp)


class _StdoutSpool:
    """Output for standard output, kept until complete because libsndfile must seek."""

    def __init__(self) -> None:
        # Closed by commit() or discard(), which SignalWriter's __exit__ always calls.
        self.file: BinaryIO = tempfile.SpooledTemporaryFile(max_size=_STDOUT_SPOOL_BYTES)  # noqa: SIM115

    def commit(self) -> None:
        with self.file:
            self.file.seek(0)
            shutil.copyfileobj(self.file, sys.stdout.buffer)
            sys.stdout.buffer.flush()

    def discard(self) -> None:
        self.file.close()
