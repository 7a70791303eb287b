"""The on-disk cache of compiled conv1d graphs (MAX MEF artifacts).

Compiling the op costs 15-20 s; reading a compiled artifact back costs a few
milliseconds. Entries are keyed on everything that changes the compiled code
(op source, MAX version, device, dtype), so a stale entry is never found
under a live key. Each entry carries a checksum of its payload: a truncated
or corrupted file is detected before MAX sees it, and rebuilt with one
warning. Writers take a per-key file lock, so concurrent processes compile a
key once and readers never see a half-written entry (entries appear by
atomic rename). A cache folder that cannot be written degrades to compiling
in memory, with one warning. Hits are read without the lock (entries
only ever appear whole), so a stalled compiler never blocks a cached run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import stat
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from max import engine

from .atomic import replacing

MAGIC = b"maxconv-mef-v1\n"
DIGEST_SIZE = 32


class CacheWarning(UserWarning):
    """The compiled-graph cache could not be used as is; the run goes on."""


def default_cache_dir() -> Path:
    """`MAXCONV_CACHE_DIR`, else `$XDG_CACHE_HOME/maxconv`, else `~/.cache/maxconv`."""
    override = os.environ.get("MAXCONV_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "maxconv"


def cache_key(*parts: str | bytes) -> str:
    """A stable hex key from the parts that decide the compiled code."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:32]


class GraphCache:
    """Compiled-model artifacts under one folder, one file per key."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else default_cache_dir()
        self._warned: set[str] = set()

    def entry_path(self, key: str) -> Path:
        return self.root / f"conv1d-{key}.mef"

    def get_or_compile(
        self, key: str, compile_model: Callable[[], engine.CompiledModel]
    ) -> tuple[engine.CompiledModel, str]:
        """Return the compiled model for `key` and how it was obtained.

        The status is 'hit' (read from disk), 'compiled' (built and stored),
        'rebuilt' (a bad entry was replaced) or 'uncached' (built, but the
        cache folder could not be written).
        """
        found, bad = self._read(key)
        if found is not None:
            return found, "hit"
        with self._locked(key) as locked:
            if locked:
                # Another process may have stored it while this one waited.
                found, again_bad = self._read(key)
                if found is not None:
                    return found, "hit"
                bad = bad or again_bad
            model = compile_model()
            if not locked or not self._write(key, model):
                return model, "uncached"
            return model, "rebuilt" if bad else "compiled"

    def entries(self) -> list[Path]:
        """The entry files now in the cache folder."""
        if not self.root.is_dir():
            return []
        return sorted(self.root.glob("conv1d-*.mef"))

    def size_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.entries())

    def clear(self) -> int:
        """Delete every entry (and stale lock or temp files); return entries removed."""
        removed = 0
        for path in self.entries():
            path.unlink(missing_ok=True)
            removed += 1
        if self.root.is_dir():
            for leftover in [*self.root.glob("*.lock"), *self.root.glob(".*.part")]:
                leftover.unlink(missing_ok=True)
        return removed

    def _warn_once(self, topic: str, message: str) -> None:
        if topic not in self._warned:
            self._warned.add(topic)
            warnings.warn(message, CacheWarning, stacklevel=4)

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[bool]:
        """Hold the key's lock; yield False when the folder cannot be written."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = open(self.root / f"conv1d-{key}.lock", "a+b")  # noqa: SIM115
        except OSError as exc:
            self._warn_once(
                "unwritable",
                f"compiled-graph cache {str(self.root)!r} is not writable ({exc.strerror}); "
                "compiling without a disk cache",
            )
            yield False
            return
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._warn_once(
                    "waiting",
                    f"waiting for another maxconv process to finish compiling into {self.root}",
                )
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield True
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _read(self, key: str) -> tuple[engine.CompiledModel | None, bool]:
        """Read an entry; (model, False) on a hit, (None, True) if it was bad."""
        path = self.entry_path(key)
        try:
            if not stat.S_ISREG(path.stat().st_mode):
                self._warn_once(key, f"cache entry {path.name} is not a regular file; recompiling")
                return None, True
            blob = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None, False
        except OSError as exc:
            self._warn_once(
                key, f"cache entry {path.name} unreadable ({exc.strerror}); recompiling"
            )
            return None, True
        header = len(MAGIC) + DIGEST_SIZE
        payload = blob[header:]
        if (
            not blob.startswith(MAGIC)
            or blob[len(MAGIC) : header] != hashlib.sha256(payload).digest()
        ):
            self._warn_once(key, f"cache entry {path.name} is corrupt; recompiling")
            return None, True
        try:
            return engine.read(io.BytesIO(payload)), False
        except Exception as exc:
            self._warn_once(key, f"cache entry {path.name} rejected by MAX ({exc}); recompiling")
            return None, True

    def _write(self, key: str, model: engine.CompiledModel) -> bool:
        """Store an entry by atomic rename; False (with a warning) if that failed."""
        final = self.entry_path(key)
        raw = final.with_name(f".{final.name}.raw.part")
        try:
            model.export_mef(str(raw))
            payload = raw.read_bytes()
            with replacing(final, f"{final.name}.") as out:
                out.write(MAGIC + hashlib.sha256(payload).digest() + payload)
        except OSError as exc:
            self._warn_once("write", f"could not store compiled graph in cache ({exc}); continuing")
            return False
        finally:
            raw.unlink(missing_ok=True)
        return True
