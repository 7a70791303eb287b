"""Long reliability checks of `maxconv filter`, run by hand (minutes, gigabytes).

    uv run python scripts/reliability_long.py                  # everything, ~5 min
    uv run python scripts/reliability_long.py --only big       # one part: big, taps, disk,
                                                               # signals, fuzz, race
    uv run python scripts/reliability_long.py --gib 4.2 --workdir /var/tmp --keep

What it does, each part printing its figures (docs/reliability.md has a run):

big      writes a >= 4 GiB float32 stereo RF64 file (--gib), streams it through
         `maxconv filter --device cpu` twice (output .wav and .rf64), records the
         child's peak RSS (os.wait4) and wall time, and checks the output against
         numpy.convolve(x, h, 'same') in float64 on a prefix, a middle window
         across a chunk boundary and the suffix, plus the frame count.
taps     a real 10^8-tap .npy kernel (400 MB) on a short mono and a short stereo
         input: time, peak RSS, exit code; the stereo run again under a 6 GiB
         RLIMIT_AS: exit code and files left behind.
disk     a 2 MiB tmpfs (root only; skipped otherwise) as a real full disk: the
         exit code and first stderr line for .wav, .flac and .npy outputs.
signals  SIGINT/SIGTERM at --signals random points (fixed seed) of long runs:
         counts of clean outcomes (exit 130/143, no output, no temp file).
race     --race processes started at once on an empty cache: compile count.
fuzz     --fuzz fixed-seed bit-flip / truncation variants of the samples through
         the same memory-capped sweep as tests/test_reliability.py: outcomes.

The big files are deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
SEED = 20261125
MAXCONV = [sys.executable, "-m", "maxconv.cli"]
CHUNK = 1 << 20  # maxconv.stream.CHUNK_OUTPUTS


def run_measured(argv: list[str], env: dict | None = None, timeout: float = 3600) -> dict:
    """Run a child; return exit code, wall seconds, peak RSS (MB) and its output."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(argv, stdout=out, stderr=err, env=env or os.environ)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                child.kill()
                pid, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.05)
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {
            "code": child.returncode,
            "seconds": time.perf_counter() - start,
            "peak_rss_mb": usage.ru_maxrss / 1024,
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
        }


def first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


# big ------------------------------------------------------------------------------------


def make_big(path: Path, gib: float, rate: int = 48000) -> int:
    """A float32 stereo RF64 file of `gib` GiB of samples, written block by block."""
    frames = int(gib * 2**30 / 8)
    block = 1 << 22
    with sf.SoundFile(path, "w", rate, 2, "FLOAT", format="RF64") as sound:
        for index, start in enumerate(range(0, frames, block)):
            n = min(block, frames - start)
            rng = np.random.default_rng([SEED, index])
            sound.write(0.1 * rng.standard_normal((n, 2), dtype=np.float32))
    return frames


def read_frames(path: Path, start: int, count: int) -> np.ndarray:
    with sf.SoundFile(path) as sound:
        sound.seek(start)
        return sound.read(count, dtype="float64", always_2d=True).T


def reference_same(path: Path, frames: int, taps: np.ndarray, first: int, count: int):
    """numpy.convolve(x, h, 'same')[first:first+count] per channel, from a window of x."""
    k = taps.size
    centre = (k - 1) // 2
    lo = max(0, first + centre - (k - 1))
    hi = min(frames, first + count + centre)
    x = read_frames(path, lo, hi - lo)
    out = []
    for row in x:
        full = np.convolve(row, taps)  # full[m - lo] = full convolution at index m
        out.append(full[first + centre - lo : first + centre - lo + count])
    return np.stack(out)


def part_big(work: Path, gib: float) -> dict:
    source = work / "big.wav"
    started = time.perf_counter()
    frames = make_big(source, gib)
    made = time.perf_counter() - started
    size = source.stat().st_size
    print(
        f"[big] input {source.name}: RF64 float32 stereo, {frames} frames, {size / 2**30:.2f} GiB"
    )
    print(f"[big]   written in {made:.1f} s")
    taps = np.random.default_rng(SEED).uniform(-1, 1, 255) / 32
    kernel = work / "k255.txt"
    kernel.write_text("\n".join(repr(float(tap)) for tap in taps) + "\n")
    results = {"frames": frames, "input_gib": size / 2**30, "runs": []}
    for name in ("out.wav", "out.rf64"):
        target = work / name
        run = run_measured(
            [*MAXCONV, "filter", str(source), "-k", str(kernel), "-o", str(target)]
            + ["--device", "cpu", "--json", "--quiet", "--force"]
        )
        record = {
            "output": name,
            "code": run["code"],
            "seconds": run["seconds"],
            "peak_rss_mb": run["peak_rss_mb"],
        }
        print(
            f"[big] {name}: exit {run['code']}, {run['seconds']:.1f} s, "
            f"peak RSS {run['peak_rss_mb']:.0f} MB"
        )
        if run["code"] != 0:
            print(f"[big]   stderr: {run['stderr'].strip()[-500:]}")
            results["runs"].append(record)
            continue
        report = json.loads(run["stdout"])[0]
        record["json_seconds"] = report["seconds"]
        record["realtime"] = report["realtime"]
        info = sf.info(str(target))
        record["format"] = f"{info.format} {info.subtype}"
        record["frames_out"] = info.frames
        record["bytes_out"] = target.stat().st_size
        print(
            f"[big]   output {info.format}/{info.subtype}: {info.frames} frames "
            f"({'=' if info.frames == frames else '!='} input), "
            f"{record['bytes_out'] / 2**30:.2f} GiB; stages {report['seconds']}"
        )
        errors = {}
        windows = {
            "prefix": 0,
            "middle": (frames // 2 // CHUNK) * CHUNK - 2**20,
            "suffix": frames - 2**21,
        }
        for where, first in windows.items():
            count = 2**21
            expected = reference_same(source, frames, taps, first, count)
            try:
                got = read_frames(target, first, count)
            except sf.LibsndfileError as exc:
                errors[where] = f"unreadable: {exc}"
                continue
            if got.shape != expected.shape:
                errors[where] = f"shape {got.shape} != {expected.shape}"
                continue
            peak = np.abs(expected).max()
            errors[where] = float(np.abs(got - expected).max() / peak)
        record["relative_error"] = errors
        print(f"[big]   max |out - numpy| / peak: {errors}")
        results["runs"].append(record)
        target.unlink(missing_ok=True)
    return results


# taps -----------------------------------------------------------------------------------


def part_taps(work: Path) -> dict:
    kernel = work / "taps1e8.npy"
    np.save(kernel, np.full(10**8, 1e-8, np.float32))
    results = {}
    for channels in (1, 2):
        source = work / f"short{channels}.wav"
        x = np.random.default_rng(channels).standard_normal((1000, channels)) * 0.1
        sf.write(source, x.astype(np.float32), 16000, subtype="FLOAT")
        run = run_measured(
            [*MAXCONV, "filter", str(source), "-k", str(kernel), "-o", str(work / "t.wav")]
            + ["--device", "cpu", "--quiet", "--force"],
            timeout=900,
        )
        results[f"{channels}ch"] = {k: run[k] for k in ("code", "seconds", "peak_rss_mb")}
        print(
            f"[taps] 10^8-tap float32 kernel, 1000 frames x {channels} ch: exit {run['code']}, "
            f"{run['seconds']:.1f} s, peak RSS {run['peak_rss_mb']:.0f} MB "
            f"{first_line(run['stderr']) if run['code'] else ''}"
        )
    # The same stereo run with the address space capped at 6 GiB, as a smaller machine
    # (or a container limit) would cap it: does it fail cleanly, and is anything left?
    capped = work / "capped"
    capped.mkdir()
    limit = 6 * 2**30
    run = run_measured(
        [
            sys.executable,
            "-c",
            "import resource, runpy, sys; "
            f"resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit})); "
            "runpy.run_module('maxconv.cli', run_name='__main__', alter_sys=True)",
        ]
        + ["filter", str(work / "short2.wav"), "-k", str(kernel), "-o", str(capped / "t.wav")]
        + ["--device", "cpu", "--quiet"],
        timeout=900,
    )
    left = sorted(path.name for path in capped.iterdir())
    tail = [line for line in run["stderr"].strip().splitlines() if line.strip()][-2:]
    results["2ch_capped_6gib"] = {"code": run["code"], "stderr_tail": tail, "left": left}
    print(
        f"[taps] same, 2 ch, RLIMIT_AS 6 GiB: exit {run['code']}, files left {left}; "
        f"stderr ends: {tail}"
    )
    kernel.unlink()
    return results


# disk -----------------------------------------------------------------------------------


def part_disk(work: Path) -> dict:
    mount = work / "tiny"
    mount.mkdir(exist_ok=True)
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
        ).returncode
    ):
        print("[disk] skipped: mounting a tmpfs needs root")
        return {"skipped": True}
    results = {}
    try:
        source = work / "disk-in.wav"
        x = np.random.default_rng(3).standard_normal((5 * 2**19, 1)) * 0.1
        sf.write(source, x.astype(np.float32), 48000, subtype="FLOAT")  # 10 MB > 2 MiB
        for suffix in (".wav", ".flac", ".npy"):
            run = run_measured(
                [*MAXCONV, "filter", str(source), "-k", str(SAMPLES / "eq.txt")]
                + ["-o", str(mount / f"y{suffix}"), "--device", "cpu", "--quiet"]
            )
            left = sorted(path.name for path in mount.iterdir())
            results[suffix] = {
                "code": run["code"],
                "first_line": first_line(run["stderr"]),
                "traceback": "Traceback" in run["stderr"],
                "left": left,
            }
            print(
                f"[disk] full 2 MiB tmpfs, {suffix} output: exit {run['code']}, "
                f"traceback {'yes' if results[suffix]['traceback'] else 'no'}, files left {left}; "
                f"stderr: {results[suffix]['first_line']}"
            )
    finally:
        subprocess.run(["umount", str(mount)], check=False)
    return results


# signals --------------------------------------------------------------------------------


def part_signals(work: Path, count: int) -> dict:
    source = work / "long.wav"
    x = np.random.default_rng(SEED).standard_normal((48000 * 240, 2)) * 0.1
    sf.write(source, x.astype(np.float32), 48000, subtype="FLOAT")
    del x
    folder = work / "signals"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(SEED)
    outcomes = collections.Counter()
    bad = []
    # Arm SIGINT in the child even if this script was started with it ignored.
    python = [
        sys.executable,
        "-c",
        "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "runpy.run_module('maxconv.cli', run_name='__main__', alter_sys=True)",
    ]
    for index in range(count):
        signum = signal.SIGINT if index % 2 == 0 else signal.SIGTERM
        expected = 130 if signum == signal.SIGINT else 143
        # Every other pair through the FFT: compute is quick there, so the signal
        # mostly lands while the writer threads are busy (maxconv/pipeline.py).
        method = "direct" if index % 4 < 2 else "fft"
        delay = float(rng.uniform(0.0, 6.0 if method == "direct" else 1.0))
        child = subprocess.Popen(
            [
                *python,
                "filter",
                str(source),
                "-k",
                "lowpass:1000",
                "--taps",
                "16001",
                "--method",
                method,
            ]
            + ["-o", str(folder / "y.wav"), "--device", "cpu", "--force"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while not list(folder.glob(".*.part")) and child.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)
        time.sleep(delay)
        finished_first = child.poll() is not None
        if not finished_first:
            child.send_signal(signum)
        _, stderr = child.communicate(timeout=120)
        left = sorted(path.name for path in folder.iterdir())
        if finished_first:
            outcome = "finished before the signal"
        elif child.returncode == expected and not left and "Traceback" not in stderr:
            outcome = "clean"
        elif (
            child.returncode == 0
            and left == ["y.wav"]
            and sf.info(str(folder / "y.wav")).frames == 48000 * 240
            and "Traceback" not in stderr
        ):
            # Committed before the signal, which the exit then ignores (cli.main).
            outcome = "complete output, signal during exit"
        else:
            outcome = "NOT CLEAN"
            bad.append({"delay": delay, "code": child.returncode, "left": left, "err": stderr})
        outcomes[f"{method}: {outcome}"] += 1
        for path in folder.iterdir():
            path.unlink()
    source.unlink()
    check = run_measured(
        [*MAXCONV, "filter", str(SAMPLES / "speech.wav"), "-k", str(SAMPLES / "eq.txt")]
        + ["-o", str(work / "after.wav"), "--device", "cpu", "--json", "--quiet", "--force"]
    )
    cache = json.loads(check["stdout"])[0]["cache"] if check["code"] == 0 else check["stderr"]
    print(
        f"[signals] {count} signals, 0-6 s (direct) or 0-1 s (fft) after the temp output: "
        f"{dict(outcomes)}"
    )
    print(f"[signals] next run after them: exit {check['code']}, cache {cache}")
    for item in bad[:5]:
        print(f"[signals]   not clean: {item}")
    return {"outcomes": dict(outcomes), "cache_after": cache, "bad": bad[:5]}


# race -----------------------------------------------------------------------------------


def part_race(work: Path, count: int) -> dict:
    cache = work / "race-cache"
    env = {**os.environ, "MAXCONV_CACHE_DIR": str(cache)}
    start = time.perf_counter()
    children = [
        subprocess.Popen(
            [*MAXCONV, "filter", str(SAMPLES / "speech.wav"), "-k", str(SAMPLES / "eq.txt")]
            + ["-o", str(work / f"race{index}.wav"), "--device", "cpu", "--json", "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for index in range(count)
    ]
    statuses = collections.Counter()
    for child in children:
        out, err = child.communicate(timeout=1800)
        statuses[
            json.loads(out)[0]["cache"] if child.returncode == 0 else f"exit {child.returncode}"
        ] += 1
    seconds = time.perf_counter() - start
    entries = sorted(path.name for path in cache.glob("conv1d-*.mef"))
    print(
        f"[race] {count} processes on an empty cache: {dict(statuses)} in {seconds:.1f} s; "
        f"entries {len(entries)}, temp files {len(list(cache.glob('.*.part')))}"
    )
    for index in range(count):
        (work / f"race{index}.wav").unlink(missing_ok=True)
    return {"statuses": dict(statuses), "seconds": seconds, "entries": len(entries)}


# fuzz -----------------------------------------------------------------------------------


def part_fuzz(work: Path, count: int) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    import test_reliability as suite  # the same sweep worker and rules as the CI test

    folder = work / "fuzz"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(SEED + 1)
    sources = [
        ("speech", ".wav", (SAMPLES / "speech.wav").read_bytes(), 44, 16000),
        ("room", ".wav", (SAMPLES / "room.wav").read_bytes(), 44, 44100),
        ("music", ".flac", (SAMPLES / "music.flac").read_bytes(), 42, 44100),
        ("lowpass", ".npy", (SAMPLES / "lowpass.npy").read_bytes(), 128, None),
        ("eq", ".txt", (SAMPLES / "eq.txt").read_bytes(), 64, None),
    ]
    cases = []
    for index in range(count):
        name, suffix, data, header, rate = sources[index % len(sources)]
        kind = index // len(sources) % 3
        if kind == 0:
            variant = suite._flip(data, rng, 0, header, int(rng.integers(1, 4)))
        elif kind == 1:
            variant = suite._flip(data, rng, 0, len(data), int(rng.integers(1, 17)))
        else:
            variant = data[: int(rng.integers(0, len(data)))]
        path = folder / f"{name}-{index}{suffix}"
        path.write_bytes(variant)
        must_fail = kind == 2 and suffix != ".txt"  # a cut text file is still text
        cases.append(suite.Case(str(path), "input", must_fail))
        cases.append(suite.Case(str(path), "kernel", must_fail, rate or 44100, 2))
    lines = "".join(json.dumps(case.__dict__) + "\n" for case in cases)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", suite._SWEEP, str(suite.MEMORY_LIMIT)],
        input=lines,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    records = [json.loads(line) for line in result.stdout.splitlines()]
    maxrss = records.pop()["maxrss_kb"] if records and "maxrss_kb" in records[-1] else None
    outcomes = collections.Counter(record["outcome"] for record in records)
    unclean = collections.Counter()
    examples: dict[str, list] = collections.defaultdict(list)
    for record in records:
        why = suite._clean(record)
        if why:
            label = why.split(":")[0]
            unclean[label] += 1
            if len(examples[label]) < 3:
                examples[label].append((Path(record["path"]).name, record["role"], why[:160]))
    print(
        f"[fuzz] {len(cases)} reads of {count} variants in {seconds:.1f} s "
        f"(worker exit {result.returncode}, peak RSS {maxrss} kB): {dict(outcomes)}"
    )
    print(f"[fuzz] not clean: {dict(unclean)}")
    for label, some in examples.items():
        for example in some:
            print(f"[fuzz]   e.g. {label}: {example}")
    shutil.rmtree(folder)
    return {
        "reads": len(cases),
        "variants": count,
        "outcomes": dict(outcomes),
        "unclean": dict(unclean),
        "examples": examples,
        "peak_rss_kb": maxrss,
    }


def find_problems(figures: dict) -> list[str]:
    """The figures that break a promise of the README or of this issue."""
    problems = []
    for run in figures.get("big", {}).get("runs", []):
        if run["code"] != 0:
            problems.append(f"big: {run['output']} exit {run['code']}")
            continue
        if run["peak_rss_mb"] > 500:
            problems.append(f"big: {run['output']} peak RSS {run['peak_rss_mb']:.0f} MB > 500")
        if run.get("frames_out") != figures["big"]["frames"]:
            problems.append(
                f"big: {run['output']} says {run.get('frames_out')} frames, "
                f"input has {figures['big']['frames']} (exit 0, no warning)"
            )
        for where, error in run.get("relative_error", {}).items():
            if not isinstance(error, float) or error > 1e-5:
                problems.append(f"big: {run['output']} {where} {error}")
    for name, run in figures.get("taps", {}).items():
        # Kernels past 2^24 taps are refused: exit 4 at once, nothing left behind.
        if run.get("code") != 4 or run.get("left"):
            problems.append(f"taps: {name} exit {run['code']}, left {run.get('left')}")
    for suffix, run in figures.get("disk", {}).items():
        if isinstance(run, dict) and (run["code"] != 5 or run["traceback"] or run["left"]):
            problems.append(f"disk: {suffix} exit {run['code']}, traceback {run['traceback']}")
    signals = figures.get("signals", {})
    not_clean = [outcome for outcome in signals.get("outcomes", {}) if "NOT CLEAN" in outcome]
    if signals and (not_clean or signals["cache_after"] != "hit"):
        problems.append(f"signals: {signals['outcomes']}, cache after {signals['cache_after']}")
    race = figures.get("race", {})
    if race and (race["statuses"].get("compiled") != 1 or race["entries"] != 1):
        problems.append(f"race: {race['statuses']}, {race['entries']} entries")
    fuzz = figures.get("fuzz", {})
    for label, count in fuzz.get("unclean", {}).items():
        problems.append(f"fuzz: {count} x {label}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", help="big, taps, disk, signals, race, fuzz")
    parser.add_argument("--gib", type=float, default=4.2, help="size of the big input")
    parser.add_argument("--workdir", type=Path, default=None, help="where the big files go")
    parser.add_argument("--signals", type=int, default=30, help="interruptions to try")
    parser.add_argument("--race", type=int, default=16, help="processes racing on a cache")
    parser.add_argument("--fuzz", type=int, default=5000, help="fuzzed variants")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    parts = args.only or ["big", "taps", "disk", "signals", "race", "fuzz"]
    work = Path(tempfile.mkdtemp(prefix="maxconv-reliability-", dir=args.workdir))
    print(f"work folder {work}; maxconv cache {os.environ.get('MAXCONV_CACHE_DIR', 'default')}")
    figures = {}
    started = time.perf_counter()
    try:
        for part in parts:
            begun = time.perf_counter()
            if part == "big":
                figures[part] = part_big(work, args.gib)
            elif part == "taps":
                figures[part] = part_taps(work)
            elif part == "disk":
                figures[part] = part_disk(work)
            elif part == "signals":
                figures[part] = part_signals(work, args.signals)
            elif part == "race":
                figures[part] = part_race(work, args.race)
            elif part == "fuzz":
                figures[part] = part_fuzz(work, args.fuzz)
            else:
                parser.error(f"unknown part {part!r}")
            print(f"[{part}] done in {time.perf_counter() - begun:.0f} s")
    finally:
        if not args.keep:
            with contextlib.suppress(OSError):
                subprocess.run(["umount", str(work / "tiny")], capture_output=True)
            shutil.rmtree(work, ignore_errors=True)
    print(f"all parts in {time.perf_counter() - started:.0f} s")
    problems = find_problems(figures)
    print("PROBLEMS:" if problems else "no problems found")
    for problem in problems:
        print(f"  - {problem}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
