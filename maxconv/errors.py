"""Exceptions that maxconv reports to users instead of tracebacks.

Every failure that ordinary bad input can cause is raised as a subclass of
:class:`MaxconvError`. The command line catches that one base class, prints the
message (one line that names the file or argument and says what to do) and exits
with the class's ``exit_code``, so scripts can tell bad input from a bad kernel
from an unwritable output without parsing text.

Exit codes of the `maxconv` command: 0 success, 1 other failure (engine,
bad option value), 2 usage error (typer), 3 input, 4 kernel, 5 output,
130 interrupted (SIGINT), 143 terminated (SIGTERM).
"""

from __future__ import annotations


class MaxconvError(Exception):
    """Base for failures that should reach the user as one line, not a traceback."""

    exit_code: int = 1


class InputError(MaxconvError):
    """The input signal cannot be read or is not usable data."""

    exit_code = 3


class KernelError(MaxconvError):
    """The filter kernel cannot be loaded, parsed, designed or matched to the input."""

    exit_code = 4


class OutputError(MaxconvError):
    """The result cannot be written where the user asked."""

    exit_code = 5
