"""The GPU kernels type-check and compile for sm_90 on a CPU-only machine.

CI has no GPU, so without this a GPU-only compile error would surface only
on the GPU machine, as MAX's detail-free "Failed to compile the model".
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "program",
    [
        "tests/mojo/gpu_kernels_build.mojo",
        "research/fft/gpu_check.mojo",
        "research/direct/gpu_direct.mojo",
    ],
    ids=["conv1d", "fft_conv1d", "conv1d_harness"],
)
def test_gpu_kernels_compile_for_h100(tmp_path: Path, program: str):
    mojo = shutil.which("mojo", path=str(Path(sys.executable).parent))
    assert mojo, "the mojo compiler comes with the max package and should be in the venv"
    result = subprocess.run(
        [
            mojo,
            "build",
            "--target-accelerator=sm_90",
            "-I",
            str(ROOT),
            str(ROOT / program),
            "-o",
            str(tmp_path / "gpu_kernels_build"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
