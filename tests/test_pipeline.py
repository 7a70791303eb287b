"""WriteBehind: order, errors, and never leaving a write running on the way out."""

from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest

from maxconv.engine import get_engine
from maxconv.pipeline import WriteBehind
from maxconv.planning import block_outputs
from maxconv.stream import chunk_outputs


def test_blocks_are_written_in_order_on_another_thread():
    written: list[tuple[int, str]] = []

    def write(block: np.ndarray) -> None:
        written.append((int(block[0, 0]), threading.current_thread().name))

    with WriteBehind(np.asarray, write) as behind:
        for value in range(5):
            behind.write(np.full((1, 4), value))
    assert [value for value, _ in written] == [0, 1, 2, 3, 4]
    assert all(name.startswith("maxconv-writer") for _, name in written)


def test_prepare_runs_on_its_own_thread_before_the_write():
    prepared_on: list[str] = []

    def prepare(block: np.ndarray) -> np.ndarray:
        prepared_on.append(threading.current_thread().name)
        return block.T.copy()

    written: list[np.ndarray] = []
    with WriteBehind(prepare, written.append) as behind:
        behind.write(np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(written[0], [[0, 3], [1, 4], [2, 5]])
    assert prepared_on[0].startswith("maxconv-prepare")


def test_a_write_error_comes_back_to_the_caller():
    def write(block: np.ndarray) -> None:
        if block[0, 0] == 1:
            raise OSError(28, "No space left on device")

    attempts: list[int] = []

    def counted(block: np.ndarray) -> None:
        attempts.append(int(block[0, 0]))
        write(block)

    with pytest.raises(OSError, match="No space"), WriteBehind(np.asarray, counted) as behind:
        for value in range(5):
            behind.write(np.full((1, 4), value))
    assert attempts == [0, 1], "nothing may be written after a failed write"


def test_an_error_at_the_last_block_is_raised_on_exit():
    def write(block: np.ndarray) -> None:
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output"), WriteBehind(np.asarray, write) as behind:
        behind.write(np.zeros((1, 4)))


def test_an_interruption_waits_for_the_write_in_flight():
    """The writer's file is closed right after; a write still running would crash it."""
    finished = threading.Event()

    def slow_write(block: np.ndarray) -> None:
        time.sleep(0.3)
        finished.set()

    with pytest.raises(KeyboardInterrupt), WriteBehind(np.asarray, slow_write) as behind:
        behind.write(np.zeros((1, 4)))
        raise KeyboardInterrupt
    assert finished.is_set()


@pytest.mark.parametrize(("n_taps", "tiles"), [(128, 66), (4096, 86), (240_000, 4), (1_000_000, 2)])
def test_fft_chunks_are_an_even_count_of_whole_tiles(n_taps: int, tiles: int):
    engine = get_engine("cpu")
    tile = block_outputs(n_taps, engine.fft_block(n_taps, 1 << 62, np.float32))
    assert chunk_outputs(n_taps, "fft", engine, np.float32) == tiles * tile


def test_direct_chunks_keep_the_default(cpu_engine):
    assert chunk_outputs(255, "direct", cpu_engine, np.float32) == chunk_outputs(
        1_000_000, "direct", cpu_engine, np.float32
    )
    assert chunk_outputs(255, "direct", cpu_engine, np.float32) == 1 << 20


class _Interrupted(Exception):
    pass


def test_an_interruption_while_waiting_for_a_slot_still_waits_for_that_write():
    """A signal raised inside write()'s wait must not drop the awaited write from view."""
    started, release, finished = threading.Event(), threading.Event(), []

    def slow_write(block: np.ndarray) -> None:
        started.set()
        release.wait(5)
        time.sleep(0.2)
        finished.append(int(block[0, 0]))

    def interrupt(signum: int, frame: object) -> None:
        raise _Interrupted

    previous = signal.signal(signal.SIGUSR1, interrupt)
    main = threading.get_ident()
    timers = [
        threading.Timer(0.1, signal.pthread_kill, (main, signal.SIGUSR1)),
        threading.Timer(0.3, release.set),
    ]
    try:
        with pytest.raises(_Interrupted), WriteBehind(np.asarray, slow_write) as behind:
            behind.write(np.zeros((1, 4)))
            behind.write(np.ones((1, 4)))
            started.wait(5)
            for timer in timers:
                timer.start()
            behind.write(np.full((1, 4), 2))  # waits for block 0; interrupted there
    finally:
        for timer in timers:  # no stray signal once the previous handler is back
            timer.cancel()
            if timer.is_alive():
                timer.join()
        signal.signal(signal.SIGUSR1, previous)
    assert finished[:1] == [0], "the write in flight must be over when the block exits"


def test_the_workers_run_before_the_first_block():
    """A signal during a worker's start must not find a block to write (see __init__)."""
    with WriteBehind(np.asarray, lambda block: None):
        names = {thread.name for thread in threading.enumerate()}
        assert any(name.startswith("maxconv-prepare") for name in names)
        assert any(name.startswith("maxconv-writer") for name in names)
