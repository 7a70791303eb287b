"""`maxconv serve`: start, inspect or stop this user's resident server.

The server itself is maxconv/server.py, run as `python -m maxconv.server`:
the foreground `serve` becomes it by exec (same pid), `--detach` starts it.
The client side (what every `maxconv` command tries first) is
maxconv/client.py. This module only parses the options and renders; it
imports nothing of MAX and nothing of the server, whose jobs run the command
line that registers this command.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Annotated

import typer

DETACH_TIMEOUT = 180.0  # a cold start imports MAX (1-2 s here); a busy machine is slower


def serve(
    detach: Annotated[
        bool,
        typer.Option("--detach", help="Start in the background; return once it accepts commands."),
    ] = False,
    status: Annotated[
        bool,
        typer.Option("--status", help="Say whether a server runs for you (exit 0 if so, else 1)."),
    ] = False,
    stop: Annotated[
        bool,
        typer.Option("--stop", help="Stop it: running jobs finish first (see --grace)."),
    ] = False,
    idle: Annotated[
        float, typer.Option(help="Exit after this many minutes without a job (0: never).")
    ] = 15.0,
    jobs: Annotated[
        int | None, typer.Option(help="Jobs run at a time (default: the number of CPUs).")
    ] = None,
    grace: Annotated[
        float,
        typer.Option(help="Seconds that stopping lets running jobs finish before cancelling them."),
    ] = 10.0,
    spare: Annotated[
        bool,
        typer.Option(
            "--spare/--no-spare",
            help="Keep a job process ready with the default device open and the cached graphs "
            "loaded (on a GPU it holds the device's memory while idle).",
        ),
    ] = True,
) -> None:
    """Keep MAX loaded in a resident process that runs maxconv commands in ~0.05 s."""
    from . import client

    if sum((detach, status, stop)) > 1:
        raise typer.BadParameter("give one of --detach, --status, --stop")
    if idle < 0 or grace < 0 or (jobs is not None and jobs < 1):
        raise typer.BadParameter("--idle and --grace must be >= 0 and --jobs >= 1")
    try:
        if status:
            code = _status(client)
        elif stop:
            code = _stop(client, grace)
        elif detach:
            code = _detach(client, idle, jobs, grace, spare)
        else:
            sys.stdout.flush()
            sys.stderr.flush()
            command = _server_command(idle, jobs, grace, spare)
            os.execv(command[0], command)
    except (client.UnsafeFolder, RuntimeError, OSError) as exc:
        _say(f"error: {exc}")
        code = 1
    raise typer.Exit(code)


def _say(line: str, out: bool = False) -> None:
    stream = sys.stdout if out else sys.stderr
    stream.write(line + "\n")
    stream.flush()


def _socket(client) -> str:  # noqa: ANN001
    return os.path.join(client.runtime_dir(), client.SOCKET_NAME)


def _server_command(idle: float, jobs: int | None, grace: float, spare: bool) -> list[str]:
    command = [sys.executable, "-m", "maxconv.server", "--idle", str(idle), "--grace", str(grace)]
    if jobs is not None:
        command += ["--jobs", str(jobs)]
    if not spare:
        command.append("--no-spare")
    return command


def _status(client) -> int:  # noqa: ANN001
    answer = client.request({"type": "status"})
    if answer is None:
        _say(f"no maxconv server runs for you (socket {_socket(client)})", out=True)
        return 1
    uptime = int(answer["uptime"])
    devices = answer.get("devices")
    listed = (
        ", ".join(
            entry["device"] + (f" ({entry['name']})" if entry["device"] != "cpu" else "")
            for entry in devices
        )
        if devices
        else "being listed"
    )
    lines = [
        f"maxconv server running: pid {answer['pid']}, up {uptime // 3600}:"
        f"{uptime % 3600 // 60:02d}:{uptime % 60:02d}",
        f"devices: {listed}",
        f"jobs served: {answer['served']} ({answer['running']} running, "
        f"{answer['waiting']} waiting; up to {answer['max_jobs']} at a time)",
        f"socket: {answer['socket']}",
    ]
    for job in answer.get("jobs", []):
        lines.append(
            f"job {job['job']} (pid {job['pid']}, {job['seconds']:.1f} s): "
            f"maxconv {' '.join(job['argv'])}"
        )
    spare = answer.get("spare")
    if spare and spare.get("ready"):
        lines.append(
            f"a job process waits with {spare['device']} open and its graphs loaded "
            f"(pid {spare['pid']})"
        )
    idle = answer.get("idle_minutes")
    lines.append(f"exits after {idle:g} minutes without a job" if idle else "never exits when idle")
    mine = client.fingerprint()
    if answer.get("fingerprint") != mine:
        lines.append(
            f"runs other code ({client.describe_mismatch(mine, answer.get('fingerprint') or {})}): "
            "commands run in-process; restart it: maxconv serve --stop && maxconv serve --detach"
        )
    if answer.get("stopping"):
        lines.append("stopping")
    _say("\n".join(lines), out=True)
    return 0


def _stop(client, grace: float) -> int:  # noqa: ANN001
    sock = client.connect()
    if sock is None:
        _say(f"no maxconv server runs for you (socket {_socket(client)})", out=True)
        return 1
    try:
        client.send(sock, {"type": "stop", "grace": grace})
        answer = client.receive(sock)
        if answer is None:
            _say("the maxconv server closed the connection without stopping")
            return 1
        while client.receive(sock) is not None:  # it closes when it has exited
            pass
    finally:
        sock.close()
    _say(f"stopped the maxconv server (pid {answer.get('pid')})", out=True)
    return 0


def _detach(client, idle: float, jobs: int | None, grace: float, spare: bool) -> int:  # noqa: ANN001
    answer = client.request({"type": "status"})
    if answer is not None:
        if answer.get("fingerprint") != client.fingerprint():
            _say(
                f"error: a maxconv server of other code runs (pid {answer['pid']}); "
                "stop it first: maxconv serve --stop"
            )
            return 1
        _say(f"a maxconv server already runs (pid {answer['pid']})", out=True)
        return 0
    folder = client.runtime_dir()
    client.check_private_dir(folder, create=True)
    log_path = os.path.join(folder, client.LOG_NAME)
    command = _server_command(idle, jobs, grace, spare)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(log)
    deadline = time.monotonic() + DETACH_TIMEOUT
    while time.monotonic() < deadline:
        answer = client.request({"type": "status"})
        if answer is not None and answer.get("pid") == process.pid:
            _say(f"maxconv server started: pid {process.pid}, log {log_path}", out=True)
            return 0
        if process.poll() is not None:
            with open(log_path, errors="replace") as handle:
                tail = handle.read().strip().splitlines()[-3:]
            _say(f"error: the maxconv server did not start: {' / '.join(tail) or 'no message'}")
            return 1
        time.sleep(0.02)
    _say(f"error: the maxconv server did not answer within {DETACH_TIMEOUT:g} s; see {log_path}")
    return 1
