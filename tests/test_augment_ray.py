"""maxconv.ray: the augment job and the Ray Data transform on a local Ray (CPU actors).

One Ray instance serves the whole module (it takes ~20 s to start on the 2-core
machine). It lives in one child process, the Ray driver, for two reasons:

- it is started as `maxconv augment --ray` starts it, from a folder holding a
  large file: under `uv run`, Ray's hook would zip that folder for the workers
  (a 78 GB zip once filled the disk here); the driver checks it did not;
- a process that has run MAX's engine crashed in Ray's next object-store call
  (opentelemetry-cpp, which both ship; seen with Ray 2.60 and MAX 26.7), and
  this test process runs the engine in other tests. The driver never runs the
  engine itself: its actors do.

The local runs to compare with are made here, in the test process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("ray", reason="Ray is not installed (the 'ray' extra, in the dev group)")

from maxconv.augment import AugmentOptions, open_engines, plan_job, run_job  # noqa: E402

LARGE_FILE_BYTES = 3 * 2**30
JOB = {"device": "cpu", "mix": "0.2-0.6", "length": "tail", "group_clips": 3}

DRIVER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import numpy as np

    root = Path(sys.argv[1])
    job = json.loads(sys.argv[2])
    from maxconv.augment import AugmentOptions, plan_job
    from maxconv.ray import Augment, run_on_ray, start_ray
    from ray._private.runtime_env.uv_runtime_env_hook import _get_uv_run_cmdline

    ray = start_ray(num_cpus=2, object_store_memory=150 * 2**20)
    results = {"under_uv_run": _get_uv_run_cmdline() is not None, "cwd": os.getcwd()}
    results["runtime_env"] = dict(ray.get_runtime_context().runtime_env)

    def job_run(outdir, clips, workers=None, limit=None, **extra):
        options = AugmentOptions(**{**job, **extra})
        plan, manifest = plan_job([str(clips)], [str(root / "rirs")], outdir, options)
        if limit is not None:
            plan.tasks = plan.tasks[:limit]
        with manifest:
            report = run_on_ray(plan, manifest, workers=workers)
        return report.as_dict()

    results["job"] = job_run(root / "ray", root / "clips", workers=2)
    results["first_part"] = job_run(root / "resumed", root / "bad_clips", limit=5)
    results["resumed"] = job_run(root / "resumed", root / "bad_clips", resume=True)

    rng = np.random.default_rng(5)
    clips = [(rng.standard_normal(1000 + 10 * i) * 0.1).astype(np.float32) for i in range(6)]
    hall = np.zeros(64, np.float32)
    hall[10], hall[40] = 1.0, 0.5
    items = [{"id": f"clip{i}", "audio": c, "sample_rate": 16000} for i, c in enumerate(clips)]
    dataset = ray.data.from_items(items).map_batches(
        Augment,
        fn_constructor_kwargs={
            "responses": {"hall": hall, "dirac": np.ones(1, np.float32)},
            "normalize": "none",
            "device": "cpu",
        },
        batch_size=3,
        compute=ray.data.ActorPoolStrategy(size=1),
    )
    rows = sorted(dataset.take_all(), key=lambda row: row["id"])
    np.savez(root / "transform.npz", *[row["audio"] for row in rows], *clips)
    results["transform"] = [
        {key: (value.item() if hasattr(value, "item") else value) for key, value in row.items()
         if key in ("id", "response", "align_shift", "error", "mix")}
        for row in rows
    ]
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    results["zips"] = [str(p) for p in session.rglob("*.zip") if p.stat().st_size > 2**20]
    results["env_flag"] = os.environ.get("RAY_ENABLE_UV_RUN_RUNTIME_ENV")
    (root / "results.json").write_text(json.dumps(results))
    """
)


def write(path: Path, data: np.ndarray, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.T, rate, subtype="FLOAT")


@pytest.fixture(scope="module")
def ray_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The dataset, a local run of it here, and the Ray driver's results."""
    root = tmp_path_factory.mktemp("augment-ray")
    rng = np.random.default_rng(3)
    for index in range(10):
        samples = rng.standard_normal((1 + index % 2, 2000 + 100 * index)) * 0.1
        write(root / "clips" / f"d{index % 3}" / f"c{index}.wav", samples.astype(np.float32))
    for index, taps in enumerate((300, 500)):
        h = rng.standard_normal((1, taps)) * np.exp(-np.arange(taps) / 80)
        write(root / "rirs" / f"r{index}.wav", h.astype(np.float32), rate=22050)
    (root / "bad_clips").mkdir()
    for clip in sorted((root / "clips").rglob("*.wav"))[:6]:
        (root / "bad_clips" / clip.name).write_bytes(clip.read_bytes())
    (root / "bad_clips" / "broken.wav").write_bytes(b"RIFF junk")
    plan, manifest = plan_job(
        [str(root / "clips")], [str(root / "rirs")], root / "local", AugmentOptions(**JOB)
    )
    with manifest:
        run_job(plan, manifest, open_engines(JOB["device"]))
    folder = root / "dataset-folder"
    folder.mkdir()
    with open(folder / "huge.bin", "wb") as handle:
        handle.truncate(LARGE_FILE_BYTES)
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env.pop("RAY_ENABLE_UV_RUN_RUNTIME_ENV", None)  # maxconv.ray must set it itself
    driver = subprocess.run(
        [sys.executable, "-c", DRIVER, str(root), json.dumps(JOB)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert driver.returncode == 0, driver.stderr[-3000:]
    return root, json.loads((root / "results.json").read_text())


def test_the_working_directory_is_never_shipped(ray_run):
    root, results = ray_run
    assert results["cwd"] == str(root / "dataset-folder")
    assert "working_dir" not in results["runtime_env"]
    assert "py_executable" not in results["runtime_env"]
    assert results["zips"] == []
    assert results["env_flag"] == "0"


def test_ray_job_writes_the_local_runs_bytes_and_manifest(ray_run):
    root, results = ray_run
    assert (results["job"]["done"], results["job"]["failed"]) == (10, 0)
    local = (root / "local" / "manifest.jsonl").read_text()
    assert (root / "ray" / "manifest.jsonl").read_text() == local.replace("/local/", "/ray/")
    records = [json.loads(line) for line in local.splitlines()]
    assert [r["output"] for r in records] == sorted(r["output"] for r in records)
    assert {r["response_rate"] for r in records} == {22050}
    for record in records:
        name = record["output"]
        assert (root / "local" / name).read_bytes() == (root / "ray" / name).read_bytes()


def test_ray_job_resumes_and_reports_bad_clips(ray_run):
    root, results = ray_run
    assert results["first_part"]["failed"] == 1  # broken.wav comes first
    resumed = results["resumed"]
    assert (resumed["skipped"], resumed["done"], resumed["failed"]) == (4, 2, 1)
    assert resumed["errors"][0]["input"].endswith("broken.wav")
    outputs = [json.loads(line)["output"] for line in (root / "resumed/manifest.jsonl").open()]
    assert outputs.count("broken.wav") == 2 and len(set(outputs)) == 7


def test_augment_transform_on_a_dataset(ray_run):
    """The Ray Data class on in-memory clips: responses drawn per clip id."""
    root, results = ray_run
    arrays = np.load(root / "transform.npz")
    rows = results["transform"]
    outs = [arrays[f"arr_{i}"] for i in range(len(rows))]
    clips = [arrays[f"arr_{len(rows) + i}"] for i in range(len(rows))]
    for row, out, clip in zip(rows, outs, clips, strict=True):
        assert row["error"] == ""
        expected = clip.astype(np.float64)
        if row["response"] == "hall":
            expected[30:] += 0.5 * clip[:-30]
            assert row["align_shift"] == 10
        else:
            assert row["align_shift"] == 0
        assert out.shape == clip.shape
        np.testing.assert_allclose(out, expected, atol=1e-6)
    assert {row["response"] for row in rows} == {"hall", "dirac"}
