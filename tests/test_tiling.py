"""Tile planning and stitching, checked with numpy alone (no MAX needed)."""

from __future__ import annotations

import numpy as np
import pytest

from maxconv.tiling import (
    FFT_MIN_POINTS,
    batch_ranges,
    fft_tile_outputs,
    fill_tiles,
    plan_tiles,
    store_tiles,
)


def numpy_tiled_correlation(rows: np.ndarray, left: int, taps: np.ndarray, plan) -> np.ndarray:
    """Run every tile through np.correlate, as the op would, and store the outputs."""
    result = np.full((rows.shape[0], plan.outputs), np.nan)
    covered = 0
    for first, count in batch_ranges(plan):
        assert first == covered and 1 <= count <= plan.batch
        covered += count
        tiles = np.full((rows.shape[0], count, plan.width), np.nan)
        fill_tiles(rows, left, plan, first, tiles)
        per_tile = [
            [np.correlate(tile, taps[c], mode="valid") for tile in tiles[c]]
            for c in range(rows.shape[0])
        ]
        store_tiles(result, plan, first, np.array(per_tile))
    assert covered == plan.tiles
    return result


@pytest.mark.parametrize(
    ("outputs", "taps", "tile", "batch_samples"),
    [
        (1, 1, 8, 1000),
        (7, 3, 8, 1000),
        (8, 3, 8, 1000),
        (9, 3, 8, 1000),
        (100, 20, 8, 64),
        (33, 50, 16, 10),
        (1000, 1, 64, 300),
    ],
)
def test_stitched_tiles_equal_untiled(outputs: int, taps: int, tile: int, batch_samples: int):
    rng = np.random.default_rng(outputs * 31 + taps)
    plan = plan_tiles(outputs, taps, channels=2, tile=tile, batch_samples=batch_samples)
    rows = rng.standard_normal((2, max(1, outputs - 3)))
    kernel = rng.standard_normal((2, taps))
    for left in sorted({0, taps // 2, taps - 1}):
        padded = np.concatenate(
            [np.zeros((2, left)), rows, np.zeros((2, plan.padded_length + taps))], axis=1
        )
        expected = np.array(
            [np.correlate(padded[c], kernel[c], "valid")[:outputs] for c in range(2)]
        )
        result = numpy_tiled_correlation(rows, left, kernel, plan)
        np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)


def test_plan_shrinks_tile_for_short_signals():
    plan = plan_tiles(15, 4)
    assert (plan.tile, plan.tiles, plan.width, plan.padded_length) == (15, 1, 18, 18)


def test_plan_bounds_batch_memory():
    plan = plan_tiles(10_000_000, 1025, channels=2, tile=65536, batch_samples=1 << 24)
    assert plan.batch * 2 * plan.width <= 1 << 24
    assert plan.tiles == -(-10_000_000 // 65536)


def test_plan_rejects_nonpositive_sizes():
    with pytest.raises(ValueError, match="positive"):
        plan_tiles(0, 3)


def test_tiles_past_the_signal_are_zero():
    plan = plan_tiles(10, 3, tile=4)
    tiles = np.full((1, plan.tiles, plan.width), np.nan)
    fill_tiles(np.ones((1, 2)), 0, plan, 0, tiles)
    np.testing.assert_array_equal(tiles[0, 0], [1, 1, 0, 0, 0, 0])
    assert not tiles[0, 1:].any()


def test_fft_tile_length_cap_never_goes_below_twice_the_kernel():
    cap = 1 << 21
    assert fft_tile_outputs(1_000_000, 1 << 62) == (1 << 22) - 1_000_000 + 1
    assert fft_tile_outputs(1_000_000, 1 << 62, cap) == (1 << 21) - 1_000_000 + 1
    assert fft_tile_outputs(240_000, 1 << 62, cap) == (1 << 20) - 240_000 + 1
    assert fft_tile_outputs(1 << 21, 1 << 62, cap) == (1 << 22) - (1 << 21) + 1
    assert fft_tile_outputs(16, 1 << 62, cap) == FFT_MIN_POINTS - 15
