"""How every maxconv command ends: one line on stderr and a documented exit code.

The consoles (data to stdout, reports to stderr), the signal handlers that
turn Ctrl-C and SIGTERM into exit codes 130 and 143 with no partial output
left behind, and `reported_errors`, which maps expected failures to one
line and their exit codes (errors.py lists them).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import warnings
from collections.abc import Iterator

import typer
from rich.console import Console

from .errors import MaxconvError

# No emoji codes in maxconv's output: rich builds its emoji table at the
# first print otherwise (18-20 ms of a command without cached bytecode).
stderr = Console(stderr=True, highlight=False, emoji=False)
stdout = Console(highlight=False, emoji=False)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    stderr.print(f"[yellow]warning:[/] {message}", soft_wrap=True)


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so that cleanup code runs."""


_SIGNALS_SEEN: list[int] = []


def _on_signal(signum: int, frame: object) -> None:
    """Record the signal, then raise it as an exception.

    The record matters: a signal that lands while libsndfile is inside one
    of soundfile's Python callbacks raises there, and cffi swallows the
    exception; `raise_if_signalled` raises it again at the next safe point.
    """
    _SIGNALS_SEEN.append(signum)
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def _quiet_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """Hide what cffi swallows in soundfile's callbacks and maxconv handles itself.

    A full disk (OSError, reported by the writer) or a signal (re-raised by
    `raise_if_signalled`) would otherwise also print cffi's traceback.
    """
    if issubclass(unraisable.exc_type, (OSError, KeyboardInterrupt, Terminated)):
        return
    sys.__unraisablehook__(unraisable)


def raise_if_signalled(*_: object) -> None:
    """Raise a signal that an inner callback swallowed (see `_on_signal`)."""
    if _SIGNALS_SEEN:
        raise KeyboardInterrupt() if _SIGNALS_SEEN[0] == signal.SIGINT else Terminated()


def _discard_uncommitted_outputs() -> None:
    """Delete temp outputs that a signal cut off before their writer could.

    Only if maxconv.atomic was imported at all: otherwise nothing was written, and
    importing it here would only slow the exit down.
    """
    atomic = sys.modules.get("maxconv.atomic")
    if atomic is not None:
        atomic.discard_uncommitted()


@contextlib.contextmanager
def reported_errors(debug: bool = False) -> Iterator[None]:
    """Turn expected failures into one stderr line and an exit code.

    Exit codes (errors.py lists them): 1 for a bad option value or an engine
    failure, 3/4/5 for input/kernel/output faults, 130 on Ctrl-C and 143 on
    SIGTERM; typer itself uses 2 for usage errors. Interruptions unwind
    through the writers, which delete their temporary files.
    """
    warnings.showwarning = _one_line_warning
    sys.unraisablehook = _quiet_unraisable
    previous = {
        signum: signal.signal(signum, _on_signal) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
        raise_if_signalled()
    except typer.Exit:
        raise  # a command's own exit code (typer.Exit is a RuntimeError too)
    except (MaxconvError, ValueError, TypeError, OSError, RuntimeError, MemoryError) as exc:
        # RuntimeError: what MAX raises when a compile or a device call fails.
        if debug:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        stderr.print(f"[red]error:[/] {message}", soft_wrap=True)
        code = exc.exit_code if isinstance(exc, MaxconvError) else 1
        raise typer.Exit(code) from None
    except KeyboardInterrupt:
        _discard_uncommitted_outputs()
        stderr.print("[red]interrupted[/]; no partial output was left")
        raise typer.Exit(130) from None
    except Terminated:
        _discard_uncommitted_outputs()
        stderr.print("[red]terminated[/]; no partial output was left")
        raise typer.Exit(143) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
