"""The reverb case's compute seconds (10 min of stereo through 240,000 taps,
`maxconv filter --json` seconds.compute, CPU) for several checkouts, interleaved:

    uv run python scripts/reverb_ab.py --runs 7 before=/tmp/base main=/work/main new=.

Each checkout runs in its own virtual environment (`uv sync` there first), in
turn, one process per run, the order rotated every round so that a neighbour's
load falls on each of them alike; prints the median and range of each.
With --quiet F, each run waits (up to a minute) until the machine's CPUs
were busy less than F of the last half second: on a shared machine a
neighbour's job otherwise decides the figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from reverb_bench import make_inputs  # noqa: E402

CODE = """
import sys
from maxconv.cli import app
folder = sys.argv[1]
sys.argv = ["maxconv", "filter", folder + "/dry.wav", "-k", folder + "/room.wav", "--tail",
            "-o", folder + "/wet-" + sys.argv[2] + ".wav", "--force", "--json", "--device", "cpu"]
try:
    app()
except SystemExit:
    pass
"""


def busy_share(seconds: float = 0.5) -> float:
    """The share of all CPUs' time spent busy over the next `seconds` (Linux)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        return sum(values), values[3] + values[4]

    total, idle = sample()
    time.sleep(seconds)
    total2, idle2 = sample()
    return 1 - (idle2 - idle) / max(1, total2 - total)


def wait_quiet(limit: float, timeout: float = 60) -> float:
    """Wait until busy_share() < limit or `timeout` seconds pass; the last share."""
    start = time.monotonic()
    share = busy_share()
    while share >= limit and time.monotonic() - start < timeout:
        share = busy_share()
    return share


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("trees", nargs="+", help="name=checkout")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--folder", default="/tmp/reverb-spectrum")
    parser.add_argument("--quiet", type=float, default=None, help="wait for busy < this")
    args = parser.parse_args()
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "dry.wav").exists():
        make_inputs(folder, 10, 5)
    trees = dict(item.split("=", 1) for item in args.trees)
    names = list(trees)
    seen: dict[str, list[float]] = {name: [] for name in names}
    for run in range(args.runs + 1):
        order = names[run % len(names) :] + names[: run % len(names)]
        for name in order:
            tree = Path(trees[name]).resolve()
            share = wait_quiet(args.quiet) if args.quiet is not None else float("nan")
            out = subprocess.run(
                [str(tree / ".venv/bin/python"), "-c", CODE, str(folder), name],
                capture_output=True,
                text=True,
                cwd=tree,
                check=True,
            )
            report = json.loads(out.stdout)
            report = report[0] if isinstance(report, list) else report
            compute = report["seconds"]["compute"]
            if run > 0:  # the first round may compile
                seen[name].append(compute)
            print(f"round {run} {name:<8} compute {compute:.3f} s (busy {share:.2f})", flush=True)
    for name in names:
        values = seen[name]
        print(
            f"{name:<8} compute median {statistics.median(values):.3f} s, "
            f"range {min(values):.3f}-{max(values):.3f} ({len(values)} runs): "
            + " ".join(f"{v:.3f}" for v in values)
        )


if __name__ == "__main__":
    main()
