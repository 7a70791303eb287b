"""Which format and subtype an output gets: from the name, the options and the input.

The file path (`maxconv filter`) and the dataset job (`maxconv augment`)
ask the same questions of an output: its format from `--format` or the
suffix, its subtype from `--subtype` or the input's (where the format holds
it), and whether a WAV must become RF64 to pass 4 GiB. Unknown formats and
subtypes that do not fit surface as :class:`~maxconv.errors.OutputError`.
"""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

from maxconv.audio_read import PathArg, SignalInfo, is_stdio, label_of
from maxconv.errors import OutputError

# File suffixes whose format name differs from the suffix itself.
_SUFFIX_FORMATS = {"AIF": "AIFF", "OGA": "OGG"}
_NPY_DTYPES = ("float16", "float32", "float64")
# The float subtype that holds a float .npy input's samples.
_FLOAT_SUBTYPE_FOR = {"float16": "FLOAT", "float32": "FLOAT", "float64": "DOUBLE"}
# Bytes per sample of the subtypes a WAV can hold; others count as 4.
_SAMPLE_BYTES = {"PCM_U8": 1, "PCM_S8": 1, "PCM_16": 2, "PCM_24": 3, "DOUBLE": 8}
# A WAV's 32-bit sizes cap its data chunk just under 4 GiB.
_WAV_LIMIT = 0xFFFFFFFF - (1 << 20)


def output_format(path: PathArg, format: str | None = None) -> str:
    """The format a writer for `path` will use: `format`, else the suffix ('-': WAV).

    Raises
    ------
    OutputError
        If the format is unknown to libsndfile and is not ``NPY``.
    """
    return resolve_format(path, format, label_of(path, writing=True))


def resolve_format(path: PathArg, format: str | None, label: str) -> str:
    """output_format, naming the output `label` in its error."""
    if format is not None:
        name = format.upper()
    elif is_stdio(path):
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


def checked_subtype(format: str, subtype: str | None, label: str) -> str:
    """`subtype` (or the format's default) if `format` can hold it, else an OutputError."""
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


def output_subtype(info: SignalInfo, out_format: str, subtype: str | None = None) -> str | None:
    """An output's subtype: `subtype` if given, else the input's where `out_format` holds it.

    None lets the writer take the format's default.
    """
    if subtype is not None:
        return subtype
    if out_format == "NPY":
        return info.subtype if info.format == "NPY" else "float32"
    kept = _FLOAT_SUBTYPE_FOR.get(info.subtype or "", info.subtype)
    if kept and sf.check_format(out_format, kept):
        return kept
    return None


def large_wav_as_rf64(out_format: str, subtype: str | None, samples: int) -> str:
    """RF64 (the 64-bit WAV, as ffmpeg's `-rf64 auto` writes) when a WAV would overflow 4 GiB."""
    if out_format == "WAV" and samples * _SAMPLE_BYTES.get(subtype or "", 4) > _WAV_LIMIT:
        return "RF64"
    return out_format
