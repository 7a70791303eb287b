"""`maxconv calibrate` and the crossover that method="auto" takes from it.

Every test here works on an engine whose cache is a private copy of the
session's compiled graphs, so no record written here reaches another test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import maxconv.engine
from maxconv.cache import GraphCache
from maxconv.calibration import choose_crossover, fft_speedups, measure_crossover
from maxconv.calibration_record import (
    Calibration,
    calibration_path,
    load_calibration,
    save_calibration,
)
from maxconv.cli import app
from maxconv.engine import Engine
from maxconv.planning import FFT_FROM_TAPS

FFT_FROM_TAPS_CPU = FFT_FROM_TAPS["cpu"]

runner = CliRunner()


@pytest.fixture
def private_engine(tmp_path: Path) -> Engine:
    """A CPU engine over a copy of the shared cache: the jobs are handed it."""
    shared = GraphCache().root
    for entry in shared.glob("conv1d-*.mef"):
        shutil.copy(entry, tmp_path / entry.name)
    return Engine("cpu", cache=GraphCache(tmp_path))


@pytest.fixture
def command_engine(private_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The private engine, also the one the `maxconv calibrate` command resolves."""
    monkeypatch.setattr(maxconv.engine, "get_engine", lambda device="auto": private_engine)
    return private_engine


def _record(crossover: int) -> Calibration:
    return Calibration(crossover, "cpu", 1024, {16: 1.0, 64: 2.0}, {16: 2.0, 64: 1.0}, "now")


def test_without_a_record_auto_uses_the_built_in_crossover(private_engine: Engine):
    threshold, source = private_engine.fft_from_taps()
    assert threshold == FFT_FROM_TAPS_CPU and "default" in source
    assert private_engine.resolve_method("auto", FFT_FROM_TAPS_CPU - 1) == "direct"
    assert private_engine.resolve_method("auto", FFT_FROM_TAPS_CPU) == "fft"


def test_a_saved_record_moves_the_crossover(private_engine: Engine):
    save_calibration(private_engine, _record(40))
    assert private_engine.fft_from_taps()[0] == 40
    assert private_engine.resolve_method("auto", 39) == "direct"
    assert private_engine.resolve_method("auto", 40) == "fft"
    assert private_engine.resolve_method("direct", 4096) == "direct"
    assert load_calibration(private_engine) == _record(40)


def test_a_damaged_record_is_ignored(private_engine: Engine):
    calibration_path(private_engine).parent.mkdir(parents=True, exist_ok=True)
    for damage in ("{not json", '{"fft_from_taps": 0}', "[]", '{"fft_from_taps": "64"}'):
        calibration_path(private_engine).write_text(damage)
        private_engine.forget_calibration()
        assert load_calibration(private_engine) is None
        assert private_engine.fft_from_taps()[0] == FFT_FROM_TAPS_CPU


def test_a_record_of_other_op_sources_is_not_used(
    private_engine: Engine, monkeypatch: pytest.MonkeyPatch
):
    save_calibration(private_engine, _record(40))
    monkeypatch.setattr(maxconv.engine, "op_source_digest", lambda: "edited op")
    private_engine.forget_calibration()
    assert private_engine.fft_from_taps()[0] == FFT_FROM_TAPS_CPU


def _consistent(calibration: Calibration) -> bool:
    """The record's crossover is what its own timings say (K = 1 and 8192 timed).

    At 8192 taps the FFT op must win (it does ~30x fewer operations at these
    sizes); at 1 tap the two are close enough on a busy CI machine that either
    may win or tie, so the crossover is checked against the timings by the
    rule itself (8192, 1, or the default in between; test_crossover.py
    checks the rule), not assumed.
    """
    direct, fft = calibration.direct_seconds, calibration.fft_seconds
    if not fft[8192] < direct[8192]:
        return False
    expected = choose_crossover(fft_speedups(direct, fft), FFT_FROM_TAPS_CPU, 2 * 8192)
    return calibration.fft_from_taps == expected


def test_measured_crossover_is_where_the_fft_op_wins_from_then_on(private_engine: Engine):
    calibration = measure_crossover(private_engine, taps=(1, 8192), signal_length=1 << 18, repeat=3)
    assert set(calibration.fft_seconds) == set(calibration.direct_seconds) == {1, 8192}
    assert _consistent(calibration), calibration


def test_calibrate_command_measures_saves_and_forgets(command_engine: Engine):
    private_engine = command_engine
    result = runner.invoke(
        app, ["calibrate", "--device", "cpu", "--n", "262144", "--k", "1", "--k", "8192"]
    )
    assert result.exit_code == 0, result.output
    record = load_calibration(private_engine)
    assert record is not None and _consistent(record), record
    message = f"auto takes the FFT op from K = {record.fft_from_taps} (was {FFT_FROM_TAPS_CPU})"
    assert message in " ".join(result.stdout.split())
    assert private_engine.fft_from_taps()[0] == record.fft_from_taps
    result = runner.invoke(app, ["calibrate", "--device", "cpu", "--forget"])
    assert result.exit_code == 0, result.output
    assert not calibration_path(private_engine).exists()
    assert private_engine.fft_from_taps()[0] == FFT_FROM_TAPS_CPU


def test_calibrate_refuses_a_bad_ladder(command_engine: Engine):
    result = runner.invoke(app, ["calibrate", "--device", "cpu", "--k", "0"])
    assert result.exit_code == 2
    assert not calibration_path(command_engine).exists()


@pytest.mark.gpu
def test_gpu_crossover_is_measured_between_the_ladder_ends():
    """On an H100 the FFT op loses at 64 taps and wins at 16384 (docs/benchmarks.md)."""
    calibration = measure_crossover(
        Engine("gpu"), taps=(64, 16384), signal_length=1 << 22, repeat=3
    )
    direct, fft = calibration.direct_seconds, calibration.fft_seconds
    assert fft[16384] < direct[16384] and direct[64] < fft[64], calibration
    assert calibration.fft_from_taps == 16384
    assert calibration.device.startswith("gpu")
