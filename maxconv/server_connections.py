"""The server's side of its connections: peers, their messages, and their jobs' queue entries.

`Server` (server.py) runs the loop and the job processes; this mixin reads
what clients send (a status request, a stop, a job with its descriptors by
SCM_RIGHTS, a signal to forward), answers, and drops connections. It works
on the server's state: `peers`, `selector`, `listener`, `waiting`, `pid`,
`fingerprint`, `stopping`, `jobs_counter`, and calls back `log`, `status`,
`begin_stop` and `_start_waiting`.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass, field

from . import client

_MAX_FDS = 3
# Jobs waiting for a slot; past this a client runs in-process instead (each waiting
# job holds four descriptors).
_MAX_WAITING = 256
_RECEIVE = 1 << 16


@dataclass
class Job:
    """One client's command, queued or running."""

    number: int
    conn: socket.socket
    request: dict
    fds: list[int]
    pid: int | None = None
    queued: float = field(default_factory=time.monotonic)
    started: float = 0.0
    client_gone: bool = False


@dataclass
class Peer:
    """A connection and what has arrived on it so far."""

    conn: socket.socket
    buffer: bytearray = field(default_factory=bytearray)
    fds: list[int] = field(default_factory=list)
    job: Job | None = None
    waits_for_stop: bool = False


class ConnectionHandling:
    """Connections of the server (see the module docstring)."""

    peers: dict[int, Peer]
    waiting: deque[Job]

    def _accept(self) -> None:
        while self.listener is not None:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors: the client runs in-process
                self.log(f"accept failed: {exc}")
                return
            pid, uid, _ = client.peer_credentials(conn)
            if uid != os.getuid():
                self.log(f"refused a connection from pid {pid}, uid {uid} (not this user)")
                conn.close()
                continue
            conn.setblocking(False)
            self.peers[conn.fileno()] = Peer(conn)
            self.selector.register(conn, selectors.EVENT_READ, conn.fileno())

    def _on_readable(self, key: int) -> None:
        peer = self.peers.get(key)
        if peer is None:
            return
        try:
            data, ancillary, flags, _ = peer.conn.recvmsg(
                _RECEIVE, socket.CMSG_SPACE(_MAX_FDS * 4), getattr(socket, "MSG_CMSG_CLOEXEC", 0)
            )
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, ancillary, flags = b"", [], 0
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                count = len(payload) // 4
                peer.fds.extend(struct.unpack(f"{count}i", payload[: count * 4]))
        if not data or flags & socket.MSG_CTRUNC:
            self._client_gone(peer)
            return
        peer.buffer += data
        while len(peer.buffer) >= 4 and key in self.peers:
            (length,) = struct.unpack("!I", peer.buffer[:4])
            if len(peer.buffer) < 4 + length:
                break
            body, peer.buffer = bytes(peer.buffer[4 : 4 + length]), peer.buffer[4 + length :]
            try:
                message = client.decode(body)
            except ValueError:
                self._client_gone(peer)
                return
            self._on_message(peer, message)

    def _on_message(self, peer: Peer, message: dict) -> None:
        kind = message.get("type")
        if peer.job is not None:
            if kind == "signal" and message.get("signum") in (signal.SIGINT, signal.SIGTERM):
                self._cancel(peer.job, int(message["signum"]))
            return
        if kind == "status":
            self._answer(peer.conn, self.status())
            self._drop(peer.conn)
        elif kind == "stop":
            self._answer(peer.conn, {"type": "stopping", "pid": self.pid})
            peer.waits_for_stop = True
            self.begin_stop("maxconv serve --stop", message.get("grace"))
        elif kind == "job":
            self._on_job(peer, message)
        else:
            self._drop(peer.conn)

    def _on_job(self, peer: Peer, request: dict) -> None:
        fds, peer.fds = peer.fds, []
        if len(fds) != len(request.get("fds", ())) or len(fds) > _MAX_FDS:
            close_all(fds)
            self._drop(peer.conn)
            return
        if (
            request.get("protocol") != client.PROTOCOL
            or request.get("fingerprint") != self.fingerprint
        ):
            close_all(fds)
            self._answer(
                peer.conn, {"type": "mismatch", "pid": self.pid, "fingerprint": self.fingerprint}
            )
            self._drop(peer.conn)
            return
        if self.stopping or len(self.waiting) >= _MAX_WAITING:
            close_all(fds)
            self._answer(peer.conn, {"type": "declined", "reason": "stopping or full"})
            self._drop(peer.conn)
            return
        self.jobs_counter += 1
        job = Job(self.jobs_counter, peer.conn, request, fds)
        peer.job = job
        self._answer(peer.conn, {"type": "accepted", "pid": self.pid, "job": job.number})
        self.waiting.append(job)
        self._start_waiting()

    def _answer(self, conn: socket.socket, message: dict) -> None:
        try:
            conn.setblocking(True)
            conn.settimeout(5.0)
            conn.sendall(client.encode(message))
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.setblocking(False)

    def _drop(self, conn: socket.socket) -> None:
        peer = self.peers.pop(conn.fileno(), None)
        if peer is not None:
            close_all(peer.fds)
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(conn)
        conn.close()

    def _client_gone(self, peer: Peer) -> None:
        job = peer.job
        if job is None:
            self._drop(peer.conn)
            return
        job.client_gone = True
        if job in self.waiting:
            self.waiting.remove(job)
            close_all(job.fds)
        elif job.pid is not None:
            # Usually the job has told it its exit code and is ending (signals are
            # ignored by then); else the client died or was killed: cancel the job.
            with contextlib.suppress(ProcessLookupError):
                os.kill(job.pid, signal.SIGTERM)
        self._drop(peer.conn)

    def _cancel(self, job: Job, signum: int) -> None:
        if job.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(job.pid, signum)
            return
        self.waiting.remove(job)
        close_all(job.fds)
        word = "interrupted" if signum == signal.SIGINT else "terminated"
        self._answer(
            job.conn,
            {
                "type": "exit",
                "code": 128 + signum,
                "message": f"{word} before it started; no output was written",
            },
        )
        self._drop(job.conn)


def close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
