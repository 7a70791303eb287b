"""Files that appear whole or not at all: a temp file beside the target, renamed over it.

Every file maxconv writes (signals, augmented clips, compiled graphs,
calibration records) is written under a temp name in the target's folder and
renamed over the target once complete, so a reader never sees half a file
and a failure leaves the target as it was. Temp files are named
``.<prefix><16 hex digits>.part`` and recorded from before they exist until
they are committed or discarded: a process cut short by a signal deletes what
it left with `discard_uncommitted` (the CLI does on its way out).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

# Temp files neither committed nor discarded yet. A signal can land after a temp file
# exists but before the `with` block that would discard it has begun.
_UNCOMMITTED: set[Path] = set()


def create_temp(
    folder: Path, prefix: str = "maxconv-", mode: int = 0o600, flags: int = os.O_RDWR
) -> tuple[Path, int]:
    """Create a new temp file in `folder`; its path and an open descriptor.

    Recorded before it exists (rather than after `os.open` returns), so no
    interruption can orphan it. `mode` is passed to `os.open` (the umask
    applies).

    Raises
    ------
    OSError
        If the folder cannot be written.
    """
    flags |= os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        temp = folder / f".{prefix}{secrets.token_hex(8)}.part"
        _UNCOMMITTED.add(temp)
        try:
            return temp, os.open(temp, flags, mode)
        except FileExistsError:
            _UNCOMMITTED.discard(temp)
        except BaseException:
            _UNCOMMITTED.discard(temp)
            raise


def commit(temp: Path, target: Path, mode: int | None = None) -> None:
    """Rename a closed temp file over `target`, after giving it `mode` if one is given."""
    if mode is not None:
        os.chmod(temp, mode)
    os.replace(temp, target)
    _UNCOMMITTED.discard(temp)


def discard(temp: Path) -> None:
    """Delete a temp file that will not be committed (gone already is fine)."""
    with contextlib.suppress(OSError):
        temp.unlink()
    _UNCOMMITTED.discard(temp)


def discard_uncommitted() -> None:
    """Delete every temp file not yet committed; for a process cut short by a signal."""
    for temp in list(_UNCOMMITTED):
        with contextlib.suppress(OSError):
            temp.unlink()
    _UNCOMMITTED.clear()


@contextlib.contextmanager
def replacing(target: Path, prefix: str, text: bool = False) -> Iterator[IO]:
    """A file open for `target`'s new contents: renamed over it on a clean exit, else deleted.

    The temp file is created 0600 and keeps that mode.

    Raises
    ------
    OSError
        If the folder cannot be written, or the write or the rename fails.
    """
    temp, descriptor = create_temp(target.parent, prefix)
    try:
        with os.fdopen(descriptor, "w" if text else "wb") as file:
            yield file
        commit(temp, target)
    except BaseException:
        discard(temp)
        raise


def new_file_mode(target: Path) -> int:
    """The permissions a plain `open` would give `target`: an existing file's, else the umask's."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~process_umask()


def process_umask() -> int:
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
