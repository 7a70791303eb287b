"""Streaming correlation: blocks in, blocks out, memory independent of length.

A long file is never held whole: outputs are produced in chunks, and each
chunk needs only the input samples under it plus the K-1 before it. This
module keeps that rolling window over any iterator of [C, n] blocks and runs
each chunk through the same tiled engine as the in-memory API, so streamed
and in-memory results are identical sample for sample.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .engine import Engine
from .planning import block_outputs
from .rows import correlate_rows

# Outputs computed per engine call when streaming (per channel).
CHUNK_OUTPUTS = 1 << 20
# Long kernels' FFT chunks take four tiles up to this many outputs (see chunk_outputs).
FFT_FOUR_TILES_UP_TO = 1 << 22


@dataclass
class Chunk:
    """One computed chunk: `wet` is the filter output, `dry` the input under it.

    `dry[:, n]` is the input sample `delay` places before full-correlation
    index `first + n`, so a dry/wet mix lines up with the filter's delay.
    """

    first: int
    wet: np.ndarray
    dry: np.ndarray


class _Window:
    """The input blocks seen so far, trimmed to what later chunks still need.

    Blocks are kept as read, not joined: a segment is copied out of them once,
    so a long kernel's chunk costs one pass over its samples rather than the
    three that joining, zero-filling and trimming one array would take.
    """

    def __init__(self, blocks: Iterator[np.ndarray], channels: int, dtype: np.dtype) -> None:
        self.blocks = blocks
        self.channels = channels
        self.dtype = dtype
        self.kept: list[np.ndarray] = []
        self.start = 0  # input index of kept[0][:, 0]
        self.end = 0  # input index one past the last kept sample
        self.exhausted = False

    def segment(self, first: int, last: int) -> np.ndarray:
        """Input samples [first, last) in input coordinates, zero outside the signal."""
        while not self.exhausted and self.end < last:
            block = next(self.blocks, None)
            if block is None:
                self.exhausted = True
            else:
                self.kept.append(block.astype(self.dtype, copy=False))
                self.end += block.shape[1]
        out = np.empty((self.channels, last - first), dtype=self.dtype)
        lo = max(first, self.start)
        hi = max(lo, min(last, self.end))  # [lo, hi): what the signal covers of the request
        out[:, : lo - first] = 0
        out[:, hi - first :] = 0
        position = self.start
        for block in self.kept:
            block_lo, block_hi = max(position, lo), min(position + block.shape[1], hi)
            if block_hi > block_lo:
                out[:, block_lo - first : block_hi - first] = block[
                    :, block_lo - position : block_hi - position
                ]
            position += block.shape[1]
        return out

    def forget_before(self, index: int) -> None:
        while self.kept and self.start + self.kept[0].shape[1] <= index:
            self.start += self.kept.pop(0).shape[1]


def stream_correlate(
    blocks: Iterable[np.ndarray],
    taps: np.ndarray,
    start: int,
    count: int,
    *,
    engine: Engine,
    delay: int = 0,
    method: str = "auto",
    chunk: int | None = None,
) -> Iterator[Chunk]:
    """Yield full-correlation outputs [start, start + count) chunk by chunk.

    full[m] = sum_j x[m - (K-1) + j] * taps[:, j], x zero outside the signal,
    exactly as `rows.correlate_rows` computes it in memory. `taps` is
    [C, K] in the compute dtype; blocks are [C, n] and may have any sizes.
    `chunk` outputs are computed per call of `engine`; None picks `chunk_outputs`.
    """
    channels, n_taps = taps.shape
    if chunk is None:
        chunk = chunk_outputs(n_taps, method, engine, taps.dtype)
    window = _Window(iter(blocks), channels, taps.dtype)
    first = start
    end = start + count
    while first < end:
        size = min(chunk, end - first)
        segment = window.segment(first - (n_taps - 1), first + size)
        wet = correlate_rows(engine, segment, taps, n_taps - 1, size, method)
        dry_from = n_taps - 1 - delay
        yield Chunk(first=first, wet=wet, dry=segment[:, dry_from : dry_from + size])
        first += size
        window.forget_before(first - (n_taps - 1))


def chunk_outputs(n_taps: int, method: str, engine: Engine, dtype: np.dtype) -> int:
    """Outputs per engine call: CHUNK_OUTPUTS, or for the FFT op an even count of whole tiles.

    A K-tap FFT block yields T = L - K + 1 outputs, rarely a divisor of
    CHUNK_OUTPUTS: at K = 240,000, 2^20 outputs would take two tiles of 808,577
    and waste a third of the work. Tiles are transformed in pairs (an odd one
    rides with zeros), and every call transforms the taps once more, which only
    several tiles amortize: four of them compute 10-20 % faster than two on
    the CPU at that K, so long kernels get four while that stays within
    FFT_FOUR_TILES_UP_TO outputs (memory grows with the chunk).
    """
    if engine.resolve_method(method, n_taps) != "fft":
        return CHUNK_OUTPUTS
    tile = block_outputs(n_taps, engine.fft_block(n_taps, 1 << 62, dtype))
    least = 4 if 4 * tile <= FFT_FOUR_TILES_UP_TO else 2
    tiles = max(-(-CHUNK_OUTPUTS // tile), least)
    return (tiles + tiles % 2) * tile
