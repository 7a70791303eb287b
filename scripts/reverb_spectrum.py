"""The reverb case's compute seconds (10 min of stereo through 240,000 taps,
`maxconv filter --json` seconds.compute, CPU) with the taps' spectrum kept
between chunks, and recomputed for every chunk, alternating:

    uv run python scripts/reverb_spectrum.py [folder]
"""

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from reverb_bench import make_inputs  # noqa: E402

folder = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/reverb-spectrum")
folder.mkdir(parents=True, exist_ok=True)
if not (folder / "dry.wav").exists():
    make_inputs(folder, 10, 5)
code = """
import sys, json, time
import maxconv.engine as E
if sys.argv[1] == "recompute":
    real = E.Engine.spectrum
    def never_kept(self, taps, block):
        buffer, _ = real(self, taps, block)
        return buffer, False
    E.Engine.spectrum = never_kept
from maxconv.cli import app
folder = sys.argv[2]
sys.argv = ["maxconv", "filter", folder + "/dry.wav", "-k", folder + "/room.wav", "--tail",
            "-o", folder + "/wet.wav", "--force", "--json", "--device", "cpu"]
try:
    app()
except SystemExit:
    pass
"""
for mode in ["kept", "recompute", "kept", "recompute", "kept", "recompute"]:
    out = subprocess.run(
        [sys.executable, "-c", code, mode, str(folder)], capture_output=True, text=True
    )
    report = json.loads(out.stdout)
    report = report[0] if isinstance(report, list) else report
    print(f"{mode:<10} compute {report['seconds']['compute']:.3f} s")
