"""Tile planning and stitching, checked with numpy alone (no MAX needed)."""

from __future__ import annotations

import numpy as np
import pytest

from maxconv.tiling import iter_batches, plan_tiles, stitch


def numpy_tiled_correlation(padded: np.ndarray, taps: np.ndarray, plan) -> np.ndarray:
    """Run every tile through np.correlate, as the op would, and stitch."""
    results = []
    for batch in iter_batches(padded, plan):
        assert batch.shape[1] <= plan.batch and batch.shape[2] == plan.width
        assert batch.flags.c_contiguous
        per_tile = [
            [np.correlate(tile, taps[c], mode="valid") for tile in batch[c]]
            for c in range(batch.shape[0])
        ]
        results.append(np.array(per_tile))
    return stitch(results, plan.outputs)


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
    padded = rng.standard_normal((2, plan.padded_length))
    kernel = rng.standard_normal((2, taps))
    expected = np.array([np.correlate(padded[c], kernel[c], "valid")[:outputs] for c in range(2)])
    np.testing.assert_allclose(numpy_tiled_correlation(padded, kernel, plan), expected, rtol=1e-12)


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


def test_short_padding_is_refused():
    plan = plan_tiles(10, 3, tile=4)
    with pytest.raises(ValueError, match="shorter"):
        next(iter_batches(np.zeros((1, plan.padded_length - 1)), plan))
