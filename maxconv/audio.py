"""Reading and writing signals; nothing here knows about convolution.

Every signal crosses this module's boundary as an array of shape
``(channels, frames)`` because that is the layout the convolution works on (one
contiguous row per channel); soundfile's own ``(frames, channels)`` layout stays
inside this module.

Sources are anything libsndfile reads (WAV, FLAC, OGG, AIFF, ...), NumPy ``.npy``
arrays, and ``"-"`` for standard input. Outputs are written beside the target and
renamed over it only when complete, so an interrupted or failed run never leaves
a half-written file that looks finished. Ordinary bad input surfaces as
:class:`~maxconv.errors.InputError` and unwritable output as
:class:`~maxconv.errors.OutputError`, each with a one-line message.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import soundfile as sf

from maxconv.errors import InputError, MaxconvError, OutputError

STDIO = "-"
"""Path that stands for standard input when reading and standard output when writing."""

PathArg = str | os.PathLike[str]

# Bytes per sample of the raw subtypes that a headerless stream may carry. Limiting raw
# input to these lets a partial trailing frame be reported instead of silently dropped.
_RAW_SAMPLE_BYTES = {
    "PCM_S8": 1,
    "PCM_U8": 1,
    "ULAW": 1,
    "ALAW": 1,
    "PCM_16": 2,
    "PCM_24": 3,
    "PCM_32": 4,
    "FLOAT": 4,
    "DOUBLE": 8,
}

# Subtypes that store floating-point samples, so values beyond +-1 survive and are not clipped.
# Frames per read when a whole signal is loaded (see read_signal).
READ_BLOCK_FRAMES = 1 << 20
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

# File suffixes whose format name differs from the suffix itself.
_SUFFIX_FORMATS = {"AIF": "AIFF", "OGA": "OGG"}

# libsndfile logs "data : <header length> (should be <bytes present>)" when a WAV (or the
# SSND chunk of an AIFF) is shorter than its header says; it then reads what is there.
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)

# Header lengths that streaming writers use when the final length is unknown; not truncation.
_UNKNOWN_LENGTHS = frozenset({0, 0xFFFFFFFF})

# Standard output is assembled in memory up to this size, then in an anonymous temp file.
_STDOUT_SPOOL_BYTES = 64 * 2**20

_NPY_DTYPES = ("float16", "float32", "float64")

_stdin_cache: tuple[object, bytes] | None = None

# Temp outputs neither committed nor discarded yet. A signal can land after a temp file
# exists but before the `with` block that would discard it has begun; the CLI calls
# discard_uncommitted() on its way out so that such a file is not left behind either.
_UNCOMMITTED: set[Path] = set()


@dataclass(frozen=True)
class SignalInfo:
    """What is known about a signal before (or after) reading its samples.

    ``samplerate`` is ``None`` for ``.npy`` arrays, which carry no rate. For ``.npy``
    the ``subtype`` is the stored NumPy dtype name (e.g. ``'float64'``) and ``format``
    is ``'NPY'``; otherwise both are libsndfile's names (``'PCM_16'``, ``'WAV'``).
    """

    samplerate: int | None
    channels: int
    frames: int
    subtype: str | None
    format: str | None
    # A 1-D .npy: its output is written 1-D too, as numpy users expect.
    one_dimensional: bool = False


@dataclass(frozen=True)
class RawFormat:
    """How to interpret headerless samples, which carry no description of their own.

    Raises
    ------
    InputError
        If a field cannot describe a raw stream, so the CLI can report it like any
        other bad input.
    """

    samplerate: int
    channels: int
    subtype: str = "FLOAT"

    def __post_init__(self) -> None:
        if self.samplerate < 1 or self.channels < 1:
            raise InputError(
                f"raw input needs a positive sample rate and channel count, "
                f"got {self.samplerate} Hz and {self.channels} channels"
            )
        if self.subtype not in _RAW_SAMPLE_BYTES:
            raise InputError(
                f"raw input subtype '{self.subtype}' is not supported; "
                f"use one of {', '.join(_RAW_SAMPLE_BYTES)}"
            )


def read_info(path: PathArg, raw: RawFormat | None = None) -> SignalInfo:
    """Describe a signal without loading its samples.

    Callers need the channel count and rate to prepare kernels and writers before
    streaming; this reads only headers (``.npy`` is memory-mapped). Standard input is
    read once and kept, so a later :func:`read_signal` or :func:`iter_blocks` on
    ``"-"`` still sees the same data.

    Parameters
    ----------
    path
        A file path, or ``"-"`` for standard input.
    raw
        Format of headerless samples; ``None`` means the data describes itself.

    Returns
    -------
    SignalInfo
        Rate, channels, frames, subtype and format of the signal.

    Raises
    ------
    InputError
        If the file is missing, unreadable, not a signal, or truncated.
    """
    if _is_npy(path, raw):
        return _npy_info(_load_npy(path, mmap=True))
    with _open_sound(path, raw) as sound:
        return _sound_info(sound)


def read_signal(
    path: PathArg, dtype: npt.DTypeLike = np.float32, raw: RawFormat | None = None
) -> tuple[np.ndarray, SignalInfo]:
    """Read a whole signal into memory as ``(channels, frames)``.

    Integer PCM is scaled to [-1, 1) by libsndfile; ``.npy`` values are used as
    stored (only converted to ``dtype``), since an array has no implied full scale.
    A 1-D ``.npy`` is one channel; a 2-D one is channels x samples.

    Parameters
    ----------
    path
        A file path, or ``"-"`` for standard input (a WAV/FLAC/... stream, or raw
        samples when ``raw`` is given).
    dtype
        Sample type of the returned array; ``float32`` or ``float64``.
    raw
        Format of headerless samples; ``None`` means the data describes itself.

    Returns
    -------
    data : np.ndarray
        C-contiguous samples of shape ``(channels, frames)``.
    info : SignalInfo
        Description of the source, so output can match its rate and subtype.

    Raises
    ------
    InputError
        If the file is missing, unreadable, not a signal, truncated, or an array
        of an unusable shape or dtype.
    """
    if _is_npy(path, raw):
        array = _load_npy(path, mmap=False)
        return np.ascontiguousarray(_as_rows(array), dtype=dtype), _npy_info(array)
    with _open_sound(path, raw) as sound:
        info = _sound_info(sound)
    # Block by block, not sound.read(): a damaged header can claim terabytes,
    # and memory should follow the data that is really there.
    blocks = list(iter_blocks(path, READ_BLOCK_FRAMES, dtype, raw))
    if not blocks:
        return np.zeros((info.channels, 0), dtype=dtype), info
    return np.concatenate(blocks, axis=1), info


def iter_blocks(
    path: PathArg,
    blocksize: int,
    dtype: npt.DTypeLike = np.float32,
    raw: RawFormat | None = None,
) -> Iterator[np.ndarray]:
    """Yield a signal as consecutive ``(channels, n)`` blocks, ``n <= blocksize``.

    Long recordings need not fit in memory: files are read ``blocksize`` frames at a
    time with soundfile and ``.npy`` through a memory map, so memory stays
    proportional to ``blocksize``. Standard input is the exception: a pipe cannot seek, which
    libsndfile needs, so it is held in memory once (see :func:`read_info`).

    Parameters
    ----------
    path
        A file path, or ``"-"`` for standard input.
    blocksize
        Most frames per block; every block but the last has exactly this many.
    dtype
        Sample type of the yielded arrays.
    raw
        Format of headerless samples; ``None`` means the data describes itself.

    Yields
    ------
    np.ndarray
        A fresh C-contiguous block the caller may keep or modify.

    Raises
    ------
    ValueError
        If ``blocksize`` is not positive (a programming error, not bad input).
    InputError
        If the source is missing, unreadable, not a signal, or turns out truncated
        (raised when the shortfall is reached, after the blocks before it).
    """
    if blocksize < 1:
        raise ValueError(f"blocksize must be positive, got {blocksize}")
    if _is_npy(path, raw):
        rows = _as_rows(_load_npy(path, mmap=True))
        for start in range(0, rows.shape[1], blocksize):
            yield np.array(rows[:, start : start + blocksize], dtype=dtype, order="C")
        return
    label = _label(path)
    with _open_sound(path, raw) as sound:
        expected = sound.frames
        seen = 0
        while True:
            # SoundFile.read, not SoundFile.blocks: blocks() ignores short reads and would
            # yield stale buffer contents for a file that ends early.
            try:
                block = sound.read(blocksize, dtype=np.dtype(dtype).name, always_2d=True)
            except sf.LibsndfileError as exc:
                raise InputError(
                    f"cannot read {label} after frame {seen}: {_reason(exc)}; "
                    "the file may be damaged or truncated"
                ) from exc
            if block.shape[0] == 0:
                break
            seen += block.shape[0]
            yield np.ascontiguousarray(block.T)
    _check_frame_count(label, seen, expected)


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
        self.label = _label(path, writing=True)
        self.one_dimensional = one_dimensional and channels == 1
        self.format = _output_format(path, format, self.label)
        self.subtype = _output_subtype(self.format, subtype, self.label)
        self.channels = channels
        self.frames = 0
        self.clipped = 0
        if self.format != "NPY" and samplerate is None:
            raise OutputError(
                f"cannot write {self.label}: {self.format} needs a sample rate and none is known; "
                "give one with --rate, or write .npy"
            )
        self._target: _AtomicFile | _StdoutSpool = (
            _StdoutSpool() if _is_stdio(path) else _AtomicFile(Path(path), self.label)
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
                raise OutputError(f"cannot write {self.label}: {_reason(exc)}") from exc
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
        return _reason(recorded or exc)

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
        self.temp, descriptor = _create_temp(folder, label)
        self.file: BinaryIO = os.fdopen(descriptor, "w+b")

    def commit(self) -> None:
        self.file.close()
        # The temp file is created 0600; give the result the permissions a plain open would.
        os.chmod(self.temp, _new_file_mode(self.target))
        os.replace(self.temp, self.target)
        _UNCOMMITTED.discard(self.temp)

    def discard(self) -> None:
        self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()
        _UNCOMMITTED.discard(self.temp)


def _create_temp(folder: Path, label: str) -> tuple[Path, int]:
    """Create a private temp file in ``folder``, recorded in _UNCOMMITTED before it exists.

    Recording first (rather than after tempfile.mkstemp returns) leaves no moment in
    which an interruption could orphan the file.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        temp = folder / f".maxconv-{secrets.token_hex(8)}.part"
        _UNCOMMITTED.add(temp)
        try:
            return temp, os.open(temp, flags, 0o600)
        except FileExistsError:
            _UNCOMMITTED.discard(temp)
        except OSError as exc:
            _UNCOMMITTED.discard(temp)
            raise OutputError(
                f"cannot write {label}: {_reason(exc)}; check that folder '{folder}' is writable"
            ) from exc


def discard_uncommitted() -> None:
    """Delete every temp output not yet committed; for a process cut short by a signal."""
    for temp in list(_UNCOMMITTED):
        with contextlib.suppress(OSError):
            temp.unlink()
    _UNCOMMITTED.clear()


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


def _new_file_mode(target: Path) -> int:
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_process_umask()


def _process_umask() -> int:
    """The process's umask, from /proc where Linux shows it: os.umask can only
    read it by setting it, and a folder another thread made in that moment
    would get mode 0777. Read per output, so a server's job has its client's."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _is_stdio(path: PathArg) -> bool:
    return isinstance(path, str) and path == STDIO


def _is_npy(path: PathArg, raw: RawFormat | None) -> bool:
    return raw is None and not _is_stdio(path) and Path(path).suffix.lower() == ".npy"


def _label(path: PathArg, writing: bool = False) -> str:
    if _is_stdio(path):
        return "stdout" if writing else "stdin"
    return f"'{os.fspath(path)}'"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, sf.LibsndfileError):
        text = exc.error_string
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc)
    return " ".join(text.split()).rstrip(".")


def _stdin_bytes() -> bytes:
    # A pipe can be read only once, yet callers ask for the header and then the samples.
    global _stdin_cache
    stream = sys.stdin.buffer
    if _stdin_cache is None or _stdin_cache[0] is not stream:
        _stdin_cache = (stream, stream.read())
    return _stdin_cache[1]


def _check_readable(path: PathArg, label: str) -> int:
    try:
        with open(path, "rb") as handle:
            return os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise InputError(f"cannot read {label}: {_reason(exc)}; check the path") from exc


def _open_sound(path: PathArg, raw: RawFormat | None) -> sf.SoundFile:
    label = _label(path)
    source: io.BytesIO | str
    if _is_stdio(path):
        data = _stdin_bytes()
        if not data:
            raise InputError("cannot read stdin: it is empty; pipe a WAV/FLAC stream or raw data")
        source, size = io.BytesIO(data), len(data)
    else:
        size = _check_readable(path, label)
        source = os.fspath(path)
    if raw is None:
        options: dict[str, object] = {}
    else:
        width = _RAW_SAMPLE_BYTES[raw.subtype] * raw.channels
        if size % width:
            raise InputError(
                f"cannot read {label}: {size} bytes is not a whole number of "
                f"{raw.channels}-channel {raw.subtype} frames; "
                "check the raw format or whether the data is truncated"
            )
        options = {
            "samplerate": raw.samplerate,
            "channels": raw.channels,
            "subtype": raw.subtype,
            "format": "RAW",
        }
    try:
        sound = sf.SoundFile(source, **options)
    except (sf.LibsndfileError, OSError) as exc:
        raise InputError(
            f"cannot read {label}: {_reason(exc)}; give a WAV, FLAC, OGG, AIFF or .npy signal"
        ) from exc
    short = _SHORT_CHUNK.search(sound.extra_info)
    if short and int(short[1]) > int(short[2]) and int(short[1]) not in _UNKNOWN_LENGTHS:
        sound.close()
        raise InputError(
            f"cannot read {label}: it is truncated (header promises {short[1]} data bytes, "
            f"{short[2]} present); re-create or re-download it"
        )
    return sound


def _check_frame_count(label: str, got: int, expected: int) -> None:
    if got < expected:
        raise InputError(
            f"cannot read {label}: it is truncated ({got} of {expected} frames readable); "
            "re-create or re-download it"
        )


def _sound_info(sound: sf.SoundFile) -> SignalInfo:
    return SignalInfo(
        samplerate=sound.samplerate,
        channels=sound.channels,
        frames=sound.frames,
        subtype=sound.subtype,
        format=sound.format,
    )


def _load_npy(path: PathArg, mmap: bool) -> np.ndarray:
    label = _label(path)
    _check_readable(path, label)
    return _check_npy_shape(load_numeric_npy(path, label, InputError, mmap), label)


def load_numeric_npy(
    path: PathArg, label: str, error: type[MaxconvError], mmap: bool = False
) -> np.ndarray:
    """np.load for signals and kernels alike: real numbers only, no pickles, no archives.

    `error` is the exception to raise (InputError or KernelError), so each
    caller's exit code tells which file was at fault.
    """
    try:
        loaded = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as exc:  # a damaged header can raise TokenError, SyntaxError, MemoryError...
        raise error(
            f"cannot read {label}: {_reason(exc)}; save a numeric array with numpy.save"
        ) from exc
    if not isinstance(loaded, np.ndarray):
        loaded.close()
        raise error(f"cannot read {label}: it is an .npz archive; save one array with numpy.save")
    if loaded.dtype.kind not in "iuf":
        raise error(
            f"cannot read {label}: it holds {loaded.dtype} values; save real numbers (int or float)"
        )
    return loaded


def _check_npy_shape(loaded: np.ndarray, label: str) -> np.ndarray:
    if loaded.ndim not in (1, 2):
        raise InputError(
            f"cannot read {label}: it has {loaded.ndim} dimensions; "
            "save 1-D (mono) or 2-D (channels x samples)"
        )
    if loaded.size == 0:
        raise InputError(f"cannot read {label}: it is empty; it needs at least one sample")
    return loaded


def _as_rows(array: np.ndarray) -> np.ndarray:
    return array[np.newaxis, :] if array.ndim == 1 else array


def _npy_info(array: np.ndarray) -> SignalInfo:
    rows = _as_rows(array)
    return SignalInfo(
        samplerate=None,
        channels=rows.shape[0],
        frames=rows.shape[1],
        subtype=array.dtype.name,
        format="NPY",
        one_dimensional=array.ndim == 1,
    )


def output_format(path: PathArg, format: str | None = None) -> str:
    """The format a writer for `path` will use: `format`, else the suffix ('-': WAV).

    Raises
    ------
    OutputError
        If the format is unknown to libsndfile and is not ``NPY``.
    """
    return _output_format(path, format, _label(path, writing=True))


def _output_format(path: PathArg, format: str | None, label: str) -> str:
    if format is not None:
        name = format.upper()
    elif _is_stdio(path):
        name = "WAV"
    else:
        suffix = Path(path).suffix.lstrip(".").upper()
        name = _SUFFIX_FORMATS.get(suffix, suffix)
    if name != "NPY" and name not in sf.available_formats():
        raise OutputError(
            f"cannot write {label}: unknown format '{format or name}'; use .npy or one of "
            f"{', '.join(sorted(sf.available_formats()))}"
        )
    return name


def _output_subtype(format: str, subtype: str | None, label: str) -> str:
    if format == "NPY":
        name = subtype or "float32"
        if name not in _NPY_DTYPES:
            raise OutputError(
                f"cannot write {label}: .npy output stores {', '.join(_NPY_DTYPES)}, not '{name}'"
            )
        return name
    name = (subtype or sf.default_subtype(format)).upper()
    if not sf.check_format(format, name):
        raise OutputError(
            f"cannot write {label}: subtype '{name}' does not fit {format}; use one of "
            f"{', '.join(sf.available_subtypes(format))}"
        )
    return name
