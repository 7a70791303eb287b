"""The Mojo custom ops of maxconv; this package only re-exports them."""
from .conv1d import *
from .fft_conv import *
