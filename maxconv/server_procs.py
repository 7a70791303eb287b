"""The server's helper processes and its warm-up: the spare job process, the device probe.

Both are forked from the server, which itself never opens a device (MAX does
not survive fork once one is open, see server.py): the spare opens the
default device and loads the cached graphs before its job arrives
(server_child.start_spare), the probe lists the devices for `--status` and
exits. `warm_up` is what the server imports and builds before its first fork.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

from . import client

_RECEIVE = 1 << 16
# A spare that died (or exited while opening the device) this often is not made again.
_SPARE_FAILURES = 3


@dataclass
class Spare:
    """A job process forked ahead, that opens the default device and loads the graphs."""

    pid: int
    control: socket.socket
    cache_dir: str
    settings: dict[str, str]
    ready: bool = False
    device: str = ""


class SpareKeeper:
    """Keeps one spare ready; hands it the next job whose graphs it holds."""

    def __init__(self, server_pid: int, log: Callable[[str], None], wanted: bool) -> None:
        self.server_pid = server_pid
        self.log = log
        self.wanted = wanted
        self.spare: Spare | None = None
        self.failures = 0

    def fds(self) -> list[int]:
        return [self.spare.control.fileno()] if self.spare is not None else []

    def status(self) -> dict | None:
        spare = self.spare
        if spare is None:
            return None
        return {"pid": spare.pid, "ready": spare.ready, "device": spare.device}

    def start(self, selector: selectors.BaseSelector, inherited: list[int]) -> None:
        """Fork a spare unless one exists; `inherited`: the server's descriptors it closes."""
        from . import server_child

        if not self.wanted or self.spare is not None:
            return
        ours, theirs = socket.socketpair()
        cache_dir = cache_dir_of(os.environ, os.getcwd())
        settings = engine_settings(os.environ)
        flush_stdio()
        pid = os.fork()
        if pid == 0:  # never returns
            server_child.start_spare(theirs.fileno(), self.server_pid, [*inherited, ours.fileno()])
        theirs.close()
        ours.setblocking(False)
        self.spare = Spare(pid, ours, cache_dir, settings)
        selector.register(ours, selectors.EVENT_READ, "spare")

    def on_readable(self, selector: selectors.BaseSelector) -> None:
        """The spare says it is ready (or why it is not), or it has gone."""
        spare = self.spare
        if spare is None:
            return
        try:
            data = spare.control.recv(_RECEIVE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        try:
            message = client.decode(data[4:]) if len(data) > 4 else None
        except ValueError:
            message = None
        if message is None or not message.get("ready"):
            self.failures += 1
            if message is not None or self.failures >= _SPARE_FAILURES:
                reason = (message or {}).get("problem") or "they exit while opening the device"
                self.wanted = False
                self.log(f"no spare job process from now on: {reason}")
            self.drop(selector)
            return
        spare.ready = True
        spare.device = message.get("device", "")

    def take(self, request: dict, fds: list[int], selector: selectors.BaseSelector) -> int | None:
        """Send a job (the client's descriptors, then the connection) to the ready spare.

        Its pid, or None when there is no ready spare, or the job's settings
        (MAXCONV_*, XDG_CACHE_HOME) or compiled-graph folder are not those the
        spare opened its engine with (then the job is forked afresh).
        """
        spare = self.spare
        if spare is None or not spare.ready:
            return None
        env = request.get("env", {})
        if (
            engine_settings(env) != spare.settings
            or cache_dir_of(env, request.get("cwd", "/")) != spare.cache_dir
        ):
            return None
        try:
            spare.control.setblocking(True)
            client.send(spare.control, request, fds)
        except OSError as exc:
            self.log(f"the spare job process did not take a job: {exc}")
            self.drop(selector)
            return None
        selector.unregister(spare.control)
        spare.control.close()
        self.spare = None
        return spare.pid

    def drop(self, selector: selectors.BaseSelector) -> None:
        """End the spare (it sees its control socket close)."""
        spare, self.spare = self.spare, None
        if spare is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(spare.control)
        spare.control.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(spare.pid, signal.SIGTERM)

    def reaped(self, pid: int, selector: selectors.BaseSelector) -> bool:
        """Whether `pid`, just reaped, was the spare (which then died before its job)."""
        if self.spare is None or pid != self.spare.pid:
            return False
        self.drop(selector)
        self.failures += 1
        if self.failures >= _SPARE_FAILURES and self.wanted:
            self.wanted = False
            self.log("no spare job process from now on: three of them died")
        return True


class DeviceProbe:
    """What `maxconv serve --status` lists as devices, found by a short-lived child."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.pid = 0
        self.read_fd = -1
        self.data = b""
        self.devices: list[dict] | None = None

    def fds(self) -> list[int]:
        return [self.read_fd] if self.read_fd >= 0 else []

    def start(self, selector: selectors.BaseSelector) -> None:
        read, write = os.pipe()
        flush_stdio()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(read)
                from .devices import describe_devices

                os.write(write, json.dumps(describe_devices()).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        os.set_blocking(read, False)
        self.pid, self.read_fd = pid, read
        selector.register(read, selectors.EVENT_READ, "probe")

    def on_readable(self, selector: selectors.BaseSelector) -> None:
        try:
            chunk = os.read(self.read_fd, _RECEIVE)
        except BlockingIOError:
            return
        if chunk:
            self.data += chunk
            return
        selector.unregister(self.read_fd)
        os.close(self.read_fd)
        self.read_fd = -1
        try:
            self.devices = json.loads(self.data)
        except ValueError:
            self.devices = []
            self.log("the device probe failed: no device could be listed")


def flush_stdio() -> None:
    """Nothing the server buffered may come out of a child."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def engine_settings(env: dict[str, str]) -> dict[str, str]:
    """The variables that may change what an engine does: MAXCONV_* (but the client's
    own plumbing) and XDG_CACHE_HOME."""
    return {
        key: value
        for key, value in env.items()
        if (key.startswith("MAXCONV_") and key not in ("MAXCONV_RUNTIME_DIR", "MAXCONV_SERVER"))
        or key == "XDG_CACHE_HOME"
    }


def cache_dir_of(env: dict[str, str], cwd: str) -> str:
    """The compiled-graph folder a process with this environment and folder uses.

    cache.default_cache_dir's rule, for another process's environment: a
    spare's loaded graphs serve only jobs that would read the same folder.
    """
    override = env.get("MAXCONV_CACHE_DIR")
    if override:
        return os.path.normpath(os.path.join(cwd, os.path.expanduser(override)))
    xdg = env.get("XDG_CACHE_HOME")
    base = os.path.expanduser(xdg) if xdg else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.normpath(os.path.join(cwd, base, "maxconv"))


def warm_up() -> None:
    """Import everything a command needs, so that no job pays for it.

    Only imports, and state that survives fork: no device is opened here (see
    server.py). typer's click command is built once (12 ms a job otherwise),
    importlib.metadata's path caches are filled (the engine asks it for MAX's
    version) and rich renders once (its emoji table alone is 25 ms to
    compile at a job's first print where Python keeps no bytecode).
    """
    import importlib
    import importlib.metadata
    import io
    import pkgutil

    import typer.main

    import maxconv

    third_party = (
        "ctypes",
        "numpy",
        "soundfile",
        "max.driver",
        "max.engine",
        "max.graph",
        "rich.console",
        "rich.progress",
        "rich.table",
        "rich._emoji_codes",
        "typer._click.decorators",
    )
    # Every maxconv module (their top-level imports are numpy, soundfile, MAX, typer and
    # rich; ray, torch and the like are imported inside functions) but this one's caller.
    ours = [
        module.name
        for module in pkgutil.walk_packages(maxconv.__path__, "maxconv.")
        if module.name != "maxconv.server"
    ]
    for name in (*third_party, *ours):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("max")

    from rich.console import Console
    from rich.table import Table

    from . import cli

    rehearsal = Console(file=io.StringIO(), force_terminal=True, width=80, highlight=False)
    rehearsal.print("[red]error:[/] warm-up 0.001 s; 1.0 MS/s", soft_wrap=True)
    rehearsal.print(Table("device", "name"))

    command = typer.main.get_command(cli.app)
    build = typer.main.get_command

    def cached(typer_instance: typer.Typer) -> object:
        return command if typer_instance is cli.app else build(typer_instance)

    typer.main.get_command = cached
