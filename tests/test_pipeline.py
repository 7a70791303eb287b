"""WriteBehind: order, errors, and never leaving a write running on the way out."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from maxconv.pipeline import WriteBehind
from maxconv.stream import FFT_CHUNK_OUTPUTS, chunk_outputs
from maxconv.tiling import fft_tile_outputs


def test_blocks_are_written_in_order_on_another_thread():
    written: list[tuple[int, str]] = []

    def write(block: np.ndarray) -> None:
        written.append((int(block[0, 0]), threading.current_thread().name))

    with WriteBehind(write) as behind:
        for value in range(5):
            behind.write(np.full((1, 4), value))
    assert [value for value, _ in written] == [0, 1, 2, 3, 4]
    assert all(name.startswith("maxconv-writer") for _, name in written)


def test_a_write_error_comes_back_to_the_caller():
    def write(block: np.ndarray) -> None:
        if block[0, 0] == 1:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"), WriteBehind(write) as behind:
        for value in range(5):
            behind.write(np.full((1, 4), value))
    # The error is raised by the write after the failed one: at most one block later.


def test_an_error_at_the_last_block_is_raised_on_exit():
    def write(block: np.ndarray) -> None:
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output"), WriteBehind(write) as behind:
        behind.write(np.zeros((1, 4)))


def test_an_interruption_waits_for_the_write_in_flight():
    """The writer's file is closed right after; a write still running would crash it."""
    finished = threading.Event()

    def slow_write(block: np.ndarray) -> None:
        time.sleep(0.3)
        finished.set()

    with pytest.raises(KeyboardInterrupt), WriteBehind(slow_write) as behind:
        behind.write(np.zeros((1, 4)))
        raise KeyboardInterrupt
    assert finished.is_set()


@pytest.mark.parametrize("n_taps", [128, 4096, 240_000, 1_000_000])
def test_fft_chunks_are_whole_tiles_of_at_least_the_minimum(n_taps: int):
    chunk = chunk_outputs(n_taps, "fft")
    tile = fft_tile_outputs(n_taps, 1 << 62)
    assert chunk % tile == 0 and FFT_CHUNK_OUTPUTS <= chunk < FFT_CHUNK_OUTPUTS + tile


def test_direct_chunks_keep_the_default():
    assert chunk_outputs(255, "direct") == chunk_outputs(1_000_000, "direct") == 1 << 20
