"""The run's record: ``OUTDIR/manifest.jsonl``, one JSON object per output.

Lines are appended in input order, each only after its output file has been
renamed into place, and flushed group by group (window by window on a CPU,
see JobPlan.windows): whatever a crash leaves, a
listed output without an ``error`` field is a complete file. A crash can cut
the last line short; ``--resume`` drops such a line and goes on after the
last complete one. The same output may be listed more than once (a failure,
then a resumed retry): the last line counts.

A record holds ``input`` and ``response`` (absolute paths), ``output``
(relative to the manifest's folder), ``mix``, ``seed``, ``align_shift``
(samples the response's direct sound was moved forward), ``gain`` (the
normalization's factor), ``layout``, ``rate``, ``response_rate``, ``frames``,
``channels`` and ``clipped``; a failed clip has ``error`` instead of the
figures. Nothing in it depends on timing, so two runs write the same bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from ..errors import OutputError

MANIFEST_NAME = "manifest.jsonl"


def read_manifest(path: Path) -> tuple[dict[str, dict], int]:
    """The last record of each output, and the byte length of the complete lines."""
    records: dict[str, dict] = {}
    good = 0
    with open(path, "rb") as handle:
        data = handle.read()
    position = 0
    for line in data.splitlines(keepends=True):
        position += len(line)
        if not line.endswith(b"\n"):
            break  # cut short by a crash
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(record, dict) and isinstance(record.get("output"), str):
            records[record["output"]] = record
        good = position
    return records, good


class InputOrder:
    """Records held until every clip before them has its record, then given back in input order.

    Groups within a window run in response order (see JobPlan.windows); the
    manifest lists clips in input order all the same. Task indices run from 0.
    """

    def __init__(self) -> None:
        self._held: dict[int, dict] = {}
        self._next = 0

    def add(self, indices: Iterable[int], records: Iterable[dict]) -> list[dict]:
        """Hold a group's records (by task index); those now in order, in order."""
        # A cancelled group has no records (the job is on its way out).
        self._held.update(zip(indices, records, strict=False))
        ready = []
        while self._next in self._held:
            ready.append(self._held.pop(self._next))
            self._next += 1
        return ready

    def release(self) -> list[dict]:
        """The records still held, in input order (a run that stopped early lists what is done)."""
        held, self._held = self._held, {}
        return [held[index] for index in sorted(held)]


class Manifest:
    """Appends records to ``manifest.jsonl`` in an output folder.

    Parameters
    ----------
    folder
        The output folder (it must exist).
    resume
        Keep the records there and append; ``done`` lists the outputs that
        need no work (listed without error, and on disk).
    force
        Start a new manifest over an old one.

    Raises
    ------
    OutputError
        If a manifest exists and neither `resume` nor `force` is given, or it
        cannot be written.
    """

    def __init__(self, folder: Path, resume: bool = False, force: bool = False) -> None:
        self.path = folder / MANIFEST_NAME
        self.records: dict[str, dict] = {}
        exists = self.path.exists()
        if exists and not (resume or force):
            raise OutputError(
                f"'{self.path}' exists: an earlier run wrote there; use --resume to go on with "
                "it or --force to start over"
            )
        try:
            if resume and exists:
                self.records, good = read_manifest(self.path)
                with open(self.path, "r+b") as handle:
                    handle.truncate(good)
                self._file: TextIO = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            else:
                self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise OutputError(f"cannot write '{self.path}': {exc.strerror or exc}") from exc
        self.done = {
            name
            for name, record in self.records.items()
            if "error" not in record and (folder / name).is_file()
        }

    def append(self, records: Iterable[dict]) -> None:
        """Write records as lines and flush them to the operating system."""
        text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        if not text:
            return
        try:
            self._file.write(text)
            self._file.flush()
        except OSError as exc:
            raise OutputError(f"cannot write '{self.path}': {exc.strerror or exc}") from exc

    def close(self) -> None:
        """Flush to disk and close."""
        if self._file.closed:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError:
            pass
        self._file.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
