"""mypy with tensorrt-stubs (TensorRT 10.13) rejects TensorRT 8 calls and checks our TensorRT code.

The TensorRT code cannot run here, so the types are a first line of defence: a call removed in
TensorRT 10 must be a type error, not a crash on the Jetson. Skipped only without mypy.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")

ROOT = Path(__file__).resolve().parent.parent
TENSORRT_8_CALLS = [
    "builder.build_engine(network, config)",
    "config.max_workspace_size = 1 << 30",
    "context.execute_async_v2([0, 0], 0)",
    "engine.get_binding_index('images')",
    "engine.num_bindings",
    "engine.binding_is_input(0)",
    "engine.get_binding_shape(0)",
]
SIGNATURE = (
    "def use(builder: trt.Builder, network: trt.INetworkDefinition, "
    "config: trt.IBuilderConfig, engine: trt.ICudaEngine, context: trt.IExecutionContext) -> None:"
)


def mypy(*paths: Path) -> tuple[str, int]:
    """mypy with the project's settings (strict, stubs, typings/) on the given files."""
    config = str(ROOT / "pyproject.toml")
    out, err, status = api.run(["--config-file", config, "--no-incremental", *map(str, paths)])
    return out + err, status


def test_tensorrt_8_calls_are_type_errors(tmp_path: Path) -> None:
    snippet = tmp_path / "trt8.py"
    body = "".join(f"    {call}\n" for call in TENSORRT_8_CALLS)
    snippet.write_text(f"import tensorrt as trt\n\n\n{SIGNATURE}\n{body}")
    report, status = mypy(snippet)
    failing = {int(n) for n in re.findall(r"trt8\.py:(\d+): error: .*\[attr-defined\]", report)}
    assert status == 1, report
    assert failing == set(range(5, 5 + len(TENSORRT_8_CALLS))), report  # every call, one each


def test_tensorrt_10_calls_are_checked_not_any(tmp_path: Path) -> None:
    snippet = tmp_path / "trt10.py"
    snippet.write_text(
        "import tensorrt as trt\n\n\n"
        f"{SIGNATURE}\n"
        "    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)\n"
        "    ok: bool = context.execute_async_v3(0)\n"
        "    context.set_tensor_address('images', 'not an address')\n"
    )
    report, _ = mypy(snippet)
    errors = re.findall(r"trt10\.py:(\d+): error: (.*)", report)
    assert [int(line) for line, _ in errors] == [7], report  # only the wrong argument type
    assert re.search(r'"set_tensor_address".*"str"', errors[0][1]), report


def test_our_tensorrt_modules_pass_strict_mypy() -> None:
    report, status = mypy(
        ROOT / "edge" / "engines" / "tensorrt.py",
        ROOT / "edge" / "engines" / "sidecar.py",
        ROOT / "edge" / "engines" / "build.py",
    )
    assert status == 0, report
