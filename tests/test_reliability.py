"""Reliability under faults, load and hostile input.

What a user can throw at `maxconv filter` besides good files: Ctrl-C and SIGTERM
mid-run, eight processes racing on an empty graph cache, a damaged or unusable
cache, a GPU that will not open or fails mid-run, a disk that fills up, and a
fixed-seed corpus of damaged, empty, absurd and hostile inputs and kernels.

Real processes (`python -m maxconv.cli`) run where the process boundary is the
point (signals, concurrency, exit codes, memory limits); faults that need a
monkeypatch run in-process through typer's CliRunner. Most tests share the
session's compiled-graph cache (conftest.py); only the cache-fault and the
concurrency tests use empty folders, and only three tests compile for real.
The long, by-hand companion is scripts/reliability_long.py (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from max import engine as max_engine
from typer.testing import CliRunner

import maxconv.engine
from maxconv import audio_write, devices
from maxconv.cache import MAGIC, CacheWarning, GraphCache
from maxconv.cli import app
from maxconv.engine import get_engine

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SPEECH = SAMPLES / "speech.wav"  # 16 kHz mono PCM_16
MUSIC = SAMPLES / "music.flac"  # 44.1 kHz stereo PCM_16
ROOM = SAMPLES / "room.wav"  # 44.1 kHz mono FLOAT impulse response
LOWPASS = SAMPLES / "lowpass.npy"  # 101 taps
EQ = SAMPLES / "eq.txt"  # 31 taps, SoX fir text format

SEED = 20261125
MEMORY_LIMIT = 4 * 2**30  # RLIMIT_AS of hostile-input children (MAX alone maps ~2.5 GB)
MAXCONV = [sys.executable, "-m", "maxconv.cli"]
# `python -c LIMITED args...` is `maxconv args...` with the address space capped and
# Ctrl-C armed even if this process was started with SIGINT ignored (a shell's
# background job). A wrapper, because preexec_fn is unsafe in a threaded parent.
LIMITED = [
    sys.executable,
    "-c",
    "import resource, runpy, signal, sys\n"
    "limit = int(sys.argv.pop(1))\n"
    "if limit: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "runpy.run_module('maxconv.cli', run_name='__main__', alter_sys=True)\n",
]

runner = CliRunner()


# Helpers --------------------------------------------------------------------------------


def maxconv_cmd(*args: object, limit: int = MEMORY_LIMIT, warn_always: bool = False) -> list[str]:
    """argv of a `maxconv` process (memory-capped unless limit=0)."""
    python = [*LIMITED[:1], "-W", "always::UserWarning", *LIMITED[1:]] if warn_always else LIMITED
    return [*python, str(limit), *map(str, args)]


def run_maxconv(
    *args: object, env: dict | None = None, timeout: float = 120, **options
) -> subprocess.CompletedProcess:
    """Run `maxconv ARGS` as a real process; text out; a hang fails the test."""
    return subprocess.run(
        maxconv_cmd(*args, **options),
        capture_output=True,
        text=True,
        env=env if env is not None else os.environ,
        timeout=timeout,
    )


def parts(folder: Path) -> list[Path]:
    """Temporary files of the atomic writers (outputs and cache entries)."""
    return sorted(folder.rglob(".*.part"))


def noise(frames: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """float32 (channels, frames) noise at -20 dBFS."""
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((channels, frames))).astype(np.float32)


def write_float_wav(path: Path, data: np.ndarray, rate: int = 48000) -> Path:
    sf.write(path, data.T, rate, subtype="FLOAT")
    return path


def read_output(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.atleast_2d(np.load(path)).astype(np.float64)
    data, _ = sf.read(path, dtype="float64", always_2d=True)
    return data.T


def centred(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """numpy.convolve(x, h, 'same') per row in float64: what a coefficient kernel gives."""
    return np.stack([np.convolve(row.astype(np.float64), h, "same") for row in np.atleast_2d(x)])


def assert_close(out: np.ndarray, reference: np.ndarray) -> None:
    assert out.shape == reference.shape
    error = np.abs(out - reference).max()
    assert error <= 2e-6 * max(np.abs(reference).max(), 1e-30), f"max error {error:.3g}"


def assert_one_error_line(stderr: str, *fragments: str) -> str:
    """stderr is exactly one 'error: ...' line (no traceback) holding every fragment."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def lines_with(text: str, fragment: str) -> list[str]:
    return [line for line in text.splitlines() if fragment in line]


def eq_taps() -> np.ndarray:
    return np.loadtxt(EQ)


@pytest.fixture(scope="module")
def graph_payload() -> bytes:
    """A valid compiled float32 CPU graph (MEF), from the session's shared cache.

    Compiles once if the shared cache is empty, so every later subprocess hits it.
    """
    cpu = get_engine("cpu")
    cpu.model(np.float32)
    blob = cpu.cache.entry_path(cpu.graph_key(np.float32)).read_bytes()
    return blob[len(MAGIC) + 32 :]


@pytest.fixture(scope="module")
def graph_key(graph_payload: bytes) -> str:
    return get_engine("cpu").graph_key(np.float32)


def entry_is_valid(path: Path) -> bool:
    """A cache entry that carries its magic and a matching checksum of a MAX-readable MEF."""
    blob = path.read_bytes()
    header = len(MAGIC) + 32
    if (
        not blob.startswith(MAGIC)
        or blob[len(MAGIC) : header] != hashlib.sha256(blob[header:]).digest()
    ):
        return False
    max_engine.read(io.BytesIO(blob[header:]))
    return True


class CountingCompiler:
    """Stands in for a 20 s compile: counts calls, returns the real compiled graph."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.calls = 0

    def __call__(self, *args, **kwargs) -> max_engine.CompiledModel:
        self.calls += 1
        return max_engine.read(io.BytesIO(self.payload))


@pytest.fixture
def fresh_engine(monkeypatch, tmp_path: Path, graph_payload: bytes):  # noqa: ANN201
    """A new process-wide engine on an empty cache folder, with compiles faked.

    The whole CLI path runs for real (device, GraphCache, warnings, MAX session);
    only building the graph (which packages the Mojo sources, 3 s) and
    `InferenceSession.compile` (20 s) are skipped: the compile returns the already
    compiled graph. Returns (cache folder, compiler) for the test to inspect.
    """
    folder = tmp_path / "graphs"
    compiler = CountingCompiler(graph_payload)
    monkeypatch.setattr(maxconv.engine, "_ENGINES", {})
    monkeypatch.setenv("MAXCONV_CACHE_DIR", str(folder))
    monkeypatch.setattr(maxconv.engine, "build_graph", lambda *args, **kwargs: "graph")
    monkeypatch.setattr(max_engine.InferenceSession, "compile", compiler)
    return folder, compiler


def invoke(*args: object):  # noqa: ANN201
    """`maxconv ARGS` in-process, warnings never deduplicated by Python itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        return runner.invoke(app, [str(arg) for arg in args])


# Interruption: SIGINT / SIGTERM at fixed-seed random points of a long run ---------------

_POINTS = np.random.default_rng(SEED).uniform(0.0, 2.5, size=3).round(3)


@pytest.fixture(scope="module")
def long_input(tmp_path_factory) -> Path:
    """240 s of 48 kHz stereo float noise (92 MB): with 16001 taps, seconds to filter."""
    path = tmp_path_factory.mktemp("long") / "long.wav"
    return write_float_wav(path, noise(48000 * 240, 2, seed=SEED))


# 0.0: the signal right after the temp output appears, while the writer is still being
# set up (CI caught a temp file left behind there once).
@pytest.mark.parametrize("delay", [0.0, *(float(point) for point in _POINTS)])
@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["SIGINT", "SIGTERM"],
)
def test_signal_at_a_random_point_leaves_nothing_and_a_usable_cache(
    tmp_path: Path, long_input: Path, graph_payload: bytes, signum, code, said, delay
):
    folder = tmp_path / "out"
    folder.mkdir()
    process = subprocess.Popen(
        maxconv_cmd(
            "filter",
            long_input,
            "-k",
            "lowpass:1000",
            "--taps",
            "16001",
            "--method",
            "direct",  # slow on purpose: the FFT would finish before the signal
            "-o",
            folder / "y.wav",
            "--device",
            "cpu",
            limit=0,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not parts(folder):
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "no temporary output appeared within 60 s"
            time.sleep(0.005)
        time.sleep(delay)
        assert process.poll() is None, "the run ended before the signal; make it longer"
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr and stdout == ""
    assert stderr.strip().splitlines()[-1] == f"{said}; no partial output was left"
    assert list(folder.iterdir()) == [], "partial output or temp file left behind"
    cache = Path(os.environ["MAXCONV_CACHE_DIR"])
    assert parts(cache) == []
    # The compiled-graph cache survived: the next run reads it back.
    after = run_maxconv(
        "filter", SPEECH, "-k", EQ, "-o", tmp_path / "next.wav", "--device", "cpu", "--json"
    )
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)[0]["cache"] == "hit"


# Concurrency: eight processes on an empty cache -----------------------------------------


def test_eight_processes_share_one_compile_on_an_empty_cache(tmp_path: Path, graph_key: str):
    cache = tmp_path / "graphs"
    env = {**os.environ, "MAXCONV_CACHE_DIR": str(cache)}
    rng = np.random.default_rng(SEED)
    taps = rng.uniform(-0.5, 0.5, 33)
    kernel = tmp_path / "k.txt"
    kernel.write_text("# 33 random taps\n" + "\n".join(repr(float(tap)) for tap in taps))
    inputs = []
    for index in range(8):
        signal_in = rng.standard_normal(3000 + 997 * index).astype(np.float32)
        np.save(tmp_path / f"in{index}.npy", signal_in)
        inputs.append(signal_in)
    children = [
        subprocess.Popen(
            maxconv_cmd(
                "filter",
                tmp_path / f"in{index}.npy",
                "-k",
                kernel,
                "-o",
                tmp_path / f"out{index}.npy",
                "--device",
                "cpu",
                "--json",
                "--quiet",
                limit=0,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for index in range(8)
    ]
    statuses = []
    try:
        for child in children:
            stdout, stderr = child.communicate(timeout=600)
            assert child.returncode == 0, stderr
            # The only warning allowed is the one that says why a process waits.
            others = [line for line in stderr.splitlines() if "waiting for another" not in line]
            assert "Traceback" not in stderr and not any("warning" in x for x in others), stderr
            statuses.append(json.loads(stdout)[0]["cache"])
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    for index, signal_in in enumerate(inputs):
        assert_close(read_output(tmp_path / f"out{index}.npy"), centred(signal_in, taps))
    assert sorted(statuses) == ["compiled"] + ["hit"] * 7, statuses
    entries = GraphCache(cache).entries()
    assert [entry.name for entry in entries] == [f"conv1d-{graph_key}.mef"]
    assert entry_is_valid(entries[0])
    assert parts(cache) == [] and not list(cache.glob("*.raw.part"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, status = GraphCache(cache).get_or_compile(graph_key, _must_not_compile)
    assert status == "hit"


def _must_not_compile():  # noqa: ANN202
    raise AssertionError("a valid cache entry was compiled again")


# Cache faults ---------------------------------------------------------------------------


def _fuzzed_entries(blob: bytes) -> list[tuple[str, bytes]]:
    """Fixed-seed damage of a good entry: bit flips anywhere, cuts, garbage, foreign bytes."""
    rng = np.random.default_rng(SEED)
    header = len(MAGIC) + 32
    variants = []
    for index in range(24):
        data = bytearray(blob)
        # Half of the flips land in the magic/checksum header, half in the payload.
        region = (0, header) if index % 2 else (header, len(blob))
        for _ in range(int(rng.integers(1, 4))):
            position = int(rng.integers(*region))
            data[position] ^= 1 << int(rng.integers(0, 8))
        variants.append((f"flip{index}", bytes(data)))
    for index, cut in enumerate(rng.integers(0, len(blob), 8)):
        variants.append((f"cut{index}", blob[: int(cut)]))
    variants.append(("appended", blob + b"\0" * 7))
    variants.append(("header-only", blob[:header]))
    for index in range(4):
        size = int(rng.integers(1, 4096))
        variants.append((f"foreign{index}", rng.integers(0, 256, size, dtype=np.uint8).tobytes()))
    return variants


def test_fuzzed_cache_entries_are_rebuilt_with_one_warning_each(
    tmp_path: Path, graph_payload: bytes
):
    key = "f" * 32
    good = GraphCache(tmp_path)
    compiler = CountingCompiler(graph_payload)
    assert good.get_or_compile(key, compiler)[1] == "compiled"
    entry = good.entry_path(key)
    original = entry.read_bytes()
    variants = _fuzzed_entries(original)
    for name, data in variants:
        entry.write_bytes(data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _, status = GraphCache(tmp_path).get_or_compile(key, compiler)
        assert status == "rebuilt", name
        assert [str(w.message) for w in caught] == [
            f"cache entry {entry.name} is corrupt; recompiling"
        ], name
        assert all(issubclass(w.category, CacheWarning) for w in caught), name
        assert entry.read_bytes() == original, name
    assert compiler.calls == 1 + len(variants)
    assert parts(tmp_path) == []


@pytest.mark.parametrize("damage", ["bit-flipped", "foreign", "directory"])
def test_cache_fault_through_the_cli_in_process(
    tmp_path: Path, fresh_engine, graph_payload: bytes, graph_key: str, damage: str
):
    """The CLI with a damaged entry: it recompiles, warns once, and the output is right."""
    cache, compiler = fresh_engine
    cache.mkdir()
    entry = cache / f"conv1d-{graph_key}.mef"
    good = MAGIC + hashlib.sha256(graph_payload).digest() + graph_payload
    if damage == "bit-flipped":
        entry.write_bytes(good[:-100] + bytes(b ^ 0x10 for b in good[-100:]))
    elif damage == "foreign":
        entry.write_bytes(np.random.default_rng(SEED).bytes(len(good)))
    else:
        entry.mkdir()  # unreadable: as root, chmod would not stop the read
        (entry / "inside").write_text("x")
    x = noise(30000, 2, seed=3)
    source = write_float_wav(tmp_path / "x.wav", x)
    result = invoke(
        "filter", source, "-k", EQ, "-o", tmp_path / "y.wav", "--device", "cpu", "--json"
    )
    assert result.exit_code == 0, (result.exception, result.stderr)
    assert_close(read_output(tmp_path / "y.wav"), centred(x, eq_taps()))
    status = json.loads(result.stdout)[0]["cache"]
    assert compiler.calls == 1
    warned = lines_with(result.stderr, "warning:")
    if damage == "directory":
        # Not a regular file, and the rename over it fails too: compiled in memory.
        assert status == "uncached"
        assert len(lines_with(result.stderr, f"{entry.name} is not a regular file")) == 1
        assert len(lines_with(result.stderr, "could not store compiled graph")) == 1
        assert len(warned) == 2, result.stderr
    else:
        assert status == "rebuilt"
        assert warned == [f"warning: cache entry {entry.name} is corrupt; recompiling"]
        assert entry_is_valid(entry)
    assert parts(cache) == [] and parts(tmp_path) == []


def test_dangling_symlink_entry_is_a_plain_miss(tmp_path: Path, graph_payload: bytes):
    cache = GraphCache(tmp_path)
    entry = cache.entry_path("d" * 32)
    entry.symlink_to(tmp_path / "gone.mef")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, status = cache.get_or_compile("d" * 32, CountingCompiler(graph_payload))
    assert status == "compiled" and not entry.is_symlink() and entry_is_valid(entry)


def _in_thread(work, seconds: float) -> tuple[threading.Thread, list]:  # noqa: ANN001
    result: list = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    thread.join(seconds)
    return thread, result


@pytest.mark.filterwarnings("ignore::maxconv.cache.CacheWarning")
def test_fifo_in_place_of_an_entry_does_not_hang(tmp_path: Path, graph_payload: bytes):
    cache = GraphCache(tmp_path)
    entry = cache.entry_path("e" * 32)
    os.mkfifo(entry)
    try:
        thread, result = _in_thread(
            lambda: cache.get_or_compile("e" * 32, CountingCompiler(graph_payload)), 2.0
        )
        hung = thread.is_alive()
    finally:
        # Unblock a reader stuck in open(): a writer that opens and closes gives it EOF.
        with contextlib.suppress(OSError):
            os.close(os.open(entry, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(10)
    assert not hung, "get_or_compile blocked on a FIFO cache entry"
    assert result and result[0][1] in ("rebuilt", "uncached")


def test_a_cache_hit_does_not_wait_for_a_stuck_lock_holder(tmp_path: Path, graph_payload: bytes):
    import fcntl

    key = "c" * 32
    cache = GraphCache(tmp_path)
    assert cache.get_or_compile(key, CountingCompiler(graph_payload))[1] == "compiled"
    with open(tmp_path / f"conv1d-{key}.lock", "a+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # another process, stopped mid-compile
        try:
            thread, result = _in_thread(
                lambda: GraphCache(tmp_path).get_or_compile(key, _must_not_compile), 2.0
            )
            hung = thread.is_alive()
        finally:
            fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    thread.join(10)
    assert not hung, "a cache hit blocked behind another process's lock"
    assert result[0][1] == "hit"


def test_truncated_entry_through_the_cli_is_rebuilt(tmp_path: Path, graph_key: str):
    """A real process, a real recompile: truncated entry -> one warning, 'rebuilt'."""
    shared = get_engine("cpu").cache.entry_path(graph_key).read_bytes()
    cache = tmp_path / "graphs"
    cache.mkdir()
    entry = cache / f"conv1d-{graph_key}.mef"
    entry.write_bytes(shared[: len(shared) // 3])
    x = noise(20000, 1, seed=5)
    source = write_float_wav(tmp_path / "x.wav", x, 16000)
    result = run_maxconv(
        "filter",
        source,
        "-k",
        EQ,
        "-o",
        tmp_path / "y.wav",
        "--device",
        "cpu",
        "--json",
        env={**os.environ, "MAXCONV_CACHE_DIR": str(cache)},
        limit=0,
        warn_always=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["cache"] == "rebuilt"
    assert_close(read_output(tmp_path / "y.wav"), centred(x, eq_taps()))
    assert lines_with(result.stderr, "warning:") == [
        f"warning: cache entry {entry.name} is corrupt; recompiling"
    ]
    assert "Traceback" not in result.stderr
    assert entry_is_valid(entry) and parts(cache) == []


def test_cache_folder_that_cannot_be_created_through_the_cli(tmp_path: Path):
    """MAXCONV_CACHE_DIR under a regular file: compiled in memory, one warning, 2 files."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    xs = [noise(12000 + 1000 * index, 2, seed=index) for index in range(2)]
    for index, x in enumerate(xs):
        write_float_wav(tmp_path / f"x{index}.wav", x)
    out = tmp_path / "out"
    out.mkdir()
    result = run_maxconv(
        "filter",
        tmp_path / "x0.wav",
        tmp_path / "x1.wav",
        "-k",
        EQ,
        "-o",
        f"{out}/",
        "--device",
        "cpu",
        "--json",
        env={**os.environ, "MAXCONV_CACHE_DIR": str(blocker / "graphs")},
        limit=0,
        warn_always=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert [report["cache"] for report in json.loads(result.stdout)] == ["uncached"] * 2
    for index, x in enumerate(xs):
        assert_close(read_output(out / f"x{index}.wav"), centred(x, eq_taps()))
    warned = lines_with(result.stderr, "warning:")
    assert len(warned) == 1, result.stderr
    assert "is not writable (Not a directory); compiling without a disk cache" in warned[0]
    assert blocker.read_text() == "not a folder"


# Device faults (in-process, monkeypatched MAX driver) -----------------------------------


def _broken_accelerator(index: int):  # noqa: ANN202
    raise RuntimeError("CUDA driver version is insufficient for CUDA runtime version")


@pytest.fixture
def broken_gpu(monkeypatch):  # noqa: ANN201
    """MAX sees one GPU that cannot be opened; a fresh engine table."""
    monkeypatch.setattr(maxconv.engine, "_ENGINES", {})
    monkeypatch.setattr(devices, "gpu_count", lambda: 1)
    monkeypatch.setattr(devices.driver, "Accelerator", _broken_accelerator)


def test_auto_falls_back_to_cpu_with_one_warning_for_many_files(
    tmp_path: Path, broken_gpu, graph_payload: bytes
):
    xs = [noise(9000, 1, seed=10 + index) for index in range(3)]
    names = [write_float_wav(tmp_path / f"x{index}.wav", x) for index, x in enumerate(xs)]
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("filter", *names, "-k", EQ, "-o", f"{out}/", "--device", "auto", "--json")
    assert result.exit_code == 0, (result.exception, result.stderr)
    assert [report["device"] for report in json.loads(result.stdout)] == ["cpu"] * 3
    warned = lines_with(result.stderr, "warning:")
    assert warned == [
        "warning: GPU 0 could not be initialised (CUDA driver version is insufficient for "
        "CUDA runtime version); running on the CPU"
    ]
    for index, x in enumerate(xs):
        assert_close(read_output(out / f"x{index}.wav"), centred(x, eq_taps()))


@pytest.mark.parametrize("device", ["gpu", "gpu:0"])
def test_explicit_gpu_that_cannot_open_is_one_line_exit_1(tmp_path: Path, broken_gpu, device):
    result = invoke(
        "filter", SPEECH, "-k", EQ, "-o", tmp_path / "y.wav", "--device", device, "--json"
    )
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert_one_error_line(
        result.stderr, f"device '{device}' could not be initialised", "use --device cpu"
    )
    assert list(tmp_path.iterdir()) == []


def test_broken_driver_counts_as_no_gpu(tmp_path: Path, monkeypatch, graph_payload: bytes):
    def broken_count() -> int:
        raise RuntimeError("libcuda.so: cannot open shared object file")

    monkeypatch.setattr(maxconv.engine, "_ENGINES", {})
    monkeypatch.setattr(devices.driver, "accelerator_count", broken_count)
    auto = invoke("filter", SPEECH, "-k", EQ, "-o", tmp_path / "a.wav", "--device", "auto")
    assert auto.exit_code == 0 and "warning" not in auto.stderr, auto.stderr
    gpu = invoke("filter", SPEECH, "-k", EQ, "-o", tmp_path / "g.wav", "--device", "gpu")
    assert gpu.exit_code == 1
    assert_one_error_line(gpu.stderr, "MAX sees no GPU", "use --device cpu or auto")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


def test_devices_lists_an_unusable_gpu_instead_of_failing(broken_gpu):
    result = invoke("devices")
    assert result.exit_code == 0, result.stderr
    assert "gpu:0" in result.stdout and "unusable" in result.stdout


_ENGINE_FAILURE = "CUDA call failed: CUDA_ERROR_ILLEGAL_ADDRESS"


@pytest.mark.parametrize("stage", ["compile", "mid-run"])
def test_engine_failure_is_one_line_exit_1(tmp_path: Path, monkeypatch, fresh_engine, stage):
    if stage == "compile":

        def fail(*args, **kwargs):  # noqa: ANN202
            raise RuntimeError(f"Failed to compile the model: {_ENGINE_FAILURE}")

        monkeypatch.setattr(max_engine.InferenceSession, "compile", fail)
    else:
        real = maxconv.engine.Engine.correlate
        calls = []

        def flaky(self, *args, **kwargs):  # noqa: ANN202
            calls.append(1)
            if len(calls) > 1:
                raise RuntimeError(_ENGINE_FAILURE)
            return real(self, *args, **kwargs)

        monkeypatch.setattr(maxconv.engine.Engine, "correlate", flaky)
    source = write_float_wav(tmp_path / "x.wav", noise(3 * 2**20, 1, seed=7))
    result = invoke("filter", source, "-k", EQ, "-o", tmp_path / "y.wav", "--device", "cpu")
    assert not (tmp_path / "y.wav").exists() and parts(tmp_path) == []
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert_one_error_line(result.stderr, _ENGINE_FAILURE)


# Output faults: a disk that fills up mid-write ------------------------------------------


class FullDisk:
    """A file object that accepts `room` bytes, then fails as a full disk does."""

    def __init__(self, inner, room: int, at_close: bool = False) -> None:  # noqa: ANN001
        self.inner, self.room, self.at_close = inner, room, at_close
        self.written = 0

    def write(self, data) -> int:  # noqa: ANN001
        self.written += memoryview(data).nbytes
        if not self.at_close and self.written > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.inner.write(data)

    def close(self) -> None:
        closed = self.inner.closed
        self.inner.close()
        if self.at_close and not closed:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def three_chunks(tmp_path_factory) -> Path:
    """2.5 M frames of mono float (10 MB): three streamed chunks, three writes."""
    return write_float_wav(
        tmp_path_factory.mktemp("big") / "x.wav", noise(5 * 2**19, 1, seed=9), 48000
    )


def _fill_disk_after(monkeypatch, room: int, at_close: bool = False) -> None:  # noqa: ANN001
    original = audio_write._AtomicFile.__init__

    def init(self, target, label) -> None:  # noqa: ANN001
        original(self, target, label)
        self.file = FullDisk(self.file, room, at_close)

    monkeypatch.setattr(audio_write._AtomicFile, "__init__", init)


def _check_full_disk(tmp_path: Path, three_chunks: Path, suffix: str) -> None:
    target = tmp_path / f"y{suffix}"
    target.write_bytes(b"previous result")
    result = invoke(
        "filter", three_chunks, "-k", EQ, "-o", target, "--device", "cpu", "--force", "-q"
    )
    assert result.exit_code == 5, (result.exception, result.stderr)
    assert_one_error_line(result.stderr, f"cannot write '{target}'", "No space left on device")
    assert target.read_bytes() == b"previous result", "the old output was damaged"
    assert parts(tmp_path) == [], "temp file left behind"


def test_disk_full_midway_npy(tmp_path: Path, monkeypatch, three_chunks: Path, graph_payload):
    _fill_disk_after(monkeypatch, 6_000_000)  # midway through the second block
    _check_full_disk(tmp_path, three_chunks, ".npy")


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_disk_full_midway_sound_file(
    tmp_path: Path, monkeypatch, three_chunks: Path, graph_payload, suffix: str
):
    _fill_disk_after(monkeypatch, 1_500_000)
    _check_full_disk(tmp_path, three_chunks, suffix)


@pytest.mark.parametrize("suffix", [".wav", ".npy"])
def test_disk_full_at_the_final_flush(
    tmp_path: Path, monkeypatch, three_chunks: Path, graph_payload, suffix: str
):
    """Buffered writes often fail only when flushed at close: still exit 5, nothing left."""
    _fill_disk_after(monkeypatch, 0, at_close=True)
    _check_full_disk(tmp_path, three_chunks, suffix)


def test_soundfile_write_error_midway(
    tmp_path: Path, monkeypatch, three_chunks: Path, graph_payload
):
    """libsndfile itself failing on the second block (its own I/O error path)."""
    original = sf.SoundFile.write
    calls = []

    def write(self, data) -> None:  # noqa: ANN001
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        original(self, data)

    monkeypatch.setattr(sf.SoundFile, "write", write)
    _check_full_disk(tmp_path, three_chunks, ".wav")
    assert len(calls) == 2


# Hostile input: a fixed-seed corpus of damaged and absurd files -------------------------


@dataclass(frozen=True)
class Case:
    """One hostile file and how it is tried: as the signal, or as the kernel."""

    path: str
    role: str  # "input" or "kernel"
    must_fail: bool  # False: bit flips, which may leave a file that is still valid
    samplerate: int | None = None
    channels: int = 1


def _npy_header(shape: tuple, descr: str = "<f4") -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return header.getvalue()


def _flip(data: bytes, rng: np.random.Generator, lo: int, hi: int, count: int) -> bytes:
    out = bytearray(data)
    for _ in range(count):
        position = int(rng.integers(lo, min(hi, len(out))))
        out[position] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def build_corpus(folder: Path) -> list[Case]:
    """Every hostile file, from the samples and a fixed seed; each tried in both roles."""
    rng = np.random.default_rng(SEED)
    files: list[tuple[str, bytes, bool]] = []  # name, bytes, must fail
    sources = [
        ("speech", ".wav", SPEECH.read_bytes(), 44),
        ("room", ".wav", ROOM.read_bytes(), 44),
        ("music", ".flac", MUSIC.read_bytes(), 42),
        ("lowpass", ".npy", LOWPASS.read_bytes(), 128),
    ]
    for name, suffix, data, header in sources:
        cuts = {0, 1, 4, 8, 12, 20, 36, header - 2, header, len(data) // 2, len(data) - 1}
        cuts |= {int(cut) for cut in rng.integers(1, 4 * header, 4)}
        for cut in sorted(cuts):
            files.append((f"{name}-cut{cut}{suffix}", data[:cut], True))
        for index in range(12):  # bit flips in the header, where the damage is most dangerous
            flipped = _flip(data, rng, 0, header, int(rng.integers(1, 4)))
            files.append((f"{name}-hflip{index}{suffix}", flipped, False))
        for index in range(4):  # and anywhere in the file
            flipped = _flip(data, rng, 0, len(data), int(rng.integers(1, 9)))
            files.append((f"{name}-flip{index}{suffix}", flipped, False))
    speech = SPEECH.read_bytes()
    data_at = speech.find(b"data")
    huge = struct.pack("<I", 0x7FFFFFF0)
    music = bytearray(MUSIC.read_bytes())
    music[21] |= 0x0F  # STREAMINFO total samples (36 bits at bytes 21-25) to 2^36 - 1
    music[22:26] = b"\xff\xff\xff\xff"
    npz = io.BytesIO()
    np.savez(npz, a=np.ones(4))
    pickled = io.BytesIO()
    np.save(pickled, np.array([1.0, "x", None], dtype=object), allow_pickle=True)
    specials = [
        ("empty.wav", b""),
        ("empty.flac", b""),
        ("empty.npy", b""),
        ("empty.txt", b""),
        ("huge-data-size.wav", speech[: data_at + 4] + huge + speech[data_at + 8 :]),
        ("huge-riff-and-data.wav", speech[:4] + huge + speech[8 : data_at + 4] + huge),
        ("object-dtype.npy", pickled.getvalue()),
        ("npz-archive.npy", npz.getvalue()),
        ("complex.npy", _npy_header((8,), "<c8") + bytes(64)),
        ("structured.npy", _npy_header((4,), "[('a', '<f4'), ('b', '<i4')]") + bytes(32)),
        ("bool.npy", _npy_header((4,), "|b1") + bytes(4)),
        ("claims-1e12.npy", _npy_header((10**12,)) + bytes(64)),
        ("claims-2x1e12.npy", _npy_header((2, 10**12)) + bytes(64)),
        ("claims-1e8-taps.npy", _npy_header((10**8,)) + bytes(64)),
        ("three-d.npy", _npy_header((2, 3, 4)) + bytes(96)),
        ("zero-rows.npy", _npy_header((0, 16)) + b""),
        ("zero-columns.npy", _npy_header((2, 0)) + b""),
        ("bad-header.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': nonsense}\n"),
        ("nan.txt", b"0.1 nan 0.3\n"),
        ("inf.txt", b"1e999\n"),
        ("words.txt", b"0.1 0.2 abc\n"),
        ("commas.txt", b"0.1, 0.2, 0.3\n"),
        ("only-comments.txt", b"# nothing\n   # here\n"),
        ("binary.txt", bytes(range(256)) * 4),
        ("latin1.txt", "0.5 # gain \xe9\n".encode("latin-1")),
        ("nul.txt", b"0.5\x000.25\n"),
    ]
    for name, data in specials:
        files.append((name, data, True))
    files.append(("huge-frames.flac", bytes(music), True))
    cases = []
    for name, data, must_fail in files:
        path = folder / name
        path.write_bytes(data)
        rate = 16000 if name.startswith("speech") else 44100
        cases.append(Case(str(path), "input", must_fail))
        # As a kernel for a stereo input at the rate of the file it was made from.
        cases.append(Case(str(path), "kernel", must_fail, rate, 2))
    return cases


CORPUS_FILES = 151
CORPUS_CASES = 2 * CORPUS_FILES


def _clean(record: dict) -> str | None:
    """Why a sweep record is not the clean outcome it must be, or None if it is."""
    expected = "InputError" if record["role"] == "input" else "KernelError"
    if record["outcome"] not in ("ok", expected):
        return f"{record['outcome']}: {record['message']}"
    if record["must_fail"] and record["outcome"] == "ok":
        return "damaged file accepted"
    message = record["message"]
    if record["outcome"] != "ok" and (not message or "\n" in message):
        return f"error message not one line: {message!r}"
    if record["seconds"] > 10:
        return f"took {record['seconds']:.1f} s"
    return None


# Runs in a memory-capped child: each case read the way `maxconv filter` reads it.
_SWEEP = r"""
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
from maxconv import audio_read, fir
from maxconv.errors import InputError, KernelError
for line in sys.stdin:
    case = json.loads(line)
    start = time.perf_counter()
    try:
        if case["role"] == "input":
            info = audio_read.read_info(case["path"])
            if info.frames == 0:  # as filter_file refuses it
                raise InputError("no samples")
            frames = sum(b.shape[1] for b in audio_read.iter_blocks(case["path"], 1 << 16))
            data, _ = audio_read.read_signal(case["path"])
            assert frames == info.frames, f"streamed {frames} of {info.frames} frames"
            assert data.shape == (info.channels, frames), data.shape
        else:
            fir.load_kernel(case["path"], case["samplerate"], case["channels"])
        outcome, message = "ok", ""
    except (InputError, KernelError) as exc:
        outcome, message = type(exc).__name__, str(exc)
    except BaseException as exc:
        outcome, message = "CRASH " + type(exc).__name__, str(exc)[:300]
    seconds = time.perf_counter() - start
    print(json.dumps({**case, "outcome": outcome, "message": message, "seconds": seconds}))
    sys.stdout.flush()
# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over exec, and subprocess
# starts children with vfork, so ru_maxrss would report pytest's own peak.
with open("/proc/self/status") as status:
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"maxrss_kb": hwm}))
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Case]:
    return build_corpus(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def sweep(corpus: list[Case]) -> tuple[list[dict], int]:
    """Every case through audio_read.read_info/iter_blocks/read_signal or fir.load_kernel."""
    lines = "".join(json.dumps(case.__dict__) + "\n" for case in corpus)
    result = subprocess.run(
        [sys.executable, "-c", _SWEEP, str(MEMORY_LIMIT)],
        input=lines,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    return records[:-1], records[-1]["maxrss_kb"]


def test_corpus_size_is_recorded(corpus: list[Case]):
    """docs/reliability.md quotes these counts; change both together."""
    assert len({case.path for case in corpus}) == CORPUS_FILES
    assert len(corpus) == CORPUS_CASES
    print(f"hostile corpus: {CORPUS_FILES} files, {CORPUS_CASES} read attempts")


def test_hostile_corpus_gives_clean_errors_in_bounded_memory_and_time(sweep):
    """Each read gives data or InputError/KernelError (one line), fast, in bounded memory."""
    records, maxrss_kb = sweep
    assert len(records) == CORPUS_CASES
    unclean = {
        (Path(record["path"]).name, record["role"]): _clean(record)
        for record in records
        if _clean(record)
    }
    assert unclean == {}
    assert maxrss_kb < 1.5 * 2**20, f"peak RSS {maxrss_kb / 2**10:.0f} MB"
    failed = sum(record["outcome"] != "ok" for record in records)
    print(f"hostile corpus: {len(records)} attempts, {failed} errors, peak RSS {maxrss_kb} kB")


def test_damage_never_passes_silently_for_truncated_files(sweep):
    """Every truncation is reported, never read as a shorter valid signal."""
    records, _ = sweep
    cut = [r for r in records if "-cut" in r["path"]]
    assert len(cut) > 60
    assert all(r["outcome"] != "ok" for r in cut), [r for r in cut if r["outcome"] == "ok"]


# Names of corpus files sent through the real CLI, with the exit code each must give.
_CLI_CASES = [
    ("input", "empty.wav", 3),
    ("input", "speech-cut20.wav", 3),
    ("input", "huge-data-size.wav", 3),
    ("input", "huge-frames.flac", 3),
    ("input", "object-dtype.npy", 3),
    ("input", "claims-1e12.npy", 3),
    ("kernel", "words.txt", 4),
    ("kernel", "claims-1e8-taps.npy", 4),
    ("kernel", "music-cut42.flac", 4),
]


def test_hostile_inputs_through_the_cli(tmp_path: Path, corpus: list[Case], graph_payload):
    """Real processes, memory-capped: one error line, the documented code, nothing left."""
    folder = Path(corpus[0].path).parent
    out = tmp_path / "out"
    out.mkdir()
    runs = []
    for index, (role, name, code) in enumerate(_CLI_CASES):
        source, kernel = (folder / name, EQ) if role == "input" else (MUSIC, folder / name)
        runs.append((name, code, ["filter", source, "-k", kernel, "-o", out / f"y{index}.wav"]))
    # Output faults: an unknown format and a folder that is a regular file.
    (tmp_path / "file").write_text("x")
    runs.append(("unknown format", 5, ["filter", SPEECH, "-k", EQ, "-o", out / "y.xyz"]))
    runs.append(("folder is a file", 5, ["filter", SPEECH, "-k", EQ, "-o", tmp_path / "file/y"]))
    pending = list(runs)
    while pending:  # three at a time: two cores, mostly import time
        batch, pending = pending[:3], pending[3:]
        children = [
            (name, code, subprocess.Popen(
                maxconv_cmd(*args, "--device", "cpu"),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ))
            for name, code, args in batch
        ]  # fmt: skip
        for name, code, child in children:
            try:
                stdout, stderr = child.communicate(timeout=120)
            finally:
                if child.poll() is None:
                    child.kill()
            assert child.returncode == code, (name, child.returncode, stderr)
            assert stdout == ""
            assert_one_error_line(stderr)
    assert list(out.iterdir()) == [] and parts(tmp_path) == []


@pytest.mark.parametrize("shape", [(10**12,), (2, 10**12)])
def test_npy_kernel_claiming_a_huge_shape_is_a_kernel_error(tmp_path: Path, shape):
    kernel = tmp_path / "k.npy"
    kernel.write_bytes(_npy_header(shape) + bytes(64))
    result = run_maxconv(
        "filter", SPEECH, "-k", kernel, "-o", tmp_path / "y.wav", "--device", "cpu", timeout=60
    )
    assert result.returncode == 4, result.stderr[-2000:]
    assert_one_error_line(result.stderr, "k.npy")


def test_flac_kernel_claiming_huge_frame_count_is_a_kernel_error(tmp_path: Path):
    music = bytearray(MUSIC.read_bytes())
    music[21] |= 0x0F
    music[22:26] = b"\xff\xff\xff\xff"
    kernel = tmp_path / "k.flac"
    kernel.write_bytes(bytes(music))
    result = run_maxconv(
        "filter", MUSIC, "-k", kernel, "-o", tmp_path / "y.wav", "--device", "cpu", timeout=60
    )
    assert result.returncode == 4, result.stderr[-2000:]
    assert_one_error_line(result.stderr, "k.flac")


@pytest.mark.parametrize(("role", "code"), [("input", 3), ("kernel", 4)])
def test_npy_with_a_damaged_header_dict_is_one_line_error(tmp_path: Path, role: str, code: int):
    data = bytearray(LOWPASS.read_bytes())
    data[80] = ord("(")  # one bit (0x20 -> 0x28) in the header's space padding
    damaged = tmp_path / "damaged.npy"
    damaged.write_bytes(bytes(data))
    source, kernel = (damaged, EQ) if role == "input" else (SPEECH, damaged)
    result = run_maxconv(
        "filter", source, "-k", kernel, "-o", tmp_path / "y.wav", "--device", "cpu", timeout=60
    )
    assert result.returncode == code, result.stderr[-2000:]
    assert_one_error_line(result.stderr, "damaged.npy")
