"""TensorRT engines from the ONNX models, built on the Jetson that runs them.

TensorRT 10 API: `OnnxParser`, FP16, a workspace memory-pool limit, a persistent timing cache
(rebuilds take seconds), one optimization profile for dynamic axes, optional DLA core with GPU
fallback, optional FP32 for named layers that overflow in FP16. Each engine gets a JSON sidecar
(`edge.engines.sidecar`); an engine whose sidecar matches the current ONNX, TensorRT, GPU and build
options is skipped unless `--force`.

On the Jetson: `python -m edge engines` (`make engines`); the device needs no training packages.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import paths
from edge.engines.sidecar import Sidecar, Target, read_sidecar, write_sidecar
from edge.engines.tensorrt import current_target, dims, import_tensorrt, numpy_dtype
from edge.errors import EdgeError
from edge.files import replaced_on_success, sha256, writable_dir

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

Batch = tuple[int, int, int]


@dataclass(frozen=True)
class ModelSpec:
    """A model the runtime runs: its ONNX file and the batch range (min, opt, max) it serves."""

    name: str
    onnx: str
    batch: Batch


MODELS = (
    ModelSpec("colorizer", paths.COLORIZER_FILE, (1, 1, 4)),
    ModelSpec("detector", paths.DETECTOR_FILE, (1, 1, 1)),
    ModelSpec("reid", paths.EMBEDDER_FILE, (1, 8, 32)),
)


@dataclass(frozen=True)
class BuildOptions:
    """How to build one engine; recorded in its sidecar, so a change triggers a rebuild."""

    fp16: bool = True
    workspace_mib: int = 1024
    dla_core: int | None = None
    fp32_layers: tuple[str, ...] = ()
    batch: Batch = (1, 1, 1)

    def flags(self) -> dict[str, Any]:
        """The options as JSON values, as the sidecar stores them."""
        values: dict[str, Any] = json.loads(json.dumps(asdict(self)))
        values["gpu_fallback"] = self.dla_core is not None
        return values


def onnx_metadata(path: Path) -> dict[str, str]:
    """The ONNX model's metadata (class names, input size...), for the sidecar and profiles.

    Raises:
        EdgeError: the file is not an ONNX model.
    """
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError, whose package has no types here
        raise EdgeError(f"{path} is not an ONNX model: re-export it with `make models`") from exc
    return {entry.key: entry.value for entry in model.metadata_props}


def parser_errors(parser: trt.OnnxParser) -> str:
    """The parser's errors, each with the ONNX node (index, name, operator) TensorRT blames."""
    messages = []
    for i in range(parser.num_errors):
        error: trt.ParserError = parser.get_error(i)
        messages.append(
            f"node {error.node()} ({error.node_name() or '?'}, {error.node_operator() or '?'}): "
            f"{error.desc()}"
        )
    return "; ".join(messages) or "no error reported"


def profile_shapes(
    name: str, shape: tuple[int, ...], batch: Batch, metadata: dict[str, str]
) -> tuple[tuple[int, ...], ...]:
    """Min, opt and max shapes of a dynamic input: the batch axis spans `batch`; a dynamic
    height and width (axes 2, 3 of an image) take the size stored in the model's metadata.

    Raises:
        EdgeError: another axis is dynamic, or the image size is not in the metadata.
    """
    size = json.loads(metadata.get("input_size", metadata.get("imgsz", "null")))
    shapes: list[list[int]] = [[], [], []]
    for axis, extent in enumerate(shape):
        if extent >= 0:
            chosen = (extent,) * 3
        elif axis == 0:
            chosen = batch
        elif len(shape) == 4 and axis in (2, 3) and isinstance(size, list) and len(size) == 2:
            chosen = (int(size[axis - 2]),) * 3
        else:
            raise EdgeError(
                f"input '{name}' {shape} has dynamic axis {axis} and no size for it in the "
                "model's metadata: export the model with a fixed size"
            )
        for shape_of, value in zip(shapes, chosen, strict=True):
            shape_of.append(value)
    return tuple(tuple(s) for s in shapes)


def _network_io(network: trt.INetworkDefinition) -> tuple[list[dict[str, Any]], ...]:
    """Names, shapes (-1: dynamic) and dtypes of the network's inputs and outputs."""

    def describe(tensor: trt.ITensor) -> dict[str, Any]:
        return {
            "name": tensor.name,
            "shape": list(dims(tensor.shape)),
            "dtype": numpy_dtype(tensor.dtype).name,
        }

    inputs = [describe(network.get_input(i)) for i in range(network.num_inputs)]
    outputs = [describe(network.get_output(i)) for i in range(network.num_outputs)]
    return inputs, outputs


def _configure(
    builder: trt.Builder,
    network: trt.INetworkDefinition,
    options: BuildOptions,
    metadata: dict[str, str],
) -> trt.IBuilderConfig:
    """Builder config: precision, workspace, profile, DLA and FP32 layers."""
    import tensorrt as trt

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    if options.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    dynamic = [
        network.get_input(i)
        for i in range(network.num_inputs)
        if -1 in dims(network.get_input(i).shape)
    ]
    if dynamic:
        profile = builder.create_optimization_profile()
        for tensor in dynamic:
            low, opt, high = profile_shapes(
                tensor.name, dims(tensor.shape), options.batch, metadata
            )
            shapes = (trt.Dims(list(s)) for s in (low, opt, high))
            profile.set_shape(tensor.name, *shapes)
        config.add_optimization_profile(profile)
    if options.dla_core is not None:
        if not 0 <= options.dla_core < builder.num_DLA_cores:
            raise EdgeError(
                f"DLA core {options.dla_core} does not exist: this device has "
                f"{builder.num_DLA_cores} DLA cores"
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)  # layers DLA cannot run stay on the GPU
    if options.fp32_layers:
        wanted = set(options.fp32_layers)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.name in wanted:
                wanted.discard(layer.name)
                layer.precision = trt.DataType.FLOAT
                for output in range(layer.num_outputs):
                    layer.set_output_type(output, trt.DataType.FLOAT)
        if wanted:
            raise EdgeError(f"no layer named {', '.join(sorted(wanted))} in the network")
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    return config


def build_engine_file(
    onnx: Path, engine: Path, options: BuildOptions, cache: Path, target: Target
) -> Sidecar:
    """Build `engine` from `onnx`, update the timing cache, write the sidecar.

    A failed build leaves the previous engine and sidecar as they were.

    Raises:
        EdgeError: TensorRT cannot parse the model (with the node and message it gives), an
            option does not fit the model or device, or the build fails.
    """
    import tensorrt as trt

    started = time.monotonic()
    writable_dir(cache.parent)
    metadata = onnx_metadata(onnx)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx)):
        raise EdgeError(f"TensorRT cannot parse {onnx.name}: {parser_errors(parser)}")
    config = _configure(builder, network, options, metadata)
    timing = config.create_timing_cache(cache.read_bytes() if cache.is_file() else b"")
    config.set_timing_cache(timing, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EdgeError(f"TensorRT could not build {onnx.name}: see its messages above")
    with replaced_on_success(engine) as temporary:
        temporary.write_bytes(plan)
    with replaced_on_success(cache) as temporary:
        temporary.write_bytes(config.get_timing_cache().serialize())
    inputs, outputs = _network_io(network)
    sidecar = Sidecar(
        onnx_file=onnx.name,
        onnx_sha256=sha256(onnx),
        target=target,
        precision="fp16" if options.fp16 else "fp32",
        flags=options.flags(),
        inputs=inputs,
        outputs=outputs,
        build_seconds=round(time.monotonic() - started, 3),
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        onnx_metadata=metadata,
    )
    write_sidecar(engine, sidecar)
    return sidecar


def rebuild_reason(engine: Path, onnx: Path, options: BuildOptions, target: Target) -> str | None:
    """Why `engine` must be (re)built, or None when its sidecar matches everything."""
    if not engine.is_file():
        return "no engine yet"
    try:
        sidecar = read_sidecar(engine)
    except EdgeError as exc:
        return str(exc)
    if sidecar is None:
        return "no sidecar"
    if sidecar.stale_for(sha256(onnx)):
        return f"{onnx.name} changed"
    problem = sidecar.foreign_to(target)
    if problem:
        return f"it {problem}"
    if sidecar.flags != options.flags():
        return "build options changed"
    return None


def timing_cache_path(target: Target) -> Path:
    """One timing cache per TensorRT version and GPU kind: TensorRT rejects foreign caches."""
    return paths.CACHE / f"tensorrt-{target.tensorrt}-sm{target.compute_capability}.timing"


def build_all(
    models_dir: Path,
    options: BuildOptions,
    only: tuple[str, ...] = (),
    batches: dict[str, Batch] | None = None,
    force: bool = False,
) -> list[Path]:
    """Build the engines of the models found in `models_dir`, skipping up-to-date ones.

    Args:
        models_dir: folder with the ONNX models; engines and sidecars are written beside them.
        options: build options (the batch range is taken per model).
        only: model names to build (default: all of MODELS).
        batches: batch ranges overriding the models' defaults, by model name.
        force: rebuild even up-to-date engines.

    Returns:
        The engine files that are now up to date.

    Raises:
        EdgeError: TensorRT is missing, a name is unknown, no model is found, or a build fails.
    """
    import_tensorrt()
    names = {spec.name for spec in MODELS}
    unknown = set(only) - names | set(batches or {}) - names
    if unknown:
        raise EdgeError(f"unknown model {', '.join(sorted(unknown))}: choose from {sorted(names)}")
    specs = [spec for spec in MODELS if not only or spec.name in only]
    writable_dir(models_dir)
    target = current_target()
    cache = timing_cache_path(target)
    log.info("building for %s", target.describe())
    ready = []
    for number, spec in enumerate(specs, 1):
        step = f"[{number}/{len(specs)}] {spec.name}"
        onnx = models_dir / spec.onnx
        if not onnx.is_file():
            log.warning("%s: %s not found, skipped (export it first)", step, onnx)
            continue
        engine = onnx.with_suffix(".engine")
        model_options = replace(options, batch=(batches or {}).get(spec.name, spec.batch))
        reason = "--force" if force else rebuild_reason(engine, onnx, model_options, target)
        if reason is None:
            log.info("%s: %s is up to date, skipped", step, engine.name)
        else:
            log.info("%s: building %s from %s (%s)", step, engine.name, onnx.name, reason)
            sidecar = build_engine_file(onnx, engine, model_options, cache, target)
            log.info("%s: built %s in %.1f s", step, engine.name, sidecar.build_seconds)
        ready.append(engine)
    if not ready:
        raise EdgeError(f"no ONNX model found in {models_dir}: run `make models` first")
    return ready
