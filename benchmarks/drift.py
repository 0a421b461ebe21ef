"""`python -m benchmarks drift`: what FP16 costs against FP32, on the same inputs, per model.

- colorizer: PSNR/SSIM of the FP16 output against the FP32 output, and ΔPSNR/ΔSSIM of FP16 minus
  FP32 against the color original, on the colorizer's test split and on sample-video frames;
- detector: FP16 detections matched to FP32 ones (precision/recall at IoU 0.5, mean IoU, score
  change) and mAP@0.5 of FP16 taking FP32 as the reference;
- embedder: cosine similarity of FP16 and FP32 embeddings of the same boxes.

FP16 is the TensorRT FP16 engine where TensorRT is importable (the engine beside each `.onnx`,
see `make engines`), else the FP16 ONNX model (`NAME_fp16.onnx`, made here when missing or older
than the FP32 model; ONNX Runtime rounds weights and activations to FP16 but computes in FP32).
Thresholds come from a TOML file (`benchmarks/drift.toml`); the command exits 2 when one is
exceeded, after writing every result, so it can gate a deployment.

`--precision int8` holds the INT8 detector and embedder (`NAME_int8.onnx` from `export quantize`,
or its TensorRT engine where TensorRT is here) against FP32 the same way, with the limits of the
quantizer's accuracy gate (`benchmarks/drift_int8.toml`); the colorizer is not quantized.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.machine import tensorrt_version
from benchmarks.report import (
    Report,
    add_output_arguments,
    arguments,
    machine_line,
    plot_series,
    require_model,
    table,
)
from edge import paths
from edge.detections import Detections
from edge.engines import InferenceEngine, open_engine
from edge.engines.precision import precision_path
from edge.errors import EdgeError
from edge.models.colorizer import Colorizer
from edge.models.detector import Detector
from edge.models.embedder import Embedder
from edge.video.files import read_frames
from export.agreement import detector_agreement, embedder_cosines
from export.freshness import reuse_or_export
from export.tiles import read_color_image, split_photos

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 on JetPack 6
    import tomli as tomllib

log = logging.getLogger(__name__)
THRESHOLDS = {"fp16": Path(__file__).with_name("drift.toml"),
              "int8": Path(__file__).with_name("drift_int8.toml")}  # fmt: skip
# Threshold key -> (result path, comparison): "max_abs" fails when |value| > limit, "min" when
# value < limit.
CHECKS = {
    "colorizer_max_abs_delta_psnr_db": (("colorizer", "delta_psnr"), "max_abs"),
    "camera_colorizer_max_abs_delta_psnr_db": (("camera_colorizer", "delta_psnr"), "max_abs"),
    "detector_min_recall": (("detector", "recall"), "min"),
    "detector_min_precision": (("detector", "precision"), "min"),
    "embedder_min_cosine": (("embedder", "mean_cosine"), "min"),
}


def load_thresholds(path: Path) -> dict[str, float]:
    """The [thresholds] table of a TOML file, every key known and numeric."""
    try:
        table_ = tomllib.loads(path.read_text()).get("thresholds", {})
    except FileNotFoundError as exc:
        raise EdgeError(f"thresholds file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise EdgeError(f"thresholds file {path} is not valid TOML: {exc}") from exc
    for key, value in table_.items():
        if key not in CHECKS:
            raise EdgeError(f"unknown threshold '{key}' in {path} (known: {', '.join(CHECKS)})")
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise EdgeError(f"threshold '{key}' in {path}: expected a number, got {value!r}")
    return {key: float(value) for key, value in table_.items()}


def open_pair(
    model: Path, stage: str, precision: str = "fp16"
) -> tuple[InferenceEngine, InferenceEngine, str]:
    """FP32 (ONNX Runtime) and FP16 (or INT8) engines of a model, and what the other one is.

    INT8 is the model `export quantize` wrote beside the FP32 one (`NAME_int8.onnx`), or its
    TensorRT engine where TensorRT is here; it is measured whatever its gate says.
    """
    require_model(stage, model)
    fp32 = open_engine(model, "onnxruntime")
    if precision == "int8":
        int8 = precision_path(model, "int8")
        if not int8.is_file():
            raise EdgeError(f"{stage} INT8 model not found: {int8} (run `make int8` first)")
        if tensorrt_version():
            return fp32, open_engine(int8, "tensorrt", gated=False), "TensorRT INT8 engine"
        engine = open_engine(int8, "onnxruntime", gated=False)
        return fp32, engine, f"INT8 ONNX ({int8.name}, ONNX Runtime)"
    if tensorrt_version():
        return fp32, open_engine(model, "tensorrt"), "TensorRT FP16 engine"
    # export.onnx_export (like export.evaluate) loads TensorFlow: only when a model is there.
    from export.onnx_export import fp16_path, to_fp16

    target = fp16_path(model)
    fp16 = reuse_or_export(target, model, lambda: to_fp16(model, target))
    return fp32, open_engine(fp16, "onnxruntime"), f"FP16 ONNX ({fp16.name}, ONNX Runtime)"


def colorizer_drift(
    model: Path, images: Iterable[tuple[str, str, np.ndarray]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score FP32 and FP16 colorizations of (name, set, BGR truth) images; summary and rows."""
    fp32_engine, fp16_engine, kind = open_pair(model, "colorizer")
    fp32, fp16 = Colorizer(fp32_engine), Colorizer(fp16_engine)
    from export.evaluate import scores

    rows = []
    with fp32_engine, fp16_engine:  # closed when the comparison is done
        for name, subset, truth in images:
            gray = cv2.cvtColor(truth, cv2.COLOR_BGR2GRAY)
            out32, out16 = fp32.colorize(gray), fp16.colorize(gray)
            s32, s16, between = scores(out32, truth), scores(out16, truth), scores(out16, out32)
            rows.append({
                "image": name, "set": subset,
                "psnr_fp32": s32["psnr"], "psnr_fp16": s16["psnr"],
                "ssim_fp32": s32["ssim"], "ssim_fp16": s16["ssim"],
                "delta_psnr": s16["psnr"] - s32["psnr"], "delta_ssim": s16["ssim"] - s32["ssim"],
                "psnr_fp16_vs_fp32": between["psnr"], "ssim_fp16_vs_fp32": between["ssim"],
            })  # fmt: skip
    summary: dict[str, Any] = {"fp16": kind, "images": len(rows)}
    for subset in sorted({r["set"] for r in rows}):
        chosen = [r for r in rows if r["set"] == subset]
        summary[subset] = {
            key: float(np.mean([r[key] for r in chosen]))
            for key in ("psnr_fp32", "psnr_fp16", "delta_psnr", "delta_ssim",
                        "psnr_fp16_vs_fp32", "ssim_fp16_vs_fp32")
        }  # fmt: skip
    summary["delta_psnr"] = float(np.mean([r["delta_psnr"] for r in rows]))
    summary["max_abs_delta_psnr"] = float(max(abs(r["delta_psnr"]) for r in rows))
    return summary, rows


def detector_drift(
    model: Path, frames: list[np.ndarray], conf: float, precision: str = "fp16"
) -> tuple[dict[str, Any], list[dict[str, Any]], list[Detections]]:
    """Match FP16 (or INT8) detections to FP32 ones on each frame; summary, per-frame rows, FP32
    boxes."""
    fp32_engine, other_engine, kind = open_pair(model, "detector", precision)
    with fp32_engine, other_engine:  # closed when the comparison is done
        summary, rows, references = detector_agreement(
            Detector(fp32_engine, conf=conf), Detector(other_engine, conf=conf), frames, precision
        )
    return {precision: kind, **summary}, rows, references


def embedder_drift(
    model: Path, frames: list[np.ndarray], boxes: list[Detections], precision: str = "fp16"
) -> tuple[dict[str, Any], list[float]]:
    """Cosine similarity of FP16 (or INT8) and FP32 embeddings of the FP32 detector's boxes."""
    fp32_engine, other_engine, kind = open_pair(model, "embedder", precision)
    with fp32_engine, other_engine:  # closed when the comparison is done
        cosines = embedder_cosines(Embedder(fp32_engine), Embedder(other_engine), frames, boxes)
    summary = {
        precision: kind,
        "boxes": len(cosines),
        "mean_cosine": float(np.mean(cosines)),
        "min_cosine": float(np.min(cosines)),
    }
    return summary, cosines


def check(results: Mapping[str, Any], thresholds: Mapping[str, float]) -> dict[str, Any]:
    """Each threshold beside its measured value and whether it holds."""
    verdicts = {}
    for key, limit in thresholds.items():
        (section, name), kind = CHECKS[key]
        if section not in results:
            continue
        value = float(results[section][name])
        ok = abs(value) <= limit if kind == "max_abs" else value >= limit
        verdicts[key] = {"value": value, "limit": limit, "ok": bool(ok)}
    return verdicts


def video_frames(video: Path, count: int, step: int) -> list[np.ndarray]:
    """Every `step`-th frame of a video, `count` of them."""
    frames = list(islice(read_frames(video), 0, count * step, step))
    if not frames:
        raise EdgeError(f"{video}: no frames read")
    return frames


def markdown(data: Mapping[str, Any]) -> str:
    """The drift report as Markdown."""
    label = data["config"].get("precision", "fp16")
    name = label.upper()
    lines = [f"# {name} drift against FP32", "", machine_line(data), ""]
    for key, title in (("colorizer", "Colorizer"), ("camera_colorizer", "Adapted colorizer")):
        colorizer = data.get(key)
        if not colorizer:
            continue
        lines.append(f"{title} ({colorizer['images']} images; FP16 = {colorizer['fp16']}):\n")
        subsets = [k for k, v in colorizer.items() if isinstance(v, dict)]
        lines.append(table(
            ["set", "PSNR FP32", "PSNR FP16", "ΔPSNR dB", "ΔSSIM", "PSNR FP16 vs FP32",
             "SSIM FP16 vs FP32"],
            [[s, colorizer[s]["psnr_fp32"], colorizer[s]["psnr_fp16"],
              f"{colorizer[s]['delta_psnr']:+.4f}", f"{colorizer[s]['delta_ssim']:+.5f}",
              colorizer[s]["psnr_fp16_vs_fp32"], colorizer[s]["ssim_fp16_vs_fp32"]]
             for s in subsets],
        ))  # fmt: skip
    detector = data.get("detector")
    if detector:
        lines.append(f"Detector ({detector['frames']} frames; {name} = {detector[label]}):\n")
        lines.append(table(
            ["boxes FP32", f"boxes {name}", "precision", "recall", "mean IoU", "mean abs Δscore",
             "mAP@0.5 vs FP32"],
            [[detector["boxes_fp32"], detector[f"boxes_{label}"], detector["precision"],
              detector["recall"], detector["mean_iou"], detector["mean_abs_score_change"],
              detector["map50_vs_fp32"]]],
        ))  # fmt: skip
    embedder = data.get("embedder")
    if embedder:
        lines.append(f"Embedder ({embedder['boxes']} boxes; {name} = {embedder[label]}):\n")
        cosines = [f"{embedder['mean_cosine']:.5f}", f"{embedder['min_cosine']:.5f}"]
        lines.append(table(["mean cosine", "min cosine"], [cosines]))
    verdicts = data.get("thresholds", {})
    if verdicts:
        lines.append("Thresholds:\n")
        lines.append(table(
            ["check", "measured", "limit", "holds"],
            [[k, f"{v['value']:.5f}", v["limit"], "yes" if v["ok"] else "**no**"]
             for k, v in verdicts.items()],
        ))  # fmt: skip
    return "\n".join(lines)


def run_drift(args: argparse.Namespace) -> dict[str, Any]:
    """The `drift` command: each model's FP16 (or INT8) drift, the plot, then the threshold
    gate. INT8 covers the detector and embedder (the colorizer is not quantized)."""
    label = args.precision
    thresholds = load_thresholds(args.thresholds or THRESHOLDS[label])
    config = arguments(args)
    report = Report(args.name, args.output, {**config, "threshold_values": thresholds})
    photos = split_photos("test")[: args.photos]
    frames = video_frames(args.video, args.frames, args.step)
    images = [(p.name, "test split", read_color_image(p)) for p in photos]
    images += [(f"{args.video.name}#{i * args.step}", "video", f) for i, f in enumerate(frames)]
    panels: dict[str, list[float]] = {}
    results: dict[str, Any] = {}
    try:
        if label == "fp16":
            results["colorizer"], rows = colorizer_drift(args.colorizer, images)
            report.add("colorizer", {**results["colorizer"], "per_image": rows})
            panels["colorizer ΔPSNR dB"] = [r["delta_psnr"] for r in rows]
            panels["colorizer PSNR FP16 vs FP32"] = [r["psnr_fp16_vs_fp32"] for r in rows]
        # A colorizer adapted to the video's scene
        if label == "fp16" and args.camera_colorizer is not None:
            video_images = [image for image in images if image[1] == "video"]
            results["camera_colorizer"], rows = colorizer_drift(args.camera_colorizer, video_images)
            report.add("camera_colorizer", {**results["camera_colorizer"], "per_image": rows})
            panels["adapted colorizer ΔPSNR dB"] = [r["delta_psnr"] for r in rows]
        results["detector"], frame_rows, boxes = detector_drift(
            args.detector, frames, args.conf, label
        )
        report.add("detector", {**results["detector"], "per_frame": frame_rows})
        panels["detector matched / FP32 boxes"] = [
            r["matched"] / r["fp32"] if r["fp32"] else 1.0 for r in frame_rows
        ]
        results["embedder"], cosines = embedder_drift(args.embedder, frames, boxes, label)
        report.add("embedder", {**results["embedder"], "per_box_cosine": cosines})
        panels["embedder cosine per box"] = cosines
    finally:
        if panels:
            title = f"{label.upper()} against FP32 per item"
            plot_series(panels, title, report.output / f"{args.name}.png")
        report.add("thresholds", check(results, thresholds))
        report.save(markdown(report.data))
    report.finish(markdown(report.data))
    failed = [f"{k} {v['value']:.4f} (limit {v['limit']})"
              for k, v in report.data["thresholds"].items() if not v["ok"]]  # fmt: skip
    if failed:
        raise EdgeError(f"{label.upper()} drift over thresholds: {'; '.join(failed)}")
    return results


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `drift` command."""
    parser = subparsers.add_parser("drift", help="FP16 (or INT8) against FP32 for each model")
    parser.add_argument(
        "--precision",
        choices=sorted(THRESHOLDS),
        default="fp16",
        help="what to hold against FP32: FP16, or the INT8 models `export quantize` wrote "
        "(detector and embedder)",
    )
    parser.add_argument("--colorizer", type=Path, default=paths.MODELS / paths.COLORIZER_FILE)
    parser.add_argument(
        "--camera-colorizer", type=Path, help="also a colorizer adapted to --video (export adapt)"
    )
    parser.add_argument("--detector", type=Path, default=paths.MODELS / paths.DETECTOR_FILE)
    parser.add_argument("--embedder", type=Path, default=paths.MODELS / paths.EMBEDDER_FILE)
    parser.add_argument("--video", type=Path, default=paths.DATA / "opencv" / "vtest.avi")
    parser.add_argument("--frames", type=int, default=40, help="video frames used")
    parser.add_argument("--step", type=int, default=19, help="take every STEP-th video frame")
    parser.add_argument("--photos", type=int, default=None, help="test-split photos (all)")
    parser.add_argument("--conf", type=float, default=0.25, help="detector confidence")
    parser.add_argument(
        "--thresholds", type=Path, help="thresholds TOML (default: drift.toml, drift_int8.toml)"
    )
    add_output_arguments(parser, "drift")
    parser.set_defaults(func=run_drift)
