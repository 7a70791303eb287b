"""maxconv: 1-D convolution filtering with a Mojo custom op in a cached MAX graph."""

from .convolution import conv1d, convolve, correlate

__all__ = ["conv1d", "convolve", "correlate"]
__version__ = "0.1.0"
