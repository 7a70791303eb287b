"""`maxconv demo`: the reference example of the original custom-op exercise."""

from __future__ import annotations

import typer

from .cli_errors import reported_errors, stdout
from .cli_options import DebugOption, DeviceOption


def _format_samples(values) -> str:  # noqa: ANN001
    import numpy as np

    return np.array2string(np.asarray(values), formatter={"float_kind": lambda v: f"{v:g}"})


def demo(device: DeviceOption = "auto", debug: DebugOption = False) -> None:
    """Run the reference example: arange(15) correlated with arange(4)."""
    with reported_errors(debug):
        import numpy as np

        from .convolution import conv1d
        from .engine import get_engine

        samples = np.arange(15, dtype=np.float32)
        kernel = np.arange(4, dtype=np.float32)
        expected = np.correlate(np.pad(samples, (0, kernel.size - 1)), kernel, mode="valid")
        result = conv1d(samples, kernel, device=device)
        engine = get_engine(device)
        stdout.print(f"Input: {_format_samples(samples)}")
        stdout.print(f"Kernel: {_format_samples(kernel)}")
        stdout.print(f"Expected (numpy): {_format_samples(expected)}")
        stdout.print(f"Custom op conv1d on {engine.label}: {_format_samples(result)}")
        if not np.allclose(result, expected):
            stdout.print("Verification FAILED: custom op and numpy disagree")
            raise typer.Exit(1)
        stdout.print("Verification passed")
