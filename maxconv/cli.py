"""The `maxconv` command line: parse, call the library, render.

Signal logic lives in the library; this module only maps arguments to calls,
errors to one line on stderr with a documented exit code, and results to
rich output. Heavy modules (MAX) are imported inside the commands so that
`--help` and argument errors stay instant.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.console import Console

from .errors import MaxconvError

app = typer.Typer(
    help="Filter signals by 1-D convolution with a Mojo custom op in a cached MAX graph.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
cache_app = typer.Typer(help="Inspect or clear the compiled-graph cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")

stderr = Console(stderr=True, highlight=False)
stdout = Console(highlight=False)

DeviceOption = Annotated[
    str, typer.Option("--device", "-d", help="auto (GPU if there is one), cpu, gpu or gpu:N.")
]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    stderr.print(f"[yellow]warning:[/] {message}", soft_wrap=True)


@contextlib.contextmanager
def reported_errors(debug: bool = False) -> Iterator[None]:
    """Turn expected failures into one stderr line and an exit code.

    Exit codes: 1 for a bad argument value or an engine failure, and the
    `exit_code` of the MaxconvError subclass for input, kernel and output
    faults (see errors.py); typer itself uses 2 for usage errors.
    """
    warnings.showwarning = _one_line_warning
    try:
        yield
    except (MaxconvError, ValueError, TypeError, OSError) as exc:
        if debug:
            raise
        stderr.print(f"[red]error:[/] {exc}", soft_wrap=True)
        code = exc.exit_code if isinstance(exc, MaxconvError) else 1
        raise typer.Exit(code) from None


def _format_samples(values) -> str:  # noqa: ANN001
    import numpy as np

    return np.array2string(np.asarray(values), formatter={"float_kind": lambda v: f"{v:g}"})


@app.command()
def demo(device: DeviceOption = "auto", debug: DebugOption = False) -> None:
    """Run the reference example: arange(15) correlated with arange(4)."""
    with reported_errors(debug):
        import numpy as np

        from .convolution import conv1d
        from .engine import get_engine

        signal = np.arange(15, dtype=np.float32)
        kernel = np.arange(4, dtype=np.float32)
        expected = np.correlate(np.pad(signal, (0, kernel.size - 1)), kernel, mode="valid")
        result = conv1d(signal, kernel, device=device)
        engine = get_engine(device)
        stdout.print(f"Input: {_format_samples(signal)}")
        stdout.print(f"Kernel: {_format_samples(kernel)}")
        stdout.print(f"Expected (numpy): {_format_samples(expected)}")
        stdout.print(f"Custom op conv1d on {engine.label}: {_format_samples(result)}")
        if not np.allclose(result, expected):
            stdout.print("Verification FAILED: custom op and numpy disagree")
            raise typer.Exit(1)
        stdout.print("Verification passed")


@app.command()
def devices(debug: DebugOption = False) -> None:
    """List the devices maxconv can run on."""
    with reported_errors(debug):
        from rich.table import Table

        from .devices import describe_devices

        table = Table("device", "name", "api")
        for entry in describe_devices():
            table.add_row(entry["device"], entry["name"], entry["api"])
        stdout.print(table)


@cache_app.command("info")
def cache_info() -> None:
    """Show where the compiled-graph cache is and how big it is."""
    from .cache import GraphCache

    cache = GraphCache()
    entries = cache.entries()
    stdout.print(f"cache folder: {cache.root}")
    stdout.print(f"entries: {len(entries)}, {cache.size_bytes() / 1e6:.1f} MB")


@cache_app.command("clear")
def cache_clear() -> None:
    """Delete every compiled graph in the cache."""
    from .cache import GraphCache

    cache = GraphCache()
    removed = cache.clear()
    stdout.print(f"removed {removed} entr{'y' if removed == 1 else 'ies'} from {cache.root}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
