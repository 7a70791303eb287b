"""`maxconv demo`, `devices` and `cache` through typer's CliRunner and a real subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from maxconv.cli import app

runner = CliRunner()
SAMPLES = Path(__file__).resolve().parent.parent / "samples"
REFERENCE = "[14 20 26 32 38 44 50 56 62 68 74 80 41 14 0]"


def test_demo_prints_reference_and_passes():
    result = runner.invoke(app, ["demo", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert f"Expected (numpy): {REFERENCE}" in result.stdout
    assert f"Custom op conv1d on cpu: {REFERENCE}" in result.stdout
    assert result.stdout.rstrip().endswith("Verification passed")


def test_demo_bad_device_is_one_line_and_exit_1():
    result = subprocess.run(
        [sys.executable, "-m", "maxconv.cli", "demo", "--device", "tpu"],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: device must be 'auto', 'cpu', 'gpu' or 'gpu:N', not 'tpu'"
    ]


def test_devices_lists_cpu():
    result = runner.invoke(app, ["devices"])
    assert result.exit_code == 0 and "cpu" in result.stdout


def test_cache_info_and_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("MAXCONV_CACHE_DIR", str(tmp_path))
    (tmp_path / "conv1d-abc.mef").write_bytes(b"x" * 2000)
    info = runner.invoke(app, ["cache", "info"])
    assert info.exit_code == 0 and str(tmp_path) in info.stdout and "entries: 1" in info.stdout
    cleared = runner.invoke(app, ["cache", "clear"])
    assert cleared.exit_code == 0 and "removed 1 entry" in cleared.stdout
    assert not list(tmp_path.glob("*.mef"))


def test_a_signal_swallowed_by_a_callback_still_abandons_the_output(tmp_path, monkeypatch):
    """cffi swallows exceptions raised inside soundfile's I/O callbacks; the record stays."""
    import signal

    from maxconv import cli_errors

    monkeypatch.setattr(cli_errors, "_SIGNALS_SEEN", [signal.SIGTERM])
    out = tmp_path / "out.wav"
    result = runner.invoke(
        app, ["filter", str(SAMPLES / "speech.wav"), "-k", str(SAMPLES / "eq.txt"), "-o", str(out)]
    )
    assert result.exit_code == 143
    assert not out.exists() and not list(tmp_path.glob(".*.part"))


@pytest.fixture
def saved_signal_handlers():
    """Put SIGINT/SIGTERM back as they were: these tests change them as the command does."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_signals_before_the_cli_loads_exit_quietly(monkeypatch, saved_signal_handlers):
    import maxconv.__main__ as entry
    import maxconv.cli

    seen = {}

    def fake_cli() -> None:
        seen.update(
            {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        )

    monkeypatch.setattr(maxconv.cli, "run_and_exit", fake_cli)
    entry.main()
    assert seen == {signal.SIGINT: entry._exit_quietly, signal.SIGTERM: entry._exit_quietly}
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        with pytest.raises(SystemExit) as exit_info:
            entry._exit_quietly(signum, None)
        assert exit_info.value.code == code


def test_signals_are_ignored_once_a_command_has_returned(monkeypatch, saved_signal_handlers):
    """Its outputs are committed or removed: a late signal must not kill a finished run."""
    import maxconv.cli

    monkeypatch.setattr(sys, "argv", ["maxconv", "cache", "info"])
    with pytest.raises(SystemExit) as exit_info:
        maxconv.cli.main()
    assert exit_info.value.code == 0
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN


def test_run_and_exit_flushes_and_ends_with_the_commands_code(monkeypatch, saved_signal_handlers):
    import maxconv.cli

    exits = []
    monkeypatch.setattr(os, "_exit", exits.append)
    for argv, code in (
        (["maxconv", "cache", "info"], 0),
        (["maxconv", "demo", "--device", "tpu"], 1),
    ):
        monkeypatch.setattr(sys, "argv", argv)
        maxconv.cli.run_and_exit()
        assert exits.pop() == code


def test_python_dash_m_maxconv_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "maxconv", "demo", "--device", "cpu"],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("Verification passed")


def test_a_commands_own_exit_code_is_not_reported_as_an_error():
    """typer.Exit is a RuntimeError: reported_errors passes it through untouched."""
    import typer

    from maxconv.cli_errors import reported_errors

    small = typer.Typer()

    @small.command()
    def fails() -> None:
        with reported_errors():
            raise typer.Exit(1)

    @small.command()
    def other() -> None:  # two commands, so typer keeps the command name
        pass

    result = CliRunner().invoke(small, ["fails"])
    assert result.exit_code == 1 and "error" not in result.output
