"""`maxconv serve` and the client in `python -m maxconv`: real server processes, real clients.

Each test gets its own socket folder (MAXCONV_RUNTIME_DIR, short, under /tmp:
a Unix socket path holds 107 bytes at most) and its own server process; the
tests that leave the server running share one per module. Every server and
client uses the session's compiled-graph cache (conftest.py). Outputs made
through the server are compared byte for byte with in-process ones. No
timing is asserted: speed lives in scripts/server_bench.py.
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from maxconv import client
from maxconv.cli import app

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="maxconv serve needs Linux"
)

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
SPEECH = SAMPLES / "speech.wav"
MUSIC = SAMPLES / "music.flac"
MAXCONV = [sys.executable, "-m", "maxconv"]
# A job of a couple of seconds on the 2-core machine: 2^23 samples through a
# million-tap FFT filter on the CPU; its temp output exists for nearly all of
# it. The tests stop it there (SIGSTOP), so that a fast machine cannot finish
# it before the signal under test arrives.
LONG_JOB = ["-k", "lowpass:3000", "--taps", "1048575", "--device", "cpu"]
START_TIMEOUT = 120.0

runner = CliRunner()


class ServerProcess:
    """A `python -m maxconv serve` in the foreground, in its own socket folder."""

    def __init__(self, folder: Path, *args: str, pythonpath: Path | None = None) -> None:
        self.folder = folder
        self.env = environment(folder)
        server_env = dict(self.env)
        if pythonpath is not None:  # `python -m` looks in the current folder first
            server_env["PYTHONPATH"] = str(pythonpath)
        self.log_path = folder / "test-server.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*MAXCONV, "serve", "--idle", "10", "--grace", "5", *args],
                env=server_env,
                cwd=pythonpath,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def wait_ready(self) -> ServerProcess:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited {self.process.returncode}: {self.log()}")
            answer = self.status()
            if answer is not None and answer["pid"] == self.process.pid:
                return self
            time.sleep(0.05)
        pytest.fail(f"server not ready in {START_TIMEOUT} s: {self.log()}")

    def status(self) -> dict | None:
        return client.request({"type": "status"}, str(self.folder))

    def served(self, expected: int | None = None) -> int:
        """Jobs served; with `expected`, waits (up to 30 s) for that count.

        A client has its exit code from the job itself, a moment before the
        server has reaped the job and counted it.
        """
        deadline = time.monotonic() + 30
        while True:
            answer = self.status()
            assert answer is not None, self.log()
            if expected is None or answer["served"] >= expected or time.monotonic() > deadline:
                return answer["served"]
            time.sleep(0.02)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def environment(folder: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, MAXCONV_RUNTIME_DIR=str(folder), **extra)
    env.pop("MAXCONV_SERVER", None)
    return env


def socket_folder() -> Path:
    """A fresh, private folder for one server's socket, with a short path."""
    return Path(tempfile.mkdtemp(prefix="mcs-"))


def run(args: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*MAXCONV, *args], env=env, capture_output=True, timeout=300, **kwargs)


def in_process(args: list[str]) -> None:
    """The reference: the same command line run by the CLI in this process."""
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith(".maxconv-"))


def wait_for_temp_output(folder: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until the job has begun writing its output (a temp file beside the target)."""
    deadline = time.monotonic() + timeout
    while not leftovers(folder):
        if process.poll() is not None:
            pytest.fail(f"the job ended before writing: {process.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail("the job never began writing")
        time.sleep(0.005)


def paused_job(server: ServerProcess, folder: Path, process: subprocess.Popen) -> int:
    """Wait until the server's one job writes its output, then stop it there: its pid."""
    wait_for_temp_output(folder, process)
    jobs = server.status()["jobs"]
    assert len(jobs) == 1, jobs
    os.kill(jobs[0]["pid"], signal.SIGSTOP)
    return jobs[0]["pid"]


def on_a_terminal(command: list[str], env: dict[str, str], pause: float = 0.0):
    """Run `command` with stdout and stderr on a new pseudo-terminal: (exit code, bytes shown).

    With `pause`, the server's job is stopped for that long once it writes its output.
    """
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary
    )
    os.close(secondary)
    shown, paused = b"", None
    while True:
        ready, _, _ = select.select([primary], [], [], 0.01)
        if ready:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's last writer has gone
                break
            if not chunk:
                break
            shown += chunk
        elif process.poll() is not None:
            break
        if pause and paused is None and leftovers(Path(command[-1]).parent):
            paused = pause_briefly(env, pause)
    os.close(primary)
    return process.wait(60), shown


def pause_briefly(env: dict[str, str], seconds: float) -> bool:
    jobs = client.request({"type": "status"}, env["MAXCONV_RUNTIME_DIR"])["jobs"]
    os.kill(jobs[0]["pid"], signal.SIGSTOP)
    time.sleep(seconds)
    os.kill(jobs[0]["pid"], signal.SIGCONT)
    return True


@pytest.fixture(scope="module")
def server():
    folder = socket_folder()
    started = ServerProcess(folder).wait_ready()
    yield started
    started.close()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def own_folder():
    folder = socket_folder()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def long_input(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("long") / "long.wav"
    noise = np.random.default_rng(15).standard_normal(1 << 23).astype(np.float32) * 0.1
    sf.write(path, noise, 48000, subtype="FLOAT")
    return path


# Commands through the server ---------------------------------------------------------------


def test_a_file_through_the_server_is_byte_identical(server, tmp_path):
    before = server.served()
    args = ["filter", str(SPEECH), "-k", "lowpass:3000"]
    result = run([*args, "-o", str(tmp_path / "served.wav")], server.env)
    assert result.returncode == 0, result.stderr
    assert b"speech.wav -> " in result.stderr
    assert server.served(before + 1) == before + 1
    in_process([*args, "-o", str(tmp_path / "local.wav")])
    assert (tmp_path / "served.wav").read_bytes() == (tmp_path / "local.wav").read_bytes()


def test_a_folder_of_files_through_the_server(server, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.wav", "b.wav", "c.wav"):
        shutil.copy(SPEECH, inputs / name)
    served, local = tmp_path / "served", tmp_path / "local"
    served.mkdir()
    local.mkdir()
    names = [str(inputs / name) for name in ("a.wav", "b.wav", "c.wav")]
    result = run(["filter", *names, "-k", "highpass:300", "-o", f"{served}/", "-q"], server.env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    in_process(["filter", *names, "-k", "highpass:300", "-o", f"{local}/", "-q"])
    for name in ("a.wav", "b.wav", "c.wav"):
        assert (served / name).read_bytes() == (local / name).read_bytes()


def test_relative_paths_resolve_in_the_clients_folder(server, tmp_path):
    shutil.copy(SPEECH, tmp_path / "here.wav")
    result = run(
        ["filter", "here.wav", "-k", "lowpass:2000", "-o", "there.wav", "-q"],
        server.env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "there.wav").is_file()


def test_outputs_get_the_clients_umask(server, tmp_path):
    """The job creates files as the client's process would (umask 077: mode 0600)."""
    command = [*MAXCONV, "filter", str(SPEECH), "-k", "lowpass:3000", "-q", "-o"]
    for name, env in (
        ("served.wav", server.env),
        ("local.wav", dict(server.env, MAXCONV_SERVER="off")),
    ):
        result = subprocess.run(
            ["sh", "-c", 'umask 077 && exec "$@"', "sh", *command, str(tmp_path / name)],
            env=env,
            capture_output=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "served.wav").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "local.wav").stat().st_mode & 0o777 == 0o600


def test_stdin_to_stdout_in_a_pipeline(server, tmp_path):
    before = server.served()
    command = " ".join(
        [
            f"cat {SPEECH} |",
            *MAXCONV,
            "filter - -k lowpass:3000 -o - -q |",
            f"cat > {tmp_path / 'piped.wav'}",
        ]
    )
    result = subprocess.run(command, shell=True, env=server.env, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert server.served(before + 1) == before + 1
    in_process(["filter", str(SPEECH), "-k", "lowpass:3000", "-o", str(tmp_path / "local.wav")])
    assert (tmp_path / "piped.wav").read_bytes() == (tmp_path / "local.wav").read_bytes()


def test_a_run_with_no_terminal_and_no_session(server, tmp_path):
    """As from cron: a new session, stdin from /dev/null, output to files."""
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        code = subprocess.run(
            [*MAXCONV, "filter", str(MUSIC), "-k", "lowpass:3000", "-o", str(tmp_path / "m.flac")],
            env=server.env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            timeout=300,
        ).returncode
    assert code == 0, err.read_text()
    assert "music.flac -> " in err.read_text() and out.read_bytes() == b""
    in_process(["filter", str(MUSIC), "-k", "lowpass:3000", "-o", str(tmp_path / "local.flac")])
    assert (tmp_path / "m.flac").read_bytes() == (tmp_path / "local.flac").read_bytes()


def test_progress_draws_on_the_clients_terminal(server, tmp_path, long_input):
    """stderr is the client's terminal itself: rich sees a TTY and draws its bar.

    The bar shows once a job has run for a second: the job is held for 1.2 s.
    """
    code, shown = on_a_terminal(
        [*MAXCONV, "filter", str(long_input), *LONG_JOB, "-o", str(tmp_path / "out.wav")],
        environment(server.folder, TERM="xterm", COLUMNS="100"),
        pause=1.2,
    )
    assert code == 0, shown
    assert "━".encode() in shown, shown  # the bar
    assert b"long.wav -> " in shown


@pytest.mark.parametrize("no_color", [None, "1"])
def test_terminal_output_is_the_in_process_one(server, tmp_path, no_color):
    """Colours follow the client's terminal and NO_COLOR: the bytes shown are the same."""
    extra = {"TERM": "xterm", "COLUMNS": "90"} | ({"NO_COLOR": no_color} if no_color else {})
    env = environment(server.folder, **extra)
    command = [*MAXCONV, "filter", str(tmp_path / "missing.wav"), "-k", "lowpass:1", "-o", "x.wav"]
    served = on_a_terminal(command, env)
    local = on_a_terminal(command, dict(env, MAXCONV_SERVER="off"))
    assert served == local
    assert served[0] == 3
    assert (b"\x1b[" in served[1]) == (no_color is None), served


def test_other_commands_through_the_server(server):
    before = server.served()
    for args in (["devices"], ["demo", "--device", "cpu"], ["cache", "info"], ["--help"]):
        served = run(args, server.env)
        local = run(args, dict(server.env, MAXCONV_SERVER="off"))
        assert served.returncode == local.returncode == 0, served.stderr
        assert served.stdout == local.stdout
    assert server.served(before + 4) == before + 4


def test_errors_and_usage_keep_their_exit_codes(server, tmp_path):
    missing = run(
        ["filter", str(tmp_path / "nope.wav"), "-k", "lowpass:1000", "-o", "x.wav"], server.env
    )
    assert missing.returncode == 3
    assert missing.stderr.decode().startswith("error: ")
    usage = run(["filter", "--no-such-option"], server.env)
    local = run(["filter", "--no-such-option"], dict(server.env, MAXCONV_SERVER="off"))
    assert usage.returncode == local.returncode == 2
    assert usage.stderr == local.stderr


def test_maxconv_server_off_runs_in_process(server, tmp_path):
    before = server.served()
    env = dict(server.env, MAXCONV_SERVER="off")
    result = run(["filter", str(SPEECH), "-k", "lowpass:3000", "-o", str(tmp_path / "o.wav")], env)
    assert result.returncode == 0, result.stderr
    assert server.served() == before


def test_concurrent_clients_write_their_own_outputs(server, tmp_path):
    before = server.served()
    kernels = [
        "lowpass:500",
        "lowpass:2000",
        "highpass:300",
        "bandpass:300-3000",
        "bandstop:1000-2000",
    ]
    processes = [
        subprocess.Popen(
            [
                *MAXCONV,
                "filter",
                str(SPEECH),
                "-k",
                kernel,
                "-o",
                str(tmp_path / f"s{i}.wav"),
                "-q",
            ],
            env=environment(server.folder, MAXCONV_TEST_JOB=str(i)),
            stderr=subprocess.PIPE,
        )
        for i, kernel in enumerate(kernels)
    ]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    assert server.served(before + len(kernels)) == before + len(kernels)
    for i, kernel in enumerate(kernels):
        in_process(["filter", str(SPEECH), "-k", kernel, "-o", str(tmp_path / f"l{i}.wav"), "-q"])
        assert (tmp_path / f"s{i}.wav").read_bytes() == (tmp_path / f"l{i}.wav").read_bytes()


@pytest.mark.parametrize(
    ("signum", "code", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_a_signal_in_the_client_cancels_the_job(server, tmp_path, long_input, signum, code, word):
    target = tmp_path / "out.wav"
    process = subprocess.Popen(
        [*MAXCONV, "filter", str(long_input), *LONG_JOB, "-o", str(target)],
        env=server.env,
        stderr=subprocess.PIPE,
    )
    job = paused_job(server, tmp_path, process)
    process.send_signal(signum)
    time.sleep(0.2)  # the client forwards it; the job handles it once continued
    os.kill(job, signal.SIGCONT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert err.decode().strip().splitlines()[-1] == f"{word}; no partial output was left"
    assert not target.exists()
    assert leftovers(tmp_path) == []


# Server life ---------------------------------------------------------------------------------


def test_without_a_spare_each_job_is_forked_afresh(own_folder, tmp_path, long_input):
    server = ServerProcess(own_folder, "--no-spare").wait_ready()
    try:
        assert server.status()["spare"] is None
        args = ["filter", str(SPEECH), "-k", "lowpass:3000", "-q"]
        result = run([*args, "-o", str(tmp_path / "served.wav")], server.env)
        assert result.returncode == 0, result.stderr
        in_process([*args, "-o", str(tmp_path / "local.wav")])
        assert (tmp_path / "served.wav").read_bytes() == (tmp_path / "local.wav").read_bytes()
        target = tmp_path / "out.wav"
        process = subprocess.Popen(
            [*MAXCONV, "filter", str(long_input), *LONG_JOB, "-o", str(target)],
            env=server.env,
            stderr=subprocess.PIPE,
        )
        job = paused_job(server, tmp_path, process)
        process.send_signal(signal.SIGINT)
        time.sleep(0.2)
        os.kill(job, signal.SIGCONT)
        _, err = process.communicate(timeout=120)
        assert process.returncode == 130, err
        assert not target.exists() and leftovers(tmp_path) == []
        assert server.served(2) == 2
    finally:
        server.close()


def test_status_stop_and_detach(own_folder, tmp_path):
    env = environment(own_folder)
    status = run(["serve", "--status"], env)
    assert status.returncode == 1 and b"no maxconv server" in status.stdout
    started = run(["serve", "--detach", "--idle", "1"], env)
    assert started.returncode == 0, started.stderr
    status = run(["serve", "--status"], env)
    assert status.returncode == 0, status.stderr
    text = status.stdout.decode()
    assert "maxconv server running: pid " in text and "devices: " in text
    assert "jobs served: 0" in text
    again = run(["serve", "--detach"], env)
    assert again.returncode == 0 and b"already runs" in again.stdout
    result = run(["filter", str(SPEECH), "-k", "lowpass:3000", "-o", str(tmp_path / "o.wav")], env)
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 30  # counted once the server has reaped the job
    while b"jobs served: 1" not in run(["serve", "--status"], env).stdout:
        assert time.monotonic() < deadline
    stopped = run(["serve", "--stop"], env)
    assert stopped.returncode == 0 and b"stopped the maxconv server" in stopped.stdout
    assert not (own_folder / client.SOCKET_NAME).exists()
    assert run(["serve", "--status"], env).returncode == 1
    assert run(["serve", "--stop"], env).returncode == 1


def test_the_server_exits_when_idle(own_folder):
    server = ServerProcess(own_folder, "--idle", "0.05").wait_ready()  # 3 s
    try:
        assert server.process.wait(60) == 0
        assert "no job for 0.05 minutes" in server.log()
        assert not (own_folder / client.SOCKET_NAME).exists()
    finally:
        server.close()


def test_a_second_server_for_the_same_folder_is_refused(own_folder):
    first = ServerProcess(own_folder).wait_ready()
    try:
        second = run(["serve"], first.env)
        assert second.returncode == 1
        assert f"already runs for this folder (pid {first.process.pid})" in second.stderr.decode()
    finally:
        first.close()


def test_a_server_killed_mid_job(own_folder, tmp_path, long_input):
    server = ServerProcess(own_folder).wait_ready()
    target = tmp_path / "out.wav"
    try:
        process = subprocess.Popen(
            [*MAXCONV, "filter", str(long_input), *LONG_JOB, "-o", str(target)],
            env=server.env,
            stderr=subprocess.PIPE,
        )
        job = paused_job(server, tmp_path, process)
        server.process.kill()
        server.process.wait()
        os.kill(job, signal.SIGCONT)
        _, err = process.communicate(timeout=120)
    finally:
        server.close()
    assert process.returncode == 1
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "stopped during this command" in lines[0], lines
    assert not target.exists()
    assert leftovers(tmp_path) == []
    # The dead server's socket is stale: the next command runs in-process.
    result = run(
        ["filter", str(SPEECH), "-k", "lowpass:3000", "-o", str(tmp_path / "o.wav")], server.env
    )
    assert result.returncode == 0, result.stderr
    assert b"warning" not in result.stderr


def test_a_stale_socket_is_ignored_then_replaced(own_folder, tmp_path):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(own_folder / client.SOCKET_NAME))
    stale.close()  # the file stays, nobody listens
    env = environment(own_folder)
    result = run(["filter", str(SPEECH), "-k", "lowpass:3000", "-o", str(tmp_path / "a.wav")], env)
    assert result.returncode == 0, result.stderr
    assert b"warning" not in result.stderr
    server = ServerProcess(own_folder).wait_ready()
    try:
        assert "replaced a stale socket" in server.log()
        result = run(
            ["filter", str(SPEECH), "-k", "lowpass:3000", "-o", str(tmp_path / "b.wav")], env
        )
        assert result.returncode == 0, result.stderr
        assert server.served(1) == 1
    finally:
        server.close()
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


def test_a_server_of_other_code_is_not_used(own_folder, tmp_path):
    """A server started from a copy of maxconv with another version runs nothing of ours."""
    other = tmp_path / "other"
    shutil.copytree(
        ROOT / "maxconv", other / "maxconv", ignore=shutil.ignore_patterns("__pycache__")
    )
    init = other / "maxconv" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "0.0.0-other-'))
    server = ServerProcess(own_folder, pythonpath=other).wait_ready()
    try:
        env = environment(own_folder)
        args = ["filter", str(SPEECH), "-k", "lowpass:3000", "-q"]
        first = run([*args, "-o", str(tmp_path / "a.wav")], env)
        assert first.returncode == 0, first.stderr
        warning = first.stderr.decode().strip()
        assert warning.startswith(
            f"warning: the maxconv server (pid {server.process.pid}) runs other code"
        )
        assert "maxconv 0.0.0-other-" in warning and "maxconv serve --stop" in warning
        second = run([*args, "-o", str(tmp_path / "b.wav")], env)
        assert second.returncode == 0 and second.stderr == b""  # said once
        assert server.served() == 0
    finally:
        server.close()


def test_a_socket_folder_others_can_enter_is_refused(own_folder, tmp_path):
    os.chmod(own_folder, 0o755)
    refused = run(["serve"], environment(own_folder))
    assert refused.returncode == 1
    assert refused.stderr.decode().strip() == (
        f"error: socket folder '{own_folder}' has mode 0755, others can enter it; "
        f"run chmod 700 '{own_folder}' (or remove it)"
    )
    # A server's socket in a folder opened up later is not used either; the command still runs.
    os.chmod(own_folder, 0o700)
    server = ServerProcess(own_folder).wait_ready()
    try:
        os.chmod(own_folder, 0o711)
        result = run(
            ["filter", str(SPEECH), "-k", "lowpass:3000", "-o", str(tmp_path / "o.wav")], server.env
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr.decode().startswith(
            "warning: not using the maxconv server: socket folder"
        )
        os.chmod(own_folder, 0o700)
        assert server.served() == 0
    finally:
        os.chmod(own_folder, 0o700)
        server.close()
