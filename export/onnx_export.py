"""`export onnx`: Keras colorizers → ONNX (tf2onnx), checked against Keras; plus an FP16 variant.

The FP16 model has weights and activations rounded to FP16 (inputs and outputs stay FP32). It
stands in for a TensorRT FP16 engine where TensorRT is absent, to measure the drift FP16 costs.
ONNX Runtime's CPU provider computes it by casting to FP32 inside, so it measures rounding, not
FP16 arithmetic.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import onnx

from edge import paths
from edge.engines import open_engine
from edge.errors import EdgeError
from edge.files import replaced_on_success, sha256, writable_dir
from export.tiles import TILE, split_photos, tiles_from
from export.train import keras_path, training_pairs

log = logging.getLogger(__name__)
OPSET = 17
TOLERANCE = 1e-4  # max |ONNX - Keras| allowed on real validation tiles
ONNX_NAMES = {"rgb": "colorizer_rgb", "chroma": "colorizer"}
# The released general colorizer, committed with its card (docs/colorizer-model-card.md)
SHIPPED_CHROMA = Path(__file__).resolve().parent.parent / "models" / "colorizer_chroma.keras"


def general_keras(models_dir: Path | None = None) -> Path:
    """The general Keras chroma model: the one `export train` made, else the shipped one."""
    trained = keras_path("chroma", models_dir)
    return trained if trained.is_file() else SHIPPED_CHROMA


def onnx_path(kind: str, fp16: bool = False, models_dir: Path | None = None) -> Path:
    """Where `export onnx` writes a model of this kind."""
    suffix = "_fp16" if fp16 else ""
    return (models_dir or paths.MODELS) / f"{ONNX_NAMES[kind]}{suffix}.onnx"


def load_keras(path: Path):  # type: ignore[no-untyped-def]
    """Load a `.keras` model; raises EdgeError naming the file when it is not one."""
    import keras

    if not path.is_file():
        raise EdgeError(f"Keras model not found: {path} (run `python -m export train` first)")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # keras raises ValueError, OSError, zipfile errors...
        raise EdgeError(f"{path} is not a Keras model (.keras): {exc}".splitlines()[0]) from exc


def _set_metadata(model: onnx.ModelProto, values: dict[str, str]) -> None:
    for key, value in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def keras_to_onnx(kind: str, source: Path, target: Path) -> float:
    """Convert with tf2onnx, check against Keras on validation tiles, write `target`.

    Returns:
        The maximum absolute difference between Keras and ONNX Runtime outputs.

    Raises:
        EdgeError: the model is not a colorizer of `kind`, or ONNX differs by more than TOLERANCE.
    """
    import tensorflow as tf
    import tf2onnx

    model = load_keras(source)
    if tuple(model.input_shape[1:]) != (TILE, TILE, 1):
        raise EdgeError(
            f"{source}: input shape {model.input_shape} is not a colorizer's "
            f"(None, {TILE}, {TILE}, 1)"
        )
    spec = (tf.TensorSpec((None, TILE, TILE, 1), tf.float32, name=model.inputs[0].name),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET)
    _set_metadata(
        proto,
        {
            "edge.model": f"colorizer-{kind}",
            "edge.input_size": str(TILE),
            "edge.source_sha256": sha256(source),
        },
    )
    inputs, _ = training_pairs(kind, tiles_from(split_photos("validation"), TILE, 32, seed=0))
    with replaced_on_success(target) as temporary:
        onnx.save(proto, temporary)
        with open_engine(temporary) as engine:
            got = engine.run({engine.inputs[0].name: inputs})[engine.outputs[0].name]
        difference = float(np.abs(got - model.predict(inputs, verbose=0)).max())
        if difference > TOLERANCE:
            raise EdgeError(
                f"ONNX output differs from Keras by {difference:.2e} > {TOLERANCE:.0e} for "
                f"{source}: not written"
            )
    log.info("%s -> %s (max |ONNX - Keras| = %.2e)", source.name, target, difference)
    return difference


def fp16_path(source: Path) -> Path:
    """Where the FP16 copy of an ONNX model lives: beside it, `NAME_fp16.onnx`."""
    return source.with_name(f"{source.stem}_fp16.onnx")


def to_fp16(source: Path, target: Path) -> Path:
    """Write an FP16 copy of an ONNX model: FP16 weights and activations, FP32 inputs/outputs.

    Used for every model (colorizer, detector, embedder); metadata such as class names is kept.

    Returns:
        `target`.
    """
    import warnings

    from onnxconverter_common import float16

    with warnings.catch_warnings():  # one warning per tiny weight clamped to FP16's range
        warnings.simplefilter("ignore", UserWarning)
        model = float16.convert_float_to_float16(onnx.load(source), keep_io_types=True)
    _match_float_casts(model)
    _set_metadata(model, {"edge.precision": "fp16"})
    with replaced_on_success(target) as temporary:
        onnx.save(model, temporary)
        open_engine(temporary).close()  # fail here, not later, if ONNX Runtime rejects it
    log.info("%s -> %s (FP16)", source.name, target)
    return target


def _match_float_casts(model: onnx.ModelProto) -> None:
    """Make each `Cast(to=FLOAT)` the converter left in an FP16 graph cast to FLOAT16, as its
    output's type already says (onnxconverter-common keeps the attribute: a dynamic-batch
    YOLOv8 computes its anchors from shapes through such casts, and ONNX Runtime refuses the
    mismatch)."""
    types = {value.name: value.type.tensor_type.elem_type for value in model.graph.value_info}
    for node in model.graph.node:
        if node.op_type != "Cast":
            continue
        to = next(a for a in node.attribute if a.name == "to")
        if to.i == onnx.TensorProto.FLOAT and types.get(node.output[0]) == onnx.TensorProto.FLOAT16:
            to.i = onnx.TensorProto.FLOAT16


def export_chroma(source: Path, models_dir: Path | None = None) -> list[Path]:
    """Export our Keras chroma model `source` to `colorizer.onnx` and its FP16 copy in
    `models_dir`; return the written paths."""
    models_dir = writable_dir(models_dir or paths.MODELS)
    target = onnx_path("chroma", models_dir=models_dir)
    keras_to_onnx("chroma", source, target)
    return [target, to_fp16(target, onnx_path("chroma", fp16=True, models_dir=models_dir))]


def export_all(models_dir: Path | None = None) -> list[Path]:
    """Export both trained colorizers in `models_dir` to ONNX and ours also to FP16; return the
    written paths."""
    models_dir = writable_dir(models_dir or paths.MODELS)
    original = onnx_path("rgb", models_dir=models_dir)
    keras_to_onnx("rgb", keras_path("rgb", models_dir), original)
    return [original, *export_chroma(keras_path("chroma", models_dir), models_dir)]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `onnx` command."""
    parser = subparsers.add_parser("onnx", help="export the trained colorizers to ONNX (+FP16)")
    parser.add_argument("--models", type=Path, default=paths.MODELS, help="models folder")
    parser.add_argument(
        "--chroma",
        type=Path,
        help="export only this Keras chroma model (e.g. the shipped "
        f"models/{SHIPPED_CHROMA.name}) into the models folder",
    )
    parser.set_defaults(
        func=lambda a: export_chroma(a.chroma, a.models) if a.chroma else export_all(a.models)
    )
