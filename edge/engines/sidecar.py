"""The JSON sidecar beside each TensorRT engine: what it was built from, by what, for which GPU.

A serialized engine runs only with the TensorRT version and on the GPU it was built for, and it
goes stale when its ONNX model changes. The builder writes `NAME.engine.json` next to
`NAME.engine`; the runtime reads it before deserializing, so a stale or foreign engine is rebuilt
or refused with a message instead of failing deep inside TensorRT.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import EdgeError
from edge.files import replaced_on_success

REBUILD_HINT = "rebuild it on this device with `make engines`"


@dataclass(frozen=True)
class Target:
    """The TensorRT version and GPU an engine is built for; it runs only on a matching one."""

    tensorrt: str
    gpu: str
    compute_capability: str

    def describe(self) -> str:
        """E.g. 'TensorRT 10.3.0 on Orin (compute capability 8.7)'."""
        return (
            f"TensorRT {self.tensorrt} on {self.gpu} (compute capability {self.compute_capability})"
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

    def foreign_to(self, current: Target) -> str | None:
        """Why an engine built for `self.target` cannot run on `current`, or None when it can."""
        built = self.target
        if built.tensorrt != current.tensorrt:
            return (
                f"was built by TensorRT {built.tensorrt}, but this is TensorRT {current.tensorrt}"
            )
        if (built.gpu, built.compute_capability) != (current.gpu, current.compute_capability):
            return (
                f"was built for {built.gpu} (compute capability {built.compute_capability}), "
                f"but this GPU is {current.gpu} ({current.compute_capability})"
            )
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


def write_sidecar(engine: Path, sidecar: Sidecar) -> Path:
    """Write the sidecar beside `engine`, replacing an old one only once fully written."""
    path = sidecar_path(engine)
    with replaced_on_success(path) as temporary:
        temporary.write_text(json.dumps(dataclasses.asdict(sidecar), indent=2) + "\n")
    return path
