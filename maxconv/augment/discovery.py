"""Finding clips and responses: files, folders searched recursively, and lists.

An argument is a signal file, a folder (every audio file and ``.npy`` under it,
in sorted order, hidden files and folders skipped), or a list: a text file of
paths (``.txt``, ``.lst``, ``.list``: one a line, ``#`` comments), a CSV/TSV
(``.csv``, ``.tsv``: a column named ``input``, ``clip``, ``path``, ``file``
or ``filename``, else the first one) or JSON lines (``.jsonl``: one object a
line with such a key, or a plain string). Relative paths in a list are taken
from the list's own folder, as playlists do.

Every entry gets a *name*: the relative path its output keeps under the output
folder. A folder's files keep their path below that folder, a file given by
itself its file name, a list entry its relative path as written (or its file
name when it is absolute or leaves the list's folder); a list's ``output``
column overrides it (so a manifest can be fed back as a list). Lists may also
carry a ``response`` and a ``mix`` column, which is what ``--pairs`` reads.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import InputError

AUDIO_SUFFIXES = frozenset(
    {
        ".wav",
        ".wave",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".aif",
        ".aiff",
        ".aifc",
        ".au",
        ".snd",
        ".caf",
        ".w64",
        ".rf64",
        ".npy",
    }
)
"""Suffixes picked up when a folder is searched (anything libsndfile reads, and .npy)."""

LIST_SUFFIXES = frozenset({".txt", ".lst", ".list", ".csv", ".tsv", ".jsonl"})
"""Suffixes read as lists of paths rather than as signals."""

PATH_COLUMNS = ("input", "clip", "path", "file", "filename", "audio")


@dataclass(frozen=True)
class Entry:
    """One clip or response: where to read it and the name its output keeps.

    ``response`` and ``mix`` are set only by a list that carries them.
    """

    path: str
    name: str
    response: str | None = None
    mix: float | None = None


def find_entries(arguments: Iterable[str], exclude: Path | None = None) -> list[Entry]:
    """Expand files, folders and lists into entries, in argument order.

    Parameters
    ----------
    arguments
        Paths as given on the command line.
    exclude
        A folder never searched (the output folder, which may lie inside an
        input folder: a second run must not take the first one's outputs).

    Returns
    -------
    list of Entry
        Folders contribute their signal files in sorted order.

    Raises
    ------
    InputError
        If an argument is neither a file nor a folder, or a list cannot be parsed.
    """
    excluded = exclude.resolve() if exclude is not None else None
    entries: list[Entry] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            entries += _walk(path, excluded)
        elif path.suffix.lower() in LIST_SUFFIXES and path.is_file():
            entries += read_list(path)
        elif path.exists():
            entries.append(Entry(argument, path.name))
        else:
            raise InputError(f"cannot read '{argument}': no such file or folder; check the path")
    return entries


def check_unique_names(entries: list[Entry]) -> None:
    """Refuse two clips whose outputs would land on the same name."""
    seen: dict[str, str] = {}
    for entry in entries:
        if entry.name in seen:
            raise InputError(
                f"clips '{seen[entry.name]}' and '{entry.path}' would both be written as "
                f"'{entry.name}'; give their common parent folder instead of each file"
            )
        seen[entry.name] = entry.path


def _walk(root: Path, excluded: Path | None) -> list[Entry]:
    found: list[Entry] = []
    for folder, subfolders, files in os.walk(root):
        here = Path(folder)
        subfolders[:] = sorted(
            name
            for name in subfolders
            if not name.startswith(".")
            and (excluded is None or (here / name).resolve() != excluded)
        )
        for name in sorted(files):
            if name.startswith(".") or Path(name).suffix.lower() not in AUDIO_SUFFIXES:
                continue
            file = here / name
            found.append(Entry(str(file), file.relative_to(root).as_posix()))
    return found


def read_list(path: Path) -> list[Entry]:
    """Read a text, CSV/TSV or JSON-lines list of signals (see the module notes)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read list '{path}': {exc}") from exc
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = _jsonl_rows(text, path)
    elif suffix in (".csv", ".tsv"):
        rows = _csv_rows(text, "\t" if suffix == ".tsv" else ",")
    else:
        rows = [
            {"input": line.strip()}
            for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
    base = path.parent
    entries = []
    for number, row in enumerate(rows, start=1):
        clip = row.get("input")
        if not clip:
            raise InputError(
                f"list '{path}', entry {number}: no path; give a column named "
                f"{', '.join(PATH_COLUMNS)}"
            )
        response = row.get("response") or None
        mix = row.get("mix")
        try:
            mix_value = float(mix) if mix not in (None, "") else None
        except ValueError:
            raise InputError(
                f"list '{path}', entry {number}: mix {mix!r} is not a number"
            ) from None
        entries.append(
            Entry(
                _resolve(base, clip),
                row.get("output") or _name(clip),
                _resolve(base, response) if response else None,
                mix_value,
            )
        )
    return entries


def _resolve(base: Path, written: str) -> str:
    written = os.path.expanduser(written)
    return written if os.path.isabs(written) else os.path.normpath(base / written)


def _name(written: str) -> str:
    """The output name of a list entry: its relative path, or its file name."""
    pure = PurePosixPath(written.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts:
        return pure.name
    return pure.as_posix()


def _jsonl_rows(text: str, path: Path) -> list[dict[str, str]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"list '{path}', line {number}: not JSON ({exc.msg})") from None
        if isinstance(value, str):
            rows.append({"input": value})
        elif isinstance(value, dict):
            rows.append(_normalized(value))
        else:
            raise InputError(f"list '{path}', line {number}: give an object or a string")
    return rows


def _csv_rows(text: str, delimiter: str) -> list[dict[str, str]]:
    table = [row for row in csv.reader(text.splitlines(), delimiter=delimiter) if row]
    if not table:
        return []
    header = [cell.strip().lower() for cell in table[0]]
    if any(name in header for name in (*PATH_COLUMNS, "response", "output")):
        return [_normalized(dict(zip(header, row, strict=False))) for row in table[1:]]
    names = ("input", "response", "mix")
    return [dict(zip(names, (cell.strip() for cell in row), strict=False)) for row in table]


def _normalized(row: dict) -> dict[str, str]:
    """Map a row's columns onto input / response / mix / output."""
    lowered = {str(key).strip().lower(): value for key, value in row.items()}
    out: dict[str, str] = {}
    for name in PATH_COLUMNS:
        if lowered.get(name) not in (None, ""):
            out["input"] = str(lowered[name]).strip()
            break
    for key in ("response", "mix", "output"):
        if lowered.get(key) not in (None, ""):
            out[key] = str(lowered[key]).strip()
    return out
