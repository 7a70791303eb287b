#!/usr/bin/env bash
# The GPU machine's checks and measurements, in the parts one `run` call can
# hold (see ../shared/device/README.md for staging MAX there first):
#   bash scripts/gpu_suite.sh kernels   standalone op harnesses (packed here first by
#                                       scripts/gpu_harness_pack.sh; carry .gpu/harness;
#                                       needs no MAX staging)
#   bash scripts/gpu_suite.sh tests     pytest -m gpu
#   bash scripts/gpu_suite.sh bench [K ...]   MAX's per-call cost, maxconv bench (these K,
#                                       or K = 4 .. 2^20)
#   bash scripts/gpu_suite.sh files     reverb, one-hour file, calibrate
# Results go to $OUT (the device tool brings them back) or ./gpu-out.
set -u
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MAXCONV_CACHE_DIR=/tmp/mcache
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw --format=csv | tee "$OUT/gpu.txt"

case "${1:-}" in
kernels)
    cd .gpu/harness && gunzip -f ./*.gz
    for program in gpu_check gpu_direct; do
        LD_LIBRARY_PATH=$PWD timeout 250 "./$program" 2>&1 | tee "$OUT/$program.txt"
    done
    ;;
tests)
    timeout 580 python3 -m pytest -q tests -m gpu -p no:cacheprovider 2>&1 | tail -40 | tee "$OUT/pytest_gpu.txt"
    ;;
bench)
    # MAX's fixed cost per op call: execute + synchronize on a 1-tap, 1024-sample tile.
    python3 - <<'PY' 2>&1 | tee "$OUT/max_call_overhead.txt"
import numpy as np
from maxconv.bench import median_seconds
from maxconv.engine import get_engine
engine = get_engine("gpu")
tiles = engine.to_device(np.ones((1, 1, 1024), np.float32))
taps = engine.to_device(np.ones((1, 1), np.float32))
for method in ("direct", "fft"):
    seconds = median_seconds(lambda: engine.run_on_device(tiles, taps, method=method),
                             engine.device.synchronize, 20, 200)
    print(f"{method}: {seconds * 1e6:.1f} us per execute+synchronize (N=1024, K=1)")
PY
    shift
    ks=${*:-4 64 256 512 1024 2048 4096 16384 131072 1048576}
    timeout 420 python3 -m maxconv.cli bench --device gpu $(printf -- '--k %s ' $ks) --json \
        > "$OUT/bench_gpu.json" 2> "$OUT/bench_gpu.err"
    tail -40 "$OUT/bench_gpu.err"
    ;;
files)
    timeout 200 python3 scripts/reverb_bench.py --device gpu --maxconv "python3 -m maxconv.cli" --runs 2 \
        --json "$OUT/reverb_gpu.json" 2>&1 | tail -12
    python3 - <<'PY'
import numpy as np, soundfile as sf
rng = np.random.default_rng(1)
with sf.SoundFile("/tmp/hour.wav", "w", 48000, 2, subtype="FLOAT") as f:
    block = rng.standard_normal((1 << 20, 2)).astype(np.float32) * 0.1
    for _ in range(165):
        f.write(block)
np.save("/tmp/k4096.npy", (rng.standard_normal(4096) / 64).astype(np.float32))
PY
    python3 - <<'PY'
import soundfile as sf
data, rate = sf.read("/tmp/hour.wav", frames=28 << 20, dtype="float32")
sf.write("/tmp/ten.wav", data, rate, subtype="FLOAT")
sf.write("/tmp/second.wav", data[:rate], rate, subtype="FLOAT")
PY
    # Peak memory against length: one second, ten minutes, one hour (twice).
    for input in second ten hour hour; do
        /usr/bin/time -v python3 -m maxconv.cli filter /tmp/$input.wav -k /tmp/k4096.npy -o /tmp/o.wav \
            --device gpu --force --json 2> "$OUT/time_$input.txt" > "$OUT/filter_$input.json"
        echo "$input: $(grep -E "Elapsed|Maximum resident|Exit status" "$OUT/time_$input.txt" | tr -s ' \t' ' ')"
    done
    tail -c 700 "$OUT/filter_hour.json"; echo
    timeout 150 python3 -m maxconv.cli calibrate --device gpu 2>&1 | tail -15 | tee "$OUT/calibrate_gpu.txt"
    ;;
*)
    echo "usage: $0 kernels|tests|bench|files" >&2; exit 2
    ;;
esac
