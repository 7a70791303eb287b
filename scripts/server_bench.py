"""Time `maxconv` commands in-process and through `maxconv serve` (issue 15's figures).

    uv run python scripts/server_bench.py [--runs 5] [--files 200] [--device auto] [--json out.json]

Prints the medians of whole processes, as a shell runs them:
- `python -c pass` and `python -c "import max.engine"` (the floor of any
  process that imports MAX),
- a warm `maxconv filter samples/speech.wav -k lowpass:3000 -o out.wav`
  in-process (MAXCONV_SERVER=off) and through a server (its own socket folder),
- a shell loop of `--files` such commands, one process per file, both ways,
and checks that the server's outputs equal the in-process ones byte for
byte. The server is started and stopped here; the compiled-graph cache is
the usual one (a first compile, if any, happens in the untimed warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "samples" / "speech.wav"
KERNEL = ["-k", "lowpass:3000"]


def maxconv_program() -> list[str]:
    """The console script beside this Python (what a shell runs), else `python -m maxconv`."""
    script = Path(sys.executable).parent / "maxconv"
    return [str(script)] if script.exists() else [sys.executable, "-m", "maxconv"]


def wall(command: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {result.stderr.decode(errors='replace')}")
    return seconds


def median_wall(command: list[str], env: dict[str, str], cwd: Path, runs: int) -> float:
    """The median of `runs` processes (their minimum goes to MINIMA: on a shared machine,
    the least disturbed run)."""
    times = [wall(command, env, cwd) for _ in range(runs)]
    MINIMA[" ".join(command)] = min(times)
    return statistics.median(times)


MINIMA: dict[str, float] = {}


def shell_loop(
    program: list[str], env: dict[str, str], work: Path, files: int, out: str, device: str
) -> float:
    """Seconds for `for f in in/*.wav; do maxconv filter $f ... -o OUT/; done`."""
    target = work / out
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    loop = (
        f'for f in in/*.wav; do {" ".join(program)} filter "$f" {" ".join(KERNEL)} '
        f"--device {device} -o {out}/ -q || exit 1; done"
    )
    start = time.perf_counter()
    subprocess.run(["bash", "-c", loop], env=env, cwd=work, check=True)
    seconds = time.perf_counter() - start
    if len(list(target.iterdir())) != files:
        raise SystemExit(f"the loop wrote {len(list(target.iterdir()))} of {files} files")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="processes per median")
    parser.add_argument("--files", type=int, default=200, help="files in the shell loop")
    parser.add_argument("--device", default="auto", help="--device of the filter commands")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    program = maxconv_program()
    work = Path(tempfile.mkdtemp(prefix="maxconv-server-bench-"))
    runtime = Path(tempfile.mkdtemp(prefix="mcsb-"))
    env = dict(os.environ, MAXCONV_RUNTIME_DIR=str(runtime))
    env.pop("MAXCONV_SERVER", None)
    local_env = dict(env, MAXCONV_SERVER="off")
    shutil.copy(SPEECH, work / "speech.wav")
    (work / "in").mkdir()
    for index in range(args.files):
        os.link(work / "speech.wav", work / "in" / f"f{index:04d}.wav")
    command = [*program, "filter", "speech.wav", *KERNEL, "--device", args.device]
    figures: dict[str, object] = {"runs": args.runs, "files": args.files, "cpus": os.cpu_count()}
    try:
        figures["python_s"] = median_wall([sys.executable, "-c", "pass"], env, work, args.runs)
        importing = [sys.executable, "-c", "import max.engine"]
        figures["import_max_engine_s"] = median_wall(importing, env, work, args.runs)
        figures["import_max_engine_min_s"] = MINIMA[" ".join(importing)]
        local = [*command, "-o", "local.wav", "-f"]
        wall(local, local_env, work)  # warm-up (and the first compile, if any)
        figures["in_process_s"] = median_wall(local, local_env, work, args.runs)
        figures["in_process_min_s"] = MINIMA[" ".join(local)]

        subprocess.run([*program, "serve", "--detach"], env=env, check=True, capture_output=True)
        served = [*command, "-o", "served.wav", "-f"]
        wall(served, env, work)  # the server's first job
        figures["server_s"] = median_wall(served, env, work, args.runs)
        figures["server_min_s"] = MINIMA[" ".join(served)]
        same = (work / "local.wav").read_bytes() == (work / "served.wav").read_bytes()
        figures["byte_identical"] = same

        if args.files:
            figures["loop_server_s"] = shell_loop(
                program, env, work, args.files, "served", args.device
            )
            figures["loop_in_process_s"] = shell_loop(
                program, local_env, work, args.files, "local", args.device
            )
            figures["loop_byte_identical"] = all(
                (work / "served" / name).read_bytes() == (work / "local" / name).read_bytes()
                for name in os.listdir(work / "served")
            )
        status = subprocess.run([*program, "serve", "--status"], env=env, capture_output=True)
        figures["server_status"] = status.stdout.decode().strip()
    finally:
        subprocess.run([*program, "serve", "--stop"], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(runtime, ignore_errors=True)

    print(f"python -c pass:                      {figures['python_s']:.3f} s")
    print(
        f"python -c 'import max.engine':       {figures['import_max_engine_s']:.3f} s "
        f"(least {figures['import_max_engine_min_s']:.3f} s)"
    )
    print(
        f"maxconv filter, in-process (warm):   {figures['in_process_s']:.3f} s "
        f"(least {figures['in_process_min_s']:.3f} s; import floor + "
        f"{figures['in_process_s'] - figures['import_max_engine_s']:.3f} s)"
    )
    print(
        f"maxconv filter, through the server:  {figures['server_s']:.3f} s "
        f"(least {figures['server_min_s']:.3f} s)"
    )
    print(f"outputs byte-identical:              {figures['byte_identical']}")
    if args.files:
        ratio = figures["loop_in_process_s"] / figures["loop_server_s"]
        print(
            f"{args.files}-file shell loop: in-process {figures['loop_in_process_s']:.1f} s, "
            f"through the server {figures['loop_server_s']:.1f} s ({ratio:.1f}x); "
            f"byte-identical: {figures['loop_byte_identical']}"
        )
        figures["loop_speedup"] = ratio
    load = os.getloadavg()[0]
    print(f"(medians of {args.runs} processes; {os.cpu_count()} CPUs; load average {load:.2f})")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
