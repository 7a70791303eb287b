"""`maxconv cache info|clear`: the compiled-graph cache."""

from __future__ import annotations

import typer

from .cli_errors import stdout

cache_app = typer.Typer(help="Inspect or clear the compiled-graph cache.", no_args_is_help=True)


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
