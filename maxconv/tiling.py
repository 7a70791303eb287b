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


def iter_batches(padded: np.ndarray, plan: TilePlan) -> Iterator[np.ndarray]:
    """Yield contiguous [C, b, W] batches of tiles from a [C, L] padded signal.

    `padded` must hold at least `plan.padded_length` samples per channel;
    tiles are views into it until each batch is copied out.
    """
    if padded.shape[-1] < plan.padded_length:
        raise ValueError("padded signal is shorter than the tile plan needs")
    windows = np.lib.stride_tricks.sliding_window_view(padded, plan.width, axis=-1)
    tiles = windows[:, : plan.tiles * plan.tile : plan.tile]
    for first in range(0, plan.tiles, plan.batch):
        yield np.ascontiguousarray(tiles[:, first : first + plan.batch])


def stitch(batches: list[np.ndarray], outputs: int) -> np.ndarray:
    """Join [C, b, T] batch results into [C, outputs], dropping the padding tail."""
    joined = np.concatenate([part.reshape(part.shape[0], -1) for part in batches], axis=1)
    return joined[:, :outputs]
