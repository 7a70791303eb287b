"""Tile planning: cutting padded signals into fixed-size tiles with a K-1 halo.

A tile holds T outputs and needs T + K - 1 inputs; neighbouring tiles share
their K-1 halo samples, so each tile is independent and the stitched outputs
equal the untiled result exactly (same arithmetic, same order per output).
Batches of tiles bound the memory one op call takes, whatever the length.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# Outputs per tile. Fixed so the op is tuned and compiled once; short signals
# use one shorter tile (all graph dimensions are symbolic, so that is free).
TILE_OUTPUTS = 1 << 16
# Upper bound on the input samples one op call carries (tiles x width x channels).
BATCH_SAMPLES = 1 << 24


# FFT tiles: L = 4K rounded up to a power of two, at least 2^14 points (where
# a transform still runs from cache at full speed), measured best or within
# 15 % of it for K from 64 to 65536 (research/fft/README.md).
FFT_MIN_POINTS = 1 << 14
# On a CPU, no more than this many points unless 2K needs them: past it a
# transform fits no cache level, and at K = 10^6 on the 2-core EPYC, L = 2^21
# (2.1 K) ran 83 MS/s where 2^22 (4.2 K) ran 60 (at K = 16384 and 240,000 the
# 4K rule stayed best or level). GPUs keep 4K (the only L measured there).
FFT_MAX_POINTS_CPU = 1 << 21


def fft_tile_outputs(n_taps: int, outputs: int, max_points: int | None = None) -> int:
    """Outputs per tile for the FFT op: T = L - K + 1 with L a power of two.

    `max_points` caps L, though never below 2K (where half of each tile is
    still output); the engine passes the cap of its device.
    """
    points = max(1 << (4 * n_taps - 1).bit_length(), FFT_MIN_POINTS)
    if max_points is not None:
        points = min(points, max(max_points, 1 << (2 * n_taps - 1).bit_length()))
    points = min(points, 1 << (outputs + n_taps - 2).bit_length())
    return max(1, points - n_taps + 1)


@dataclass(frozen=True)
class TilePlan:
    """How `outputs` results of a K-tap correlation are cut into tiles."""

    outputs: int
    taps: int
    tile: int
    tiles: int
    batch: int

    @property
    def width(self) -> int:
        """Input samples per tile: T outputs plus the K-1 halo."""
        return self.tile + self.taps - 1

    @property
    def padded_length(self) -> int:
        """Input samples the tiles cover, zeros included."""
        return self.tiles * self.tile + self.taps - 1


def plan_tiles(
    outputs: int,
    taps: int,
    channels: int = 1,
    tile: int = TILE_OUTPUTS,
    batch_samples: int = BATCH_SAMPLES,
) -> TilePlan:
    """Plan tiles for `outputs` results of a `taps`-tap correlation."""
    if outputs < 1 or taps < 1 or channels < 1:
        raise ValueError("outputs, taps and channels must be positive")
    tile = min(tile, outputs)
    tiles = -(-outputs // tile)
    batch = max(1, min(tiles, batch_samples // (channels * (tile + taps - 1))))
    return TilePlan(outputs=outputs, taps=taps, tile=tile, tiles=tiles, batch=batch)


def batch_ranges(plan: TilePlan) -> Iterator[tuple[int, int]]:
    """(first tile, tile count) of each batch, in order."""
    for first in range(0, plan.tiles, plan.batch):
        yield first, min(plan.batch, plan.tiles - first)


def fill_tiles(rows: np.ndarray, left: int, plan: TilePlan, first: int, out: np.ndarray) -> None:
    """Copy tiles first, first+1, ... into `out` [C, b, W], straight from `rows`.

    The padded signal is `left` zeros, then `rows` [C, N], then zeros; it is
    never built: each tile is one copy from `rows`, zero-filled where it
    runs past either end.
    """
    length = rows.shape[1]
    for index in range(out.shape[1]):
        begin = (first + index) * plan.tile - left
        low, high = max(begin, 0), min(begin + plan.width, length)
        tile = out[:, index]
        if low >= high:
            tile[:] = 0
            continue
        tile[:, : low - begin] = 0
        tile[:, low - begin : high - begin] = rows[:, low:high]
        tile[:, high - begin :] = 0


def store_tiles(result: np.ndarray, plan: TilePlan, first: int, tiles: np.ndarray) -> None:
    """Copy [C, b, T] tile outputs into `result` [C, outputs], dropping the padding tail."""
    start = first * plan.tile
    flat = tiles.reshape(tiles.shape[0], -1)
    count = min(flat.shape[1], plan.outputs - start)
    result[:, start : start + count] = flat[:, :count]
