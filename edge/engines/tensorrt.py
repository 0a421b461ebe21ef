"""TensorRT backend: a serialized engine run through pycuda buffers and `execute_async_v3`.

Buffers are allocated once, at the largest shape the engine's optimization profile allows:
page-locked host memory and device memory per tensor, one CUDA stream per engine. Each call
copies the feeds in, sets the input shapes, runs, and returns copies of the outputs cut to the
actual shape. The engine's sidecar (`edge.engines.sidecar`) is checked before deserializing.

TensorRT and pycuda are imported only when an engine is opened, so `edge` imports without them.
Every call runs with the device's primary CUDA context pushed on the calling thread, so engines
opened on one thread can run on another (the pipeline's stages are threads).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.engines.base import InferenceEngine, TensorInfo
from edge.engines.sidecar import REBUILD_HINT, Sidecar, Target, read_sidecar
from edge.errors import EdgeError
from edge.files import sha256

if TYPE_CHECKING:
    import pycuda.driver as cuda
    import tensorrt as trt

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "on a Jetson TensorRT comes with JetPack (make the virtualenv with --system-site-packages) "
    "and pycuda from `pip install -r requirements-jetson.txt`"
)


class TensorRTMissing(EdgeError):
    """TensorRT or pycuda cannot be imported on this machine."""


class UnusableEngine(EdgeError):
    """The engine is missing, stale or built for another TensorRT version or GPU."""


def import_tensorrt() -> None:
    """Check that the TensorRT runtime and pycuda import.

    Raises:
        TensorRTMissing: either is absent, saying how to get it.
    """
    try:
        import pycuda.driver  # noqa: F401 - imported to check it is there
        import tensorrt
    except ImportError as exc:
        raise TensorRTMissing(f"{exc.name or exc} is not installed: {INSTALL_HINT}") from exc
    # tensorrt-stubs leaves a bare `tensorrt/` folder, which imports as an empty namespace package.
    if not hasattr(tensorrt, "Runtime"):
        raise TensorRTMissing(f"tensorrt here is only type stubs, not TensorRT: {INSTALL_HINT}")


def current_target() -> Target:
    """The TensorRT version and GPU (device 0) of this machine."""
    import pycuda.driver as cuda
    import tensorrt as trt

    cuda.init()
    device = cuda.Device(0)
    major, minor = device.compute_capability()
    return Target(trt.__version__, device.name(), f"{major}.{minor}")


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
        UnusableEngine: the engine is built for another TensorRT version or GPU; or, given
            `onnx`, it is missing, has no sidecar, or was built from another ONNX file.
    """
    if onnx is not None and not engine.is_file():
        raise UnusableEngine(
            f"no TensorRT engine {engine.name} beside {onnx.name}: build it with `make engines`"
        )
    sidecar = read_sidecar(engine)
    if sidecar is None:
        if onnx is not None:
            raise UnusableEngine(f"{engine.name} has no sidecar to check it against {onnx.name}")
        log.warning("%s has no sidecar: its TensorRT version and GPU are not checked", engine.name)
        return None
    problem = sidecar.foreign_to(current_target())
    if problem:
        raise UnusableEngine(f"{engine.name} {problem}: {REBUILD_HINT}")
    if onnx is not None and sidecar.stale_for(sha256(onnx)):
        raise UnusableEngine(f"{engine.name} was built from another {onnx.name}: {REBUILD_HINT}")
    return sidecar


def open_tensorrt(path: Path, required: bool) -> InferenceEngine | None:
    """Open `path` (an `.engine`, or an `.onnx` whose engine lies beside it) with TensorRT.

    Args:
        path: the model file.
        required: raise when TensorRT is missing or the engine unusable; otherwise (backend
            `auto` on an `.onnx`) log a warning and return None so ONNX Runtime runs it.

    Raises:
        EdgeError: as `TensorRTEngine`, and for the reasons above when `required`.
    """
    onnx = path if path.suffix == ".onnx" else None
    try:
        import_tensorrt()
        sidecar = check_engine(path.with_suffix(".engine"), onnx)
    except (TensorRTMissing, UnusableEngine) as exc:
        if required:
            raise
        log.warning("%s; running %s with ONNX Runtime instead", exc, path.name)
        return None
    return TensorRTEngine(path.with_suffix(".engine"), sidecar)


class TensorRTEngine(InferenceEngine):
    """A TensorRT engine (`.engine`, with or without ultralytics' header) on CUDA device 0."""

    def __init__(self, path: Path, sidecar: Sidecar | None) -> None:
        """Deserialize and allocate buffers for the engine at `path`.

        Args:
            path: the `.engine` file, already checked by `open_tensorrt` (TensorRT imports,
                the engine is neither foreign nor stale).
            sidecar: its sidecar, or None for an engine without one.

        Raises:
            EdgeError: the engine cannot be deserialized (damaged, or built elsewhere).
        """
        import pycuda.driver as cuda

        header, plan = split_header(path.read_bytes())
        self.path = path
        self.metadata = dict(sidecar.onnx_metadata) if sidecar else header
        dla = sidecar.flags.get("dla_core") if sidecar else header.get("dla")
        self._lock = threading.Lock()
        self._device: dict[str, cuda.DeviceAllocation] = {}
        cuda.init()
        self._cuda: cuda.Context | None = cuda.Device(0).retain_primary_context()
        try:
            with self._active():
                self._load(plan, None if dla is None else int(dla))
        except BaseException:
            self.close()
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
        self._context = engine.create_execution_context()
        self._stream = cuda.Stream()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self._profiles: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        for name in (n for n in names if is_input[n] and -1 in dims(engine.get_tensor_shape(n))):
            low, _, high = (dims(d) for d in engine.get_tensor_profile_shape(name, 0))
            self._profiles[name] = (low, high)
            self._set_input_shape(name, high)  # so outputs report their largest shape below
        self._host: dict[str, np.ndarray] = {}
        infos = []
        for name in names:
            dtype = numpy_dtype(engine.get_tensor_dtype(name))
            self._host[name] = cuda.pagelocked_empty(
                dims(self._context.get_tensor_shape(name)), dtype
            )
            self._device[name] = cuda.mem_alloc(max(self._host[name].nbytes, 1))
            if not self._context.set_tensor_address(name, int(self._device[name])):
                raise EdgeError(f"{self.path.name}: TensorRT refused the buffer of '{name}'")
            shape = tuple(None if d < 0 else d for d in dims(engine.get_tensor_shape(name)))
            infos.append(TensorInfo(name, shape, dtype))
        self.inputs = tuple(t for t in infos if is_input[t.name])
        self.outputs = tuple(t for t in infos if not is_input[t.name])

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

    def _staged(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """The first `shape` elements of the tensor's page-locked buffer, as a view."""
        return self._host[name].reshape(-1)[: math.prod(shape)].reshape(shape)

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import pycuda.driver as cuda

        with self._lock, self._active():
            for name, array in feeds.items():
                if name in self._profiles:
                    self._set_input_shape(name, array.shape)
                host = self._staged(name, array.shape)
                np.copyto(host, array)
                cuda.memcpy_htod_async(self._device[name], host, self._stream)
            if not self._context.execute_async_v3(self._stream.handle):
                raise EdgeError(f"{self.path.name}: TensorRT execution failed (see its log above)")
            results = {}
            for info in self.outputs:
                host = self._staged(info.name, dims(self._context.get_tensor_shape(info.name)))
                cuda.memcpy_dtoh_async(host, self._device[info.name], self._stream)
                results[info.name] = host
            self._stream.synchronize()
            return {name: host.copy() for name, host in results.items()}

    def close(self) -> None:
        """Free the device buffers and release the CUDA context; safe to call twice."""
        if self._cuda is None:
            return
        with self._active():
            for allocation in self._device.values():
                allocation.free()
            self._device.clear()
            # TensorRT and pycuda objects free GPU memory when destroyed, which needs the context.
            for name in ("_context", "_engine", "_runtime", "_stream"):
                self.__dict__.pop(name, None)
        self._cuda.detach()
        self._cuda = None
