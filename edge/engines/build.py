"""TensorRT engines from the ONNX models, built on the Jetson that runs them.

TensorRT 10 API: `OnnxParser`, FP16, INT8 by explicit quantization, a workspace memory-pool
limit, a persistent timing cache (rebuilds take seconds), one optimization profile for dynamic
axes, optional DLA core with GPU fallback, optional FP32 for named layers that overflow in FP16.
Each engine gets a JSON sidecar (`edge.engines.sidecar`); an engine whose sidecar matches the
current ONNX, TensorRT, GPU and build options is skipped unless `--force`.

DLA runs only FP16 (or INT8) layers of static shape: a profile's min, opt and max must be equal,
and with GPU fallback TensorRT silently moves every other layer to the GPU. So `--dla` with
`--fp32` is refused, a model whose batch range is not fixed is built for the GPU with a warning,
and the sidecar records how many layers TensorRT's builder places on DLA.

INT8 (`--int8`): the detector and ReID engines are built from their QDQ models
(`NAME_int8.onnx`, `python -m export quantize --flavour tensorrt`) by explicit quantization:
the INT8 flag lets TensorRT run the Q/DQ-wrapped layers in INT8, and FP16 the layers left in
float; no calibrator (implicit quantization is deprecated since TensorRT 10.1). A QDQ model
without a passed accuracy gate in its metadata, or quantized for ONNX Runtime's CPU (unsigned,
asymmetric), is refused before parsing. That gate measured the QDQ graph on ONNX Runtime, float
parts in FP32; so the built engine, opened as the runtime opens it, is measured again on the
same held-out frames against the same FP32 reference (`export.gate`: the gate's own code,
imported only here, which needs no training package), and its result goes into the sidecar. An
engine that fails is refused: not written, and an older engine of that name removed.

On the Jetson: `python -m edge engines` (`make engines`); the device needs no training packages.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import paths
from edge.engines.base import InferenceEngine
from edge.engines.precision import (
    GATE_KEY,
    MEASURED_QDQ,
    check_for_tensorrt,
    failed_checks,
    precision_of,
    precision_path,
)
from edge.engines.sidecar import Sidecar, Target, read_sidecar, sidecar_path, write_engine
from edge.engines.tensorrt import TensorRTEngine, current_target, dims, import_tensorrt, numpy_dtype
from edge.errors import EdgeError
from edge.files import replaced_on_success, sha256, writable_dir

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

Batch = tuple[int, int, int]
# Measures an opened INT8 engine against FP32: the gate's record (`export.gate.engine_gate`).
EngineGate = Callable[[InferenceEngine], dict[str, Any]]
# The ReID profile's largest batch. Activation memory grows with the batch and the backend keeps
# what its largest call needed, so a frame with more crops is split (the embedder splits by the
# engine's largest batch) instead of holding memory for 100-256 crops for good.
REID_MAX_BATCH = 32
LAYER_NAMES_HINT = (
    "TensorRT names a layer after its ONNX node, or node_of_<first output> for a node without a "
    "name, and one node can become several layers: read the names in TensorRT's verbose build "
    "log (`python -m edge engines --only MODEL --force --verbose`, lines 'Registering layer: NAME')"
)


@dataclass(frozen=True)
class ModelSpec:
    """A model the runtime runs: its ONNX file, the batch range (min, opt, max) it serves and
    the `export quantize --model` that makes an INT8 model of it ("": none)."""

    name: str
    onnx: str
    batch: Batch
    quantized: str = ""


MODELS = (
    ModelSpec("colorizer", paths.COLORIZER_FILE, (1, 1, 4)),
    ModelSpec("detector", paths.DETECTOR_FILE, (1, 1, 1), quantized="detector"),
    ModelSpec("reid", paths.EMBEDDER_FILE, (1, 8, REID_MAX_BATCH), quantized="embedder"),
)
UNMEASURED = "its INT8 accuracy was measured on the ONNX QDQ graph only, not through the engine"


def reid_batch(max_detections: int) -> Batch:
    """The ReID profile: up to one crop per detection the detector keeps (detector.max_detections),
    at most REID_MAX_BATCH: the embedder splits larger frames into several calls."""
    high = min(max_detections, REID_MAX_BATCH)
    return (1, min(8, high), high)


@dataclass(frozen=True)
class BuildOptions:
    """How to build one engine; recorded in its sidecar, so a change triggers a rebuild."""

    fp16: bool = True
    int8: bool = False  # from a QDQ model (explicit quantization)
    workspace_mib: int = 1024
    dla_core: int | None = None
    fp32_layers: tuple[str, ...] = ()
    batch: Batch = (1, 1, 1)

    def flags(self) -> dict[str, Any]:
        """The options as JSON values, as the sidecar stores them."""
        values: dict[str, Any] = json.loads(json.dumps(asdict(self)))
        values["gpu_fallback"] = self.dla_core is not None
        return values

    def check(self) -> None:
        """Raises EdgeError for options that cannot work together."""
        if self.dla_core is not None and not (self.fp16 or self.int8):
            raise EdgeError(
                "DLA runs FP16 or INT8 layers only, so an FP32 DLA engine would run entirely on "
                "the GPU: drop --fp32 or --dla"
            )


def _load_onnx(path: Path) -> Any:
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError, whose package has no types here
        raise EdgeError(f"{path} is not an ONNX model: re-export it with `make models`") from exc


def onnx_metadata(path: Path) -> dict[str, str]:
    """The ONNX model's metadata (class names, input size...), for the sidecar and profiles.

    Raises:
        EdgeError: the file is not an ONNX model.
    """
    return {entry.key: entry.value for entry in _load_onnx(path).metadata_props}


def has_dynamic_batch(path: Path) -> bool:
    """Whether an input of the ONNX model has a dynamic batch (axis 0).

    Raises:
        EdgeError: the file is not an ONNX model.
    """
    graph = _load_onnx(path).graph
    weights = {i.name for i in graph.initializer}
    for value in graph.input:
        shape = value.type.tensor_type.shape.dim
        if value.name not in weights and shape and not shape[0].HasField("dim_value"):
            return True
    return False


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


def _keep_fp32(network: trt.INetworkDefinition, wanted: set[str], label: str) -> None:
    """Mark the named layers (and their outputs) FP32.

    Raises:
        EdgeError: a name matches no layer, saying where the names can be read.
    """
    import tensorrt as trt

    names = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        names.append(layer.name)
        if layer.name in wanted:
            layer.precision = trt.DataType.FLOAT
            for output in range(layer.num_outputs):
                layer.set_output_type(output, trt.DataType.FLOAT)
    missing = sorted(wanted - set(names))
    if missing:
        similar = sorted({m for name in missing for m in difflib.get_close_matches(name, names)})
        hint = f"; similar names: {', '.join(similar)}" if similar else ""
        raise EdgeError(
            f"no layer named {', '.join(missing)} in {label}'s network: "
            f"{LAYER_NAMES_HINT.replace('MODEL', label)}{hint}"
        )


def _configure(
    builder: trt.Builder,
    network: trt.INetworkDefinition,
    options: BuildOptions,
    metadata: dict[str, str],
    label: str,
) -> trt.IBuilderConfig:
    """Builder config: precision, workspace, profile, DLA and FP32 layers."""
    import tensorrt as trt

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    if options.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if options.int8:  # Q/DQ layers give the scales: no calibrator
        config.set_flag(trt.BuilderFlag.INT8)
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
            if options.dla_core is not None and not low == opt == high:
                raise EdgeError(
                    f"{label}: DLA needs static shapes, but input '{tensor.name}' spans {low} to "
                    f"{high}: give it a fixed batch (--batch {label}:N,N,N) or build without --dla"
                )
            shapes = (trt.Dims(list(s)) for s in (low, opt, high))
            profile.set_shape(tensor.name, *shapes)
        config.add_optimization_profile(profile)
    if options.dla_core is not None:
        if not 0 <= options.dla_core < builder.num_DLA_cores:
            raise EdgeError(
                f"DLA core {options.dla_core} does not exist: this device has "
                f"{builder.num_DLA_cores} DLA cores (the Orin Nano has none): build without --dla"
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)  # layers DLA cannot run stay on the GPU
    if options.fp32_layers:
        _keep_fp32(network, set(options.fp32_layers), label)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    return config


def _placement(
    config: trt.IBuilderConfig, network: trt.INetworkDefinition, options: BuildOptions, label: str
) -> dict[str, int]:
    """How many layers the builder puts on DLA (can_run_on_DLA), logged; {} for a GPU build."""
    import tensorrt as trt

    if options.dla_core is None:
        return {}
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    on_dla = sum(
        1
        for layer in layers
        if config.get_device_type(layer) == trt.DeviceType.DLA and config.can_run_on_DLA(layer)
    )
    if on_dla == 0:
        log.warning(
            "%s: no layer can run on DLA core %d: the whole engine runs on the GPU",
            label,
            options.dla_core,
        )
    else:
        log.info(
            "%s: %d of %d layers can run on DLA core %d, the others on the GPU",
            label,
            on_dla,
            len(layers),
            options.dla_core,
        )
    return {"layers": len(layers), "dla_layers": on_dla}


def _timing_cache(config: trt.IBuilderConfig, cache: Path) -> None:
    """Attach the persistent timing cache, or an empty one when TensorRT refuses it.

    A damaged file makes create_timing_cache fail (TensorRT logs an error; the binding returns
    None or raises), and set_timing_cache returns False for a cache of another device.
    """
    blob = cache.read_bytes() if cache.is_file() else b""
    if blob:
        try:
            timing = config.create_timing_cache(blob)
        except (RuntimeError, TypeError, ValueError):
            timing = None
        if timing is not None and config.set_timing_cache(timing, ignore_mismatch=False):
            return
        log.warning("TensorRT refused the timing cache %s: starting an empty one", cache)
    if not config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False):
        raise EdgeError("TensorRT refused even an empty timing cache: see its messages above")


def build_engine_file(
    onnx: Path,
    engine: Path,
    options: BuildOptions,
    cache: Path,
    target: Target,
    verbose: bool = False,
    name: str = "",
    gate: EngineGate | None = None,
) -> Sidecar:
    """Build `engine` from `onnx`, update the timing cache, then write the engine and its sidecar
    together.

    A failed build leaves the previous engine and sidecar as they were.

    Args:
        verbose: TensorRT's verbose log on stderr (it names every layer the parser creates).
        name: the model's name in messages (default: the ONNX file's stem).
        gate: for an INT8 engine, the accuracy gate to measure through it before it is written;
            None: its sidecar records the QDQ model's gate (measured MEASURED_QDQ).

    Raises:
        EdgeError: TensorRT cannot parse the model (with the node and message it gives), an
            option does not fit the model or device, the build fails, or the INT8 engine fails
            `gate` (then no engine of that name is left).
    """
    import tensorrt as trt

    options.check()
    started = time.monotonic()
    writable_dir(cache.parent)
    metadata = onnx_metadata(onnx)
    check_for_tensorrt(metadata, onnx.name)
    if options.int8 != (precision_of(metadata) == "int8"):
        raise EdgeError(
            f"{onnx.name} is {'not ' if options.int8 else ''}an INT8 (QDQ) model: build INT8 "
            "engines from the models of `python -m export quantize --flavour tensorrt` "
            "(`--int8`), the others without it"
        )
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: always explicit batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx)):
        raise EdgeError(f"TensorRT cannot parse {onnx.name}: {parser_errors(parser)}")
    label = name or onnx.stem
    config = _configure(builder, network, options, metadata, label)
    placement = _placement(config, network, options, label)
    _timing_cache(config, cache)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EdgeError(f"TensorRT could not build {onnx.name}: see its messages above")
    with replaced_on_success(cache) as temporary:
        temporary.write_bytes(config.get_timing_cache().serialize())
    inputs, outputs = _network_io(network)
    blob = bytes(plan)
    # The builder's memory goes back before an INT8 engine runs (an 8 GB Orin shares it).
    del plan, config, parser, network, builder
    # The QDQ model's gate (checked above: passed), replaced by the engine's own when measured.
    qdq_gate = {**json.loads(metadata[GATE_KEY]), "measured": MEASURED_QDQ} if options.int8 else {}
    sidecar = Sidecar(
        onnx_file=onnx.name,
        onnx_sha256=sha256(onnx),
        target=target,
        precision="int8" if options.int8 else "fp16" if options.fp16 else "fp32",
        flags=options.flags(),
        inputs=inputs,
        outputs=outputs,
        build_seconds=round(time.monotonic() - started, 3),
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        onnx_metadata=metadata,
        placement=placement,
        int8_gate=qdq_gate,
    )
    if options.int8 and gate is not None:
        sidecar = replace(sidecar, int8_gate=_measure(blob, engine, sidecar, gate))
        _refuse_failed(engine, sidecar.int8_gate)
    write_engine(engine, blob, sidecar)
    return sidecar


def _measure(plan: bytes, engine: Path, sidecar: Sidecar, gate: EngineGate) -> dict[str, Any]:
    """Open the plan as the runtime does and measure `gate` through it, from a file beside
    `engine` that the runtime never opens."""
    trial = engine.with_name(f".{engine.name}.trial")
    try:
        trial.write_bytes(plan)
        with TensorRTEngine(trial, sidecar) as opened:
            return gate(opened)
    finally:
        trial.unlink(missing_ok=True)


def _refuse_failed(engine: Path, gate: dict[str, Any]) -> None:
    """Remove any engine of this name and raise when the gate measured through it failed.

    Raises:
        EdgeError: one line naming the failed checks and the fixes.
    """
    failed = failed_checks(gate)
    if failed is None:
        return
    sidecar_path(engine).unlink(missing_ok=True)  # first, as write_engine does
    engine.unlink(missing_ok=True)
    raise EdgeError(
        f"{engine.name} failed its INT8 accuracy gate through TensorRT ({failed} on "
        f"{gate['frames']} held-out frames), though its ONNX QDQ graph passed: refused, no "
        f'{engine.name} left; run this model in FP16 (precision "fp16", `make engines`) or '
        "recalibrate it (`python -m export quantize` with another --method or --float, or more "
        "--frames)"
    )


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
    problem = sidecar.foreign_to(target) or sidecar.target.tuned_elsewhere(target)
    if problem:
        return f"it {problem}"
    if sidecar.flags != options.flags():
        return "build options changed"
    if sidecar.int8_unmeasured():
        return UNMEASURED
    return None


def timing_cache_path(target: Target) -> Path:
    """One timing cache per TensorRT version and device (GPU kind, memory, board: its identity):
    TensorRT refuses a cache from another device, and tactics differ between Orin modules."""
    board = re.sub(r"[^a-z0-9]+", "-", target.board.lower()).strip("-")[:48]
    device = f"sm{target.compute_capability}-{target.memory_gib}gib"
    return paths.CACHE / f"tensorrt-{target.tensorrt}-{device}{'-' + board if board else ''}.timing"


def _model_options(
    spec: ModelSpec, onnx: Path, options: BuildOptions, batch: Batch, step: str
) -> BuildOptions:
    """The options for one model: its batch range, and DLA only where its shapes are static."""
    chosen = replace(options, batch=batch)
    if options.dla_core is not None and batch[0] != batch[2] and has_dynamic_batch(onnx):
        log.warning(
            "%s: DLA needs static shapes, but %s serves batches %d to %d: built for the GPU "
            "(for DLA give it a fixed batch, e.g. --batch %s:%d,%d,%d)",
            step,
            spec.name,
            batch[0],
            batch[2],
            spec.name,
            batch[1],
            batch[1],
            batch[1],
        )
        chosen = replace(chosen, dla_core=None)
    return chosen


def _engine_gate(spec: ModelSpec, onnx: Path) -> EngineGate:
    """The accuracy gate of the INT8 engine of `spec` built from `onnx` (its QDQ model), with
    the FP32 models beside it as the reference; its frames are read before the build.

    Raises:
        EdgeError: the QDQ model is refused, or its gate cannot be measured again here.
    """
    from export.gate import engine_gate  # the gate's own code (see the module docstring)

    metadata = onnx_metadata(onnx)
    check_for_tensorrt(metadata, onnx.name)  # its own refusal first, before reading frames
    models_dir = onnx.parent
    fp32, detector = models_dir / spec.onnx, models_dir / paths.DETECTOR_FILE
    return engine_gate(spec.quantized, fp32, detector, metadata, onnx.name)


def build_all(
    models_dir: Path,
    options: BuildOptions,
    only: tuple[str, ...] = (),
    batches: dict[str, Batch] | None = None,
    force: bool = False,
    max_detections: int | None = None,
    verbose: bool = False,
    cameras: int = 1,
) -> list[Path]:
    """Build the engines of the models found in `models_dir`, skipping up-to-date ones.

    Args:
        models_dir: folder with the ONNX models; engines and sidecars are written beside them.
        options: build options (the batch range is taken per model).
        only: model names to build (default: all of MODELS).
        batches: batch ranges overriding the models' defaults, by model name.
        force: rebuild even up-to-date engines.
        max_detections: the runtime's detector.max_detections: the ReID profile's largest batch
            covers it, up to REID_MAX_BATCH; None: the ReID model's default range.
        verbose: TensorRT's verbose log (layer names for --fp32-layer).
        cameras: the runtime's number of cameras: a detector with a dynamic batch gets the
            profile (1, cameras, cameras), its frames batched one per camera.

    Returns:
        The engine files that are now up to date.

    Raises:
        EdgeError: TensorRT is missing or older than 10, a name is unknown, the options do not
            fit together, no model is found, a build fails, or an INT8 engine fails its
            accuracy gate measured through it or cannot be measured (its FP32 reference or the
            footage of its QDQ model's gate is missing or changed).
    """
    import_tensorrt()
    options.check()
    names = {spec.name for spec in MODELS}
    unknown = set(only) - names | set(batches or {}) - names
    if unknown:
        raise EdgeError(f"unknown model {', '.join(sorted(unknown))}: choose from {sorted(names)}")
    specs = [spec for spec in MODELS if not only or spec.name in only]
    defaults = {spec.name: spec.batch for spec in MODELS}
    if max_detections is not None:
        defaults["reid"] = reid_batch(max_detections)
    defaults["detector"] = (1, cameras, cameras)
    defaults.update(batches or {})
    writable_dir(models_dir)
    target = current_target()
    cache = timing_cache_path(target)
    log.info("building for %s", target.describe())
    ready = []
    for number, spec in enumerate(specs, 1):
        step = f"[{number}/{len(specs)}] {spec.name}"
        int8 = options.int8 and bool(spec.quantized)
        onnx = precision_path(models_dir / spec.onnx, "int8" if int8 else "fp32")
        if not onnx.is_file():
            log.warning("%s: %s not found, skipped (export it first)", step, onnx)
            continue
        engine = onnx.with_suffix(".engine")
        model_options = replace(
            _model_options(spec, onnx, options, defaults[spec.name], step), int8=int8
        )
        reason = "--force" if force else rebuild_reason(engine, onnx, model_options, target)
        if reason is None:
            log.info("%s: %s is up to date, skipped", step, engine.name)
        else:
            log.info("%s: building %s from %s (%s)", step, engine.name, onnx.name, reason)
            gate = _engine_gate(spec, onnx) if int8 else None
            sidecar = build_engine_file(
                onnx, engine, model_options, cache, target, verbose, spec.name, gate
            )
            log.info("%s: built %s in %.1f s", step, engine.name, sidecar.build_seconds)
            if gate is not None:
                log.info(
                    "%s: %s passed its INT8 accuracy gate through TensorRT: %s",
                    step,
                    engine.name,
                    ", ".join(f"{c['name']} {c['value']:.4f}" for c in sidecar.int8_gate["checks"]),
                )
        ready.append(engine)
    if not ready:
        raise EdgeError(f"no ONNX model found in {models_dir}: run `make models` first")
    return ready
