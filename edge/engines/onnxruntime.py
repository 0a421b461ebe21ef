"""ONNX Runtime backend: the default where TensorRT is absent (CPU).

INT8 (`cpu` flavour) on x86 is only as accurate as the instruction set it was gated on: without
VNNI (AVX2, or AVX-512 without VNNI), ONNX Runtime's U8S8 kernels add pairs of u8×s8 products
in 16 bits (`VPMADDUBSW`), which saturate; with 7-bit weights (`reduce_range`) or unsigned
weights (U8U8) they cannot. `python -m export quantize` records the instruction set a model is
for (ISA_KEY): "vnni" (8-bit signed weights: exact only where the CPU has VNNI, or is not x86)
or "avx2" (exact on every CPU). A "vnni" model is refused on an x86 CPU without VNNI, or run
with a warning line where the config allows it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge.engines.base import InferenceEngine, TensorInfo
from edge.engines.precision import FLAVOUR_KEY, QUANTIZE_HINT, precision_of
from edge.errors import EdgeError

if TYPE_CHECKING:
    import onnxruntime as ort

log = logging.getLogger(__name__)

ISA_KEY = "edge.int8_isa"
ISAS = ("vnni", "avx2")
CPUINFO = Path("/proc/cpuinfo")
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni"})
# What to do with a `cpu`-flavour INT8 model made for VNNI on an x86 CPU without it.
FOREIGN_ISA = ("refuse", "warn")

# ONNX Runtime reports element types as strings such as "tensor(float16)".
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def _tensor_info(arg: ort.NodeArg) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    if arg.type not in _ORT_DTYPES:
        raise EdgeError(f"tensor '{arg.name}' has unsupported element type {arg.type}")
    return TensorInfo(arg.name, shape, np.dtype(_ORT_DTYPES[arg.type]))


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags, from the first `flags` line of /proc/cpuinfo (none where the
    file or the line is absent, e.g. on ARM, whose /proc/cpuinfo has `Features`)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_isa(flags: frozenset[str]) -> str:
    """The INT8 instruction set of a CPU with these flags: "avx2" for x86 without VNNI (its U8S8
    sums saturate), else "vnni" (VNNI, or not x86)."""
    return "avx2" if "avx2" in flags and not flags & VNNI_FLAGS else "vnni"


def check_isa(
    metadata: Mapping[str, str], name: str, flags: frozenset[str], foreign_isa: str = "refuse"
) -> None:
    """Refuse (or, with `foreign_isa` "warn", log one warning line for) a `cpu`-flavour INT8
    model made for VNNI on a CPU whose flags lack it. A model without the record (made before
    it existed) has 8-bit weights: it counts as made for VNNI.

    Raises:
        EdgeError: one line naming the problem and the fix.
    """
    if foreign_isa not in FOREIGN_ISA:
        raise EdgeError(f"unknown foreign_isa '{foreign_isa}': choose one of {FOREIGN_ISA}")
    if precision_of(metadata) != "int8" or metadata.get(FLAVOUR_KEY) != "cpu":
        return
    if metadata.get(ISA_KEY, "vnni") != "vnni" or cpu_isa(flags) == "vnni":
        return
    problem = (
        f"{name} is INT8 for CPUs with VNNI, and this one has none (its INT8 sums saturate "
        "here, so the accuracy gate does not hold)"
    )
    if foreign_isa == "warn":
        log.warning('%s; running it anyway (foreign_isa = "warn")', problem)
        return
    raise EdgeError(
        f"{problem}: {QUANTIZE_HINT} on this machine (it picks the recipe for this CPU, or "
        '--isa avx2 elsewhere), or set pipeline.int8_foreign_isa = "warn" to run it anyway'
    )


class OnnxRuntimeEngine(InferenceEngine):
    """An ONNX model run by ONNX Runtime's CPU provider.

    Args:
        path: the `.onnx` model.
        threads: intra-op threads (0: ONNX Runtime's default).
        foreign_isa: a `cpu`-flavour INT8 model made for VNNI on a CPU without it: "refuse" or
            "warn" (`check_isa`).
        flags: the CPU's flags (default: this CPU's, `cpu_flags`).
    """

    def __init__(
        self,
        path: Path,
        threads: int = 0,
        foreign_isa: str = "refuse",
        flags: frozenset[str] | None = None,
    ) -> None:
        import onnxruntime as ort  # here, so that the config can import FOREIGN_ISA cheaply

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        # Idle worker threads must not spin: the detector, embedder and colorizer sessions share
        # the CPU cores, and a spinning session slows the others (embedder 137-173 -> 76-78 ms
        # per frame with spinning off, measured with `python -m benchmarks.track` under load).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises several unrelated types for a bad file
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc)
            raise EdgeError(
                f"cannot load ONNX model {path}: {first_line} (re-export it with `make models`)"
            ) from exc
        self.path = path
        self.inputs = tuple(_tensor_info(a) for a in self._session.get_inputs())
        self.outputs = tuple(_tensor_info(a) for a in self._session.get_outputs())
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        check_isa(self.metadata, path.name, cpu_flags() if flags is None else flags, foreign_isa)

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [t.name for t in self.outputs]
        results = self._session.run(names, dict(feeds))
        return dict(zip(names, results, strict=True))
