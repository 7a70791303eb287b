"""Benchmark `maxconv augment` file to file, beside a loop over the API for the same pairs.

Makes a dataset (1-second 48 kHz 16-bit WAV clips, responses of random length
between --min-taps and --max-taps at 48 kHz), runs `maxconv augment` on it in a
fresh process (after a warm-up run that compiles or loads the graphs) and reads
its clips/s from the --json report (reading, computing and writing; the
process start-up is printed apart), then runs the same pairs, taken from the
manifest, through a plain loop: read the clip, `maxconv.convolve`, slice, scale,
write. Prints clips/s of both and their ratio, and where the job's time went:
milliseconds per clip of each phase (reading and decoding, compute, finishing,
writing, manifest), summed over the threads that run it, beside the wall clock
and the process's CPU time per clip.

``--stub-runs N`` also runs the job N times in this process with the compute
replaced by a stub (each row's full-length output is the row itself, shifted:
no convolution), so the per-clip CPU path (reading, finishing, writing, the
threads) is measured without the compute hiding it; it prints the median clips/s.

    uv run python scripts/augment_bench.py                       # 2-core CPU sizes
    uv run python scripts/augment_bench.py --clips 10000 --device gpu --stub-runs 3
    uv run python scripts/augment_bench.py --clips 10000 --device gpu:all --loop-clips 0
    git worktree add /tmp/before 6455e9b     # main when `augment` was asked for
    uv run python scripts/augment_bench.py --loop-tree /tmp/before
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 48000


def make_dataset(root: Path, clips: int, responses: int, min_taps: int, max_taps: int) -> None:
    """Clips of one second (noise-shaped speech stand-ins) and decaying responses."""
    rng = np.random.default_rng(0)
    for index in range(clips):
        folder = root / "clips" / f"{index // 1000:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        x = rng.standard_normal(RATE) * 0.1 * np.sin(np.linspace(0, 20, RATE)) ** 2
        sf.write(folder / f"clip{index:06d}.wav", x.astype(np.float32), RATE, subtype="PCM_16")
    (root / "rirs").mkdir(parents=True, exist_ok=True)
    for index in range(responses):
        taps = int(rng.integers(min_taps, max_taps + 1))
        h = rng.standard_normal(taps) * np.exp(-np.arange(taps) / (taps / 6))
        h[: int(rng.integers(10, 200))] *= 0.01
        sf.write(root / "rirs" / f"rir{index:04d}.wav", h.astype(np.float32), RATE, "FLOAT")


def run_augment(root: Path, outdir: str, device: str, extra: list[str]) -> tuple[dict, float]:
    """`maxconv augment` in a new process: its JSON report and the wall-clock seconds."""
    command = [sys.executable, "-m", "maxconv", "augment", str(root / "clips"),
               "-r", str(root / "rirs"), "-o", str(root / outdir), "--device", device,
               "--json", "--quiet", "--force", *extra]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"maxconv augment failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout), wall


def run_loop(root: Path, records: list[dict], device: str) -> float:
    """The same pairs through a loop over maxconv.convolve, file to file; clips/s."""
    import maxconv

    out = root / "loop"
    out.mkdir(exist_ok=True)
    responses: dict[str, np.ndarray] = {}
    maxconv.convolve(np.ones(16, np.float32), np.ones(4, np.float32), device=device)
    start = time.perf_counter()
    for record in records:
        x, rate = sf.read(record["input"], dtype="float32")
        if record["response"] not in responses:
            responses[record["response"]] = sf.read(record["response"], dtype="float32")[0]
        h = responses[record["response"]]
        shift = int(np.argmax(np.abs(h)))
        y = maxconv.convolve(x, h, device=device)[shift : shift + x.size]
        y *= np.sqrt(np.mean(x.astype(np.float64) ** 2) / np.mean(y.astype(np.float64) ** 2))
        sf.write(out / Path(record["output"]).name, y, rate, subtype="PCM_16")
    return len(records) / (time.perf_counter() - start)


def run_loop_elsewhere(root: Path, records: list[dict], device: str, tree: str) -> float:
    """run_loop in a new process whose `maxconv` is the one in folder `tree` (an
    older checkout: the API a user looped over before `augment` existed)."""
    listed = root / "loop-records.json"
    listed.write_text(json.dumps(records))
    program = (
        "import json, sys; from pathlib import Path; "
        f"sys.path.insert(0, {tree!r}); sys.path.insert(1, {str(Path(__file__).parent)!r}); "
        "import augment_bench; "
        f"print(augment_bench.run_loop(Path({str(root)!r}), "
        f"json.loads(Path({str(listed)!r}).read_text()), {device!r}))"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the loop over {tree} failed: {done.stderr.strip()[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


class StubEngine:
    """The name and kind the job reads from an engine; `stub_convolve` does the rest.
    A GPU's kind unless the device is the CPU, so 'auto' takes the GPU's group size."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.kind = "cpu" if label == "cpu" else "gpu"


def stub_convolve(engine, signals, kernels, mode="full", *, method="auto"):  # noqa: ANN001, ANN201
    """convolve_batch_on's shapes without its work: each row, shifted, in a full-length output."""
    outs = []
    for signal, kernel in zip(signals, kernels, strict=True):
        out = np.zeros(signal.size + kernel.size - 1, np.float32)
        out[kernel.size // 2 : kernel.size // 2 + signal.size] = signal
        outs.append(out)
    return outs


def run_stubbed(root: Path, device: str, runs: int, workers: int | None, group: int | None) -> dict:
    """The job in this process with `stub_convolve`: median clips/s and its phases."""
    from maxconv.augment import AugmentOptions, plan_job, resolve_devices, run_job

    reports = []
    # Each run writes a new folder, all deleted after: files made right after deleting
    # as many took several times longer on the 2-core machine.
    folders = [root / f"stub-{workers or 'default'}-{run}" for run in range(runs)]
    for outdir in folders:
        options = AugmentOptions(
            device=device, workers=workers, group_clips=group, force=outdir.exists()
        )
        plan, manifest = plan_job([str(root / "clips")], [str(root / "rirs")], outdir, options)
        with manifest:
            engines = [StubEngine(label) for label in resolve_devices(device, lambda: 1)]
            reports.append(run_job(plan, manifest, engines, convolve=stub_convolve))
    for outdir in folders:
        shutil.rmtree(outdir, ignore_errors=True)
    median = sorted(reports, key=lambda report: report.clips_per_second)[len(reports) // 2]
    return {
        "stub_clips_per_second": median.clips_per_second,
        "stub_clips_per_second_runs": [report.clips_per_second for report in reports],
        "stub_workers": median.workers,
        "stub_group_clips": median.group_clips,
        "stub_ms_per_clip": per_clip_ms(median.as_dict()),
    }


def per_clip_ms(report: dict) -> dict:
    """The report's phases in milliseconds per clip."""
    clips = max(1, report["done"] + report["failed"])
    return {name: 1000 * seconds / clips for name, seconds in report.get("phases", {}).items()}


def phase_line(ms: dict) -> str:
    summed = ", ".join(
        f"{name} {ms[name]:.3f}" for name in ("read", "compute", "finish", "write", "manifest")
        if name in ms
    )  # fmt: skip
    wall, cpu = ms.get("wall", 0.0), ms.get("cpu", 0.0)
    return f"{summed} (summed over threads); wall {wall:.3f}, cpu {cpu:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--responses", type=int, default=100)
    parser.add_argument("--min-taps", type=int, default=8000)
    parser.add_argument("--max-taps", type=int, default=24000)
    parser.add_argument("--device", default="auto", help="auto, cpu, gpu, gpu:N or gpu:all")
    parser.add_argument("--loop-clips", type=int, default=200, help="clips for the loop (0: none)")
    parser.add_argument("--folder", help="keep the dataset here (default: a temp folder)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--stub-runs",
        type=int,
        default=0,
        help="runs of the job with the compute stubbed out (0: none)",
    )
    parser.add_argument(
        "--stub-workers",
        default="",
        help="--workers of the stubbed runs, or several: 4,8,16 (default: job's)",
    )
    parser.add_argument("--stub-group", type=int, help="--group of the stubbed runs")
    parser.add_argument(
        "--loop-tree",
        help="also run the loop over the maxconv of this folder (an older checkout)",
    )
    parser.add_argument("augment_options", nargs="*", help="more `maxconv augment` options")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="augment-bench-") as temp:
        root = Path(args.folder or temp)
        if not (root / "clips").exists():
            start = time.perf_counter()
            make_dataset(root, args.clips, args.responses, args.min_taps, args.max_taps)
            made = time.perf_counter() - start
            print(f"dataset: {args.clips} clips, {args.responses} responses ({made:.1f} s to make)",
                  file=sys.stderr)  # fmt: skip
        warm, warm_wall = run_augment(
            root, "warm", args.device, ["--group", "8", *args.augment_options]
        )
        print(f"warm-up run: {warm_wall:.1f} s (compiles or loads the graphs)", file=sys.stderr)
        report, wall = run_augment(root, "out", args.device, args.augment_options)
        figures = {
            "clips": report["done"] + report["failed"],
            "failed": report["failed"],
            "devices": report["devices"],
            "augment_clips_per_second": report["clips_per_second"],
            "augment_realtime": report["realtime"],
            "augment_job_seconds": report["seconds"],
            "augment_process_seconds": wall,
            "augment_workers": report.get("workers"),
            "augment_group_clips": report.get("group_clips"),
            "augment_ms_per_clip": per_clip_ms(report),
        }
        if args.stub_runs:
            counts = [int(n) for n in args.stub_workers.split(",") if n] or [None]
            figures["stub"] = [
                run_stubbed(root, args.device, args.stub_runs, workers, args.stub_group)
                for workers in counts
            ]
        if args.loop_clips:
            records = [json.loads(line) for line in (root / "out/manifest.jsonl").open()]
            loop = run_loop(root, records[: args.loop_clips], args.device)
            figures["loop_clips"] = min(args.loop_clips, len(records))
            figures["loop_clips_per_second"] = loop
            figures["speedup_over_loop"] = report["clips_per_second"] / loop
            if args.loop_tree:
                before = run_loop_elsewhere(
                    root, records[: args.loop_clips], args.device, args.loop_tree
                )
                figures["loop_tree"] = args.loop_tree
                figures["loop_tree_clips_per_second"] = before
                figures["speedup_over_loop_tree"] = report["clips_per_second"] / before
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"maxconv augment on {', '.join(figures['devices'])}: "
          f"{figures['augment_clips_per_second']:,.1f} clips/s file to file "
          f"({figures['clips']} clips in {figures['augment_job_seconds']:.2f} s, "
          f"{figures['augment_process_seconds']:.2f} s with process start-up)")  # fmt: skip
    ms = phase_line(figures["augment_ms_per_clip"])
    print(f"  ms per clip, {figures['augment_workers']} reading and writing threads, groups of "
          f"{figures['augment_group_clips']}: {ms}")  # fmt: skip
    for stub in figures.get("stub", []):
        runs = ", ".join(f"{rate:,.0f}" for rate in stub["stub_clips_per_second_runs"])
        print(f"compute stubbed out, {stub['stub_workers']} threads each way, groups of "
              f"{stub['stub_group_clips']}: {stub['stub_clips_per_second']:,.1f} clips/s (median "
              f"of {runs}); ms per clip: {phase_line(stub['stub_ms_per_clip'])}")  # fmt: skip
    if "loop_clips_per_second" in figures:
        print(f"loop over maxconv.convolve, same pairs ({figures['loop_clips']} clips): "
              f"{figures['loop_clips_per_second']:,.1f} clips/s; "
              f"augment is {figures['speedup_over_loop']:.1f}x faster")  # fmt: skip
    if "loop_tree_clips_per_second" in figures:
        print(f"the same loop over the maxconv in {figures['loop_tree']}: "
              f"{figures['loop_tree_clips_per_second']:,.1f} clips/s; "
              f"augment is {figures['speedup_over_loop_tree']:.1f}x faster")  # fmt: skip


if __name__ == "__main__":
    main()
