"""FAKE TensorRT and pycuda, for tests only: nothing here touches a GPU or runs TensorRT.

TensorRT and pycuda cannot be installed on our CI machines (no GPU; TensorRT comes with JetPack).
To still drive our TensorRT backend and engine builder end to end, `install()` puts fake
`tensorrt`, `pycuda` and `pycuda.driver` modules in `sys.modules` with only the calls we use, in
their TensorRT 10 form (TensorRT 8 calls such as `build_engine` or `execute_async_v2` do not
exist here, as in TensorRT 10). The fake is strict where the real API is: device memory is only
reachable through the addresses the engine was given, copies are size-checked, CUDA calls need a
current context on the calling thread, an input shape outside the optimization profile is
refused, and a plan deserializes only under the TensorRT version and GPU that built it.

Its "engine" is the ONNX model itself, carried inside the fake plan and executed with ONNX
Runtime, so a backend that moves the right bytes to the right places returns what the ONNX
Runtime backend returns. What this cannot show: FP16 numerics, real kernels, real memory limits,
DLA placement; those need a Jetson (README says what has run there).
"""

from __future__ import annotations

import enum
import itertools
import json
import sys
import threading
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
_ONNX_TYPES = {1: "FLOAT", 10: "HALF", 3: "INT8", 6: "INT32", 7: "INT64", 2: "UINT8", 9: "BOOL"}


@dataclass
class FakeGpu:
    """The fake machine: TensorRT version, GPU, DLA cores, device memory and call counts."""

    tensorrt_version: str = "10.3.0"
    gpu: str = "Orin (fake)"
    compute_capability: tuple[int, int] = (8, 7)
    dla_cores: int = 2
    memory: dict[int, bytearray] = field(default_factory=dict)
    streams: set[int] = field(default_factory=set)
    calls: Counter[str] = field(default_factory=Counter)
    contexts: threading.local = field(default_factory=threading.local)

    def stack(self) -> list[Context]:
        if not hasattr(self.contexts, "stack"):
            self.contexts.stack = []
        stack: list[Context] = self.contexts.stack
        return stack

    def require_context(self, call: str) -> None:
        """CUDA calls fail without a current context on the calling thread."""
        if not self.stack():
            raise RuntimeError(f"{call} failed: invalid device context (no context current)")


GPU = FakeGpu()


# ---------------------------------------------------------------------------------- pycuda.driver


def init(flags: int = 0) -> None:
    GPU.calls["init"] += 1


class Context:
    def push(self) -> None:
        GPU.stack().append(self)

    @staticmethod
    def pop() -> None:
        GPU.stack().pop()

    def detach(self) -> None:
        GPU.calls["detach"] += 1


class Device:
    def __init__(self, number: int) -> None:
        if not GPU.calls["init"] or number != 0:
            raise RuntimeError("cuDeviceGet failed: not initialized or no such device")

    def name(self) -> str:
        return GPU.gpu

    def compute_capability(self) -> tuple[int, int]:
        return GPU.compute_capability

    def retain_primary_context(self) -> Context:
        GPU.calls["retain"] += 1
        return Context()


class DeviceAllocation:
    def __init__(self, address: int) -> None:
        self.address = address

    def __int__(self) -> int:
        return self.address

    def free(self) -> None:
        GPU.require_context("cuMemFree")
        del GPU.memory[self.address]  # a double free raises


_addresses = itertools.count(0x10000, 0x10000)


def mem_alloc(size: int) -> DeviceAllocation:
    GPU.require_context("cuMemAlloc")
    GPU.calls["mem_alloc"] += 1
    address = next(_addresses)
    GPU.memory[address] = bytearray(size)
    return DeviceAllocation(address)


def pagelocked_empty(shape: Any, dtype: Any) -> np.ndarray:
    GPU.calls["pagelocked_empty"] += 1
    return np.empty(shape, dtype)


class Stream:
    def __init__(self) -> None:
        GPU.require_context("cuStreamCreate")
        self.handle = id(self)
        GPU.streams.add(self.handle)

    def synchronize(self) -> None:
        GPU.calls["synchronize"] += 1


def _device_bytes(address: int, size: int) -> memoryview:
    block = GPU.memory[int(address)]  # KeyError: not an allocation
    if size > len(block):
        raise RuntimeError(f"copy of {size} bytes overruns an allocation of {len(block)}")
    return memoryview(block)[:size]


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


_NUMPY = {
    DataType.FLOAT: np.float32,
    DataType.HALF: np.float16,
    DataType.INT8: np.int8,
    DataType.INT32: np.int32,
    DataType.INT64: np.int64,
    DataType.UINT8: np.uint8,
    DataType.BOOL: np.bool_,
}


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class BuilderFlag(enum.Enum):
    FP16 = 0
    GPU_FALLBACK = 1
    OBEY_PRECISION_CONSTRAINTS = 2


class DeviceType(enum.Enum):
    GPU = 0
    DLA = 1


class Logger:
    ERROR = 1
    WARNING = 2
    INFO = 3

    def __init__(self, severity: int = WARNING) -> None:
        self.severity = severity


class Dims(list[int]):
    """TensorRT's Dims: a sequence of ints."""


@dataclass
class ITensor:
    name: str
    shape: Dims
    dtype: DataType


@dataclass
class ILayer:
    name: str
    num_outputs: int
    precision: DataType = DataType.FLOAT
    output_types: dict[int, DataType] = field(default_factory=dict)

    def set_output_type(self, index: int, dtype: DataType) -> None:
        self.output_types[index] = dtype


def _tensor(value: onnx.ValueInfoProto) -> ITensor:
    kind = value.type.tensor_type
    shape = Dims(d.dim_value if d.HasField("dim_value") else -1 for d in kind.shape.dim)
    return ITensor(value.name, shape, DataType[_ONNX_TYPES[kind.elem_type]])


class INetworkDefinition:
    def __init__(self) -> None:
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


class OnnxParser:
    """Parses with `onnx`; any node outside the default ONNX domain has no importer."""

    def __init__(self, network: INetworkDefinition, logger: Logger) -> None:
        self.network = network
        self.errors: list[ParserError] = []

    num_errors = property(lambda self: len(self.errors))

    def get_error(self, index: int) -> ParserError:
        return self.errors[index]

    def parse_from_file(self, path: str) -> bool:
        model = onnx.load(path)
        graph = model.graph
        for index, node in enumerate(graph.node):
            if node.domain not in ("", "ai.onnx"):
                message = f"No importer registered for op: {node.op_type}. Attempting plugin."
                self.errors.append(ParserError(index, node.name, node.op_type, message))
        initializers = {i.name for i in graph.initializer}
        self.network.inputs = [_tensor(v) for v in graph.input if v.name not in initializers]
        self.network.outputs = [_tensor(v) for v in graph.output]
        self.network.layers = [
            ILayer(node.name or f"node_{i}", len(node.output)) for i, node in enumerate(graph.node)
        ]
        self.network.model = model.SerializeToString()
        return not self.errors


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, list[list[int]]] = {}

    def set_shape(self, name: str, low: Dims, opt: Dims, high: Dims) -> None:
        for a, b in ((low, opt), (opt, high)):
            if len(a) != len(b) or any(x > y for x, y in zip(a, b, strict=True)):
                raise ValueError(f"profile of '{name}' needs min <= opt <= max")
        self.shapes[name] = [list(low), list(opt), list(high)]


class ITimingCache:
    def __init__(self, builds: int) -> None:
        self.builds = builds

    def serialize(self) -> bytes:
        return CACHE_MAGIC + json.dumps({"builds": self.builds}).encode()


class IBuilderConfig:
    def __init__(self) -> None:
        self.flags: set[BuilderFlag] = set()
        self.pools: dict[MemoryPoolType, int] = {}
        self.profiles: list[IOptimizationProfile] = []
        self.default_device_type = DeviceType.GPU
        self.DLA_core = -1
        self.cache: ITimingCache | None = None

    def set_flag(self, flag: BuilderFlag) -> None:
        self.flags.add(flag)

    def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
        self.pools[pool] = size

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, data: bytes) -> ITimingCache:
        if not data:
            return ITimingCache(0)
        if not data.startswith(CACHE_MAGIC):
            raise RuntimeError("invalid timing cache")
        return ITimingCache(json.loads(data[len(CACHE_MAGIC) :])["builds"])

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        self.cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self.cache


class Builder:
    def __init__(self, logger: Logger) -> None:
        self.num_DLA_cores = GPU.dla_cores

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition()

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(
        self, network: INetworkDefinition, config: IBuilderConfig
    ) -> bytes | None:
        """The plan: header (builder, GPU, profile, flags) and the ONNX model; None on error."""
        GPU.calls["build"] += 1
        dynamic = [t.name for t in network.inputs if -1 in t.shape]
        profile = config.profiles[0].shapes if config.profiles else {}
        if set(dynamic) - set(profile) or MemoryPoolType.WORKSPACE not in config.pools:
            return None  # TensorRT: "Network has dynamic inputs, but no optimization profile"
        if config.cache is not None:
            config.cache.builds += 1
        header = {
            "tensorrt": GPU.tensorrt_version,
            "gpu": [GPU.gpu, list(GPU.compute_capability)],
            "profile": profile,
            "flags": sorted(f.name for f in config.flags),
            "dla_core": config.DLA_core if config.default_device_type is DeviceType.DLA else None,
            "fp32_layers": [layer.name for layer in network.layers if layer.output_types],
        }
        blob = json.dumps(header).encode()
        return PLAN_MAGIC + len(blob).to_bytes(4, "little") + blob + network.model


class ICudaEngine:
    """Tensors as the ONNX graph declares them; runs the model with ONNX Runtime."""

    def __init__(self, header: dict[str, Any], model: bytes) -> None:
        self.header = header
        graph = onnx.load_from_string(model).graph
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

    def get_tensor_dtype(self, name: str) -> DataType:
        return self.tensors[name][1].dtype

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
        if self.get_tensor_mode(name) is not TensorIOMode.INPUT or profile_index != 0:
            raise RuntimeError(f"no profile shape for '{name}' in profile {profile_index}")
        if name not in self.header["profile"]:
            return [self.get_tensor_shape(name)] * 3
        return [Dims(s) for s in self.header["profile"][name]]

    def create_execution_context(self) -> IExecutionContext:
        return IExecutionContext(self)


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self.shapes = {
            name: list(t.shape)
            for name, (mode, t) in engine.tensors.items()
            if mode is TensorIOMode.INPUT
        }
        self.addresses: dict[str, int] = {}

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
            name: np.zeros(shape, _NUMPY[self.engine.get_tensor_dtype(name)])
            for name, shape in self.shapes.items()
        }

    def get_tensor_shape(self, name: str) -> Dims:
        if name in self.shapes:
            return Dims(self.shapes[name])
        (value,) = self.engine.session.run([name], self._zeros())  # shape inference, the slow way
        return Dims(value.shape)

    def set_tensor_address(self, name: str, address: int) -> bool:
        if name not in self.engine.tensors:
            return False
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        GPU.require_context("enqueueV3")
        if stream_handle not in GPU.streams or set(self.addresses) != set(self.engine.tensors):
            return False
        GPU.calls["execute"] += 1
        feeds = {}
        for name, array in self._zeros().items():
            raw = _device_bytes(self.addresses[name], array.nbytes)
            feeds[name] = np.frombuffer(raw, array.dtype).reshape(array.shape).copy()
        outputs = [n for n, (mode, _) in self.engine.tensors.items() if mode is TensorIOMode.OUTPUT]
        for name, value in zip(outputs, self.engine.session.run(outputs, feeds), strict=True):
            _device_bytes(self.addresses[name], value.nbytes)[:] = value.tobytes()
        return True


class Runtime:
    def __init__(self, logger: Logger) -> None:
        self.DLA_core = -1

    def deserialize_cuda_engine(self, plan: bytes) -> ICudaEngine | None:
        """None, as TensorRT, for a plan of another TensorRT version or GPU, or not a plan."""
        GPU.require_context("deserializeCudaEngine")
        if not plan.startswith(PLAN_MAGIC):
            return None
        start = len(PLAN_MAGIC)
        size = int.from_bytes(plan[start : start + 4], "little")
        header = json.loads(plan[start + 4 : start + 4 + size])
        built_for = (header["tensorrt"], header["gpu"])
        if built_for != (GPU.tensorrt_version, [GPU.gpu, list(GPU.compute_capability)]):
            return None
        if header["dla_core"] is not None and header["dla_core"] != self.DLA_core:
            return None
        return ICudaEngine(header, plan[start + 4 + size :])


# ------------------------------------------------------------------------------------ installing


def plan_header(engine: Path) -> dict[str, Any]:
    """What the fake builder recorded in an engine file (flags, profile, DLA core...)."""
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
        gpu: FakeGpu fields (tensorrt_version, gpu, compute_capability, dla_cores).

    Returns:
        The fake machine; `switch()` changes its TensorRT version or GPU mid-test.
    """
    global GPU
    GPU = FakeGpu()
    names = [
        "DataType", "TensorIOMode", "MemoryPoolType", "BuilderFlag", "DeviceType", "Logger",
        "Dims", "Builder", "OnnxParser", "Runtime",
    ]  # fmt: skip
    this = sys.modules[__name__].__dict__
    tensorrt = _module("tensorrt", {n: this[n] for n in names} | {"__version__": "?"})
    driver_names = [
        "init", "Context", "Device", "DeviceAllocation", "Stream", "mem_alloc",
        "pagelocked_empty", "memcpy_htod_async", "memcpy_dtoh_async",
    ]  # fmt: skip
    driver = _module("pycuda.driver", {n: this[n] for n in driver_names})
    pycuda = _module("pycuda", {"driver": driver})
    for name, module in (("tensorrt", tensorrt), ("pycuda", pycuda), ("pycuda.driver", driver)):
        monkeypatch.setitem(sys.modules, name, module)
    switch(**gpu)
    return GPU


def switch(**gpu: Any) -> None:
    """Change the fake machine (e.g. another TensorRT version) after engines were built."""
    for key, value in gpu.items():
        setattr(GPU, key, value)
    sys.modules["tensorrt"].__version__ = GPU.tensorrt_version  # type: ignore[attr-defined]
