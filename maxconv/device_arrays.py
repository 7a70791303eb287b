"""CUDA arrays (torch, cupy, any `__dlpack__` array on a GPU) through the ops, never via the host.

The op reads the caller's device memory and writes a CUDA array of the
caller's library on the same GPU. Stream order, for torch and cupy, is kept
on the GPU without host waits (`StreamOrder`): on the legacy default stream
CUDA itself orders it with MAX's queue (a blocking stream of the same
context); on another stream MAX's queue waits for the caller's stream
before the op and the caller's stream for MAX's queue after it. So the call
returns as soon as the op is queued (like the library's own ops) and work
queued before or after it never races with it. Arrays of other libraries
are synchronized from the host (MAX's queue before the result is returned).
Memory is handed to MAX as a bare DLPack capsule (the producer's own
stream handshake costs 17 us a call on an H200 where the capsule costs 3,
docs/data/cuda-exchange-h200-2026-11-28.txt; the order is kept as above
anyway), made from the array's address, shape and dtype and kept for the
next array in that memory (`AddressViews`); the direct op's calls then
repeat their buffers and replay from a captured device graph
(maxconv/device_graphs.py). A CUDA kernel of the signal's library on its
GPU stays there (flipped there for convolve); other kernels go through the
host once: the engine keeps host taps on the device, found by value, with
their FFT spectra (so the FFT op's fused calls replay too). CUDA taps get
their spectrum computed every call: nothing tells that their memory still
holds the same values. Real float32/float64 samples along the last axis;
other dtypes raise a TypeError that says how to convert.
"""

from __future__ import annotations

import ctypes
import math
import warnings

import numpy as np
from max import driver
from max._core.dlpack import make_dlpack_capsule

from .arrays import DLPACK_CUDA, cuda_index, library_of
from .engine import SUPPORTED_DTYPES, Engine, get_engine
from .planning import full_slice

CU_STREAM_NON_BLOCKING = 0x1  # cuda.h: a stream that does not order with the legacy stream


def _engine_for(index: int, device: str) -> Engine:
    """The engine of the GPU the arrays live on; a different explicit device is an error."""
    wanted = device.strip().lower()
    if wanted not in ("auto", "gpu", f"gpu:{index}"):
        raise ValueError(f"the arrays live on gpu:{index} but device={device!r} was asked for")
    return get_engine(f"gpu:{index}")


class _Producer:
    """A DLPack capsule made beforehand, handed to MAX's import without the
    producer's stream handshake (see the module doc); `device` is its DLPack
    device, known already (torch's `__dlpack_device__` is Python: 1 us)."""

    __slots__ = ("capsule", "device")

    def __init__(self, capsule, device: tuple[int, int]) -> None:  # noqa: ANN001
        self.capsule, self.device = capsule, device

    def __dlpack__(self, stream=None, **kwargs):  # noqa: ANN001, ANN003, ANN204, ARG002
        return self.capsule

    def __dlpack_device__(self) -> tuple[int, int]:
        return self.device


def _exporter(library):  # noqa: ANN001, ANN202
    """How to take a DLPack capsule from `library`'s arrays: torch's own
    `to_dlpack` (0.6 us on the H200 host) rather than `Tensor.__dlpack__`
    (3.2 us: argument and stream checks in Python), else `__dlpack__()`."""
    if getattr(library, "__name__", "") == "torch":
        return library.utils.dlpack.to_dlpack
    return _plain_dlpack


def _plain_dlpack(array):  # noqa: ANN001, ANN202
    return array.__dlpack__()


class StreamOrder:
    """GPU-side order between a library's current stream and an engine's queue.

    `before()` makes MAX's queue wait for the work the caller queued so far,
    `after()` makes the caller's stream wait for the op; neither blocks the
    host. Each direction records one event kept for the process (re-recording
    an event is safe: a wait takes its latest record) instead of a new one
    per call. Nothing at all is needed when the caller is on the legacy
    default stream (torch's and cupy's default) and MAX's queue is a
    blocking stream of the same (primary) context: CUDA then orders the two
    both ways itself (`legacy_orders`). Libraries without a known stream
    API (not torch or cupy) get host synchronization instead: `after()`
    waits for MAX's queue.
    """

    _made: dict[tuple[str, int, int], StreamOrder] = {}

    @classmethod
    def of(cls, library, engine: Engine, index: int) -> StreamOrder:  # noqa: ANN001
        """The order object of `library` and the engine's queue on GPU `index`
        (made once per queue: a new engine may bring a new queue)."""
        handle = engine.device.default_queue.native_stream_handle
        key = (getattr(library, "__name__", ""), index, handle)
        if key not in cls._made:
            cls._made[key] = cls(library, engine, index, handle, legacy_orders(handle, index))
        return cls._made[key]

    def __init__(
        self,
        library,
        engine: Engine,
        index: int,
        handle: int,
        implicit: bool,  # noqa: ANN001
    ) -> None:
        """`handle`: the CUDA stream of the engine's queue; `implicit`: whether
        CUDA orders it with the legacy default stream (see legacy_orders)."""
        self.name = getattr(library, "__name__", "")
        self.library = library
        self.engine = engine
        self.index = index
        self.implicit = implicit
        self.queue = None
        self._stream = (None, None)  # (raw handle, stream object) of the caller's last stream
        if self.name == "torch":
            self.queue = library.cuda.ExternalStream(handle, device=f"cuda:{index}")
            self.events = (library.cuda.Event(), library.cuda.Event())
        elif self.name == "cupy":
            with warnings.catch_warnings():  # cupy 13 prefers Stream.from_external
                warnings.simplefilter("ignore", DeprecationWarning)
                self.queue = library.cuda.ExternalStream(handle, device_id=index)
            with library.cuda.Device(index):
                self.events = (library.cuda.Event(), library.cuda.Event())

    def _current(self):  # noqa: ANN202
        """The caller's current stream, or None where CUDA orders it with MAX's queue."""
        if self.name == "torch":
            raw = self.library._C._cuda_getCurrentRawStream(self.index)  # noqa: SLF001
            if raw != self._stream[0]:  # torch.cuda.current_stream costs 3 us a call
                self._stream = (raw, self.library.cuda.current_stream(self.index))
            stream = self._stream[1]
        else:
            with self.library.cuda.Device(self.index):
                stream = self.library.cuda.get_current_stream()
            raw = stream.ptr
        return None if raw == 0 and self.implicit else stream

    def before(self) -> None:
        if self.queue is not None:
            current = self._current()
            if current is not None:
                event = self.events[0]
                event.record(current)
                self.queue.wait_event(event)

    def after(self) -> None:
        if self.queue is None:
            self.engine.device.synchronize()
        else:
            current = self._current()
            if current is not None:
                event = self.events[1]
                event.record(self.queue)
                current.wait_event(event)


def legacy_orders(handle: int, index: int) -> bool:
    """Whether CUDA itself orders the stream `handle` with the legacy default stream of GPU `index`.

    True when the stream is blocking (created without
    CU_STREAM_NON_BLOCKING) and belongs to the device's primary context
    (torch's and cupy's): then work on the legacy default stream waits for
    the stream's earlier work and the stream's work waits for the legacy
    stream's earlier work, so no events are needed. Asked of the CUDA
    driver once per queue; any failure answers False (events are used).
    """
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        stream = ctypes.c_void_p(handle)
        flags, context = ctypes.c_uint(), ctypes.c_void_p()
        ordinal, primary = ctypes.c_int(), ctypes.c_void_p()
        if (
            cuda.cuStreamGetFlags(stream, ctypes.byref(flags))
            or cuda.cuStreamGetCtx(stream, ctypes.byref(context))
            or cuda.cuDeviceGet(ctypes.byref(ordinal), index)
            or cuda.cuDevicePrimaryCtxRetain(ctypes.byref(primary), ordinal)
        ):
            return False
        cuda.cuDevicePrimaryCtxRelease_v2(ordinal)
    except (OSError, AttributeError):
        return False
    return flags.value & CU_STREAM_NON_BLOCKING == 0 and context.value == primary.value


def _host_copy(value) -> np.ndarray:
    """Any array (CUDA ones through MAX) as a numpy array."""
    if cuda_index(value) is None:
        return np.asarray(value)
    return driver.Buffer.from_dlpack(value).to(driver.CPU()).to_numpy()


_DTYPES: dict[object, np.dtype | None] = {}


def _numpy_dtype(array) -> np.dtype | None:
    """The numpy dtype of a torch/cupy/numpy array ('torch.float32' -> float32), if numpy has it."""
    key = getattr(array, "dtype", None)
    if key not in _DTYPES:
        try:
            _DTYPES[key] = np.dtype(str(key).replace("torch.", "") if key is not None else "O")
        except TypeError:
            _DTYPES[key] = None
    return _DTYPES[key]


def _checked_dtype(value) -> np.dtype:  # noqa: ANN001
    """The numpy dtype of a CUDA array the ops take (contiguous float32/float64), else an error."""
    dtype = _numpy_dtype(value)
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"CUDA arrays must be float32 or float64, not {dtype}; convert first (e.g. x.float())"
        )
    if not _contiguous(value):
        raise ValueError("CUDA arrays must be contiguous; call .contiguous() first")
    return dtype


def _device_rows(value, rows: int, length: int, index: int, export) -> driver.Buffer:  # noqa: ANN001
    """A contiguous float CUDA array on GPU `index` as a [rows, length] MAX
    buffer (shared memory); `export` takes its DLPack capsule (see _exporter)."""
    _checked_dtype(value)
    try:
        producer = _Producer(export(value), (DLPACK_CUDA, index))
        buffer = driver.Buffer._from_dlpack(producer)  # noqa: SLF001 (see the module doc)
    except Exception as exc:  # MAX refuses DLPack tensors it cannot view
        raise ValueError(
            f"CUDA arrays must be contiguous ({exc}); call .contiguous() first"
        ) from exc
    return buffer.view(buffer.dtype, (rows, length))


class AddressViews:
    """MAX views of device memory by address, shape and dtype, made once and reused.

    A view here is only an address, a shape and a dtype (a DLPack capsule
    made by MAX's `make_dlpack_capsule` that owns nothing), so it may serve
    any array that holds that memory when the call is made: the signal
    passed again, the taps of a filter bank, and a new output that the
    library's caching allocator put where the last one was. MAX's DLPack
    import of an array costs 3.5-4.3 us of a call on the H200 host, finding
    its kept view 0.9 with the dtype and contiguity checks
    (docs/data/prelaunch-h200-2026-11-29b.txt), in front of a ~70 us kernel.
    The caller's array keeps the memory alive for the call; a view is used
    only within a call, so one kept past its array's life is never read.
    """

    VIEWS_KEPT = 64
    _OWNER = object()  # what the capsules refer to: nothing to keep alive

    def __init__(self, device: tuple[int, int]) -> None:
        """`device`: the DLPack (device type, index) of the memory."""
        self.device = device
        self._views: dict[tuple[int, int, int, np.dtype], driver.Buffer] = {}

    def get(self, address: int, rows: int, length: int, dtype: np.dtype) -> driver.Buffer:
        """The [rows, length] view of `dtype` values at `address`."""
        key = (address, rows, length, dtype)
        view = self._views.get(key)
        if view is None:
            if len(self._views) >= self.VIEWS_KEPT:
                self._views.pop(next(iter(self._views)))
            kind, index = self.device
            capsule = make_dlpack_capsule(
                self._OWNER,
                address,
                kind,
                index,
                SUPPORTED_DTYPES[dtype],
                [rows, length],
                None,
                None,
            )
            view = self._views[key] = driver.Buffer._from_dlpack(_Producer(capsule, self.device))  # noqa: SLF001
        return view


def _contiguous(value) -> bool:  # noqa: ANN001
    """Whether a torch/cupy array is C-contiguous (others: left to MAX to refuse)."""
    check = getattr(value, "is_contiguous", None)
    if callable(check):
        return bool(check())
    flags = getattr(value, "flags", None)
    return bool(getattr(flags, "c_contiguous", True))


def _flip_last(library, array):
    """array reversed along its last axis, contiguous, in its own library."""
    if getattr(library, "__name__", "") == "torch":
        return array.flip(-1).contiguous()
    return library.ascontiguousarray(library.flip(array, -1))


def _empty(library, like, shape: tuple[int, ...]):
    """An uninitialised array of `like`'s library, dtype and device (its allocator's cache)."""
    if getattr(library, "__name__", "") == "torch":
        return library.empty(shape, dtype=like.dtype, device=like.device)
    with library.cuda.Device(cuda_index(like)):
        return library.empty(shape, dtype=like.dtype)


def _taps_rows(
    target: _Target,
    kernel,  # noqa: ANN001
    flip: bool,
    dtype: np.dtype,
    block: int,
) -> tuple[driver.Buffer, tuple[driver.Buffer, bool] | None]:
    """The taps as [rows, K] on the target's GPU, and for an FFT call
    (`block` > 0) their kept spectrum where they came from the host. A CUDA
    kernel of the signal's library on that GPU stays there (flipped there
    for convolve); anything else goes through the host once: the engine
    keeps host taps on the device with their spectra, found by value at the
    next call (Engine.device_taps)."""
    n_taps = int(kernel.shape[-1])
    library = target.library
    same_library = type(kernel) is target.kind or library_of(kernel) is library
    if same_library and _numpy_dtype(kernel) == dtype and cuda_index(kernel) == target.index:
        rows = math.prod(kernel.shape[:-1])
        return target.rows(_flip_last(library, kernel) if flip else kernel, rows, n_taps), None
    host = _host_copy(kernel)
    taps = np.flip(host, -1) if flip else (np.conj(host).real if host.dtype.kind == "c" else host)
    taps = np.ascontiguousarray(taps.reshape(-1, n_taps), dtype=dtype)
    return target.engine.device_taps(taps, block)


# The address of an array's first element, per library (for AddressViews).
_POINTERS = {"torch": lambda array: array.data_ptr(), "cupy": lambda array: array.data.ptr}


class _Target:
    """What a call on one library's arrays on one GPU needs beyond the arrays."""

    def __init__(self, kind: type, library, index: int, engine: Engine) -> None:  # noqa: ANN001
        """`kind`: the type of the arrays, of `library`."""
        self.kind = kind
        self.library = library
        self.index = index
        self.engine = engine
        self.order = StreamOrder.of(library, engine, index)
        self.export = _exporter(library)
        self.pointer = _POINTERS.get(getattr(library, "__name__", ""))
        self.views = AddressViews((DLPACK_CUDA, index))

    def rows(self, value, rows: int, length: int) -> driver.Buffer:  # noqa: ANN001
        """`value`, a CUDA array of this target's GPU, as a [rows, length] MAX buffer."""
        if self.pointer is None:  # no known address: MAX's DLPack import each call
            return _device_rows(value, rows, length, self.index, self.export)
        return self.views.get(self.pointer(value), rows, length, _checked_dtype(value))


_TARGETS: dict[tuple[type, int, str], _Target] = {}


def _target(array, index: int, device: str) -> _Target:  # noqa: ANN001
    """The target of `array`'s kind on GPU `index`, made once per (type, GPU,
    device asked): a call on CUDA tensors queues a ~70 us kernel, so every
    microsecond in front of it shows."""
    key = (type(array), index, device)
    found = _TARGETS.get(key)
    if found is None:
        engine = _engine_for(index, device)
        found = _TARGETS[key] = _Target(type(array), library_of(array), index, engine)
    return found


def filter_cuda(
    in1, in2, mode: str, axis: int, device: str, method: str, out, flip: bool, index: int | None
):
    """correlate / convolve where in1 (the signal) is a CUDA array on GPU `index`
    (None: in1 is not a CUDA array)."""
    if index is None:
        raise TypeError("with a CUDA kernel, the signal must be a CUDA array of the same GPU too")
    shape = tuple(in1.shape)
    if len(shape) == 0 or (axis % len(shape)) != len(shape) - 1:
        raise ValueError("CUDA arrays are filtered along their last axis; move it there first")
    target = _target(in1, index, device)
    engine = target.engine
    kernel_shape = tuple(in2.shape)
    lead, length = shape[:-1], shape[-1]
    if len(kernel_shape) not in (1, len(shape)):
        raise ValueError("in2 must be 1-D or have in1's dimensionality")
    taps_lead = kernel_shape[:-1]
    rows = math.prod(lead)
    if taps_lead and taps_lead != lead and any(size != 1 for size in taps_lead):
        raise ValueError(f"in2's other axes {taps_lead} must equal in1's {lead} or be 1")
    n_taps = kernel_shape[-1]
    if length == 0 or n_taps == 0:
        raise ValueError("empty CUDA arrays are not supported; give at least one sample and tap")
    signal = target.rows(in1, rows, length)
    dtype = _numpy_dtype(in1)
    start, count = full_slice(mode, length, n_taps)
    method = engine.resolve_method(method, n_taps)
    block = engine.fft_block(n_taps, count, dtype) if method == "fft" else 1
    pad = n_taps - 1 - start
    if pad < 0:
        raise ValueError("this slice of a CUDA signal is not supported")
    if out is not None:
        if (
            cuda_index(out) != index
            or tuple(out.shape) != (*lead, count)
            or _numpy_dtype(out) != dtype
        ):
            raise ValueError(
                f"out must be a CUDA array of shape {(*lead, count)} "
                f"and dtype {dtype} on gpu:{index}"
            )
        result = out
    else:
        result = _empty(target.library, in1, (*lead, count))
    taps, spectrum = _taps_rows(target, in2, flip, dtype, block if method == "fft" else 0)
    output = target.rows(result, rows, count)
    target.order.before()
    engine.correlate(output, signal, taps, pad, method, block, spectrum, replay=True)
    target.order.after()
    return result


def convolve_batch_cuda(
    signals: list, kernels: list, shared: bool, mode: str, method: str, device: str
):
    """convolve_batch for CUDA signals of a torch or cupy library: rows padded on
    the device into one [rows, longest] array, one op call, a view per row."""
    index = cuda_index(signals[0])
    library = library_of(signals[0])
    name = getattr(library, "__name__", "")
    if name not in ("torch", "cupy") or any(cuda_index(s) != index for s in signals):
        raise TypeError("CUDA batches take torch or cupy arrays, all on one GPU")
    _engine_for(index, device)
    lengths = [int(s.shape[-1]) for s in signals]
    longest = max(lengths)
    if min(lengths) == longest:
        padded = library.stack(signals)
    else:
        padded = _empty(library, signals[0], (len(signals), longest))
        padded[...] = 0
        for row, signal in enumerate(signals):
            padded[row, : lengths[row]] = signal
    kernel_list = kernels[:1] if shared else kernels
    taps_lengths = [int(k.shape[-1]) for k in kernel_list]
    longest_taps = max(taps_lengths)
    on_device = all(cuda_index(k) == index for k in kernel_list)
    if on_device and min(taps_lengths) == longest_taps:
        # Equal kernels: stacked and flipped on the device, no padding needed.
        taps = _flip_last(library, library.stack(kernel_list))
    else:
        host = [_host_copy(k) for k in kernel_list]
        taps = np.zeros((len(host), longest_taps), _numpy_dtype(padded))
        for row, kernel in enumerate(host):
            taps[row, : kernel.size] = kernel[::-1]
    kernel = taps[0] if shared else taps
    full = filter_cuda(padded, kernel, "full", -1, device, method, None, False, index)
    results = []
    for row, length in enumerate(lengths):
        n_taps = taps_lengths[0 if shared else row]
        start, size = full_slice(mode, length, n_taps)
        offset = start + longest_taps - n_taps
        results.append(full[row, offset : offset + size])
    return results
