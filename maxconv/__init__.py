"""maxconv: 1-D convolution filtering with a Mojo custom op in a cached MAX graph.

The public functions are loaded on first use: importing MAX costs about half
a second, which `maxconv --help` and argument errors should not pay.
"""

from __future__ import annotations

# Not `from typing import TYPE_CHECKING`: importing typing costs every
# process ~12 ms, the server's client included.
TYPE_CHECKING = False

__all__ = ["conv1d", "convolve", "convolve_batch", "correlate", "fftconvolve", "oaconvolve"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .batch import convolve_batch
    from .convolution import conv1d, convolve, correlate, fftconvolve, oaconvolve


def __getattr__(name: str) -> object:
    if name == "convolve_batch":
        from .batch import convolve_batch as value
    elif name in __all__:
        from . import convolution

        value = getattr(convolution, name)
    else:
        raise AttributeError(f"module 'maxconv' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function (5 us a call)
    return value
