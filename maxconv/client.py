"""Hand a `maxconv` command to this user's resident server (`maxconv serve`).

Standard library only, and nothing slow: this module runs before anything
else in every `maxconv` process, and when a server answers it is all that the
process ever imports. The client sends the command line, the working
directory, the umask, the environment that changes what a command does
(`FORWARDED_ENV`, `MAXCONV_*`, `XDG_*`) and its own stdin, stdout and stderr
(the descriptors themselves, with SCM_RIGHTS), then waits for the exit code.
Ctrl-C and SIGTERM are forwarded to the job, which removes its partial
output as an in-process run does.

`run_through_server` returns None whenever the command should run in-process
instead: `MAXCONV_SERVER=off`, no server listening (or a stale socket), a
server of other code (said once per server), a server that is stopping, or
an unsafe socket folder (said every time: it needs fixing).

Messages on the socket are 4-byte big-endian lengths followed by a marshal
of plain data (dicts, lists, strings, numbers); both ends run the same
Python, which the fingerprint checks. The imports are chosen for speed:
`json` costs 20 ms here (its regular expressions), `socket` 6-10 ms (its
enums; `_socket` is the same socket object without them), `hashlib` 3-8 ms
(OpenSSL); marshal, zlib and _socket cost under 1 ms together.
"""

from __future__ import annotations

import _socket as socket
import marshal
import os
import signal
import stat
import struct
import sys

PROTOCOL = 1
SOCKET_NAME = "server.sock"
LOCK_NAME = "server.lock"
LOG_NAME = "server.log"
# Variables that change what a command does or how it draws; the job sees the
# client's values of these (and of MAXCONV_* and XDG_*), the server's for the rest.
FORWARDED_ENV = (
    "NO_COLOR",
    "FORCE_COLOR",
    "TERM",
    "COLORTERM",
    "COLUMNS",
    "LINES",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "TMPDIR",
)
FORWARDED_PREFIXES = ("MAXCONV_", "XDG_")
_HEADER = struct.Struct("!I")
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_MAX_MESSAGE = 64 * 2**20
_FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class UnsafeFolder(Exception):
    """The socket folder could be entered by another user, or is not ours."""


def exit_quietly(signum: int, frame: object) -> None:
    """A signal before a command's own handlers: the conventional exit code, no traceback."""
    raise SystemExit(130 if signum == signal.SIGINT else 143)


def runtime_dir() -> str:
    """The folder of this user's server socket.

    `MAXCONV_RUNTIME_DIR` if set (tests give each server its own), else
    `$XDG_RUNTIME_DIR/maxconv`, else `maxconv-<uid>` in the temp folder.
    """
    override = os.environ.get("MAXCONV_RUNTIME_DIR")
    if override:
        return override
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "maxconv")
    # tempfile.gettempdir's search, without importing tempfile (3 ms at each start).
    base = next(
        (os.environ[name] for name in ("TMPDIR", "TEMP", "TMP") if os.environ.get(name)), "/tmp"
    )
    return os.path.join(base, f"maxconv-{os.getuid()}")


def check_private_dir(folder: str, create: bool = False) -> None:
    """Make sure only this user can enter `folder` (created 0700 if `create`).

    Raises FileNotFoundError if it is missing (and not created), UnsafeFolder
    if it is a link, not a folder, owned by another user, or open to others.
    """
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        if not create:
            raise
        os.makedirs(os.path.dirname(folder) or ".", exist_ok=True)
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:  # made by a concurrent start; checked below
            info = os.lstat(folder)
        info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafeFolder(f"socket folder '{folder}' is not a plain folder; remove it")
    if info.st_uid != os.getuid():
        raise UnsafeFolder(
            f"socket folder '{folder}' belongs to uid {info.st_uid}, not to you "
            f"(uid {os.getuid()}); remove it or set MAXCONV_RUNTIME_DIR"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise UnsafeFolder(
            f"socket folder '{folder}' has mode {mode:04o}, others can enter it; "
            f"run chmod 700 '{folder}' (or remove it)"
        )


def fingerprint() -> dict[str, str]:
    """What must match between client and server: versions, op sources, Python code.

    maxconv's version, MAX's version (from its dist-info folder, as
    importlib.metadata finds it, at a thousandth of the cost), Python's
    version, a checksum of the Mojo op sources (CRC-32 and length of each
    file), and the names, sizes and modification times of maxconv's Python
    files (subpackages too), so that an edited module never meets a server
    that runs the old one. About 0.5 ms.
    """
    import zlib

    from . import __version__

    package = os.path.dirname(os.path.abspath(__file__))
    ops_dir = os.path.join(package, "ops")
    ops = []
    for name in sorted(os.listdir(ops_dir)):
        if name.endswith(".mojo"):
            with open(os.path.join(ops_dir, name), "rb") as source:
                data = source.read()
            ops.append(f"{name}:{len(data)}:{zlib.crc32(data):08x}")
    code = []
    for folder, subfolders, names in os.walk(package):
        subfolders[:] = sorted(name for name in subfolders if name != "__pycache__")
        for name in sorted(names):
            if name.endswith(".py"):
                info = os.stat(os.path.join(folder, name))
                relative = os.path.relpath(os.path.join(folder, name), package)
                code.append(f"{relative}:{info.st_size}:{info.st_mtime_ns}")
    return {
        "maxconv": __version__,
        "max": _distribution_version("max"),
        "python": sys.version.split()[0],
        "ops": f"{zlib.crc32(' '.join(ops).encode()):08x}",
        "code": f"{zlib.crc32(' '.join(code).encode()):08x}",
    }


def _distribution_version(name: str) -> str:
    """The version in the first `<name>-<version>.dist-info` folder on sys.path."""
    prefix = f"{name}-"
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for found in names:
            if found.startswith(prefix) and found.endswith(".dist-info"):
                return found[len(prefix) : -len(".dist-info")]
    return "unknown"


def describe_mismatch(mine: dict[str, str], theirs: dict[str, str]) -> str:
    """Which parts of two fingerprints differ, in words."""
    words = {
        "maxconv": "maxconv {}",
        "max": "MAX {}",
        "python": "Python {}",
        "ops": "op sources {}",
        "code": "maxconv's Python files {}",
    }
    parts = [
        words[key].format(f"{theirs.get(key, '?')} vs {mine.get(key)}")
        if key in ("maxconv", "max", "python")
        else words[key].format("differ")
        for key in words
        if mine.get(key) != theirs.get(key)
    ]
    return ", ".join(parts) or "protocol differs"


def forwarded_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The variables a job takes from its client."""
    environ = os.environ if environ is None else environ
    return {
        key: value
        for key, value in environ.items()
        if key in FORWARDED_ENV or key.startswith(FORWARDED_PREFIXES)
    }


def is_forwarded(key: str) -> bool:
    return key in FORWARDED_ENV or key.startswith(FORWARDED_PREFIXES)


# Framing -------------------------------------------------------------------


def encode(message: dict) -> bytes:
    data = marshal.dumps(message)
    return _HEADER.pack(len(data)) + data


def decode(data: bytes) -> dict:
    """A message body; ValueError if it is not one."""
    try:
        message = marshal.loads(data)
    except (EOFError, TypeError, ValueError) as exc:
        raise ValueError(f"not a maxconv server message: {exc}") from None
    if not isinstance(message, dict):
        raise ValueError("not a maxconv server message")
    return message


def send(sock: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    """Send one message, with file descriptors attached to its first byte."""
    data = encode(message)
    if fds:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
        sent = sock.sendmsg([data], ancillary)
        data = data[sent:]
    if data:
        sock.sendall(data)


def receive(sock: socket.socket) -> dict | None:
    """One message (blocking); None at end of stream."""
    header = _read_exactly(sock, _HEADER.size)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    if length > _MAX_MESSAGE:
        raise ConnectionError(f"message of {length} bytes from the maxconv server")
    body = _read_exactly(sock, length)
    if body is None:
        return None
    return decode(body)


def _read_exactly(sock: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket (SO_PEERCRED)."""
    return _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))


def connect(folder: str | None = None) -> socket.socket | None:
    """A connection to this user's server; None if no server listens there.

    Raises UnsafeFolder when the folder is not private, and when the process
    listening is not this user's.
    """
    folder = folder or runtime_dir()
    path = os.path.join(folder, SOCKET_NAME)
    try:
        os.lstat(path)
    except OSError:
        return None
    check_private_dir(folder)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:  # refused (a stale socket), gone, or not a socket
        sock.close()
        return None
    _, uid, _ = peer_credentials(sock)
    if uid != os.getuid():
        sock.close()
        raise UnsafeFolder(f"the process listening on '{path}' runs as uid {uid}, not as you")
    return sock


def request(message: dict, folder: str | None = None) -> dict | None:
    """Send a control message (status, stop) and return the answer; None if no server."""
    sock = connect(folder)
    if sock is None:
        return None
    try:
        send(sock, message)
        return receive(sock)
    finally:
        sock.close()


# Running a command ---------------------------------------------------------


def run_through_server(argv: list[str]) -> int | None:
    """Run `maxconv argv...` in this user's server; its exit code, or None to run in-process."""
    if os.environ.get("MAXCONV_SERVER", "").strip().lower() in ("off", "0", "no", "false"):
        return None
    if argv[:1] == ["serve"]:
        return None
    folder = runtime_dir()
    try:
        sock = connect(folder)
    except UnsafeFolder as exc:
        _say(f"warning: not using the maxconv server: {exc}")
        return None
    except OSError:
        return None
    if sock is None:
        return None
    try:
        return _run_job(sock, folder, argv)
    finally:
        sock.close()


def _run_job(sock: socket.socket, folder: str, argv: list[str]) -> int | None:
    mine = fingerprint()
    umask = os.umask(0)
    os.umask(umask)
    main = sys.modules.get("__main__")
    job = {
        "type": "job",
        "protocol": PROTOCOL,
        "fingerprint": mine,
        "argv0": sys.argv[0] if sys.argv else "maxconv",
        "main_package": getattr(main, "__package__", None),
        "argv": argv,
        "cwd": os.getcwd(),
        "umask": umask,
        "env": forwarded_environment(),
    }
    fds, job["fds"] = [], []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            continue
        fds.append(fd)
        job["fds"].append(fd)
    signals: list[int] = []

    def forward(signum: int, frame: object) -> None:
        signals.append(signum)
        try:
            send(sock, {"type": "signal", "signum": signum})
        except OSError:  # the server is gone; receive() below tells
            return

    previous = {signum: signal.signal(signum, forward) for signum in _FORWARDED_SIGNALS}
    try:
        send(sock, job, fds)
        answer = receive(sock)
    except (OSError, ValueError):
        answer = None
    if answer is not None and answer.get("type") == "mismatch":
        _mismatch_once(folder, answer, mine)
    if answer is None or answer.get("type") != "accepted":
        if signals:  # interrupted before anything ran: as the in-process run would end
            return 128 + signals[0]
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        return None
    return _wait_for_exit(sock, int(answer.get("pid", 0)))


def _wait_for_exit(sock: socket.socket, server_pid: int) -> int:
    """Wait for the job's exit code; the signal handlers forward SIGINT and SIGTERM to it."""
    try:
        answer = receive(sock)
    except (OSError, ValueError):
        answer = None
    if answer is None or answer.get("type") != "exit":
        _say(
            f"error: the maxconv server (pid {server_pid}) stopped during this command, "
            "which was cancelled and left no output; run it again"
        )
        return 1
    if answer.get("message"):
        _say(answer["message"])
    return int(answer.get("code", 1))


def _mismatch_once(folder: str, answer: dict, mine: dict[str, str]) -> None:
    """Say (once per server and client code) that the server runs other code."""
    pid = int(answer.get("pid", 0))
    theirs = answer.get("fingerprint") or {}
    import zlib

    digest = f"{zlib.crc32(repr(sorted(mine.items())).encode()):08x}"
    marker = os.path.join(folder, f"mismatch-{pid}-{digest}")
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        return
    _say(
        f"warning: the maxconv server (pid {pid}) runs other code "
        f"({describe_mismatch(mine, theirs)}); running in-process. Restart it: "
        "maxconv serve --stop && maxconv serve --detach"
    )


def _say(line: str) -> None:
    try:
        os.write(2, (line + "\n").encode(errors="replace"))
    except OSError:  # no stderr: nothing to tell
        return
