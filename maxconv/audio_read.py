"""Reading signals: files, .npy arrays and standard input, whole or block by block.

Every signal leaves this module as an array of shape ``(channels, frames)``
because that is the layout the convolution works on (one contiguous row per
channel); soundfile's own ``(frames, channels)`` layout stays inside. Sources
are anything libsndfile reads (WAV, FLAC, OGG, AIFF, ...), NumPy ``.npy``
arrays, and ``"-"`` for standard input. Ordinary bad input surfaces as
:class:`~maxconv.errors.InputError` with a one-line message. Nothing here
knows about convolution; writing is audio_write's.
"""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf

from maxconv.errors import InputError, MaxconvError

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


# Frames per read when a whole signal is loaded (see read_signal).
READ_BLOCK_FRAMES = 1 << 20

# libsndfile logs "data : <header length> (should be <bytes present>)" when a WAV (or the
# SSND chunk of an AIFF) is shorter than its header says; it then reads what is there.
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)

# Header lengths that streaming writers use when the final length is unknown; not truncation.
_UNKNOWN_LENGTHS = frozenset({0, 0xFFFFFFFF})

_stdin_cache: tuple[object, bytes] | None = None


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
    label = label_of(path)
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
                    f"cannot read {label} after frame {seen}: {reason(exc)}; "
                    "the file may be damaged or truncated"
                ) from exc
            if block.shape[0] == 0:
                break
            seen += block.shape[0]
            yield np.ascontiguousarray(block.T)
    _check_frame_count(label, seen, expected)


def is_stdio(path: PathArg) -> bool:
    return isinstance(path, str) and path == STDIO


def _is_npy(path: PathArg, raw: RawFormat | None) -> bool:
    return raw is None and not is_stdio(path) and Path(path).suffix.lower() == ".npy"


def label_of(path: PathArg, writing: bool = False) -> str:
    if is_stdio(path):
        return "stdout" if writing else "stdin"
    return f"'{os.fspath(path)}'"


def reason(exc: BaseException) -> str:
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
        raise InputError(f"cannot read {label}: {reason(exc)}; check the path") from exc


def _open_sound(path: PathArg, raw: RawFormat | None) -> sf.SoundFile:
    label = label_of(path)
    source: io.BytesIO | str
    if is_stdio(path):
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
            f"cannot read {label}: {reason(exc)}; give a WAV, FLAC, OGG, AIFF or .npy signal"
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
    label = label_of(path)
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
            f"cannot read {label}: {reason(exc)}; save a numeric array with numpy.save"
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
