"""The typer options that several commands share."""

from __future__ import annotations

from typing import Annotated

import typer

DeviceOption = Annotated[
    str, typer.Option("--device", "-d", help="auto (GPU if there is one), cpu, gpu or gpu:N.")
]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]
