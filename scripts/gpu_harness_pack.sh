#!/usr/bin/env bash
# Build the standalone GPU harnesses here (no GPU needed) and pack them with
# the few MAX runtime libraries they load, into .gpu/harness (17 MB, ignored
# by git). The GPU machine then runs them in ONE device call, without
# staging MAX (five calls):
#   run(command="cd .gpu/harness && gunzip -f *.gz && LD_LIBRARY_PATH=$PWD ./gpu_check && LD_LIBRARY_PATH=$PWD ./gpu_direct",
#       carry=[".gpu/harness"])
# gpu_check: the FFT op's GPU path, checked for L = 64 .. 2^22 and timed;
# gpu_direct: every direct-op GPU kernel variant, checked and timed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.gpu/harness
mkdir -p "$out"
mojo=.venv/bin/mojo
for program in research/fft/gpu_check.mojo research/direct/gpu_direct.mojo; do
    "$mojo" build --target-accelerator=sm_90 -I . "$program" -o "$out/$(basename "$program" .mojo)"
done
lib=$(echo .venv/lib/python3*/site-packages/modular/lib)
for name in libKGENCompilerRTShared.so libAsyncRTMojoBindings.so libAsyncRTRuntimeGlobals.so \
            libMSupportGlobals.so libmax_profiler_shim.so libNVPTX.so; do
    gzip -c $lib/$name > "$out/$name.gz"
done
du -sh "$out"
