"""What the forked processes of `maxconv serve` do: jobs, and the spare that waits for one.

A job process takes its client's stdin, stdout and stderr as 0/1/2, its
working folder, umask, forwarded environment, program name and arguments,
then runs the command line as `maxconv.__main__` runs it in-process (the
same signal handlers, the same CLI) and ends with the command's exit code,
which the server reports to the client from waitpid. Nothing of it returns
to the server's loop: every path ends in os._exit.

The spare is a job process forked ahead of its job: it opens the default
device and loads the float32 graphs that the disk cache holds (what the
parent must not do: MAX does not survive fork once a device is open), then
waits for a job on its control socket. On the 2-core CPU that saves a job
about 15 ms; on a GPU, the 0.25 s of opening the device. A spare whose
warm-up warned (a GPU that fell back to the CPU, a damaged cache entry)
is not used, so that every job shows the warnings an in-process run shows.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import signal
import socket
import struct
import sys
import types

from . import client

_PR_SET_PDEATHSIG = 1
_orphaned = False
_server_pid = 0


def start_job(
    request: dict, fds: list[int], conn_fd: int, server_pid: int, inherited: list[int]
) -> None:
    """Run one command in this freshly forked process; never returns."""
    code = 70
    try:
        _detach_from_server(server_pid, inherited)
        code = _run_job(request, fds, conn_fd)
    except SystemExit as exc:  # a signal before the CLI took over (__main__'s handlers)
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - nothing may reach the server's loop
        _report_failure(exc)
    finally:
        os._exit(code)


def start_spare(control_fd: int, server_pid: int, inherited: list[int]) -> None:
    """Open the default device, load the cached graphs, then run the job sent; never returns."""
    code = 0
    try:
        _detach_from_server(server_pid, inherited)
        device, problem = _warm_engine()
        ready = {"ready": problem is None, "device": device, "problem": problem}
        os.write(control_fd, client.encode(ready))
        if problem is None:
            job = _receive_job(control_fd)
            if job is not None:
                os.close(control_fd)
                request, fds = job
                code = 70
                code = _run_job(request, fds[:-1], fds[-1])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - nothing may reach the server's loop
        code = 70
        _report_failure(exc)
    finally:
        os._exit(code)


def _run_job(request: dict, fds: list[int], conn_fd: int) -> int:
    """Run the command; tell the client its exit code before this process is torn down.

    The client could wait for the server's report from waitpid instead, but
    a process that held a GPU takes 0.2-0.3 s to end (its context and
    pinned memory go back): the command is over before that, so the code is
    sent here, and the client's descriptors are let go first (a pipeline's
    next command sees its end of input at once). The server's own report,
    which follows, finds the client gone. A job cancelled because the server
    died says nothing: its client reports that in one line.
    """
    _become_client(request, fds)
    code = _run_command()
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
    if not (_orphaned and code != 0):
        with contextlib.suppress(OSError):
            os.write(conn_fd, client.encode({"type": "exit", "code": code}))
    return code


def _report_failure(exc: BaseException) -> None:
    if not _orphaned:
        with contextlib.suppress(BaseException):
            os.write(2, f"error: the maxconv server could not run this command: {exc}\n".encode())


def _warm_engine() -> tuple[str, str | None]:
    """Open the default device and run the cached float32 graphs once: (device, problem)."""
    import warnings

    import numpy as np

    from .convolution import correlate
    from .engine import get_engine

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = get_engine("auto")
        signal_in = np.zeros(4096, np.float32)
        for method, taps in (("direct", 4), ("fft", 255)):
            key = engine.graph_key(np.dtype(np.float32), method=method)
            if engine.cache.entry_path(key).is_file():  # load, never compile, here
                correlate(signal_in, np.ones(taps, np.float32), device="auto", method=method)
        # The job reads the calibration itself: `maxconv calibrate` may run meanwhile.
        engine.forget_calibration()
    if caught:
        return engine.label, f"{caught[0].category.__name__}: {caught[0].message}"
    return engine.label, None


def _receive_job(control_fd: int) -> tuple[dict, list[int]] | None:
    """The job the server hands over: its request, and the client's descriptors plus the
    connection; None if the server closed the control socket instead."""
    control = socket.socket(fileno=control_fd)
    try:
        data, ancillary, _, _ = control.recvmsg(1 << 16, socket.CMSG_SPACE(4 * 4))
        fds: list[int] = []
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                count = len(payload) // 4
                fds.extend(struct.unpack(f"{count}i", payload[: count * 4]))
        if len(data) < 4 or not fds:
            return None
        (length,) = struct.unpack("!I", data[:4])
        while len(data) < 4 + length:
            more = control.recv(4 + length - len(data))
            if not more:
                return None
            data += more
        return client.decode(data[4 : 4 + length]), fds
    finally:
        control.detach()


def _detach_from_server(server_pid: int, inherited: list[int]) -> None:
    """Drop the server's descriptors and signal handling; die with the server."""
    global _server_pid
    _server_pid = server_pid
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, client.exit_quietly)
    signal.signal(signal.SIGUSR1, _server_gone)
    signal.signal(signal.SIGHUP, _hangup)
    for fd in inherited:
        with contextlib.suppress(OSError):
            os.close(fd)
    # Its own process group: a Ctrl-C in the server's terminal is the server's to handle.
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGUSR1, 0, 0, 0)
    if os.getppid() != server_pid:  # it died before prctl took effect
        _server_gone(signal.SIGUSR1, None)


def _hangup(signum: int, frame: object) -> None:
    """SIGHUP: the kernel's word to a stopped job whose server died (its process group
    was orphaned), sent before the parent-death signal; else a plain cancel."""
    if os.getppid() != _server_pid:
        _server_gone(signum, frame)
    else:
        os.kill(os.getpid(), signal.SIGTERM)


def _server_gone(signum: int, frame: object) -> None:
    """The server died: cancel the job as SIGTERM would, but let the client do the talking.

    The client sees its connection close without an exit code and says, in
    one line, that the server stopped; the CLI's own 'terminated' line would
    be a second one, so stderr goes to /dev/null first.
    """
    global _orphaned
    if _orphaned:  # SIGHUP and SIGUSR1 both come: one cancel
        return
    _orphaned = True
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    os.kill(os.getpid(), signal.SIGTERM)


def _become_client(request: dict, fds: list[int]) -> None:
    """Take the client's descriptors, folder, umask, environment and command line."""
    received = dict(zip(request["fds"], fds, strict=True))
    for target in (0, 1, 2):
        if target in received:
            os.dup2(received[target], target)
        else:
            with contextlib.suppress(OSError):
                os.close(target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    _reopen_stdio()
    os.chdir(request["cwd"])
    os.umask(int(request["umask"]))
    for key in [key for key in os.environ if client.is_forwarded(key)]:
        del os.environ[key]
    os.environ.update(request["env"])
    # click names the program from sys.argv[0] and __main__.__package__ ('python -m maxconv').
    main = types.ModuleType("__main__")
    main.__package__ = request.get("main_package")
    sys.modules["__main__"] = main
    sys.argv = [request.get("argv0") or "maxconv", *request["argv"]]
    _fresh_consoles()


def _reopen_stdio() -> None:
    """New sys.stdin/stdout/stderr on 0/1/2, buffered as Python buffers them at start-up."""
    encoding = getattr(sys.__stdout__, "encoding", None) or "utf-8"
    streams = {}
    for fd, mode, errors in ((0, "r", "strict"), (1, "w", "strict"), (2, "w", "backslashreplace")):
        try:
            os.fstat(fd)
        except OSError:
            streams[fd] = None
            continue
        raw = io.FileIO(fd, mode, closefd=False)
        buffered = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
        streams[fd] = io.TextIOWrapper(
            buffered,
            encoding=encoding,
            errors=errors,
            line_buffering=fd == 2 or (fd == 1 and os.isatty(fd)),
        )
    sys.stdin = sys.__stdin__ = streams[0]
    sys.stdout = sys.__stdout__ = streams[1]
    sys.stderr = sys.__stderr__ = streams[2]


def _fresh_consoles() -> None:
    """Rebuild the CLI's rich Consoles, which read the terminal and environment when built.

    The server built them for its own stderr (no terminal, no colour); the
    job's are built for the client's terminal, NO_COLOR, COLUMNS and TERM.
    """
    from rich.console import Console

    for name, module in list(sys.modules.items()):
        if module is None or not (name == "maxconv" or name.startswith("maxconv.")):
            continue
        for attribute, value in list(vars(module).items()):
            if isinstance(value, Console):
                fresh = Console(
                    stderr=value.stderr,
                    highlight=getattr(value, "_highlight", True),
                    emoji=getattr(value, "_emoji", True),
                )
                setattr(module, attribute, fresh)


def _run_command() -> int:
    """The CLI, as cli.run_and_exit runs it, without its os._exit: the exit code."""
    from . import cli

    return cli.run_to_exit_code()
