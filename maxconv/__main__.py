"""The `maxconv` command (and `python -m maxconv`): the server first, else in-process.

Until it knows whether this user's server listens, the process imports only
the standard library (maxconv.client). If one does, the command runs there
and this process only waits for its exit code: about 0.05 s instead of the
second that importing MAX costs (`maxconv serve`). Otherwise the CLI runs
here as always.

Loading the CLI (typer, rich) takes a tenth of a second before any of its
handlers are in place; a Ctrl-C there would print Python's KeyboardInterrupt
traceback. Nothing has been written yet, so such a signal just ends the
process with the conventional code. The commands install their own handlers
(cli_errors.reported_errors) once they start.
"""

from __future__ import annotations

import signal
import sys

from .client import exit_quietly as _exit_quietly


def main() -> None:
    """Console-script entry point."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _exit_quietly)
    from .client import run_through_server

    code = run_through_server(sys.argv[1:])
    if code is not None:
        raise SystemExit(code)
    from .cli import run_and_exit

    run_and_exit()


if __name__ == "__main__":
    sys.exit(main())
