"""MAX sessions and the compiled op graphs, one per (device, dtype, op).

The engine knows nothing of files, modes or host arrays: it runs an op on
MAX buffers of its device, writing the output buffer it is given in place
(see maxconv/ops/conv1d.mojo for the contract). Every dimension of the graph
is symbolic, so one compiled graph per (device, dtype, op) serves every
shape; that graph is read from the disk cache when it is there.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.metadata
import platform
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from max import driver, engine
from max.dtype import DType
from max.graph import BufferType, BufferValue, DeviceRef, Graph, TensorType, ops

from .cache import GraphCache, cache_key
from .calibration_record import calibration_path, load_calibration
from .device_graphs import DeviceGraphs, execute
from .devices import open_device
from .planning import (
    FFT_FROM_TAPS,
    choose_method,
    fft_block_points,
    gpu_fft_single_kernel,
    op_points,
)
from .transfer import Staging

OPS_DIR = Path(__file__).parent / "ops"
SUPPORTED_DTYPES = {np.dtype(np.float32): DType.float32, np.dtype(np.float64): DType.float64}
# The FFT op's transform is at least this long (the CPU's V x V blocks with
# V = 16 lanes), so a spectrum buffer of 2 * max(block, K, this) fits it.
SPECTRUM_MIN_POINTS = 256
# The op also keeps its twiddle tables for L behind the spectra when the
# buffer has room: on the CPU 2L + 2L/V elements (V the SIMD width), at most
# this many L for V >= 2 (see table_points in maxconv/ops/fft_cpu.mojo); on
# a GPU at most 2L (_tables_kept in maxconv/ops/fft_gpu_launch.mojo).
SPECTRUM_TABLE_POINTS = 3
# Host taps kept per engine by value (a filter run and a few API callers),
# with their spectra per block length and, for callers on CUDA arrays, their
# device copy; for taps of at most SPECTRA_MAX_ROWS rows (channels,
# true-stereo paths).
SPECTRA_KEPT = 4
SPECTRA_MAX_ROWS = 16
# Spectra kept under a caller's key (an augmentation job's responses: each serves
# clip after clip, ~100 clips a response in a 10,000-clip job of 100 responses),
# up to this many bytes, least recently used dropped first. A 24,000-tap response
# takes 1.3 MB at L = 2^16 (spectrum and tables), so 100 of them fit in 130 MB.
SPECTRA_KEYED_BYTES = 256 << 20
# FFT block lengths remembered per engine (fft_block), by call shape.
FFT_BLOCKS_KEPT = 256
# Bumped when the graph built around the op changes shape or meaning.
GRAPH_REVISION = "4"


@dataclass
class EngineStats:
    """What the engine spent, for timing reports."""

    compile_seconds: float = 0.0
    cache_status: dict[str, str] = field(default_factory=dict)
    compute_seconds: float = 0.0
    calls: int = 0


def op_source_digest() -> str:
    """Hash of the Mojo sources, so an edited op never meets an old artifact."""
    digest = hashlib.sha256()
    for path in sorted(OPS_DIR.glob("*.mojo")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _host_signature() -> str:
    """The CPU model and feature flags: CPU code is compiled for this host."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine() + platform.processor()
    wanted = [line for line in info.splitlines() if line.startswith(("model name", "flags"))]
    return platform.machine() + "\n" + "\n".join(sorted(set(wanted)))


def build_graph(dtype: DType, device: DeviceRef, method: str = "direct") -> Graph:
    """The graph around an op, which writes its first input in place.

    Inputs: output [R, T] (a buffer), signal [R or 1, N], taps [R or 1, K],
    for the FFT op the spectrum buffer [S, W] (the taps' spectra kept
    between calls; [0, 0] for none), and window [P, B, F, 0] (no data: its
    shape carries the P leading zeros, the FFT block length and whether the
    spectra are ready). `method` picks the op: "direct" (conv1d) or "fft"
    (fft_conv1d).
    """
    output_type = BufferType(dtype, ["rows", "outputs"], device=device)
    signal_type = TensorType(dtype, ["signal_rows", "length"], device=device)
    taps_type = TensorType(dtype, ["taps_rows", "taps"], device=device)
    window_type = TensorType(DType.int8, ["pad", "block", "ready", 0], device=device)
    types = [output_type, signal_type, taps_type, window_type]
    name = "conv1d"
    if method == "fft":
        name = "fft_conv1d"
        types.insert(3, BufferType(dtype, ["spectra", "spectrum_width"], device=device))
    with Graph(f"maxconv_{name}_{dtype}", input_types=types, custom_extensions=[OPS_DIR]) as graph:
        values = [
            value if isinstance(value, BufferValue) else value.tensor for value in graph.inputs
        ]
        ops.inplace_custom(name=name, device=device, values=values)
        graph.output()
    return graph


@dataclass
class KeptTaps:
    """Host taps kept by value: their bytes, their spectrum buffers by block
    length (see Engine.spectrum) and their device copy once asked for."""

    data: bytes
    shape: tuple[int, ...]
    dtype: np.dtype
    spectra: dict[int, driver.Buffer] = field(default_factory=dict)
    device: driver.Buffer | None = None


class Engine:
    """One MAX session on one device, and its compiled graphs."""

    def __init__(self, device: str = "auto", cache: GraphCache | None = None) -> None:
        self.spec, self.device = open_device(device)
        self.cache = cache if cache is not None else GraphCache()
        self.session = engine.InferenceSession(devices=[self.device])
        self.stats = EngineStats()
        # Loaded models by MAX dtype and method (correlate looks them up by its
        # output buffer's dtype, with no numpy dtype conversion a call).
        self._models: dict[tuple[DType, str], engine.Model] = {}
        # Device memory per (role, dtype), reused: a long signal runs many
        # chunks, and nothing is allocated again after the first.
        self._buffers: dict[tuple[str, np.dtype], driver.Buffer] = {}
        self._windows: dict[tuple[int, int], driver.Buffer] = {}
        self._staging: dict[np.dtype, Staging] = {}
        self._kept_taps: list[KeptTaps] = []  # most recently used last
        self._kept_lock = threading.Lock()  # batch workers share the engine
        self._keyed_spectra: collections.OrderedDict[tuple, driver.Buffer] = (
            collections.OrderedDict()
        )
        self._keyed_bytes = 0
        self._fft_from_taps: tuple[int, str] | None = None
        self._fft_blocks: dict[tuple, int] = {}
        self.graphs = DeviceGraphs() if self.spec.kind == "gpu" else None

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def kind(self) -> str:
        """'cpu' or 'gpu'."""
        return self.spec.kind

    def device_signature(self) -> str:
        """What the compiled model depends on: CPU model and flags, or the GPU's
        API, architecture and index (a loaded model is bound to the GPU it was
        compiled for, so gpu:1 cannot run gpu:0's artifact)."""
        if self.spec.kind == "cpu":
            return "cpu\n" + _host_signature()
        return f"gpu\n{self.device.api}\n{self.device.architecture_name}\n{self.spec.index}"

    def source_digest(self) -> str:
        """The op sources' hash (see op_source_digest)."""
        return op_source_digest()

    def graph_key(self, dtype: np.dtype, method: str = "direct") -> str:
        """The cache key of the conv1d graph for `dtype` on this device."""
        return cache_key(
            GRAPH_REVISION,
            op_source_digest(),
            importlib.metadata.version("max"),
            self.device_signature(),
            str(SUPPORTED_DTYPES[np.dtype(dtype)]),
            f"method={method}",
        )

    def model(self, dtype: np.dtype, method: str = "direct") -> engine.Model:
        """The loaded model for `dtype` and `method`, from memory, disk or a compile."""
        dtype = np.dtype(dtype)
        max_dtype = SUPPORTED_DTYPES[dtype]
        key = (max_dtype, method)
        if key in self._models:
            return self._models[key]
        with _LOADING:
            if key in self._models:
                return self._models[key]
            start = time.perf_counter()
            device_ref = DeviceRef.from_device(self.device)
            compiled, status = self.cache.get_or_compile(
                self.graph_key(dtype, method),
                lambda: self.session.compile(build_graph(max_dtype, device_ref, method)),
            )
            self._models[key] = self.session.init(compiled)
            self.stats.compile_seconds += time.perf_counter() - start
            self.stats.cache_status[dtype.name] = status
        return self._models[key]

    def resolve_method(self, method: str, n_taps: int) -> str:
        """'direct' or 'fft': `method` itself, or for 'auto' the one that wins here."""
        return choose_method(method, n_taps, self.fft_from_taps()[0])

    def fft_from_taps(self) -> tuple[int, str]:
        """The kernel length from which `auto` takes the FFT op here, and where it comes from.

        `maxconv calibrate`'s measurement of this device if there is one (see
        calibration.py), else the built-in crossover of the device kind
        (planning.FFT_FROM_TAPS).
        """
        if self._fft_from_taps is None:
            calibration = load_calibration(self)
            if calibration is not None:
                self._fft_from_taps = (
                    calibration.fft_from_taps,
                    f"measured here by maxconv calibrate ({calibration_path(self).name})",
                )
            else:
                default = FFT_FROM_TAPS[self.spec.kind]
                self._fft_from_taps = (default, "built-in default (no calibration here)")
        return self._fft_from_taps

    def fft_block(self, n_taps: int, outputs: int, dtype: np.dtype, shared_rows: int = 1) -> int:
        """The FFT op's block length on this device (planning.fft_block_points),
        remembered: a call on CUDA arrays asks every time, and numpy's dtype
        name alone costs ~3 us."""
        key = (n_taps, outputs, dtype, shared_rows)
        block = self._fft_blocks.get(key)
        if block is None:
            if len(self._fft_blocks) >= FFT_BLOCKS_KEPT:
                self._fft_blocks.clear()
            name = np.dtype(dtype).name
            block = fft_block_points(n_taps, outputs, self.spec.kind, name, shared_rows)
            self._fft_blocks[key] = block
        return block

    def forget_calibration(self) -> None:
        """Look the calibration up again at the next method choice."""
        self._fft_from_taps = None

    def to_device(self, array: np.ndarray) -> driver.Buffer:
        """A contiguous host array as a buffer on the engine's device (the CPU shares it)."""
        buffer = driver.Buffer.from_numpy(np.ascontiguousarray(array))
        return buffer if self.spec.kind == "cpu" else buffer.to(self.device)

    def device_buffer(self, role: str, shape: tuple[int, ...], dtype: np.dtype) -> driver.Buffer:
        """A device buffer of `shape` for one role, a view of that role's memory.

        Each role keeps one allocation, grown to the largest size asked for
        and never freed while the engine lives, so work still queued on a
        view never loses its memory. Valid until the next request of the
        same role.
        """
        dtype = np.dtype(dtype)
        size = max(1, int(np.prod(shape, dtype=np.int64)))
        key = (role, dtype)
        if key not in self._buffers or self._buffers[key].num_elements < size:
            if key in self._buffers:
                self.device.synchronize()  # the old allocation may still be in use
            self._buffers[key] = driver.Buffer(SUPPORTED_DTYPES[dtype], (size,), device=self.device)
        return self._buffers[key][:size].view(SUPPORTED_DTYPES[dtype], tuple(shape))

    def staging(self, dtype: np.dtype) -> Staging:
        """Pinned host buffers for transfers to and from this GPU, per dtype."""
        dtype = np.dtype(dtype)
        if dtype not in self._staging:
            self._staging[dtype] = Staging(self.device, SUPPORTED_DTYPES[dtype])
        return self._staging[dtype]

    def window(self, pad: int, block: int, ready: bool = False, workers: int = 0) -> driver.Buffer:
        """The window input: an empty [pad, block, ready + 2 * workers, 0] buffer; its
        shape is the message (workers: the FFT op's CPU cores at most, 0 for all)."""
        key = (pad, block, int(ready) + 2 * workers)
        if key not in self._windows:
            if len(self._windows) > 64:
                self._windows.clear()
            self._windows[key] = driver.Buffer(DType.int8, (*key, 0), device=self.device)
        return self._windows[key]

    def spectrum(
        self, taps: np.ndarray, block: int, key: Hashable | None = None
    ) -> tuple[driver.Buffer, bool] | None:
        """Where the FFT op keeps the spectra of these host taps on this device,
        and whether they are already there (the same taps at the same block
        length as a recent call: a stream of chunks, a filter run).

        Without `key`: found by the taps' value (see _kept); the few latest
        are kept. None for taps of many rows (a batch of responses, new every
        call): comparing and keeping them would cost more than it saves.

        With `key`, the caller's name for exactly these taps (it must never
        name other taps; an object compared by identity, held by the key,
        cannot): no comparison of the taps a call, and up to
        SPECTRA_KEYED_BYTES kept, least recently used dropped first.
        """
        if key is not None:
            return self._keyed_spectrum(taps, block, key)
        if taps.shape[0] > SPECTRA_MAX_ROWS:
            return None
        return self._kept_spectrum(self._kept(taps), taps, block)

    def device_taps(
        self, taps: np.ndarray, block: int = 0
    ) -> tuple[driver.Buffer, tuple[driver.Buffer, bool] | None]:
        """Host taps [R, K] on this device, and for `block` > 0 their FFT
        spectrum as `spectrum` gives it, found in one lookup: a device copy
        kept with their spectra (a loop of calls on CUDA arrays with the
        same host taps finds the same buffer, so its calls can replay, see
        device_graphs); taps of more than SPECTRA_MAX_ROWS rows get a new
        copy and no kept spectrum."""
        if taps.shape[0] > SPECTRA_MAX_ROWS:
            return self.to_device(taps), None
        kept = self._kept(taps)
        if kept.device is None:
            kept.device = self.to_device(taps.copy())  # the CPU would share the memory
        return kept.device, self._kept_spectrum(kept, taps, block) if block > 0 else None

    def _kept_spectrum(
        self, kept: KeptTaps, taps: np.ndarray, block: int
    ) -> tuple[driver.Buffer, bool]:
        """The spectrum buffer of kept taps at `block`, and whether it is computed."""
        buffer = kept.spectra.get(block)
        if buffer is not None:
            return buffer, True
        buffer = kept.spectra[block] = self._spectrum_buffer(taps, block)
        return buffer, False

    def _kept(self, taps: np.ndarray) -> KeptTaps:
        """The kept entry of taps equal to `taps` (same shape, dtype and bytes),
        made if none is; the least recently used goes past SPECTRA_KEPT.

        Compared by value, not by a digest: copying and comparing the bytes
        of 131,072 float32 taps costs ~24 us on the 2-core machine where a
        blake2b digest costs 710 (and the host API looks taps up every call).
        """
        data = taps.tobytes()  # C order whatever the layout
        with self._kept_lock:
            for index, kept in enumerate(self._kept_taps):
                if kept.shape == taps.shape and kept.dtype == taps.dtype and kept.data == data:
                    self._kept_taps.append(self._kept_taps.pop(index))
                    return kept
            if len(self._kept_taps) >= SPECTRA_KEPT:
                self._kept_taps.pop(0)
            kept = KeptTaps(data, taps.shape, np.dtype(taps.dtype))
            self._kept_taps.append(kept)
            return kept

    def _keyed_spectrum(
        self, taps: np.ndarray, block: int, key: Hashable
    ) -> tuple[driver.Buffer, bool]:
        """`spectrum` under the caller's key: least recently used dropped past the budget."""
        found = (key, taps.shape, np.dtype(taps.dtype), block)
        if found in self._keyed_spectra:
            self._keyed_spectra.move_to_end(found)
            return self._keyed_spectra[found], True
        buffer = self._spectrum_buffer(taps, block)
        while self._keyed_spectra and self._keyed_bytes + _bytes(buffer) > SPECTRA_KEYED_BYTES:
            _, dropped = self._keyed_spectra.popitem(last=False)
            self._keyed_bytes -= _bytes(dropped)
        self._keyed_spectra[found] = buffer
        self._keyed_bytes += _bytes(buffer)
        return buffer, False

    def _spectrum_buffer(self, taps: np.ndarray, block: int) -> driver.Buffer:
        """A buffer for the spectra of `taps` at `block`, with room behind them for
        the twiddle tables (both devices keep them there)."""
        points = op_points(block, taps.shape[1], SPECTRUM_MIN_POINTS)
        width = 2 * points + -(-SPECTRUM_TABLE_POINTS * points // taps.shape[0])
        return driver.Buffer(
            SUPPORTED_DTYPES[np.dtype(taps.dtype)], (taps.shape[0], width), device=self.device
        )

    def correlate(
        self,
        output: driver.Buffer,
        signal: driver.Buffer,
        taps: driver.Buffer,
        pad: int,
        method: str = "direct",
        block: int = 1,
        spectrum: tuple[driver.Buffer, bool] | None = None,
        workers: int = 0,
        replay: bool = False,
    ) -> None:
        """Run an op on buffers of this device, writing `output` [R, T] in place:

            output[r, i] = sum_j signal[r or 0, i + j - pad] * taps[r or 0, j]

        with the signal zero outside its row. `block` is the FFT op's block
        length (see fft_block); `spectrum` (from `spectrum`) where it keeps
        or finds the taps' spectra; `workers` the CPU cores the FFT op uses at
        most (0: all); `replay`: a GPU's call may be replayed from a captured
        device graph (see device_graphs; for callers in one thread whose calls
        come back with the same buffers: CUDA arrays in a loop): a direct-op
        call, or an FFT-op call of the fused kernel with its spectra ready
        (planning.gpu_fft_single_kernel).
        Work is queued on the device; on a GPU, synchronize before reading
        the output from the host.
        """
        model = self._models.get((output.dtype, method))
        if model is None:
            model = self.model(output.dtype.to_numpy(), method)
        start = time.perf_counter()
        if method == "fft":
            if spectrum is None:
                spectrum = (self._no_spectrum(np.dtype(output.dtype.to_numpy())), False)
            buffer, ready = spectrum
            buffers = [output, signal, taps, buffer, self.window(pad, block, ready, workers)]
            if (
                replay
                and ready
                and self.graphs is not None
                and gpu_fft_single_kernel(taps.shape[1], block, output.dtype.name)
            ):
                self.graphs.run(model, buffers)
            else:
                execute(model, buffers)
        elif replay and self.graphs is not None:
            self.graphs.run(model, [output, signal, taps, self.window(pad, block)])
        else:
            execute(model, [output, signal, taps, self.window(pad, block)])
        self.stats.compute_seconds += time.perf_counter() - start
        self.stats.calls += 1

    def _no_spectrum(self, dtype: np.dtype) -> driver.Buffer:
        """The FFT op's [0, 0] spectrum input: spectra in scratch for one call."""
        key = ("no-spectrum", dtype)
        if key not in self._buffers:
            self._buffers[key] = driver.Buffer(SUPPORTED_DTYPES[dtype], (0, 0), device=self.device)
        return self._buffers[key]


def _bytes(buffer: driver.Buffer) -> int:
    return buffer.num_elements * buffer.dtype.size_in_bytes


_ENGINES: dict[str, Engine] = {}


# One model load (and compile) at a time in a process: MAX builds the op's Mojo
# package in a staging folder named by the process id, so two threads loading at
# once (two GPUs' engines of `convolve_batch(device="gpu:all")`) collide there
# (FileNotFoundError in mojo/paths.py, seen on a two-H200 host).
_LOADING = threading.Lock()


def get_engine(device: str = "auto") -> Engine:
    """The process-wide engine for `device`: one session per device, graphs reused."""
    key = device.strip().lower()
    key = "gpu:0" if key == "gpu" else key
    if key not in _ENGINES:
        built = Engine(device)
        _ENGINES[key] = built
        _ENGINES.setdefault(built.label, built)
    return _ENGINES[key]
