"""MAX sessions and the compiled conv1d graph, one per (device, dtype).

The engine knows nothing of files or modes: it runs the raw op on batches of
tiles, shape [C, B, W] with taps [C, K], and returns [C, B, W - K + 1]. Every
dimension of the graph is symbolic, so one compiled graph per (device, dtype)
serves every tile width, batch, channel count and kernel length; that graph is
read from the disk cache when it is there.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from max import driver, engine
from max.dtype import DType
from max.graph import DeviceRef, Graph, TensorType, ops

from .cache import GraphCache, cache_key
from .devices import open_device
from .tiling import FFT_MAX_POINTS_CPU, fft_tile_outputs

OPS_DIR = Path(__file__).parent / "ops"
SUPPORTED_DTYPES = {np.dtype(np.float32): DType.float32, np.dtype(np.float64): DType.float64}
# Kernel lengths from which method="auto" takes the FFT op (see fft_pays_off).
FFT_FROM_TAPS_CPU = 128
FFT_FROM_TAPS_GPU = 512
# Bumped when the graph built around the op changes shape or meaning.
GRAPH_REVISION = "1"


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


METHODS = ("direct", "fft")


def build_conv1d_graph(
    dtype: DType, device: DeviceRef, algorithm: int = 0, method: str = "direct"
) -> Graph:
    """The graph around an op: [C, B, W] tiles and [C, K] taps in, [C, B, W-K+1] out.

    `method` picks the op: "direct" (conv1d, `algorithm` chooses its GPU
    kernel) or "fft" (fft_conv1d, overlap-save; same contract).
    """
    signal_type = TensorType(dtype, ["channels", "batch", "width"], device=device)
    taps_type = TensorType(dtype, ["channels", "taps"], device=device)
    name, parameters = ("conv1d", {"algorithm": algorithm})
    if method == "fft":
        name, parameters = ("fft_conv1d", {"threads": 0})
    with Graph(
        f"maxconv_{name}_{dtype}", input_types=[signal_type, taps_type], custom_extensions=[OPS_DIR]
    ) as graph:
        signal, taps = (value.tensor for value in graph.inputs)
        out_shape = [signal.shape[0], signal.shape[1], signal.shape[2] - taps.shape[1] + 1]
        result = ops.custom(
            name=name,
            device=device,
            values=[signal, taps],
            out_types=[TensorType(dtype, out_shape, device=device)],
            parameters=parameters,
        )[0]
        graph.output(result)
    return graph


class Engine:
    """One MAX session on one device, and its compiled graphs."""

    def __init__(self, device: str = "auto", cache: GraphCache | None = None) -> None:
        self.spec, self.device = open_device(device)
        self.cache = cache if cache is not None else GraphCache()
        self.session = engine.InferenceSession(devices=[self.device])
        self.stats = EngineStats()
        self._models: dict[tuple[np.dtype, int, str], engine.Model] = {}
        self._host = driver.CPU() if self.spec.kind != "cpu" else self.device
        # Reused host and device buffers, keyed by (role, shape, dtype): a long
        # signal runs many batches of one shape, so nothing is allocated (or
        # page-faulted, or pinned) again after the first batch.
        self._buffers: dict[tuple, tuple[np.ndarray, driver.Buffer | None]] = {}
        self._fft_from_taps: tuple[int, str] | None = None

    @property
    def label(self) -> str:
        return self.spec.label

    def device_signature(self) -> str:
        """What the compiled code depends on: CPU model and flags, or GPU API and architecture."""
        if self.spec.kind == "cpu":
            return "cpu\n" + _host_signature()
        return f"gpu\n{self.device.api}\n{self.device.architecture_name}"

    def graph_key(self, dtype: np.dtype, algorithm: int = 0, method: str = "direct") -> str:
        """The cache key of the conv1d graph for `dtype` on this device."""
        return cache_key(
            GRAPH_REVISION,
            op_source_digest(),
            importlib.metadata.version("max"),
            self.device_signature(),
            str(SUPPORTED_DTYPES[np.dtype(dtype)]),
            f"algorithm={algorithm}",
            f"method={method}",
        )

    def model(self, dtype: np.dtype, algorithm: int = 0, method: str = "direct") -> engine.Model:
        """The loaded model for `dtype` and `method`, from memory, disk or a compile.

        `algorithm` 0 lets the direct op pick its GPU kernel by K; benchmarks
        pass 1 (strided), 2 (asynchronous copies, K <= 256) or 3 (wide
        register-blocked) to force one.
        """
        dtype = np.dtype(dtype)
        if (dtype, algorithm, method) not in self._models:
            max_dtype = SUPPORTED_DTYPES[dtype]
            start = time.perf_counter()
            device_ref = DeviceRef.from_device(self.device)
            compiled, status = self.cache.get_or_compile(
                self.graph_key(dtype, algorithm, method),
                lambda: self.session.compile(
                    build_conv1d_graph(max_dtype, device_ref, algorithm, method)
                ),
            )
            self._models[dtype, algorithm, method] = self.session.init(compiled)
            self.stats.compile_seconds += time.perf_counter() - start
            self.stats.cache_status[dtype.name] = status
        return self._models[dtype, algorithm, method]

    def resolve_method(self, method: str, n_taps: int) -> str:
        """'direct' or 'fft': `method` itself, or for 'auto' the one that wins here."""
        if method != "auto":
            return method
        return "fft" if self.fft_pays_off(n_taps) else "direct"

    def fft_pays_off(self, n_taps: int) -> bool:
        """Whether FFT overlap-save beats the direct op at this kernel length here."""
        return n_taps >= self.fft_from_taps()[0]

    def fft_from_taps(self) -> tuple[int, str]:
        """The kernel length from which `auto` takes the FFT op here, and where it comes from.

        `maxconv calibrate`'s measurement of this device if there is one (see
        calibration.py); else the crossovers measured on the development
        machines with research/fft/proto.py crossover and `maxconv bench`:
        from K of 32-256 on the 2-core AVX2 CPU and 512 on an H100 (`maxconv
        bench` and `maxconv calibrate` agreed; the direct op still won at 256,
        0.26 against 0.29 ms at N = 2^24), the CPU's taken a step higher,
        where the FFT surely wins.
        """
        if self._fft_from_taps is None:
            from .calibration import calibration_path, load_calibration

            calibration = load_calibration(self)
            if calibration is not None:
                self._fft_from_taps = (
                    calibration.fft_from_taps,
                    f"measured here by maxconv calibrate ({calibration_path(self).name})",
                )
            else:
                default = FFT_FROM_TAPS_GPU if self.spec.kind == "gpu" else FFT_FROM_TAPS_CPU
                self._fft_from_taps = (default, "built-in default (no calibration here)")
        return self._fft_from_taps

    def fft_tile_outputs(self, n_taps: int, outputs: int) -> int:
        """Outputs per FFT tile on this device (CPUs cap the transform length)."""
        cap = FFT_MAX_POINTS_CPU if self.spec.kind == "cpu" else None
        return fft_tile_outputs(n_taps, outputs, cap)

    def forget_calibration(self) -> None:
        """Look the calibration up again at the next method choice."""
        self._fft_from_taps = None

    def to_device(self, array: np.ndarray) -> driver.Buffer:
        """Copy a contiguous host array to the engine's device."""
        buffer = driver.Buffer.from_numpy(np.ascontiguousarray(array))
        return buffer if self.spec.kind == "cpu" else buffer.to(self.device)

    def run_on_device(
        self, tiles: driver.Buffer, taps: driver.Buffer, algorithm: int = 0, method: str = "direct"
    ) -> driver.Buffer:
        """An op on buffers already on the device; returns a device buffer."""
        dtype = np.dtype(tiles.dtype.to_numpy())
        return self.model(dtype, algorithm, method).execute(tiles, taps)[0]

    def _buffer(self, role: str, shape: tuple[int, ...], dtype: np.dtype):
        """A cached (host array, device-side buffer) pair for one role and shape."""
        key = (role, shape, np.dtype(dtype))
        if key not in self._buffers:
            if len(self._buffers) > 8:
                self._buffers.clear()
            self._buffers[key] = self._allocate(role, shape, np.dtype(dtype))
        return self._buffers[key]

    def _allocate(self, role: str, shape: tuple[int, ...], dtype: np.dtype):
        if self.spec.kind == "cpu":
            return np.empty(shape, dtype), None
        max_dtype = SUPPORTED_DTYPES[dtype]
        if role == "device":
            return np.empty(0, dtype), driver.Buffer(max_dtype, shape, device=self.device)
        staging = driver.Buffer(max_dtype, shape, device=self.device, usage=driver.Usage.STAGING)
        view = staging.to_numpy()
        if view.ctypes.data != staging.to_numpy().ctypes.data:
            # to_numpy copied instead of viewing the pinned memory: use plain memory.
            return np.empty(shape, dtype), None
        return view, staging

    def host_buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A host array to fill with tiles for `correlate_tiles`, reused per shape.

        On a GPU it is pinned memory, which the device reads at full bus
        speed (about 50 GB/s on an H100 host, against 10 GB/s pageable).
        Valid until the next `host_buffer` call with the same shape.
        """
        return self._buffer("tiles", tuple(shape), dtype)[0]

    def correlate_tiles(
        self, tiles: np.ndarray, taps: np.ndarray, method: str = "direct"
    ) -> np.ndarray:
        """Run an op on host arrays: [C, B, W] tiles, [C, K] taps -> [C, B, W-K+1].

        The result may be a reused buffer: copy it out before the next call.
        """
        model = self.model(tiles.dtype, method=method)
        start = time.perf_counter()
        taps_in = self.to_device(taps.astype(tiles.dtype, copy=False))
        if self.spec.kind == "cpu":
            result = model.execute(driver.Buffer.from_numpy(tiles), taps_in)[0].to_numpy()
        else:
            result = self._correlate_on_gpu(model, tiles, taps_in)
        self.stats.compute_seconds += time.perf_counter() - start
        self.stats.calls += 1
        return result

    def _correlate_on_gpu(
        self, model: engine.Model, tiles: np.ndarray, taps: driver.Buffer
    ) -> np.ndarray:
        shape = tuple(tiles.shape)
        view, staging = self._buffer("tiles", shape, tiles.dtype)
        if staging is not None and view.ctypes.data == tiles.ctypes.data:
            _, device_tiles = self._buffer("device", shape, tiles.dtype)
            device_tiles.inplace_copy_from(staging)
        else:
            device_tiles = self.to_device(tiles)
        result = model.execute(device_tiles, taps)[0]
        out_view, out_staging = self._buffer("out", tuple(result.shape), tiles.dtype)
        if out_staging is None:
            return result.to(self._host).to_numpy()
        out_staging.inplace_copy_from(result)
        self.device.synchronize()
        return out_view


_ENGINES: dict[str, Engine] = {}


def get_engine(device: str = "auto") -> Engine:
    """The process-wide engine for `device`: one session per device, graphs reused."""
    key = device.strip().lower()
    if key not in _ENGINES:
        built = Engine(device)
        _ENGINES[key] = built
        _ENGINES.setdefault(built.label, built)
    return _ENGINES[key]
