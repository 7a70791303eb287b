"""`maxconv devices`: what MAX sees."""

from __future__ import annotations

from .cli_errors import reported_errors, stdout
from .cli_options import DebugOption


def devices(debug: DebugOption = False) -> None:
    """List the devices maxconv can run on."""
    with reported_errors(debug):
        from rich.table import Table

        from .devices import describe_devices

        table = Table("device", "name", "api")
        for entry in describe_devices():
            table.add_row(entry["device"], entry["name"], entry["api"])
        stdout.print(table)
