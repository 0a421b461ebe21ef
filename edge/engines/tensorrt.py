"""TensorRT backend: a serialized engine run through pycuda buffers and `execute_async_v3`.

Buffers (page-locked host memory and device memory per tensor) and the activation memory are
sized for the shapes actually used: at open for the optimization profile's `opt` shapes, then
grown when a call needs more. TensorRT's default context (`ExecutionContextAllocationStrategy.
STATIC`) would hold activation memory for "the maximum size across all profiles" from the moment
it opens (`pyCoreDoc.h`); so the context is made `USER_MANAGED` and given memory of the size
`update_device_memory_size_for_shapes()` reports for the shapes set, as trtexec's
`--allocationStrategy=runtime` does. An ultralytics engine exported with `dynamic=True` allows
inputs up to 4× its image size (2560 px for 640), and memory for that maximum would take
hundreds of MB of an 8 GB Orin Nano, whose memory the CPU shares.
Each call sets the input shapes, copies the feeds in, runs on the engine's CUDA stream, and
returns copies of the outputs cut to their actual shape. The engine's sidecar
(`edge.engines.sidecar`) is checked before deserializing.

TensorRT and pycuda are imported only when an engine is opened, so `edge` imports without them;
TensorRT older than 10 is refused there (JetPack 6.0's TensorRT 8.6 lacks APIs used here).

CUDA context: all engines of the process share the device's primary context (the one TensorRT
itself uses through the CUDA runtime), retained once, as pycuda's own `autoprimaryctx` does, and
released at exit. Every call pushes it on the calling thread and pops it after, so engines
opened on one thread run on another (the pipeline's stages are threads). `close()` frees every
buffer while the context is current: pycuda frees an allocation only where its context is
current or can be made so, which it refuses on a thread other than the one that retained it
(pycuda `src/cpp/cuda.hpp`, `scoped_context_activation`), silently leaking it.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from edge.engines.base import InferenceEngine, TensorInfo
from edge.engines.precision import engine_source
from edge.engines.sidecar import REBUILD_HINT, Sidecar, Target, read_sidecar
from edge.errors import EdgeError
from edge.files import sha256

if TYPE_CHECKING:
    import pycuda.driver as cuda
    import tensorrt as trt

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "on a Jetson TensorRT comes with JetPack (make the virtualenv with --system-site-packages) "
    "and pycuda from `pip install -r requirements-jetson.txt` (with /usr/local/cuda/bin on PATH)"
)
CUDA_HINT = (
    "the service's user needs the `video` group (`sudo usermod -aG video USER`, in effect from "
    "its next start), and a container the NVIDIA runtime (`docker run --runtime nvidia`)"
)
MIN_TENSORRT = 10
TOO_OLD_HINT = "TensorRT 10 or newer: JetPack 6.1+"
# The board model (e.g. "NVIDIA Jetson AGX Orin Developer Kit"); absent off a Jetson.
BOARD_MODEL = Path("/proc/device-tree/model")


class TensorRTMissing(EdgeError):
    """TensorRT or pycuda cannot be imported on this machine, or TensorRT is too old."""


class UnusableEngine(EdgeError):
    """The engine is missing, stale or built for another TensorRT version or GPU."""


def cuda_init() -> None:
    """Initialize the CUDA driver (cuInit).

    Raises:
        EdgeError: CUDA cannot start here (no GPU visible to this user or container), with
            pycuda's message and the usual fixes.
    """
    import pycuda.driver as cuda

    try:
        cuda.init()
    except cuda.Error as exc:
        raise EdgeError(f"CUDA cannot start here ({exc}): {CUDA_HINT}") from exc


def import_tensorrt() -> None:
    """Check that the TensorRT runtime (10 or newer) and pycuda import.

    Raises:
        TensorRTMissing: either is absent, or TensorRT is older than 10, saying what to do.
    """
    try:
        import pycuda.driver  # noqa: F401 - imported to check it is there
        import tensorrt
    except ImportError as exc:
        raise TensorRTMissing(f"{exc.name or exc} is not installed: {INSTALL_HINT}") from exc
    # tensorrt-stubs leaves a bare `tensorrt/` folder, which imports as an empty namespace package.
    if not hasattr(tensorrt, "Runtime"):
        raise TensorRTMissing(f"tensorrt here is only type stubs, not TensorRT: {INSTALL_HINT}")
    version = str(getattr(tensorrt, "__version__", "0"))
    major = version.split(".")[0]
    if not major.isdigit() or int(major) < MIN_TENSORRT:
        raise TensorRTMissing(f"TensorRT {version} is too old: this needs {TOO_OLD_HINT}")


def board_model() -> str:
    """The board's model from the device tree ("" where there is none, e.g. off a Jetson)."""
    try:
        return BOARD_MODEL.read_bytes().decode(errors="replace").strip("\x00 \n")
    except OSError:
        return ""


def current_target() -> Target:
    """The TensorRT version, GPU (device 0) and board of this machine."""
    import pycuda.driver as cuda
    import tensorrt as trt

    cuda_init()
    device = cuda.Device(0)
    major, minor = device.compute_capability()
    return Target(
        tensorrt=trt.__version__,
        gpu=device.name(),
        compute_capability=f"{major}.{minor}",
        multiprocessors=device.get_attribute(cuda.device_attribute.MULTIPROCESSOR_COUNT),
        memory_gib=round(device.total_memory() / 2**30),
        board=board_model(),
        dla_cores=trt.Runtime(trt.Logger(trt.Logger.ERROR)).num_DLA_cores,
    )


def numpy_dtype(dtype: trt.DataType) -> np.dtype[Any]:
    """The numpy dtype of a TensorRT data type.

    Raises:
        EdgeError: the type has no numpy equivalent (e.g. FP8).
    """
    import tensorrt as trt

    table = {
        trt.DataType.FLOAT: np.float32,
        trt.DataType.HALF: np.float16,
        trt.DataType.INT8: np.int8,
        trt.DataType.INT32: np.int32,
        trt.DataType.INT64: np.int64,
        trt.DataType.UINT8: np.uint8,
        trt.DataType.BOOL: np.bool_,
    }
    if dtype not in table:
        raise EdgeError(f"TensorRT type {dtype} has no numpy equivalent: keep I/O in FP32/FP16")
    return np.dtype(table[dtype])


def dims(shape: trt.Dims) -> tuple[int, ...]:
    """A TensorRT `Dims` as a tuple (-1 for a dynamic axis)."""
    return tuple(shape[i] for i in range(len(shape)))


def split_header(blob: bytes) -> tuple[dict[str, str], bytes]:
    """Separate ultralytics' `.engine` header (4-byte little-endian length, JSON) from the plan.

    Returns:
        The header's metadata with values as strings, as ultralytics writes them into ONNX
        (class `names` keyed by int), and the plan; `({}, blob)` when there is no header.
    """
    size = int.from_bytes(blob[:4], "little")
    if not 0 < size <= len(blob) - 4:
        return {}, blob
    try:
        header = json.loads(blob[4 : 4 + size])
    except ValueError:  # a plain plan: its first bytes are not a length and JSON
        return {}, blob
    if not isinstance(header, dict):
        return {}, blob
    if isinstance(header.get("names"), dict):
        header["names"] = {int(k): v for k, v in header["names"].items()}
    metadata = {
        key: value if isinstance(value, str) else str(value) for key, value in header.items()
    }
    return metadata, blob[4 + size :]


def check_engine(engine: Path, onnx: Path | None = None) -> Sidecar | None:
    """Check an engine against its sidecar before deserializing it.

    Args:
        engine: the `.engine` file.
        onnx: the ONNX model it must be up to date with (backend chosen from an `.onnx`), or None.

    Returns:
        The sidecar, or None for an engine without one (e.g. exported by ultralytics).

    Raises:
        UnusableEngine: the engine is built for another TensorRT version, GPU or board, or for a
            DLA core this device lacks; or, given `onnx`, it is missing, has no sidecar, or was
            built from another ONNX file.
    """
    if onnx is not None and not engine.is_file():
        raise UnusableEngine(
            f"no TensorRT engine {engine.name} beside {onnx.name}: build it with `make engines`"
        )
    sidecar = read_sidecar(engine)
    if sidecar is None:
        if onnx is not None:
            raise UnusableEngine(
                f"{engine.name} has no sidecar to check it against {onnx.name}: {REBUILD_HINT}"
            )
        log.warning("%s has no sidecar: its TensorRT version and GPU are not checked", engine.name)
        return None
    current = current_target()
    problem = sidecar.foreign_to(current)
    if problem:
        raise UnusableEngine(f"{engine.name} {problem}: {REBUILD_HINT}")
    elsewhere = sidecar.target.tuned_elsewhere(current)
    if elsewhere:
        log.warning("%s %s: it runs; `make engines` tunes it for this mode", engine.name, elsewhere)
    if onnx is not None and sidecar.stale_for(sha256(onnx)):
        raise UnusableEngine(f"{engine.name} was built from another {onnx.name}: {REBUILD_HINT}")
    if sidecar.int8_unmeasured():
        log.warning(
            "%s: only its ONNX QDQ graph passed the INT8 accuracy gate (on ONNX Runtime, float "
            "parts in FP32), not this engine (float parts in FP16, Q/DQ fused by TensorRT): "
            "`python -m edge engines --int8` measures it on this device",
            engine.name,
        )
    return sidecar


def open_tensorrt(path: Path, required: bool) -> InferenceEngine | None:
    """Open `path` (an `.engine`, or an `.onnx` whose engine lies beside it) with TensorRT.

    The engine of an FP16 variant (`NAME_fp16.onnx`) is the FP16 engine built from the FP32
    model (`NAME.engine`, see `engine_source`).

    Args:
        path: the model file.
        required: raise when TensorRT cannot run it; otherwise (backend `auto` on an `.onnx`)
            log one warning line with the cause and its fix and return None, so that ONNX
            Runtime runs it. A machine without TensorRT and without an engine beside the model
            returns None silently: ONNX Runtime is its backend.

    Raises:
        EdgeError: when `required`, one line naming why TensorRT cannot run it and the fix:
            TensorRT or pycuda missing or too old, CUDA not starting (cuInit), no engine, an
            invalid, stale or foreign sidecar, an engine TensorRT cannot deserialize.
    """
    onnx = engine_source(path) if path.suffix == ".onnx" else None
    engine = (onnx or path).with_suffix(".engine")
    try:
        import_tensorrt()
    except TensorRTMissing as exc:
        if required:
            raise
        if engine.is_file():
            log.warning("%s; running %s with ONNX Runtime instead", exc, path.name)
        return None
    try:
        sidecar = check_engine(engine, onnx)
        if onnx not in (None, path) and sidecar is not None and sidecar.precision != "fp16":
            raise UnusableEngine(
                f"{engine.name} is an {sidecar.precision.upper()} engine, but {path.name} asks "
                "for FP16: build the FP16 engine with `make engines` (without --fp32)"
            )
        return TensorRTEngine(engine, sidecar)
    except EdgeError as exc:
        if required:
            raise
        log.warning("%s; running %s with ONNX Runtime instead", exc, path.name)
        return None


# ------------------------------------------------------------------------- the shared CUDA context

_PRIMARY: cuda.Context | None = None
_PRIMARY_LOCK = threading.Lock()
_RELEASE_AT_EXIT = threading.Event()


def primary_context() -> cuda.Context:
    """The device's primary CUDA context, retained once per process (see the module docstring)."""
    global _PRIMARY
    import pycuda.driver as cuda

    with _PRIMARY_LOCK:
        if _PRIMARY is None:
            cuda_init()
            _PRIMARY = cuda.Device(0).retain_primary_context()
            if not _RELEASE_AT_EXIT.is_set():
                _RELEASE_AT_EXIT.set()
                atexit.register(release_primary_context)
        return _PRIMARY


def release_primary_context() -> None:
    """Release the process's retained primary context (at exit; safe to call again).

    pycuda's `context::detach` releases a context on any thread while it is current there, and
    then takes it off pycuda's context stack itself; not current, it releases it only on the
    thread that retained it (elsewhere it silently does nothing) and leaves it pushed. So the
    context is pushed first and detached while current, with no pop after.
    """
    global _PRIMARY
    with _PRIMARY_LOCK:
        context, _PRIMARY = _PRIMARY, None
    if context is not None:
        context.push()
        context.detach()


# ------------------------------------------------------------------------------------- the engine


@dataclass
class _Buffer:
    """A tensor's page-locked host buffer and device buffer, of the same size in bytes."""

    host: np.ndarray
    device: cuda.DeviceAllocation

    @property
    def nbytes(self) -> int:
        return int(self.host.nbytes)

    def view(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        """The first `shape` elements of the host buffer, as a view."""
        return self.host.view(dtype)[: math.prod(shape)].reshape(shape)

    def free(self) -> None:
        """Free both buffers; the engine's CUDA context must be current."""
        self.device.free()
        cast("cuda.PagelockedHostAllocation", self.host.base).free()


class TensorRTEngine(InferenceEngine):
    """A TensorRT engine (`.engine`, with or without ultralytics' header) on CUDA device 0."""

    def __init__(self, path: Path, sidecar: Sidecar | None) -> None:
        """Deserialize the engine at `path` and allocate buffers for its `opt` shapes.

        Args:
            path: the `.engine` file, already checked by `open_tensorrt` (TensorRT imports,
                the engine is neither foreign nor stale).
            sidecar: its sidecar, or None for an engine without one.

        Raises:
            EdgeError: the engine cannot be deserialized (damaged, or built elsewhere), or CUDA
                fails (e.g. out of memory).
        """
        import pycuda.driver as cuda

        header, plan = split_header(path.read_bytes())
        self.path = path
        self.metadata = dict(sidecar.onnx_metadata) if sidecar else header
        self._built_as = sidecar.precision if sidecar else None
        dla = sidecar.flags.get("dla_core") if sidecar else header.get("dla")
        self._lock = threading.Lock()
        self._buffers: dict[str, _Buffer] = {}
        self._activations: cuda.DeviceAllocation | None = None
        self._activation_bytes = 0
        self._cuda: cuda.Context | None = primary_context()
        try:
            with self._active():
                self._load(plan, None if dla is None else int(dla))
        except BaseException as exc:
            self.close()
            if isinstance(exc, cuda.Error):
                raise EdgeError(
                    f"CUDA failed while opening {path.name} ({exc}): close other programs "
                    "using the GPU (the Jetson's memory is shared with the CPU) or use smaller "
                    "profiles (`python -m edge engines --force --batch MODEL:MIN,OPT,MAX`)"
                ) from exc
            raise

    def _load(self, plan: bytes, dla_core: int | None) -> None:
        import pycuda.driver as cuda
        import tensorrt as trt

        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if dla_core is not None:
            self._runtime.DLA_core = dla_core
        engine: trt.ICudaEngine | None = self._runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise EdgeError(
                f"{current_target().describe()} cannot deserialize {self.path.name}: it was built "
                f"by another TensorRT version or for another GPU, or is damaged; {REBUILD_HINT}"
            )
        self._engine = engine
        strategy = trt.ExecutionContextAllocationStrategy.USER_MANAGED
        context: trt.IExecutionContext | None = engine.create_execution_context(strategy)
        if context is None:
            raise EdgeError(
                f"TensorRT could not make an execution context for {self.path.name} (see its "
                "log above; out of GPU memory?): close other GPU programs, or rebuild it with "
                "smaller profiles (`python -m edge engines --force --batch MODEL:MIN,OPT,MAX`)"
            )
        self._context = context
        self._stream = cuda.Stream()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self._dtypes = {n: numpy_dtype(engine.get_tensor_dtype(n)) for n in names}
        self._profiles: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        for name in (n for n in names if is_input[n] and -1 in dims(engine.get_tensor_shape(n))):
            low, opt, high = (dims(d) for d in engine.get_tensor_profile_shape(name, 0))
            self._profiles[name] = (low, high)
            self._set_input_shape(name, opt)  # buffers start at the shapes TensorRT tuned for
        infos = []
        for name in names:
            self._reserve(name, self._shape_now(name))
            shape = tuple(None if d < 0 else d for d in dims(engine.get_tensor_shape(name)))
            infos.append(TensorInfo(name, shape, self._dtypes[name]))
        self.inputs = tuple(t for t in infos if is_input[t.name])
        self.outputs = tuple(t for t in infos if not is_input[t.name])
        self._batch_range = self._batches()
        self._reserve_activations()
        log.info(
            "%s: %.1f MiB of activation memory for the opt shapes (%.1f MiB at the profile's "
            "maximum)",
            self.path.name,
            self._activation_bytes / 2**20,
            engine.device_memory_size_v2 / 2**20,
        )

    def _batches(self) -> tuple[int, int | None]:
        """The batch sizes (axis 0) every input accepts: the profiles' or the static extent."""
        lows, highs = [1], []
        for info in self.inputs:
            if info.name in self._profiles:
                low, high = self._profiles[info.name]
                lows.append(low[0])
                highs.append(high[0])
            elif info.shape and info.shape[0] is not None:
                lows.append(info.shape[0])
                highs.append(info.shape[0])
        return max(lows), min(highs) if highs else None

    @property
    def precision(self) -> str:
        """The precision the engine was built in (its sidecar's), else its model's."""
        return self._built_as or super().precision

    @property
    def max_batch(self) -> int | None:
        """The largest batch the engine's optimization profile allows."""
        return self._batch_range[1]

    @property
    def min_batch(self) -> int:
        """The smallest batch the engine's optimization profile allows (> 1 for a fixed batch,
        as DLA needs)."""
        return self._batch_range[0]

    def _shape_now(self, name: str) -> tuple[int, ...]:
        """The tensor's shape for the input shapes set now.

        Raises:
            EdgeError: the shape depends on the data (TensorRT reports -1), which needs an
                output allocator this backend does not have.
        """
        shape = dims(self._context.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise EdgeError(
                f"{self.path.name}: the shape of '{name}' depends on the data ({shape}): "
                "export the model with outputs of a size known from its inputs"
            )
        return shape

    def _reserve(self, name: str, shape: tuple[int, ...]) -> _Buffer:
        """The tensor's buffers, grown (freed and allocated again) when `shape` needs more."""
        import pycuda.driver as cuda

        dtype = self._dtypes[name]
        needed = max(math.prod(shape), 1) * dtype.itemsize
        buffer = self._buffers.get(name)
        if buffer is not None and buffer.nbytes >= needed:
            return buffer
        if buffer is not None:
            del self._buffers[name]
            buffer.free()
            log.info("%s: buffers of '%s' grow to %s", self.path.name, name, shape)
        buffer = _Buffer(cuda.pagelocked_empty(needed, np.uint8), cuda.mem_alloc(needed))
        self._buffers[name] = buffer
        if not self._context.set_tensor_address(name, int(buffer.device)):
            raise EdgeError(f"{self.path.name}: TensorRT refused the buffer of '{name}'")
        return buffer

    def _reserve_activations(self) -> None:
        """Give the context activation memory for the input shapes set now, grown (freed and
        allocated again) when they need more. The previous call has finished with the old
        memory: every call synchronizes its stream."""
        import pycuda.driver as cuda

        needed = self._context.update_device_memory_size_for_shapes()
        if needed <= self._activation_bytes:
            return
        if self._activations is not None:
            self._activations.free()
            self._activations = None
            log.info("%s: activation memory grows to %.1f MiB", self.path.name, needed / 2**20)
        self._activations = cuda.mem_alloc(needed)
        self._activation_bytes = needed
        self._context.set_device_memory(int(self._activations), needed)

    @contextmanager
    def _active(self) -> Iterator[None]:
        """Make the engine's CUDA context current on this thread for the block."""
        import pycuda.driver as cuda

        if self._cuda is None:
            raise EdgeError(f"{self.path.name}: the engine is closed")
        self._cuda.push()
        try:
            yield
        finally:
            cuda.Context.pop()

    def _set_input_shape(self, name: str, shape: tuple[int, ...]) -> None:
        low, high = self._profiles[name]
        inside = len(shape) == len(low) and all(
            lo <= s <= hi for lo, s, hi in zip(low, shape, high, strict=True)
        )
        if not inside or not self._context.set_input_shape(name, shape):
            raise EdgeError(
                f"{self.path.name}: input '{name}' shape {shape} is outside the engine's "
                f"optimization profile {low} to {high}: feed within it or rebuild the engine "
                "with a wider profile (`python -m edge engines --force`)"
            )

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import pycuda.driver as cuda

        with self._lock, self._active():
            for name, array in feeds.items():
                if name in self._profiles:
                    self._set_input_shape(name, array.shape)
            self._reserve_activations()
            shapes = {info.name: self._shape_now(info.name) for info in self.outputs}
            for name, array in feeds.items():
                buffer = self._reserve(name, array.shape)
                host = buffer.view(array.shape, self._dtypes[name])
                np.copyto(host, array)
                cuda.memcpy_htod_async(buffer.device, host, self._stream)
            hosts = {}
            for name, shape in shapes.items():
                buffer = self._reserve(name, shape)
                hosts[name] = buffer.view(shape, self._dtypes[name])
            if not self._context.execute_async_v3(self._stream.handle):
                raise EdgeError(f"{self.path.name}: TensorRT execution failed (see its log above)")
            for name, host in hosts.items():
                cuda.memcpy_dtoh_async(host, self._buffers[name].device, self._stream)
            self._stream.synchronize()
            return {name: host.copy() for name, host in hosts.items()}

    def close(self) -> None:
        """Free the host and device buffers, the stream and the TensorRT objects, inside the
        CUDA context; safe to call twice. The shared primary context stays for other engines."""
        if self._cuda is None:
            return
        with self._lock, self._active():
            buffers = list(self._buffers.values())
            self._buffers.clear()
            for buffer in buffers:
                buffer.free()
            if self._activations is not None:
                self._activations.free()
                self._activations = None
            # TensorRT and pycuda objects free GPU memory when destroyed, which needs the context.
            for name in ("_context", "_engine", "_runtime", "_stream"):
                self.__dict__.pop(name, None)
        self._cuda = None
