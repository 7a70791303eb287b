"""The `maxconv` command line: the typer app and its commands, one module each.

Each command lives in its own module (cli_filter, cli_augment, cli_bench,
cli_calibrate, cli_demo, cli_devices, cli_cache, cli_serve): it parses, calls
the library and renders; exit policy is cli_errors', the progress bar
cli_progress'. Heavy modules (MAX) are imported inside the commands so that
`--help` and argument errors stay instant.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import NoReturn

import typer

from .cli_augment import augment_command
from .cli_bench import bench
from .cli_cache import cache_app
from .cli_calibrate import calibrate
from .cli_demo import demo
from .cli_devices import devices
from .cli_filter import filter_command
from .cli_serve import serve

app = typer.Typer(
    help="Filter signals by 1-D convolution with a Mojo custom op in a cached MAX graph.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(cache_app, name="cache")
app.command()(serve)
app.command()(demo)
app.command("filter")(filter_command)
app.command()(bench)
app.command()(calibrate)
app.command()(devices)
app.command("augment")(augment_command)


def main() -> None:
    """Run the CLI (the `maxconv` command calls this through maxconv.__main__).

    Once a command has returned, its outputs are committed or removed and its
    exit code is decided; a signal in the remaining interpreter and MAX
    teardown (a quarter of a second) could only add a traceback from wherever
    it lands, or turn a finished run into a killed one. So signals are ignored
    from there on, and the process ends with the command's own code.
    """
    try:
        app()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)


def run_to_exit_code() -> int:
    """Run the CLI and return the command's exit code (a SystemExit's, made an int)."""
    try:
        main()
        code: object = 0
    except SystemExit as exit_request:
        code = exit_request.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        sys.stderr.write(f"{code}\n")
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    return code


def run_and_exit() -> NoReturn:
    """Run the CLI, then end the process at once with the command's exit code.

    By then the outputs are committed (or removed) and every worker thread
    has finished; what remains is the interpreter's and MAX's teardown, about
    0.2 s that no user needs (a quarter of a short file's whole run, and the
    gap to FFmpeg on the reverb benchmark): the native runtime's memory and
    the device are the operating system's to reclaim. Buffered output is
    flushed first. Only a SystemExit takes this path; anything else
    propagates as usual.
    """
    os._exit(run_to_exit_code())


if __name__ == "__main__":
    run_and_exit()
