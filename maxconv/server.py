"""`maxconv serve`: a resident process that runs maxconv commands for this user's clients.

A forking server. The parent imports MAX, numpy, soundfile, typer, rich and
every maxconv module once (about a second here), then forks one process per
job; the job installs its client's descriptors as 0/1/2, enters its folder,
takes its umask and environment, and runs the command line exactly as an
in-process run does (server_child.py). Jobs therefore never share files,
options, environment, signal handlers or an engine, and Ctrl-C cleanup is the
CLI's own.

Why processes and not threads: the CLI is process-global (signal handlers,
sys.stdout, the working directory, os._exit at the end), and MAX does not
survive fork once a device is open. Checked on the 2-core machine with MAX
26.7: a child forked after `driver.CPU()` + `InferenceSession` hangs in its
first `execute`; a child forked after the imports alone opens the CPU in
2 ms, creates a session in 2 ms and reads a compiled graph from the disk
cache in 5 ms. So the parent never opens a device: each job opens its own
(and a GPU job its own CUDA context), and the parent stays fork-clean.

The parent's loop: accept a connection, check the peer's uid (SO_PEERCRED)
and the code fingerprint, fork when a slot of the pool is free (else queue),
forward the client's signals to the job, report the job's exit status from
waitpid (what clients send and are answered: server_connections.py). A job
whose client goes away is terminated (SIGTERM: its output is
removed); if the server dies, each job gets SIGUSR1 (PR_SET_PDEATHSIG) and
cancels itself without a word, and its client says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import selectors
import signal
import socket
import sys
import time
from collections import deque

from . import client
from .server_connections import ConnectionHandling, Job, Peer, close_all
from .server_procs import DeviceProbe, SpareKeeper, flush_stdio, warm_up


class Server(ConnectionHandling):
    """The parent process's state and loop (see the module docstring)."""

    def __init__(
        self,
        folder: str,
        max_jobs: int,
        idle_minutes: float,
        grace: float,
        log_fd: int,
        spare: bool = True,
    ) -> None:
        self.folder = folder
        self.path = os.path.join(folder, client.SOCKET_NAME)
        self.max_jobs = max_jobs
        self.idle_seconds = idle_minutes * 60.0
        self.grace = grace
        self.log_fd = log_fd
        self.pid = os.getpid()
        self.started = time.time()
        self.fingerprint = client.fingerprint()
        self.served = 0
        self.waiting: deque[Job] = deque()
        self.running: dict[int, Job] = {}
        self.peers: dict[int, Peer] = {}
        self.selector = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self.lock_fd = -1
        self.wake_read, self.wake_write = socket.socketpair()
        self.last_active = time.monotonic()
        self.stopping = False
        self.stop_deadline = 0.0
        self.killed_at = 0.0
        self.jobs_counter = 0
        self.spares = SpareKeeper(self.pid, self.log, spare)
        self.probe = DeviceProbe(self.log)

    def log(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with contextlib.suppress(OSError):
            os.write(self.log_fd, f"{stamp} maxconv serve[{self.pid}]: {text}\n".encode())

    # Start and stop --------------------------------------------------------

    def take_lock(self) -> None:
        """Hold the folder's lock for the server's life: one server per folder.

        Raises RuntimeError naming the pid of the server that holds it.
        """
        path = os.path.join(self.folder, client.LOCK_NAME)
        self.lock_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.lock_fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.lock_fd)
            raise RuntimeError(
                f"a maxconv server already runs for this folder (pid {holder}); "
                "maxconv serve --status tells more"
            ) from None
        os.ftruncate(self.lock_fd, 0)
        os.pwrite(self.lock_fd, f"{self.pid}\n".encode(), 0)

    def listen(self) -> None:
        """Bind the socket (replacing a stale one: the lock says no server owns it)."""
        if os.path.lexists(self.path):
            os.unlink(self.path)
            self.log(f"replaced a stale socket at {self.path}")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        previous = os.umask(0o177)
        try:
            listener.bind(self.path)
        finally:
            os.umask(previous)
        listener.listen(128)
        listener.setblocking(False)
        self.listener = listener
        self.selector.register(listener, selectors.EVENT_READ, "accept")

    def run(self) -> int:
        """Serve until stopped or idle; 0 on a clean stop."""
        for fd in (self.wake_read, self.wake_write):
            fd.setblocking(False)
        signal.set_wakeup_fd(self.wake_write.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _note_signal)
        self.selector.register(self.wake_read, selectors.EVENT_READ, "wake")
        self.probe.start(self.selector)
        self.spares.start(self.selector, self._own_fds())
        self.last_active = time.monotonic()
        self.log(
            f"ready: socket {self.path}, {self.max_jobs} jobs at a time, "
            + (f"exits after {self.idle_seconds / 60:g} idle minutes" if self.idle_seconds else "")
        )
        while not (self.stopping and not self.running):
            for key, _ in self.selector.select(self._timeout()):
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    self._on_signals()
                elif key.data == "probe":
                    self.probe.on_readable(self.selector)
                elif key.data == "spare":
                    self.spares.on_readable(self.selector)
                else:
                    self._on_readable(key.data)
            self._check_clock()
        self._close()
        self.log(f"stopped after {self.served} jobs")
        return 0

    def begin_stop(self, why: str, grace: float | None = None) -> None:
        """Take no new jobs; let running ones finish for `grace` seconds, then cancel them."""
        if self.stopping:
            return
        self.stopping = True
        self.stop_deadline = time.monotonic() + (self.grace if grace is None else grace)
        if self.listener is not None:
            self.selector.unregister(self.listener)
            self.listener.close()
            self.listener = None
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        while self.waiting:
            job = self.waiting.popleft()
            self._answer(job.conn, {"type": "declined", "reason": "stopping"})
            self._drop(job.conn)
        self.spares.drop(self.selector)
        self.log(
            f"stopping ({why}): {len(self.running)} running jobs, "
            f"cancelled after {self.stop_deadline - time.monotonic():g} s"
        )

    def _close(self) -> None:
        for peer in list(self.peers.values()):
            self._drop(peer.conn)
        with contextlib.suppress(OSError):
            for name in os.listdir(self.folder):
                if name.startswith(f"mismatch-{self.pid}-"):
                    os.unlink(os.path.join(self.folder, name))
        signal.set_wakeup_fd(-1)

    def _timeout(self) -> float:
        if self.stopping:
            return 0.2
        if self.idle_seconds and not self.running and not self.waiting:
            return max(0.05, min(5.0, self.last_active + self.idle_seconds - time.monotonic()))
        return 5.0

    def _check_clock(self) -> None:
        now = time.monotonic()
        if self.running or self.waiting:
            self.last_active = now
        elif self.idle_seconds and not self.stopping and now - self.last_active > self.idle_seconds:
            self.begin_stop(f"no job for {self.idle_seconds / 60:g} minutes")
        if self.stopping and self.running and now > self.stop_deadline:
            if not self.killed_at:
                self.log(f"cancelling {len(self.running)} jobs still running after the grace time")
                self._signal_jobs(signal.SIGTERM)
                self.killed_at = now
            elif now - self.killed_at > 30:
                self._signal_jobs(signal.SIGKILL)

    def _signal_jobs(self, signum: int) -> None:
        for pid in self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _on_signals(self) -> None:
        try:
            received = self.wake_read.recv(4096)
        except BlockingIOError:
            return
        for signum in set(received):
            if signum == signal.SIGCHLD:
                self._reap()
            elif signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                if self.stopping:
                    self.log(f"{signal.Signals(signum).name} again: cancelling running jobs")
                    self.stop_deadline = 0.0
                else:
                    self.begin_stop(signal.Signals(signum).name)
        self._reap()

    def status(self) -> dict:
        return {
            "type": "status",
            "pid": self.pid,
            "started": self.started,
            "uptime": time.time() - self.started,
            "devices": self.probe.devices,
            "served": self.served,
            "running": len(self.running),
            "jobs": [
                {
                    "job": job.number,
                    "pid": job.pid,
                    "seconds": time.monotonic() - job.started,
                    "argv": job.request.get("argv", [])[:12],
                }
                for job in self.running.values()
            ],
            "waiting": len(self.waiting),
            "max_jobs": self.max_jobs,
            "idle_minutes": self.idle_seconds / 60,
            "socket": self.path,
            "fingerprint": self.fingerprint,
            "stopping": self.stopping,
            "spare": self.spares.status(),
        }

    # Jobs -------------------------------------------------------------------

    def _start_waiting(self) -> None:
        while self.waiting and len(self.running) < self.max_jobs and not self.stopping:
            job = self.waiting.popleft()
            self._fork(job)

    def _fork(self, job: Job) -> None:
        from . import server_child

        job.started = time.monotonic()
        pid = self.spares.take(job.request, [*job.fds, job.conn.fileno()], self.selector)
        if pid is not None:  # a new spare for the next job
            self.spares.start(self.selector, self._own_fds())
        else:
            flush_stdio()
            keep = job.conn.fileno()
            inherited = [fd for fd in self._own_fds() if fd != keep and fd not in job.fds]
            pid = os.fork()
            if pid == 0:  # the job; never returns
                server_child.start_job(job.request, job.fds, keep, self.pid, inherited)
        job.pid = pid
        close_all(job.fds)
        job.fds = []
        self.running[pid] = job

    def _own_fds(self) -> list[int]:
        """Descriptors of the server a job must not keep (the client's are installed apart)."""
        fds = [self.wake_read.fileno(), self.wake_write.fileno(), self.lock_fd, self.log_fd]
        if self.listener is not None:
            fds.append(self.listener.fileno())
        with contextlib.suppress(AttributeError, ValueError):
            fds.append(self.selector.fileno())  # epoll's own descriptor
        for peer in self.peers.values():
            fds.append(peer.conn.fileno())
            fds.extend(peer.fds)
            if peer.job is not None:
                fds.extend(peer.job.fds)
        fds += self.probe.fds() + self.spares.fds()
        return [fd for fd in fds if fd >= 0]

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == self.probe.pid or self.spares.reaped(pid, self.selector):
                continue
            job = self.running.pop(pid, None)
            if job is not None:
                self._finished(job, status)
        self._start_waiting()

    def _finished(self, job: Job, status: int) -> None:
        self.served += 1
        self.last_active = time.monotonic()
        code = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - job.started
        argv = " ".join(job.request.get("argv", []))[:200]
        self.log(f"job {job.number} (pid {job.pid}): maxconv {argv} -> {code} in {seconds:.3f} s")
        if job.client_gone:  # it had its exit code from the job itself, or left
            return
        message = {"type": "exit", "code": code}
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else -code
            message = {
                "type": "exit",
                "code": 1,
                "message": f"error: the job's process in the maxconv server was killed ({name})",
            }
        self._answer(job.conn, message)
        self._drop(job.conn)
        self._start_waiting()


def _note_signal(signum: int, frame: object) -> None:
    """Nothing: the wake-up descriptor carries the signal to the loop."""


def serve_forever(max_jobs: int, idle_minutes: float, grace: float, spare: bool = True) -> int:
    """Run the server in this process until it is stopped; the exit code.

    Raises client.UnsafeFolder for a socket folder others can enter, and
    RuntimeError when another server holds this folder.
    """
    if not sys.platform.startswith("linux"):
        raise RuntimeError("maxconv serve needs Linux (SO_PEERCRED, PR_SET_PDEATHSIG)")
    folder = client.runtime_dir()
    client.check_private_dir(folder, create=True)
    log_fd = os.dup(2)
    os.set_inheritable(log_fd, False)
    server = Server(folder, max_jobs, idle_minutes, grace, log_fd, spare)
    server.take_lock()
    begun = time.perf_counter()
    warm_up()
    with contextlib.suppress(OSError, ValueError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server.log(f"imported MAX and maxconv in {time.perf_counter() - begun:.2f} s")
    server.listen()
    return server.run()


def main(argv: list[str] | None = None) -> int:
    """`python -m maxconv.server`: what `maxconv serve` (cli_serve.py) becomes by exec.

    A process of its own, so that the command line, which the jobs run, is
    not also what runs the server (no import cycle, and none of the CLI's
    state in the server). Options as `maxconv serve`'s, all given.
    """
    import argparse

    from .__main__ import _exit_quietly

    for signum in (signal.SIGINT, signal.SIGTERM):  # until the loop takes them over
        signal.signal(signum, _exit_quietly)
    parser = argparse.ArgumentParser(prog="maxconv serve")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--idle", type=float, default=15.0)
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--no-spare", action="store_true")
    args = parser.parse_args(argv)
    try:
        return serve_forever(args.jobs, args.idle, args.grace, not args.no_spare)
    except (client.UnsafeFolder, RuntimeError, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
