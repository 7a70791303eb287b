"""FIR kernels: loading taps from files and designing standard filters.

A kernel comes from one command-line string, so this module turns that string into
validated float64 taps or a :class:`~maxconv.errors.KernelError` that names the
problem. Sources are NumPy ``.npy`` arrays, text files of coefficients (the format
SoX's ``fir`` effect reads), audio-file impulse responses, and windowed-sinc designs
such as ``lowpass:1000``. The design needs only NumPy, so SciPy stays a test-time
dependency; it reproduces ``scipy.signal.firwin`` with ``scale=True``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from maxconv.audio_read import load_numeric_npy, read_info, read_signal
from maxconv.errors import InputError, KernelError

# Direct convolution of more taps than this is hopeless, and tiles of such
# widths would take gigabytes: refuse cleanly instead.
MAX_TAPS = 1 << 24
DESIGNS = ("lowpass", "highpass", "bandpass", "bandstop")
"""Responses accepted by :func:`design_fir` and in ``name:frequencies`` specs."""

WINDOWS = ("hamming", "hann", "blackman", "kaiser:BETA", "rect")
"""Window specs accepted by :func:`design_fir`; Kaiser needs its beta, e.g. ``kaiser:8.6``."""

_NUMPY_WINDOWS = {
    "hamming": np.hamming,
    "hann": np.hanning,
    "blackman": np.blackman,
    "rect": np.ones,
}

_DESIGN_SPEC = re.compile(r"([A-Za-z]+):(.*)")

_AUDIO_SUFFIXES = frozenset(
    {f".{name.lower()}" for name in sf.available_formats()} | {".aif", ".oga", ".opus"}
)


@dataclass(frozen=True)
class Kernel:
    """Validated FIR taps and where they came from.

    ``taps`` is float64 of shape ``(K,)`` (shared by all channels) or
    ``(channels, K)``. ``kind`` tells coefficient lists and designs apart from
    recorded impulse responses, whose level the caller may want to treat
    differently. ``samplerate`` is the rate the taps are meant for, or ``None``
    for plain coefficients, which carry no rate.
    """

    taps: np.ndarray
    kind: Literal["coefficients", "impulse_response"]
    samplerate: int | None


def load_kernel(
    spec: str,
    samplerate: int | None,
    channels: int,
    taps: int = 255,
    window: str = "hamming",
) -> Kernel:
    """Turn a kernel argument into validated taps for a given input signal.

    The input's rate and channel count are needed here, not later, so that a
    kernel that cannot fit the input is rejected before any signal is processed.

    Parameters
    ----------
    spec
        A path to a ``.npy`` array (1-D, or 2-D with one row per channel), a text
        file of coefficients (whitespace separated, ``#`` starts a comment), or an
        audio impulse response (mono, or one channel per input channel); or a design
        ``lowpass:F``, ``highpass:F``, ``bandpass:F1-F2``, ``bandstop:F1-F2`` in Hz.
        An existing file wins over a design of the same spelling.
    samplerate
        Input rate in Hz; required by designs and checked against impulse
        responses. ``None`` when the input has no rate (``.npy``).
    channels
        Input channel count, which 2-D kernels must match.
    taps
        Length of designed filters; ignored for files.
    window
        Window of designed filters, one of :data:`WINDOWS`; ignored for files.

    Returns
    -------
    Kernel
        float64 taps without NaN or Inf, one row or one per channel.

    Raises
    ------
    KernelError
        If the file is missing or unreadable, the data is empty, non-numeric,
        non-finite or of the wrong shape, or the design is unknown or invalid.
    """
    path = Path(spec)
    design = _DESIGN_SPEC.fullmatch(spec)
    if design and not path.exists():
        response, frequencies = design[1].lower(), design[2]
        if response not in DESIGNS:
            raise KernelError(
                f"unknown kernel design '{response}' in '{spec}'; "
                f"use one of {', '.join(DESIGNS)}, or give a file path"
            )
        if samplerate is None:
            raise KernelError(
                f"kernel design '{spec}' needs a sample rate and the input has none; "
                "give one with --rate"
            )
        _check_tap_count(taps, f"kernel design '{spec}'")
        coefficients = design_fir(
            response, _parse_cutoff(spec, response, frequencies), samplerate, taps, window
        )
        return Kernel(coefficients, "coefficients", samplerate)
    label = f"kernel '{spec}'"
    if not path.is_file():
        raise KernelError(
            f"{label} not found; give a .npy, text or audio file, or a design such as lowpass:1000"
        )
    suffix = path.suffix.lower()
    if suffix in _AUDIO_SUFFIXES:
        return _load_impulse_response(path, label, samplerate, channels)
    raw = _load_npy(path, label) if suffix == ".npy" else _load_text(path, label)
    return Kernel(_validated(raw, label, channels, "rows"), "coefficients", None)


def design_fir(
    response: str,
    cutoff: float | Sequence[float],
    samplerate: float,
    taps: int = 255,
    window: str = "hamming",
) -> np.ndarray:
    """Design a linear-phase windowed-sinc FIR filter.

    The ideal response is a sum of sinc bands, truncated to ``taps`` and tapered
    by the window to trade transition width against stopband leakage. The taps are
    then scaled to unity gain at the centre of the first passband (DC for lowpass
    and bandstop, Nyquist for highpass, the band centre for bandpass) so that a
    filtered signal keeps its level there. This matches ``scipy.signal.firwin``
    with ``scale=True`` and a symmetric window.

    Parameters
    ----------
    response
        One of :data:`DESIGNS`.
    cutoff
        Edge in Hz for lowpass/highpass; ``(low, high)`` in Hz for bandpass/bandstop.
        Every edge must lie strictly between 0 and ``samplerate / 2``.
    samplerate
        Rate in Hz the filter will run at.
    taps
        Filter length. Highpass and bandstop need an odd count, since an
        even-length symmetric filter always has zero gain at Nyquist.
    window
        One of :data:`WINDOWS`.

    Returns
    -------
    np.ndarray
        float64 taps of shape ``(taps,)``.

    Raises
    ------
    KernelError
        If the response, window, tap count or cutoff is invalid.
    """
    if response not in DESIGNS:
        raise KernelError(f"unknown kernel design '{response}'; use one of {', '.join(DESIGNS)}")
    if taps < 1:
        raise KernelError(f"a {response} design needs at least 1 tap, got {taps}")
    pass_zero = response in ("lowpass", "bandstop")
    pass_nyquist = response in ("highpass", "bandstop")
    if pass_nyquist and taps % 2 == 0:
        raise KernelError(
            f"a {response} design needs an odd number of taps (got {taps}), because an "
            f"even-length filter has zero gain at Nyquist; use {taps + 1}"
        )
    edges = np.atleast_1d(np.asarray(cutoff, dtype=np.float64))
    if edges.size != (2 if response in ("bandpass", "bandstop") else 1):
        raise KernelError(f"a {response} design needs {_cutoff_example(response)}")
    nyquist = samplerate / 2
    for edge in edges:
        if not 0 < edge < nyquist:
            raise KernelError(
                f"cutoff {edge:g} Hz must lie between 0 and {nyquist:g} Hz "
                f"(half the {samplerate:g} Hz sample rate)"
            )
    if edges.size == 2 and edges[0] >= edges[1]:
        raise KernelError(
            f"band {edges[0]:g}-{edges[1]:g} Hz must have its lower edge first and be non-empty"
        )
    bands = np.concatenate(
        ([0.0] if pass_zero else [], edges / nyquist, [1.0] if pass_nyquist else [])
    ).reshape(-1, 2)
    offsets = np.arange(taps) - (taps - 1) / 2
    coefficients = np.zeros(taps)
    for left, right in bands:
        coefficients += right * np.sinc(right * offsets) - left * np.sinc(left * offsets)
    coefficients *= _window(window, taps)
    left, right = bands[0]
    centre = 0.0 if left == 0 else 1.0 if right == 1 else (left + right) / 2
    return coefficients / np.sum(coefficients * np.cos(np.pi * offsets * centre))


def _window(spec: str, taps: int) -> np.ndarray:
    name, _, parameter = spec.lower().partition(":")
    if name == "kaiser":
        try:
            beta = float(parameter)
        except ValueError:
            raise KernelError(
                f"window '{spec}' needs a beta, e.g. kaiser:8.6 (larger means less leakage)"
            ) from None
        if not 0 <= beta < float("inf"):
            raise KernelError(f"window '{spec}' needs a finite beta >= 0, e.g. kaiser:8.6")
        return np.kaiser(taps, beta)
    if name not in _NUMPY_WINDOWS or parameter:
        raise KernelError(f"unknown window '{spec}'; use one of {', '.join(WINDOWS)}")
    return _NUMPY_WINDOWS[name](taps)


def _cutoff_example(response: str) -> str:
    if response in ("bandpass", "bandstop"):
        return f"two frequencies in Hz, e.g. {response}:300-3400"
    return f"one frequency in Hz, e.g. {response}:1000"


def _parse_cutoff(spec: str, response: str, text: str) -> float | tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split("-"))
    except ValueError:
        raise KernelError(f"kernel design '{spec}' needs {_cutoff_example(response)}") from None
    return values[0] if len(values) == 1 else values


def _load_npy(path: Path, label: str) -> np.ndarray:
    # Memory-mapped first, so a header claiming 10^12 taps is refused, not allocated.
    mapped = load_numeric_npy(path, label, KernelError, mmap=True)
    _check_tap_count(mapped.shape[-1] if mapped.ndim else 1, label)
    return np.array(mapped, dtype=np.float64)


def _check_tap_count(taps: int, label: str) -> None:
    if taps > MAX_TAPS:
        raise KernelError(
            f"{label} has {taps} taps; maxconv takes at most {MAX_TAPS} (2^24), "
            "a 6-minute impulse response at 48 kHz"
        )


def _load_text(path: Path, label: str) -> np.ndarray:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise KernelError(
            f"{label} is not a text file of coefficients; use .npy, text, "
            "or an audio file with a known suffix such as .wav"
        ) from None
    except OSError as exc:
        raise KernelError(f"cannot read {label}: {exc.strerror}; check the path") from exc
    values = []
    for number, line in enumerate(text.splitlines(), start=1):
        for token in line.split("#", 1)[0].split():
            try:
                values.append(float(token))
            except ValueError:
                raise KernelError(
                    f"{label} line {number}: '{token}' is not a number; write coefficients "
                    "separated by spaces or newlines, with # comments"
                ) from None
    return np.array(values, dtype=np.float64)


def _load_impulse_response(path: Path, label: str, samplerate: int | None, channels: int) -> Kernel:
    try:
        _check_tap_count(read_info(path).frames, label)
        response, info = read_signal(path, dtype=np.float64)
    except InputError as exc:
        raise KernelError(f"bad {label}: {exc}") from exc
    if samplerate is not None and info.samplerate != samplerate:
        raise KernelError(
            f"{label} is sampled at {info.samplerate} Hz but the input at {samplerate} Hz; "
            f"resample the impulse response to {samplerate} Hz"
        )
    return Kernel(
        _validated(response, label, channels, "channels"), "impulse_response", info.samplerate
    )


def _validated(taps: np.ndarray, label: str, channels: int, rows: str) -> np.ndarray:
    _check_tap_count(taps.shape[-1] if taps.ndim else 1, label)
    if taps.ndim == 2 and taps.shape[0] == 1:
        taps = taps[0]
    if taps.ndim not in (1, 2):
        raise KernelError(
            f"{label} has {taps.ndim} dimensions; use 1-D taps or 2-D with one row per channel"
        )
    if taps.size == 0:
        raise KernelError(f"{label} is empty; it needs at least one tap")
    if taps.ndim == 2 and taps.shape[0] != channels:
        raise KernelError(
            f"{label} has {taps.shape[0]} {rows} but the input has {channels} channels; "
            f"give one per input channel or a single one"
        )
    bad = np.argwhere(~np.isfinite(taps))
    if bad.size:
        where = f"row {bad[0][0]}, index {bad[0][1]}" if taps.ndim == 2 else f"index {bad[0][0]}"
        raise KernelError(f"{label} contains NaN or Inf at {where}")
    return np.ascontiguousarray(taps, dtype=np.float64)
