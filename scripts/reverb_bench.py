"""Convolution reverb, file to file: maxconv beside SoX `fir` and FFmpeg `afir`.

The FFT issue's end-to-end case: a 10-minute stereo 48 kHz float32 WAV through
a 5-second (240,000-tap) stereo impulse response. Each tool runs as its own
process, timed from start to exit (startup, reading, filtering and writing
included), `--runs` times; the median is reported. maxconv's compiled graphs
come from its cache, so the first run is reported separately: it is the only
one that may compile.

Every output is checked against scipy.signal.oaconvolve of the same input (the
first 20 seconds, in float64), so a fast wrong answer cannot pass unnoticed.
SoX's `fir` takes one coefficient list for all channels, so it gets the left
channel's response for both (the same amount of work; only its left channel is
checked); FFmpeg's `afir` gets the stereo response with `irfmt=input` (one
response per channel) and its automatic gain off. A tool's overall gain is
fitted and must be the one it is known to apply (FFmpeg 5.1's afir doubles
its output); an output off by more than 1e-4 is reported and not compared.

    uv run python scripts/reverb_bench.py --device cpu --json docs/data/reverb-cpu.json
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 48000
CHECK_SECONDS = 20


@dataclass
class Tool:
    """A command to time, the file it writes, and how its output relates to scipy's.

    ``channels`` are the output channels checked, ``lag`` where the output
    starts in the full convolution (0: causal, (K-1)/2: centred), ``gain``
    the overall gain the tool is known to apply.
    """

    argv: list[str]
    output: Path
    channels: list[int] = field(default_factory=lambda: [0, 1])
    lag: int = 0
    gain: float = 1.0


def make_inputs(folder: Path, minutes: float, ir_seconds: float) -> tuple[Path, Path, Path]:
    """A noisy chord and a decaying-noise stereo IR; the IR's left channel as SoX text."""
    rng = np.random.default_rng(7)
    frames = int(minutes * 60 * RATE)
    signal_path = folder / "dry.wav"
    with sf.SoundFile(signal_path, "w", RATE, 2, "FLOAT") as out:
        block = 1 << 20
        for start in range(0, frames, block):
            t = np.arange(start, min(start + block, frames)) / RATE
            chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 12
            noise = 0.02 * rng.standard_normal((2, t.size))
            out.write((chord + noise).T.astype(np.float32))
    taps = int(ir_seconds * RATE)
    decay = np.exp(-np.arange(taps) / (0.8 * RATE))
    # Quiet enough that the wet signal stays within full scale: SoX clips internally.
    ir = (rng.standard_normal((2, taps)) * decay * 0.004).astype(np.float32)
    ir[:, 0] = 0.3
    ir_path = folder / "room.wav"
    sf.write(ir_path, ir.T, RATE, subtype="FLOAT")
    sox_taps = folder / "room-left.txt"
    np.savetxt(sox_taps, ir[0].astype(np.float64), fmt="%.9g")
    return signal_path, ir_path, sox_taps


def timed(argv: list[str], runs: int) -> list[float]:
    """Wall seconds of each run of `argv` (a failed run stops the script)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(argv, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            sys.exit(f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return times


def reference(signal_path: Path, ir_path: Path) -> np.ndarray:
    """Full convolution of the first CHECK_SECONDS, per channel, in float64.

    Its first CHECK_SECONDS of output are exact for the whole file too.
    """
    import scipy.signal

    frames = CHECK_SECONDS * RATE
    dry, _ = sf.read(signal_path, frames=frames, dtype="float64", always_2d=True)
    ir, _ = sf.read(ir_path, dtype="float64", always_2d=True)
    return np.stack([scipy.signal.oaconvolve(dry[:, c], ir[:, c]) for c in range(dry.shape[1])])


def error_against(
    path: Path, full: np.ndarray, channels: list[int], lag: int
) -> tuple[float, float]:
    """The tool's overall gain against the reference, and its largest error once that is removed.

    ``lag`` is where the tool's output starts in the full convolution: 0 for
    causal filtering, (K-1)/2 for a centred one; ``channels`` are those checked.
    The error is relative to the reference's peak.
    """
    frames = CHECK_SECONDS * RATE - lag
    got, _ = sf.read(path, frames=frames, dtype="float64", always_2d=True)
    got = got.T[channels]
    expected = full[channels][:, lag : lag + got.shape[1]]
    gain = float(np.vdot(got, expected) / np.vdot(expected, expected))
    return gain, float(np.abs(got / gain - expected).max() / np.abs(expected).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--ir-seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--maxconv", default="maxconv", help="the maxconv command to time")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="reverb-"))
    try:
        dry, ir, sox_taps = make_inputs(folder, args.minutes, args.ir_seconds)
        audio_seconds = args.minutes * 60
        expected = reference(dry, ir)
        maxconv = args.maxconv.split()
        tools = {
            f"maxconv filter ({args.device})": Tool(
                [*maxconv, "filter", str(dry), "-k", str(ir), "-o", str(folder / "maxconv.wav")]
                + ["--device", args.device, "--force", "--quiet"],
                folder / "maxconv.wav",
            ),
        }
        if shutil.which("sox"):
            # -D: no dither; fir keeps the input's length and centres the response.
            tools["sox fir"] = Tool(
                ["sox", "-D", str(dry), str(folder / "sox.wav"), "fir", str(sox_taps)],
                folder / "sox.wav",
                channels=[0],
                lag=(int(args.ir_seconds * RATE) - 1) // 2,
            )
        if shutil.which("ffmpeg"):
            tools["ffmpeg afir"] = Tool(
                ["ffmpeg", "-v", "error", "-y", "-i", str(dry), "-i", str(ir), "-lavfi"]
                + ["[0:a][1:a]afir=irfmt=input:gtype=none:irgain=1:dry=1:wet=1"]
                + ["-c:a", "pcm_f32le", str(folder / "ffmpeg.wav")],
                folder / "ffmpeg.wav",
                gain=2.0,  # FFmpeg 5.1's afir doubles its output with gtype=none
            )
        results = []
        for name, tool in tools.items():
            times = timed(tool.argv, args.runs + 1)
            first, rest = times[0], times[1:]
            median = statistics.median(rest)
            gain, error = error_against(tool.output, expected, tool.channels, tool.lag)
            row = {
                "tool": name,
                "first_run_s": first,
                "median_s": median,
                "runs_s": rest,
                "x_realtime": audio_seconds / median,
                "gain_vs_scipy": gain,
                "max_error_vs_scipy": error,
                "wrong_output": abs(gain - tool.gain) > 1e-3 or error > 1e-4,
                "command": " ".join(tool.argv),
            }
            results.append(row)
            print(
                f"{name:28s} median {median:7.2f} s  ({row['x_realtime']:6.1f}x realtime, "
                f"first run {first:.2f} s)  vs scipy: gain {gain:.4f}, error {error:.1e}"
                + ("  WRONG OUTPUT, not compared" if row["wrong_output"] else ""),
                file=sys.stderr,
            )
        ours = results[0]["median_s"]
        for row in results[1:]:
            if not row["wrong_output"]:
                ratio = row["median_s"] / ours
                print(f"{row['tool']} / maxconv time: {ratio:.2f}", file=sys.stderr)
        report = {
            "signal": f"{args.minutes} min stereo {RATE} Hz float32 WAV",
            "impulse_response": f"{args.ir_seconds} s stereo ({int(args.ir_seconds * RATE)} taps)",
            "host": os.uname().nodename,
            "cpus": os.cpu_count(),
            "results": results,
        }
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
