"""The JSON sidecar beside each TensorRT engine: what it was built from, by what, for which GPU.

A serialized engine runs only with the TensorRT version and on the GPU it was built for, and it
goes stale when its ONNX model changes. The builder writes `NAME.engine.json` next to
`NAME.engine`; the runtime reads it before deserializing, so a stale or foreign engine is rebuilt
or refused with a message instead of failing deep inside TensorRT.

Every Orin module reports the GPU name "Orin" and compute capability 8.7, and TensorRT
deserializes a plan on any GPU of the same architecture (at best with a warning), although an
engine's tactics are chosen for the exact GPU that built it. So the target also records what
tells the modules apart and does not change while one runs: the memory, the board model from
the device tree and the number of DLA cores. The number of multiprocessors (SMs) is recorded
but is not part of the identity: nvpmodel power modes write a TPC power-gating mask
(`TPC_PG_MASK`), and whether CUDA then reports fewer SMs is not documented (unverified), so a
power mode must not make every engine foreign. An SM count other than the builder's is a
warning at open and a reason for `make engines` to rebuild for it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.engines.precision import MEASURED_ENGINE
from edge.errors import EdgeError

REBUILD_HINT = "rebuild it on this device with `make engines`"


@dataclass(frozen=True)
class Target:
    """The TensorRT version and GPU an engine is built for; it runs only on a matching one.

    Fields absent from an older sidecar read as 0 or "", so such an engine counts as built for
    another device and is rebuilt once.
    """

    tensorrt: str
    gpu: str
    compute_capability: str
    multiprocessors: int = 0
    memory_gib: int = 0
    board: str = ""  # /proc/device-tree/model on a Jetson; "" elsewhere
    dla_cores: int = 0

    def device(self) -> str:
        """E.g. 'Orin (compute capability 8.7, 8 SMs, 7 GiB, NVIDIA Jetson Orin Nano ...)'."""
        details = [f"compute capability {self.compute_capability}"]
        details += [f"{self.multiprocessors} SMs", f"{self.memory_gib} GiB"]
        if self.board:
            details.append(self.board)
        return f"{self.gpu} ({', '.join(details)})"

    def describe(self) -> str:
        """E.g. 'TensorRT 10.3.0 on Orin (compute capability 8.7, 16 SMs, 61 GiB, ...)'."""
        return f"TensorRT {self.tensorrt} on {self.device()}"

    def identity(self) -> tuple[str, str, int, str]:
        """What must match for an engine built on one device to be run on another: what tells
        the GPUs and Orin modules apart and no power mode changes (not the SM count)."""
        return (self.gpu, self.compute_capability, self.memory_gib, self.board)

    def tuned_elsewhere(self, current: Target) -> str | None:
        """Why an engine built for this target runs, but was tuned for another SM count than
        `current`'s (e.g. under another power mode), or None."""
        if self.multiprocessors == current.multiprocessors:
            return None
        return (
            f"was tuned for {self.multiprocessors} SMs, but this GPU reports "
            f"{current.multiprocessors} now (a power mode that gates TPCs?)"
        )


@dataclass(frozen=True)
class Sidecar:
    """Everything recorded about one built engine."""

    onnx_file: str
    onnx_sha256: str
    target: Target
    precision: str
    flags: dict[str, Any]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    build_seconds: float
    built_at: str
    onnx_metadata: dict[str, str] = field(default_factory=dict)
    # Where the network's layers run: {"layers": n, "dla_layers": d} for a DLA build, as
    # TensorRT's builder reports it (IBuilderConfig.can_run_on_DLA); {} for a GPU build.
    placement: dict[str, int] = field(default_factory=dict)
    # An INT8 engine's accuracy gate ({} for the others): measured through the engine itself on
    # the device (measured MEASURED_ENGINE), else its QDQ model's, copied (MEASURED_QDQ);
    # sidecars of older versions have none.
    int8_gate: dict[str, Any] = field(default_factory=dict)

    def int8_unmeasured(self) -> bool:
        """Whether this is an INT8 engine whose own accuracy was never measured: its gate ran
        on the QDQ graph only (ONNX Runtime, float parts in FP32), not through the engine."""
        return self.precision == "int8" and self.int8_gate.get("measured") != MEASURED_ENGINE

    def foreign_to(self, current: Target) -> str | None:
        """Why an engine built for `self.target` cannot run on `current`, or None when it can."""
        built = self.target
        if built.tensorrt != current.tensorrt:
            return (
                f"was built by TensorRT {built.tensorrt}, but this is TensorRT {current.tensorrt}"
            )
        dla_core = self.flags.get("dla_core")
        if dla_core is not None and int(dla_core) >= current.dla_cores:
            cores = f"{current.dla_cores} DLA cores" if current.dla_cores else "no DLA"
            return (
                f"was built for DLA core {dla_core}, but this device has {cores} "
                "(the Orin Nano has none; build it without --dla)"
            )
        if built.identity() != current.identity():
            return f"was built for {built.device()}, but this GPU is {current.device()}"
        return None

    def stale_for(self, onnx_sha256: str) -> bool:
        """Whether the engine was built from a different ONNX file than the one hashed."""
        return self.onnx_sha256 != onnx_sha256


def sidecar_path(engine: Path) -> Path:
    """`NAME.engine` → `NAME.engine.json`."""
    return engine.with_name(engine.name + ".json")


def read_sidecar(engine: Path) -> Sidecar | None:
    """The engine's sidecar, or None when it has none.

    Raises:
        EdgeError: the sidecar exists but is not one this version wrote.
    """
    path = sidecar_path(engine)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        target = Target(**record.pop("target"))
        return Sidecar(target=target, **record)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise EdgeError(f"{path} is not a valid engine sidecar ({exc}): {REBUILD_HINT}") from exc


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def write_engine(engine: Path, plan: bytes, sidecar: Sidecar) -> Path:
    """Write the engine and its sidecar together, replacing the old pair only once both are
    fully written.

    Both go to temporary files first. Then the old sidecar is removed before the engine is
    replaced, and the new sidecar follows: an interruption in between leaves an engine without a
    sidecar (which is rebuilt, and never run against an ONNX model), never a new engine with the
    old sidecar.

    Returns:
        The sidecar's path.
    """
    path = sidecar_path(engine)
    engine_partial, sidecar_partial = _partial(engine), _partial(path)
    try:
        engine_partial.write_bytes(plan)
        sidecar_partial.write_text(json.dumps(dataclasses.asdict(sidecar), indent=2) + "\n")
        path.unlink(missing_ok=True)
        engine_partial.replace(engine)
        sidecar_partial.replace(path)
    finally:
        engine_partial.unlink(missing_ok=True)
        sidecar_partial.unlink(missing_ok=True)
    return path
