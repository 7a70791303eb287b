"""`run_on_devices`: one worker process per device, the manifest in input order.

Two CPU devices stand in for two GPUs here (each worker process opens its own
CPU engine); the two-GPU machine runs `tests/test_multi_gpu.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from maxconv.augment import AugmentOptions, plan_job, run_job, run_on_devices
from maxconv.engine import get_engine
from maxconv.errors import MaxconvError


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    """Eleven clips (one unreadable) and two responses."""
    rng = np.random.default_rng(21)
    for index in range(10):
        x = 0.1 * rng.standard_normal((2000 + 97 * index, 1 + index % 2))
        sf.write(_clip(tmp_path, index), x, 16000, subtype="PCM_16")
    (tmp_path / "clips" / "c10.wav").write_bytes(b"not a wav")
    (tmp_path / "rirs").mkdir()
    for index in range(2):
        h = rng.standard_normal(300 + 200 * index) * np.exp(-np.arange(300 + 200 * index) / 80)
        sf.write(tmp_path / "rirs" / f"r{index}.wav", h.astype(np.float32), 16000, "FLOAT")
    return tmp_path


def _clip(root: Path, index: int) -> Path:
    (root / "clips").mkdir(exist_ok=True)
    return root / "clips" / f"c{index:02d}.wav"


def _run(root: Path, name: str, devices: list[str] | None, strict: bool = False):
    options = AugmentOptions(device="cpu", group_clips=2, mix="0.4-0.9", strict=strict)
    plan, manifest = plan_job([str(root / "clips")], [str(root / "rirs")], root / name, options)
    with manifest:
        if devices is None:
            return run_job(plan, manifest, [get_engine("cpu")]), root / name
        return run_on_devices(plan, manifest, devices), root / name


def test_two_workers_write_what_one_device_writes(clips):
    one, one_dir = _run(clips, "one", None)
    two, two_dir = _run(clips, "two", ["cpu", "cpu"])
    assert (two.done, two.failed, one.done, one.failed) == (10, 1, 10, 1)
    assert two.devices == ["cpu", "cpu"] and two.group_clips == 2
    assert two.phases["compute"] > 0 and two.phases["cpu"] > 0
    lines = (one_dir / "manifest.jsonl").read_text().replace("/one/", "/two/")
    assert (two_dir / "manifest.jsonl").read_text() == lines  # same records, same order
    records = [json.loads(line) for line in lines.splitlines()]
    assert [r["input"].rsplit("/", 1)[1] for r in records] == [f"c{i:02d}.wav" for i in range(11)]
    for record in records:
        if "error" not in record:
            name = record["output"]
            assert (one_dir / name).read_bytes() == (two_dir / name).read_bytes()


def test_strict_stops_at_the_first_failure(clips):
    """--strict: the run stops once a clip fails; the manifest lists the clips done
    by then (the failed one with its error) in input order, each output in place."""
    (clips / "clips" / "c04.wav").write_bytes(b"not a wav either")
    report, folder = _run(clips, "strict", ["cpu", "cpu"], strict=True)
    assert report.stopped and report.failed == 1
    records = [json.loads(line) for line in (folder / "manifest.jsonl").open()]
    names = [record["input"].rsplit("/", 1)[1] for record in records]
    assert names == sorted(names) and "c04.wav" in names
    for record in records:
        assert ("error" in record) == record["input"].endswith("c04.wav")
        assert "error" in record or (folder / record["output"]).is_file()
    assert not list(folder.rglob("*.part"))  # stopped workers leave no temp files


def test_a_worker_that_cannot_open_its_device_fails_the_job(clips):
    with pytest.raises(MaxconvError, match="gpu:7"):
        _run(clips, "bad", ["cpu", "gpu:7"])
