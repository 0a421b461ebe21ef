"""FAKE TensorRT and pycuda, for tests only: nothing here touches a GPU or runs TensorRT.

TensorRT and pycuda cannot be installed on our CI machines (no GPU; TensorRT comes with JetPack).
To still drive our TensorRT backend and engine builder end to end, `install()` puts fake
`tensorrt`, `pycuda` and `pycuda.driver` modules in `sys.modules` with only the calls we use, in
their TensorRT 10 form (TensorRT 8 calls such as `build_engine` or `execute_async_v2` do not
exist here, as in TensorRT 10). Its "engine" is the ONNX model itself, carried inside the fake
plan and executed with ONNX Runtime, so a backend that moves the right bytes to the right places
returns what the ONNX Runtime backend returns.

The fake must behave as TensorRT's and pycuda's own sources and documents show, not as our code
assumes. Where it models a behaviour our code depends on, the source is named:

- Optimization profiles: `IExecutionContext.set_input_shape` returns False for a shape outside
  the profile, whose bounds `get_tensor_profile_shape` returns as [min, opt, max]
  (NVIDIA/TensorRT `python/src/infer/pyCore.cpp`). A batch above the profile's max is refused,
  as on a device, whatever ONNX Runtime would accept.
- Layer names (NVIDIA/onnx-tensorrt): a layer is named after its ONNX node, or
  `node_of_<first output>` when the node has no name (`getNodeName`, `importerUtils.cpp`);
  a name already taken gets `_<counter>` (`ImporterContext::generateUniqueName`); a Constant node
  adds no layer (`ImporterContext::registerLayer`); one node can become several layers, e.g. a
  Gemm with a bias adds an ElementWise layer it does not name, which keeps TensorRT's default
  name `(Unnamed Layer* N) [ElementWise]` (`builtin_op_importers.cpp`, Gemm). The parser logs
  `Registering layer: NAME for ONNX node: NODE` at VERBOSE (`ImporterContext.cpp`).
- DLA (TensorRT docs, "DLA Supported Layers and Restrictions" and "GPU Fallback Mode"): DLA
  runs FP16/INT8 layers only, does not support dynamic dimensions (a profile's min, opt and max
  must be equal), supports a subset of layer types (modelled by DLA_OPS, an approximation of the
  docs' table); with GPU fallback "layers that cannot run on DLA silently fall back to GPU
  execution without an error", without it the build fails. The plan records where each layer
  landed (`plan_header(engine)["layers"]`). That `can_run_on_DLA` answers with the same rules is
  our reading of the docs, not something the docs state.
- Timing caches (tensorrt-stubs 10.13 docstrings of `IBuilderConfig`): `set_timing_cache`
  returns False when the cache was made on a device with other properties and
  `ignore_mismatch` is False; `get_timing_cache` returns None when no cache is set. A damaged
  cache: TensorRT logs an error and `create_timing_cache` returns what `createTimingCache`
  returns, None for a null pointer (`pyCore.cpp`, `netconfig_create_timing_cache`).
- Deserializing: a plan of another TensorRT version or GPU architecture (compute capability)
  gives None; a plan from another GPU model of the same architecture loads with a warning
  (support matrix: "Without this mode, engines are not portable across different GPU
  architectures"; NVIDIA forums: engines are "specific to the exact GPU model they were built
  on"), which is why our sidecar, not TensorRT, must tell Orin modules apart.
- Explicit quantization (onnx-tensorrt `docs/operators.md`, TensorRT 10: QuantizeLinear's
  `y_zero_point` must be 0, DequantizeLinear takes INT8/FP8/FP4/INT4 and its `x_zero_point` must
  be zero, UINT8 only as a network input or output): the parser refuses a Q/DQ node with a
  non-zero or UINT8 zero point (the message is ours; the parser's own flag
  ENABLE_UINT8_AND_ASYMMETRIC_QUANTIZATION_DLA, for DLA only, is not modelled).
  `BuilderFlag.INT8` exists as in tensorrt-stubs 10.13 ("Enable Int8 layer selection") and is
  recorded in the plan's flags like the others.
- INT8 engines run the QDQ graph as ONNX Runtime does, float parts in FP32, so by default they
  score exactly what `export quantize` measured. On a device they score otherwise: their float
  parts run FP16 and TensorRT fuses Q/DQ its own way. `FakeGpu.int8_drift` is a knob standing
  for that loss, not a model of it: Gaussian noise of that many standard deviations of each
  output is added to what an engine built with `BuilderFlag.INT8` returns (seeded: the same
  feeds give the same outputs), so a test can make an INT8 engine worse than its QDQ graph.
- TensorRT 8.6 (`install(tensorrt_version="8.6.2")`, JetPack 6.0): no `DataType.INT64`, no
  `ParserError.node_name`, and `create_network(0)` makes an implicit-batch network that the
  ONNX parser refuses with "This version of the ONNX parser only supports TensorRT
  INetworkDefinitions with an explicit batch dimension" (onnx-tensorrt `ModelImporter.cpp`).
- pycuda contexts and memory (inducer/pycuda `src/cpp/cuda.hpp`): a per-thread context stack
  of which only the top is pushed on the CUDA driver's own per-thread stack; `retain_primary_
  context` does not make the context current; `Context.detach()` releases the primary context
  (cuDevicePrimaryCtxRelease, which pops nothing) when the context is current on the calling
  thread (then pycuda drops it from its own stack), else on the thread that retained it after
  pushing it on the driver's stack (and leaving it there), and does nothing on another thread;
  `Context.pop()` raises when pycuda's stack is empty. Device and page-locked allocations and
  streams belong to the context current when they were made; `free()` (and pycuda's destructor)
  frees them only when that context is current or can be pushed, which pycuda refuses on a
  thread other than the one that retained it, leaking the memory silently
  (`scoped_context_activation`, `CUDAPP_CATCH_CLEANUP_ON_DEAD_CONTEXT`). CUDA calls need a
  current context on the calling thread.

What this cannot show: FP16 numerics, how far a real INT8 engine strays from its QDQ graph,
real kernels, real memory limits, where DLA really places layers, the exact layers TensorRT
makes of each ONNX node; those need a Jetson (docs/tensorrt.md says what has run there).
"""

from __future__ import annotations

import enum
import itertools
import json
import math
import sys
import threading
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

PLAN_MAGIC = b"FAKE-TRT-PLAN\0"
CACHE_MAGIC = b"FAKE-TRT-TIMING\0"
# ONNX operators whose TensorRT layers DLA runs here (a subset of the docs' table).
DLA_OPS = frozenset(
    {
        "Conv", "ConvTranspose", "Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu", "PRelu", "Add",
        "Sub", "Mul", "Div", "Max", "Min", "Pow", "Concat", "MaxPool", "AveragePool",
        "BatchNormalization", "Resize", "Softmax", "Gemm", "MatMul", "ElementWise",
    }
)  # fmt: skip


@dataclass
class FakeGpu:
    """The fake machine: TensorRT version, GPU, DLA cores, memory, contexts and call counts.

    The defaults describe a Jetson AGX Orin 64 GB.
    """

    tensorrt_version: str = "10.3.0"
    gpu: str = "Orin (fake)"
    compute_capability: tuple[int, int] = (8, 7)
    multiprocessors: int = 16
    memory_bytes: int = int(61.4 * 2**30)
    dla_cores: int = 2
    init_error: str = ""  # CUDA's error string for a failing cuInit, e.g. "no CUDA-capable device"
    int8_drift: float = 0.0  # noise on INT8 engines' outputs, in standard deviations (docstring)
    # Device allocations: their bytes once written, only their size before (a 1 GB activation
    # block costs no host memory here).
    memory: dict[int, bytearray | int] = field(default_factory=dict)
    pinned: dict[int, PagelockedHostAllocation] = field(default_factory=dict)
    streams: set[int] = field(default_factory=set)
    calls: Counter[str] = field(default_factory=Counter)
    leaks: Counter[str] = field(default_factory=Counter)  # frees pycuda skipped silently
    primary_retains: int = 0
    log: list[str] = field(default_factory=list)  # everything TensorRT's loggers were given
    threads: threading.local = field(default_factory=threading.local)

    def stack(self) -> list[Context]:
        """pycuda's context stack of the calling thread."""
        if not hasattr(self.threads, "stack"):
            self.threads.stack = []
        stack: list[Context] = self.threads.stack
        return stack

    def driver(self) -> list[Context]:
        """The CUDA driver's context stack of the calling thread."""
        if not hasattr(self.threads, "driver"):
            self.threads.driver = []
        driver: list[Context] = self.threads.driver
        return driver

    def require_context(self, call: str) -> None:
        """CUDA calls fail without a current, live context on the calling thread."""
        if not self.driver():
            raise RuntimeError(f"{call} failed: invalid device context (no context current)")
        if self.primary_retains <= 0:
            raise RuntimeError(f"{call} failed: context is destroyed")

    def device_key(self) -> list[Any]:
        return [self.gpu, list(self.compute_capability), self.multiprocessors]

    def allocated(self) -> int:
        """Bytes of device memory allocated now."""
        return sum(b if isinstance(b, int) else len(b) for b in self.memory.values())

    def device_alloc(self, size: int) -> int:
        """An address of `size` bytes of device memory (a current context is required)."""
        address = next(_addresses)
        self.memory[address] = size
        return address


GPU = FakeGpu()


# ---------------------------------------------------------------------------------- pycuda.driver


class Error(Exception):
    """pycuda._driver.Error, the base of pycuda's exceptions (`wrap_cudadrv.cpp`, DECLARE_EXC)."""


class LogicError(Error):
    """pycuda._driver.LogicError."""


class CudaRuntimeError(Error):
    """pycuda._driver.RuntimeError (installed under that name)."""


def init(flags: int = 0) -> None:
    """cuInit; fails as pycuda reports it ("cuInit failed: <CUDA's error string>") when the
    fake machine has `init_error` set (no device visible: the user not in the `video` group,
    a container without the NVIDIA runtime)."""
    if GPU.init_error:
        raise CudaRuntimeError(f"cuInit failed: {GPU.init_error}")
    GPU.calls["init"] += 1


class device_attribute:  # pycuda's name
    MULTIPROCESSOR_COUNT = "MULTIPROCESSOR_COUNT"


def _current(excluding: Context | None = None) -> Context | None:
    """pycuda `context::current_context`: the top valid context, dropping dead ones."""
    stack = GPU.stack()
    while stack:
        top = stack[-1]
        if top is not excluding and top.valid:
            return top
        stack.pop()
    return None


class Context:
    """A pycuda context object for the device's primary context."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.valid = True

    def push(self) -> None:
        """`context_push`: only the top of pycuda's stack is on the driver's stack."""
        if GPU.stack():
            GPU.driver().pop()  # prepare_context_switch: cuCtxPopCurrent
        GPU.driver().append(self)
        GPU.stack().append(self)

    @staticmethod
    def pop() -> None:
        stack = GPU.stack()
        if not stack:
            raise LogicError("context::pop failed: invalid device context - cannot pop non-current")
        GPU.driver().pop()
        stack.pop()
        current = _current()
        if current is not None:
            GPU.driver().append(current)

    def detach(self) -> None:
        """`context::detach` of a `primary_context`, branch by branch."""
        if not self.valid:
            raise LogicError("context::detach failed: cannot detach from invalid context")
        active = _current() is self
        if active:
            self._release()
        elif self.thread == threading.get_ident():
            GPU.driver().append(self)  # cuCtxPushCurrent; the release pops nothing
            self._release()
        else:
            GPU.leaks["context"] += 1  # out-of-thread: nothing is released
        self.valid = False
        if active:
            new_active = _current(excluding=self)
            if new_active is not None:
                GPU.driver().append(new_active)

    def _release(self) -> None:
        if GPU.primary_retains <= 0:
            raise RuntimeError("cuDevicePrimaryCtxRelease failed: invalid context")
        GPU.primary_retains -= 1
        GPU.calls["release"] += 1


class Device:
    def __init__(self, number: int) -> None:
        if not GPU.calls["init"] or number != 0:
            raise RuntimeError("cuDeviceGet failed: not initialized or no such device")

    def name(self) -> str:
        return GPU.gpu

    def compute_capability(self) -> tuple[int, int]:
        return GPU.compute_capability

    def total_memory(self) -> int:
        return GPU.memory_bytes

    def get_attribute(self, attribute: str) -> int:
        return {device_attribute.MULTIPROCESSOR_COUNT: GPU.multiprocessors}[attribute]

    def retain_primary_context(self) -> Context:
        GPU.calls["retain"] += 1
        GPU.primary_retains += 1
        return Context()


class _ContextDependent:
    """pycuda's `context_dependent`: made in, and freed through, the context current then."""

    def _acquire(self) -> None:
        ward = _current()
        if ward is None:
            raise LogicError("explicit_context_dependent failed: no currently active context?")
        self.ward = ward
        self.machine = GPU

    def _collected(self) -> None:
        """pycuda's destructor: a clean-up like free(), for objects of this fake machine."""
        if getattr(self, "machine", None) is GPU and getattr(self, "valid", False):
            self.free()

    def free(self) -> None:
        raise NotImplementedError

    def _in_context(self, action: Any, kind: str) -> None:
        """`scoped_context_activation` around a clean-up, with pycuda's silent failures."""
        if not self.ward.valid:
            GPU.leaks[kind] += 1  # cannot_activate_dead_context
            return
        switch = _current() is not self.ward
        if switch:
            if threading.get_ident() != self.ward.thread:
                GPU.leaks[kind] += 1  # cannot_activate_out_of_thread_context
                return
            self.ward.push()
        try:
            action()
        finally:
            if switch:
                Context.pop()


class DeviceAllocation(_ContextDependent):
    def __init__(self, address: int) -> None:
        self._acquire()
        self.address = address
        self.valid = True

    def __int__(self) -> int:
        return self.address

    def free(self) -> None:
        if not self.valid:
            raise LogicError("device_allocation::free failed: invalid resource handle")
        self._in_context(lambda: GPU.memory.pop(self.address), "device")
        self.valid = False

    def __del__(self) -> None:
        self._collected()


class PagelockedHostAllocation(_ContextDependent, bytearray):
    """The `base` of a page-locked array."""

    def __init__(self, size: int) -> None:
        bytearray.__init__(self, size)
        self._acquire()
        self.valid = True
        GPU.pinned[id(self)] = self

    def __del__(self) -> None:
        self._collected()

    def free(self) -> None:
        if not self.valid:
            raise LogicError("pagelocked_host_allocation::free failed: invalid resource handle")
        self._in_context(lambda: GPU.pinned.pop(id(self)), "pinned")
        self.valid = False


_addresses = itertools.count(0x10000, 0x10000)


def mem_alloc(size: int) -> DeviceAllocation:
    GPU.require_context("cuMemAlloc")
    GPU.calls["mem_alloc"] += 1
    allocation = DeviceAllocation(GPU.device_alloc(size))
    return allocation


def pagelocked_empty(shape: Any, dtype: Any, order: str = "C", mem_flags: int = 0) -> np.ndarray:
    GPU.require_context("cuMemHostAlloc")
    GPU.calls["pagelocked_empty"] += 1
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    dtype = np.dtype(dtype)
    return np.ndarray(
        shape, dtype, buffer=PagelockedHostAllocation(math.prod(shape) * dtype.itemsize)
    )


class Stream(_ContextDependent):
    def __init__(self, flags: int = 0) -> None:
        GPU.require_context("cuStreamCreate")
        self._acquire()
        self.valid = True
        self.handle = id(self)
        GPU.streams.add(self.handle)

    def synchronize(self) -> None:
        GPU.calls["synchronize"] += 1

    def free(self) -> None:
        self._in_context(lambda: GPU.streams.discard(self.handle), "stream")
        self.valid = False

    def __del__(self) -> None:
        self._collected()


def _device_bytes(address: int, size: int) -> memoryview:
    block = GPU.memory[int(address)]  # KeyError: not an allocation
    if isinstance(block, int):
        block = GPU.memory[int(address)] = bytearray(block)
    if size > len(block):
        raise RuntimeError(f"copy of {size} bytes overruns an allocation of {len(block)}")
    return memoryview(block)[:size]


def _size_of(address: int) -> int:
    block = GPU.memory[int(address)]
    return block if isinstance(block, int) else len(block)


def memcpy_htod_async(dest: Any, src: np.ndarray, stream: Stream) -> None:
    GPU.require_context("cuMemcpyHtoDAsync")
    _device_bytes(dest, src.nbytes)[:] = np.ascontiguousarray(src).tobytes()


def memcpy_dtoh_async(dest: np.ndarray, src: Any, stream: Stream) -> None:
    GPU.require_context("cuMemcpyDtoHAsync")
    data = np.frombuffer(_device_bytes(src, dest.nbytes), dest.dtype).reshape(dest.shape)
    np.copyto(dest, data)


# --------------------------------------------------------------------------------------- tensorrt


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    INT64 = 8


# TensorRT 8.6's DataType: no INT64 (added in TensorRT 10).
DataType8 = enum.Enum("DataType8", {m.name: m.value for m in DataType if m.name != "INT64"})


_ONNX_TYPES = {1: "FLOAT", 10: "HALF", 3: "INT8", 6: "INT32", 7: "INT64", 2: "UINT8", 9: "BOOL"}
_NUMPY = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "BOOL": np.bool_,
}


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class BuilderFlag(enum.Enum):
    FP16 = 0
    INT8 = 1
    GPU_FALLBACK = 2
    OBEY_PRECISION_CONSTRAINTS = 3


class DeviceType(enum.Enum):
    GPU = 0
    DLA = 1


class NetworkDefinitionCreationFlag:
    EXPLICIT_BATCH = 0


class ExecutionContextAllocationStrategy(enum.Enum):
    STATIC = 0  # "Default static allocation with the maximum size across all profiles."
    ON_PROFILE_CHANGE = 1  # "Reallocate for a profile when it's selected."
    USER_MANAGED = 2  # "The user supplies custom allocation to the execution context."


class Logger:
    """TensorRT's built-in logger: prints messages at or above its minimum severity."""

    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4

    def __init__(self, min_severity: int = WARNING) -> None:
        self.min_severity = min_severity

    def log(self, severity: int, message: str) -> None:
        GPU.log.append(message)
        if severity <= self.min_severity:
            print(f"[TRT] [{'FEWIV'[severity]}] {message}", file=sys.stderr)


class Dims(list[int]):
    """TensorRT's Dims: a sequence of ints."""


@dataclass
class ITensor:
    name: str
    shape: Dims
    dtype: Any


@dataclass
class ILayer:
    name: str
    num_outputs: int
    op: str  # the ONNX operator it came from (for DLA support)
    precision: Any = None
    output_types: dict[int, Any] = field(default_factory=dict)

    def set_output_type(self, index: int, dtype: Any) -> None:
        self.output_types[index] = dtype


def _data_type(name: str) -> Any:
    return sys.modules["tensorrt"].DataType[name]  # type: ignore[attr-defined]


def _tensor(value: onnx.ValueInfoProto) -> ITensor:
    kind = value.type.tensor_type
    shape = Dims(d.dim_value if d.HasField("dim_value") else -1 for d in kind.shape.dim)
    return ITensor(value.name, shape, _data_type(_ONNX_TYPES[kind.elem_type]))


class INetworkDefinition:
    def __init__(self, implicit_batch: bool) -> None:
        self.has_implicit_batch_dimension = implicit_batch
        self.inputs: list[ITensor] = []
        self.outputs: list[ITensor] = []
        self.layers: list[ILayer] = []
        self.model = b""

    num_inputs = property(lambda self: len(self.inputs))
    num_outputs = property(lambda self: len(self.outputs))
    num_layers = property(lambda self: len(self.layers))

    def get_input(self, index: int) -> ITensor:
        return self.inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self.outputs[index]

    def get_layer(self, index: int) -> ILayer:
        return self.layers[index]


@dataclass
class ParserError:
    index: int
    name: str
    operator: str
    message: str

    def node(self) -> int:
        return self.index

    def node_name(self) -> str:
        return self.name

    def node_operator(self) -> str:
        return self.operator

    def desc(self) -> str:
        return self.message


class ParserError8:
    """TensorRT 8.6's ParserError: no node_name()."""

    def __init__(self, error: ParserError) -> None:
        self.node, self.node_operator, self.desc = error.node, error.node_operator, error.desc


def _major() -> int:
    return int(GPU.tensorrt_version.split(".")[0])


class OnnxParser:
    """Parses with `onnx`; any node outside the default ONNX domain has no importer."""

    def __init__(self, network: INetworkDefinition, logger: Logger) -> None:
        self.network = network
        self.logger = logger
        self.errors: list[Any] = []
        self.suffix = itertools.count()  # ImporterContext's mSuffixCounter

    num_errors = property(lambda self: len(self.errors))

    def get_error(self, index: int) -> Any:
        error = self.errors[index]
        return error if _major() >= 10 else ParserError8(error)

    def _register(self, base: str, op: str, outputs: int, taken: set[str]) -> None:
        name = base
        while name in taken:
            name = f"{base}_{next(self.suffix)}"
        taken.add(name)
        self.logger.log(Logger.VERBOSE, f"Registering layer: {name} for ONNX node: {base}")
        self.network.layers.append(ILayer(name, outputs, op))

    def parse_from_file(self, path: str) -> bool:
        if self.network.has_implicit_batch_dimension:
            self.errors.append(
                ParserError(
                    -1,
                    "",
                    "",
                    "Assertion failed: !_importer_ctx.network()->hasImplicitBatchDimension() && "
                    '"This version of the ONNX parser only supports TensorRT '
                    'INetworkDefinitions with an explicit batch dimension."',
                )
            )
            return False
        model = onnx.load(path)
        graph = model.graph
        for index, node in enumerate(graph.node):
            if node.domain not in ("", "ai.onnx"):
                message = f"No importer registered for op: {node.op_type}. Attempting plugin."
                self.errors.append(ParserError(index, node.name, node.op_type, message))
        for index, node in enumerate(graph.node):
            problem = _zero_point_problem(node, graph)
            if problem:
                self.errors.append(ParserError(index, node.name, node.op_type, problem))
        initializers = {i.name for i in graph.initializer}
        self.network.inputs = [_tensor(v) for v in graph.input if v.name not in initializers]
        self.network.outputs = [_tensor(v) for v in graph.output]
        taken: set[str] = set()
        for node in graph.node:
            if node.op_type == "Constant":
                continue  # weights, not a layer
            base = node.name or f"node_of_{node.output[0]}"
            self._register(base, node.op_type, len(node.output), taken)
            if node.op_type == "Gemm" and len(node.input) > 2:  # the bias add, not registered
                unnamed = f"(Unnamed Layer* {len(self.network.layers)}) [ElementWise]"
                self.network.layers.append(ILayer(unnamed, 1, "ElementWise"))
        self.network.model = model.SerializeToString()
        return not self.errors


def _zero_point_problem(node: onnx.NodeProto, graph: onnx.GraphProto) -> str | None:
    """What TensorRT's ONNX parser refuses in a Q/DQ node's zero point (UINT8, not zero)."""
    if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
        return None
    zero = next((i for i in graph.initializer if i.name == node.input[2]), None)
    if zero is None:
        return None
    if zero.data_type == onnx.TensorProto.UINT8:
        return f"{node.op_type}: UINT8 quantization is unsupported: use signed INT8"
    if np.any(onnx.numpy_helper.to_array(zero)):
        return f"{node.op_type}: the zero point must be zero (symmetric quantization only)"
    return None


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, list[list[int]]] = {}

    def set_shape(self, name: str, low: Any, opt: Any, high: Any) -> None:
        for a, b in ((low, opt), (opt, high)):
            if len(a) != len(b) or any(x > y for x, y in zip(a, b, strict=True)):
                raise ValueError(f"profile of '{name}' needs min <= opt <= max")
        self.shapes[name] = [list(low), list(opt), list(high)]


class ITimingCache:
    def __init__(self, builds: int, device: list[Any]) -> None:
        self.builds = builds
        self.device = device

    def serialize(self) -> bytes:
        return CACHE_MAGIC + json.dumps({"builds": self.builds, "device": self.device}).encode()


class IBuilderConfig:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger
        self.flags: set[BuilderFlag] = set()
        self.pools: dict[MemoryPoolType, int] = {}
        self.profiles: list[IOptimizationProfile] = []
        self.default_device_type = DeviceType.GPU
        self.DLA_core = -1
        self.devices: dict[str, DeviceType] = {}
        self.cache: ITimingCache | None = None

    def set_flag(self, flag: BuilderFlag) -> None:
        self.flags.add(flag)

    def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
        self.pools[pool] = size

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_device_type(self, layer: ILayer, device: DeviceType) -> None:
        self.devices[layer.name] = device

    def get_device_type(self, layer: ILayer) -> DeviceType:
        return self.devices.get(layer.name, self.default_device_type)

    def can_run_on_DLA(self, layer: ILayer) -> bool:
        """DLA's general rules: FP16/INT8, static shapes, a supported layer type."""
        static = all(low == high for p in self.profiles for low, _, high in p.shapes.values())
        precision = bool({BuilderFlag.FP16, BuilderFlag.INT8} & self.flags)
        return GPU.dla_cores > 0 and precision and static and layer.op in DLA_OPS

    def create_timing_cache(self, data: bytes) -> ITimingCache | None:
        if not data:
            return ITimingCache(0, GPU.device_key())
        try:
            if not data.startswith(CACHE_MAGIC):
                raise ValueError("magic tag does not match")
            record = json.loads(data[len(CACHE_MAGIC) :])
            return ITimingCache(record["builds"], record["device"])
        except (ValueError, KeyError):
            self.logger.log(Logger.ERROR, "Serialization assertion failed: invalid timing cache")
            return None

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        if cache.device != GPU.device_key() and not ignore_mismatch:
            self.logger.log(Logger.ERROR, "timing cache was created on another device")
            return False
        self.cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self.cache


class Builder:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger
        self.num_DLA_cores = GPU.dla_cores

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        explicit = _major() >= 10 or bool(flags & 1 << NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        return INetworkDefinition(implicit_batch=not explicit)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig(self.logger)

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(
        self, network: INetworkDefinition, config: IBuilderConfig
    ) -> bytes | None:
        """The plan: header (builder, GPU, profile, flags, layer placement) and the ONNX model;
        None on error."""
        GPU.calls["build"] += 1
        dynamic = [t.name for t in network.inputs if -1 in t.shape]
        profile = config.profiles[0].shapes if config.profiles else {}
        if set(dynamic) - set(profile) or MemoryPoolType.WORKSPACE not in config.pools:
            return None  # TensorRT: "Network has dynamic inputs, but no optimization profile"
        layers = []
        for layer in network.layers:
            device = config.get_device_type(layer)
            if device is DeviceType.DLA and not config.can_run_on_DLA(layer):
                if BuilderFlag.GPU_FALLBACK not in config.flags:
                    self.logger.log(Logger.ERROR, f"{layer.name} cannot run on DLA")
                    return None
                device = DeviceType.GPU  # silently, as the docs say
            layers.append([layer.name, device.name])
        if config.cache is not None:
            config.cache.builds += 1
        header = {
            "tensorrt": GPU.tensorrt_version,
            "gpu": GPU.device_key(),
            "profile": profile,
            "flags": sorted(f.name for f in config.flags),
            "dla_core": config.DLA_core if config.default_device_type is DeviceType.DLA else None,
            "fp32_layers": [layer.name for layer in network.layers if layer.output_types],
            "layers": layers,
        }
        blob = json.dumps(header).encode()
        return PLAN_MAGIC + len(blob).to_bytes(4, "little") + blob + network.model


def _activation_bytes(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> int:
    """Activation memory of `model` at these input shapes: the peak of the intermediate tensors
    alive at once, node after node in graph order (each freed after its last reader), sized by
    ONNX shape inference. TensorRT fuses layers and plans its own reuse, so its real figure
    differs; what this keeps is that it grows with the input shapes (batch, image size)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in (v for v in fixed.graph.input if v.name in shapes):
        for dim, extent in zip(value.type.tensor_type.shape.dim, shapes[value.name], strict=True):
            dim.Clear()
            dim.dim_value = extent
    sizes = {}
    for value in onnx.shape_inference.infer_shapes(fixed).graph.value_info:
        kind = value.type.tensor_type
        extents = [d.dim_value if d.HasField("dim_value") else -1 for d in kind.shape.dim]
        if min(extents, default=0) >= 0:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(kind.elem_type).itemsize
            sizes[value.name] = math.prod(extents) * itemsize
    last_reader = {name: i for i, node in enumerate(model.graph.node) for name in node.input}
    live = peak = 0
    for i, node in enumerate(model.graph.node):
        live += sum(sizes.get(name, 0) for name in node.output)
        peak = max(peak, live)
        live -= sum(sizes.get(name, 0) for name in set(node.input) if last_reader[name] == i)
    return peak


class ICudaEngine:
    """Tensors as the ONNX graph declares them; runs the model with ONNX Runtime.

    Activation memory (`pyCore.cpp`, `pyCoreDoc.h`, TensorRT 10): `create_execution_context()`
    defaults to `ExecutionContextAllocationStrategy.STATIC`, "static allocation with the maximum
    size across all profiles": the context takes `device_memory_size_v2` bytes, the activations
    at every input's profile maximum, when it is created and holds them until it is destroyed.
    With `USER_MANAGED` it takes none: `update_device_memory_size_for_shapes()` gives the size
    for the input shapes set (0 before all are set: "0 if error occurred"), and the caller passes
    memory of at least that size with `set_device_memory(address, size)` before executing.
    """

    def __init__(self, header: dict[str, Any], model: bytes) -> None:
        self.header = header
        self.onnx = onnx.load_from_string(model)
        self._activations: dict[str, int] = {}
        graph = self.onnx.graph
        initializers = {i.name for i in graph.initializer}
        self.tensors = {
            t.name: (TensorIOMode.INPUT, t)
            for t in (_tensor(v) for v in graph.input if v.name not in initializers)
        } | {t.name: (TensorIOMode.OUTPUT, t) for t in (_tensor(v) for v in graph.output)}
        self.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])

    num_io_tensors = property(lambda self: len(self.tensors))

    def get_tensor_name(self, index: int) -> str:
        return list(self.tensors)[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self.tensors[name][0]

    def get_tensor_shape(self, name: str) -> Dims:
        return Dims(self.tensors[name][1].shape)

    def get_tensor_dtype(self, name: str) -> Any:
        return self.tensors[name][1].dtype

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
        if self.get_tensor_mode(name) is not TensorIOMode.INPUT or profile_index != 0:
            raise RuntimeError(f"no profile shape for '{name}' in profile {profile_index}")
        if name not in self.header["profile"]:
            return [self.get_tensor_shape(name)] * 3
        return [Dims(s) for s in self.header["profile"][name]]

    def activation_bytes(self, shapes: dict[str, list[int]]) -> int:
        """Activation memory at these input shapes (see `_activation_bytes`), cached."""
        key = json.dumps(shapes, sort_keys=True)
        if key not in self._activations:
            self._activations[key] = _activation_bytes(self.onnx, shapes)
        return self._activations[key]

    def get_device_memory_size_for_profile_v2(self, profile_index: int) -> int:
        inputs = [n for n, (mode, _) in self.tensors.items() if mode is TensorIOMode.INPUT]
        high = {n: list(self.get_tensor_profile_shape(n, profile_index)[2]) for n in inputs}
        return self.activation_bytes(high)

    @property
    def device_memory_size_v2(self) -> int:
        """The maximum across all profiles (one here)."""
        return self.get_device_memory_size_for_profile_v2(0)

    def create_execution_context(
        self,
        strategy: ExecutionContextAllocationStrategy = ExecutionContextAllocationStrategy.STATIC,
    ) -> IExecutionContext:
        return IExecutionContext(self, strategy)


class IExecutionContext:
    def __init__(self, engine: ICudaEngine, strategy: ExecutionContextAllocationStrategy) -> None:
        self.engine = engine
        self.strategy = strategy
        self.device_memory: tuple[int, int] | None = None  # (address, size) the caller gave
        self.own_memory: int | None = None  # the address of what TensorRT allocated itself
        if strategy is not ExecutionContextAllocationStrategy.USER_MANAGED:
            GPU.require_context("createExecutionContext")  # one profile: the same size
            self.own_memory = GPU.device_alloc(engine.device_memory_size_v2)
        self.shapes = {
            name: list(t.shape)
            for name, (mode, t) in engine.tensors.items()
            if mode is TensorIOMode.INPUT
        }
        self.addresses: dict[str, int] = {}
        self.output_shapes: dict[tuple[Any, ...], dict[str, list[int]]] = {}

    def set_input_shape(self, name: str, shape: Any) -> bool:
        """False (TensorRT logs an error) for a shape outside the profile."""
        low, _, high = self.engine.get_tensor_profile_shape(name, 0)
        shape = list(shape)
        if len(shape) != len(low) or not all(
            lo <= s <= hi for lo, s, hi in zip(low, shape, high, strict=True)
        ):
            return False
        self.shapes[name] = shape
        return True

    def _zeros(self) -> dict[str, np.ndarray]:
        if any(-1 in shape for shape in self.shapes.values()):
            raise RuntimeError("an input shape has not been set")
        return {
            name: np.zeros(shape, _NUMPY[self.engine.get_tensor_dtype(name).name])
            for name, shape in self.shapes.items()
        }

    def get_tensor_shape(self, name: str) -> Dims:
        if name in self.shapes:
            return Dims(self.shapes[name])
        key = tuple(sorted((n, tuple(s)) for n, s in self.shapes.items()))
        if key not in self.output_shapes:  # shape inference, the slow way
            names = [
                n for n, (mode, _) in self.engine.tensors.items() if mode is TensorIOMode.OUTPUT
            ]
            values = self.engine.session.run(names, self._zeros())
            self.output_shapes[key] = {n: list(v.shape) for n, v in zip(names, values, strict=True)}
        return Dims(self.output_shapes[key][name])

    def update_device_memory_size_for_shapes(self) -> int:
        if any(-1 in shape for shape in self.shapes.values()):
            return 0
        return self.engine.activation_bytes(self.shapes)

    def set_device_memory(self, memory: int, size: int) -> None:
        if size > _size_of(memory):  # KeyError: not an allocation
            raise ValueError(f"set_device_memory: {size} bytes overrun the allocation")
        self.device_memory = (int(memory), size)

    def _activations_ok(self) -> bool:
        """Whether the context has activation memory for the shapes set (TensorRT logs an
        error and enqueueV3 fails without it)."""
        if self.strategy is not ExecutionContextAllocationStrategy.USER_MANAGED:
            return True
        needed = self.engine.activation_bytes(self.shapes)
        given = self.device_memory[1] if self.device_memory else 0
        if needed > given:
            GPU.log.append(f"activation memory of {given} bytes, {needed} needed for the shapes")
            return False
        return True

    def __del__(self) -> None:
        if getattr(self, "own_memory", None) is not None:
            GPU.memory.pop(self.own_memory, None)

    def set_tensor_address(self, name: str, address: int) -> bool:
        if name not in self.engine.tensors:
            return False
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        GPU.require_context("enqueueV3")
        if stream_handle not in GPU.streams or set(self.addresses) != set(self.engine.tensors):
            return False
        if not self._activations_ok():
            return False
        GPU.calls["execute"] += 1
        GPU.calls[f"batch_{next(iter(self.shapes.values()))[0]}"] += 1
        feeds = {}
        for name, array in self._zeros().items():
            raw = _device_bytes(self.addresses[name], array.nbytes)
            feeds[name] = np.frombuffer(raw, array.dtype).reshape(array.shape).copy()
        outputs = [n for n, (mode, _) in self.engine.tensors.items() if mode is TensorIOMode.OUTPUT]
        for name, value in zip(outputs, self.engine.session.run(outputs, feeds), strict=True):
            value = self._drift(value, feeds)
            _device_bytes(self.addresses[name], value.nbytes)[:] = value.tobytes()
        return True

    def _drift(self, value: np.ndarray, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """`value` with FakeGpu.int8_drift's noise for an INT8 engine (see the module docstring)."""
        if not GPU.int8_drift or "INT8" not in self.engine.header["flags"]:
            return value
        seed = zlib.crc32(b"".join(array.tobytes() for array in feeds.values()))
        noise = np.random.default_rng(seed).normal(size=value.shape)
        return (value + GPU.int8_drift * float(value.std()) * noise).astype(value.dtype)


class Runtime:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger
        self.DLA_core = -1
        self.num_DLA_cores = GPU.dla_cores

    def deserialize_cuda_engine(self, plan: bytes) -> ICudaEngine | None:
        """None for a plan of another TensorRT version or GPU architecture, or not a plan."""
        GPU.require_context("deserializeCudaEngine")
        if not plan.startswith(PLAN_MAGIC):
            return None
        start = len(PLAN_MAGIC)
        size = int.from_bytes(plan[start : start + 4], "little")
        header = json.loads(plan[start + 4 : start + 4 + size])
        _, capability, _ = header["gpu"]
        if (header["tensorrt"], capability) != (GPU.tensorrt_version, list(GPU.compute_capability)):
            return None
        if header["gpu"] != GPU.device_key():
            self.logger.log(
                Logger.WARNING,
                "Using an engine plan file across different models of devices is not "
                "recommended and is likely to affect performance or even cause errors.",
            )
        if header["dla_core"] is not None and not 0 <= self.DLA_core < GPU.dla_cores:
            return None
        if header["dla_core"] is not None and header["dla_core"] != self.DLA_core:
            return None
        return ICudaEngine(header, plan[start + 4 + size :])


# ------------------------------------------------------------------------------------ installing


def plan_header(engine: Path) -> dict[str, Any]:
    """What the fake builder recorded in an engine file (flags, profile, DLA core, layers...)."""
    plan = engine.read_bytes()
    plan = plan[plan.index(PLAN_MAGIC) + len(PLAN_MAGIC) :]
    header: dict[str, Any] = json.loads(plan[4 : 4 + int.from_bytes(plan[:4], "little")])
    return header


def _module(name: str, members: dict[str, Any]) -> ModuleType:
    module = ModuleType(name, "FAKE, for tests: see tests/fake_tensorrt.py")
    module.__dict__.update(members)
    return module


def install(monkeypatch: pytest.MonkeyPatch, **gpu: Any) -> FakeGpu:
    """Put the fake `tensorrt`, `pycuda` and `pycuda.driver` in `sys.modules` for one test.

    Args:
        monkeypatch: the test's monkeypatch, which removes them afterwards.
        gpu: FakeGpu fields (tensorrt_version, gpu, compute_capability, multiprocessors,
            memory_bytes, dla_cores). A tensorrt_version below 10 gives TensorRT 8.6's API.

    Returns:
        The fake machine; `switch()` changes its TensorRT version or GPU mid-test.
    """
    global GPU
    GPU = FakeGpu()
    for key, value in gpu.items():
        setattr(GPU, key, value)
    names = [
        "TensorIOMode", "MemoryPoolType", "BuilderFlag", "DeviceType", "Logger", "Dims",
        "Builder", "OnnxParser", "Runtime", "NetworkDefinitionCreationFlag",
        "ExecutionContextAllocationStrategy",
    ]  # fmt: skip
    this = sys.modules[__name__].__dict__
    members = {n: this[n] for n in names}
    members["DataType"] = DataType if _major() >= 10 else DataType8
    tensorrt = _module("tensorrt", members | {"__version__": GPU.tensorrt_version})
    driver_names = [
        "init", "Context", "Device", "DeviceAllocation", "Stream", "mem_alloc", "LogicError",
        "pagelocked_empty", "memcpy_htod_async", "memcpy_dtoh_async", "device_attribute",
        "PagelockedHostAllocation", "Error",
    ]  # fmt: skip
    driver = _module(
        "pycuda.driver", {n: this[n] for n in driver_names} | {"RuntimeError": CudaRuntimeError}
    )
    pycuda = _module("pycuda", {"driver": driver})
    for name, module in (("tensorrt", tensorrt), ("pycuda", pycuda), ("pycuda.driver", driver)):
        monkeypatch.setitem(sys.modules, name, module)
    return GPU


def switch(**gpu: Any) -> None:
    """Change the fake machine (e.g. another TensorRT version) after engines were built."""
    for key, value in gpu.items():
        setattr(GPU, key, value)
    sys.modules["tensorrt"].__version__ = GPU.tensorrt_version  # type: ignore[attr-defined]
