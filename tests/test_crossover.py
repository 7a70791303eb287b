"""The crossover `maxconv calibrate` keeps (calibration.choose_crossover), on
fake timings: no device is timed here.

Near the crossover the two ops run within a few per cent of each other, and
the old rule ("the least K from which the FFT op is faster") followed the
noise there (an H200 gave 256 once and 512 once). The margin and the pull
toward the default must make noisy calibrations agree.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

import maxconv.bench
import maxconv.engine
from maxconv.bench import Measurement, crossovers
from maxconv.calibration import (
    CALIBRATION_TAPS,
    CROSSOVER_MARGIN,
    choose_crossover,
    fft_speedups,
    measure_crossover,
)
from maxconv.planning import FFT_FROM_TAPS

PAST = 2 * max(CALIBRATION_TAPS)


def speedups(**by_k: float) -> dict[int, float]:
    return {int(k[1:]): v for k, v in by_k.items()}


def test_ties_keep_the_default():
    """Level ops around the default (within the margin) speak for neither side."""
    ties = speedups(k128=0.95, k256=1.05, k512=1.1, k1024=1.6, k2048=3.0)
    assert choose_crossover(ties, 512, PAST) == 512
    assert choose_crossover(ties, 256, PAST) == 256
    assert choose_crossover(ties, 128, PAST) == 128


def test_a_clear_win_below_the_default_moves_it_down_only_as_far_as_needed():
    wins = speedups(k64=0.5, k128=1.3, k256=1.5, k512=2.0, k1024=4.0)
    assert choose_crossover(wins, 512, PAST) == 128
    # 128 wins only by a tie: the crossover moves to 256, where the clear wins start.
    wins[128] = 1.1
    assert choose_crossover(wins, 512, PAST) == 256


def test_a_clear_loss_above_the_default_moves_it_up():
    losses = speedups(k128=0.5, k256=0.8, k512=0.95, k1024=1.5, k2048=3.0)
    assert choose_crossover(losses, 128, PAST) == 512
    # A clear loss higher up overrules earlier wins: the FFT op is taken only past it.
    bumpy = speedups(k128=1.5, k256=0.7, k512=1.5, k1024=2.0)
    assert choose_crossover(bumpy, 128, PAST) == 512


def test_no_clear_win_on_the_ladder_means_past_it():
    assert choose_crossover(speedups(k16=0.2, k8192=0.5), 128, PAST) == PAST
    # Level at the top, clearly slower below: from the top (a tie there allows it).
    assert choose_crossover(speedups(k16=0.2, k8192=1.0), 128, PAST) == 8192
    # Level everywhere: nothing speaks against the default.
    assert choose_crossover(speedups(k16=1.0, k8192=1.0), 128, PAST) == 128


def test_skipped_direct_op_counts_as_an_fft_win():
    found = fft_speedups({16: 1.0, 8192: None}, {16: 2.0, 8192: 1.0})
    assert found == {16: 0.5, 8192: math.inf}
    assert choose_crossover(found, 128, PAST) == 8192


def _fake_device(
    monkeypatch: pytest.MonkeyPatch, kind: str, crossover: float, noise: float, seed: int
):
    """A stand-in engine and measure_ops on a device whose ops cross at
    `crossover` taps, each timing off by up to +-`noise` (uniform) at random:
    direct ~ K, FFT ~ constant. Returns the engine and the K timed, in order."""
    rng = np.random.default_rng(seed)
    engine = SimpleNamespace(label=f"{kind}:fake", spec=SimpleNamespace(kind=kind))
    monkeypatch.setattr(
        maxconv.bench, "bench_inputs", lambda dtype, n, k: (np.zeros((1, 1)), np.zeros((1, k)))
    )
    calls = []

    def measure_ops(engine_given, signal, taps, warmup, repeat, stream=False):
        assert engine_given is engine
        k = taps.shape[1]
        calls.append(k)
        direct = 1e-3 * k / crossover * (1 + rng.uniform(-noise, noise))
        fft = 1e-3 * (1 + rng.uniform(-noise, noise))
        return [
            Measurement("maxconv op", engine.label, "float32", 1024, k, direct),
            Measurement("maxconv fft op", engine.label, "float32", 1024, k, fft),
            Measurement(
                "maxconv fft op, taps spectrum kept", engine.label, "float32", 1024, k, fft
            ),
        ]

    monkeypatch.setattr(maxconv.bench, "measure_ops", measure_ops)
    return engine, calls


@pytest.mark.parametrize(("kind", "crossover"), [("gpu", 260.0), ("gpu", 512.0), ("cpu", 128.0)])
def test_noisy_calibrations_near_the_crossover_agree(monkeypatch, kind, crossover):
    """Fifty calibrations of one device whose ops are level at a ladder step
    (the H200's case: level at 256, the FFT op twice as fast at 512), each
    timing up to 6 % off at random (so a speedup up to 13 % off, inside
    the margin): one answer, the default. The old rule, on the same
    medians, gave several."""
    answers, old_answers = set(), set()
    for seed in range(50):
        engine, calls = _fake_device(monkeypatch, kind, crossover, noise=0.06, seed=seed)
        record = measure_crossover(engine)
        answers.add(record.fft_from_taps)
        rows = [
            Measurement(name, "x", "float32", 1, k, seconds[k])
            for name, seconds in (
                ("maxconv op", record.direct_seconds),
                ("maxconv fft op", record.fft_seconds),
            )
            for k in seconds
        ]
        old_answers.update(crossovers(rows).values())
        # Every K of the ladder timed once a round, rounds interleaved.
        assert calls == list(CALIBRATION_TAPS) * (len(calls) // len(CALIBRATION_TAPS))
        assert len(calls) > len(CALIBRATION_TAPS)
    assert answers == {FFT_FROM_TAPS[kind]}
    assert len(old_answers) > 1


def test_a_device_far_from_the_default_still_moves_it(monkeypatch):
    """Noise within the margin does not pin a crossover that is truly elsewhere:
    a GPU whose FFT op wins clearly from 128 taps gets 128 every time."""
    answers = set()
    for seed in range(20):
        engine, _ = _fake_device(monkeypatch, "gpu", 90.0, noise=0.05, seed=seed)
        answers.add(measure_crossover(engine).fft_from_taps)
    assert answers == {128}
    assert 1 + CROSSOVER_MARGIN < 128 / 90  # the FFT op's speedup at 128: a clear win
