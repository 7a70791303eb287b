"""`maxconv bench` end to end on the CPU, on tiny sizes (numbers are not checked here:
speed is measured by running the benchmark, never in tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from maxconv.bench import Measurement, crossovers, median_seconds, share_of_limit, speedups
from maxconv.cli import app

runner = CliRunner()


def test_bench_json_has_every_peer_and_ratios():
    result = runner.invoke(
        app,
        [
            "bench",
            "--device",
            "cpu",
            "--n",
            "4096",
            "--k",
            "4",
            "--k",
            "65",
            "--warmup",
            "0",
            "--repeat",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    names = {row["name"] for row in report["results"]}
    assert names == {
        "maxconv op",
        "maxconv fft op",
        "maxconv fft op, taps spectrum kept",
        "maxconv host-to-host",
        "MAX ops.conv2d",
        "numpy multiply (floor)",
        "numpy.convolve",
        "scipy.signal.oaconvolve",
        "scipy.signal.fftconvolve",
    }
    assert {row["k"] for row in report["results"]} == {4, 65}
    for row in report["results"]:
        assert row["seconds"] > 0 and row["samples_per_second"] == row["n"] / row["seconds"]
        if not row["name"].startswith("maxconv"):
            assert row["maxconv_speedup"] > 0
    limits = report["limits"]["cpu"]
    assert limits["bytes_per_second"] > 0 and "measured now" in limits["source"]
    (crossover,) = report["fft_crossover"]
    assert crossover["device"] == "cpu" and crossover["n"] == 4096
    assert crossover["fft_from_k"] in (None, 4, 65)


def test_bench_table_and_plot(tmp_path: Path):
    chart = tmp_path / "chart.png"
    result = runner.invoke(
        app,
        [
            "bench",
            "--device",
            "cpu",
            "--n",
            "2048",
            "--k",
            "3",
            "--k",
            "9",
            "--warmup",
            "0",
            "--repeat",
            "1",
            "--plot",
            str(chart),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "maxconv op" in result.stdout and "limits" in result.stdout
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_speedup_is_peer_time_over_maxconv_time():
    rows = [
        Measurement("maxconv op", "gpu:0", "float32", 100, 4, 2.0),
        Measurement("torch conv1d", "gpu", "float32", 100, 4, 5.0),
        Measurement("cupyx oaconvolve", "gpu", "float32", 100, 4, None, "absent"),
        Measurement("torch conv1d", "gpu", "float32", 100, 8, 5.0),
    ]
    assert speedups(rows) == {1: 2.5}


def test_streamed_rows_are_compared_only_with_streamed_rows():
    rows = [
        Measurement("maxconv op", "gpu:0", "float32", 100, 4, 2.0),
        Measurement("maxconv op", "gpu:0", "float32", 100, 4, 1.0, per_sync=10),
        Measurement("torch conv1d", "gpu", "float32", 100, 4, 5.0),
        Measurement("torch conv1d", "gpu", "float32", 100, 4, 3.0, per_sync=10),
    ]
    assert speedups(rows) == {2: 2.5, 3: 3.0}
    assert rows[1].title == "maxconv op, 10 calls/sync" and rows[0].title == "maxconv op"


def test_median_seconds_times_each_call_and_syncs_once_per_repetition():
    log: list[str] = []
    seconds = median_seconds(lambda: log.append("run"), lambda: log.append("sync"), 1, 2, calls=3)
    assert log == ["run", "sync"] + ["run", "run", "run", "sync"] * 2
    assert seconds >= 0


def test_share_of_limit_picks_the_binding_ceiling():
    from maxconv.bench import DeviceLimits

    limits = DeviceLimits(bytes_per_second=1e9, macs_per_second=1e9, source="test")
    small_k = Measurement("maxconv op", "cpu", "float32", 1000, 1, 1e-5)
    share, kind = share_of_limit(small_k, limits)
    assert kind == "memory" and np.isclose(share, 2000 * 4 / 1e-5 / 1e9)
    big_k = Measurement("maxconv op", "cpu", "float32", 1000, 1000, 1e-3)
    share, kind = share_of_limit(big_k, limits)
    assert kind == "FMA" and np.isclose(share, 1000 * 1000 / 1e-3 / 1e9)


def test_crossover_is_where_the_fft_op_wins_from_then_on():
    def point(k: int, direct: float | None, fft: float) -> list[Measurement]:
        return [
            Measurement("maxconv op", "cpu", "float32", 100, k, direct),
            Measurement("maxconv fft op", "cpu", "float32", 100, k, fft),
        ]

    # The FFT wins at 16 by noise, loses at 64, wins from 256 (and where direct was skipped).
    rows = point(16, 2.0, 1.0) + point(64, 1.0, 2.0) + point(256, 3.0, 2.0) + point(4096, None, 2)
    assert crossovers(rows) == {("cpu", "float32", 100): 256}
    # Streamed timings (several calls per synchronize) do not take part.
    streamed = Measurement("maxconv fft op", "cpu", "float32", 100, 64, 0.5, per_sync=10)
    assert crossovers(rows + [streamed]) == {("cpu", "float32", 100): 256}
    assert crossovers(point(16, 1.0, 2.0)) == {("cpu", "float32", 100): None}


@pytest.mark.gpu
def test_gpu_bench_lists_every_gpu_peer_and_the_crossover():
    result = runner.invoke(
        app,
        ["bench", "--device", "gpu", "--n", "65536", "--k", "64", "--k", "4096"]
        # One warm-up: first calls (cuDNN, CuPy's kernels) take past
        # STREAM_UNDER_SECONDS and would not be streamed.
        + ["--warmup", "1", "--repeat", "1", "--json"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    names = {row["name"] for row in report["results"]}
    assert {"torch conv1d", "torchaudio fftconvolve", "cupyx oaconvolve"} <= names
    assert {"maxconv op", "maxconv fft op", "maxconv host-to-host", "MAX ops.conv2d"} <= names
    streamed = {row["name"] for row in report["results"] if row["per_sync"] > 1}
    assert {"maxconv op", "maxconv fft op", "torch conv1d", "cupyx oaconvolve"} <= streamed
    (crossover,) = report["fft_crossover"]
    assert crossover["device"].startswith("gpu") and crossover["fft_from_k"] in (None, 64, 4096)
