"""Research copy of an FFT custom op for maxconv; this package only re-exports it."""
from .fft_conv import *
