"""`export evaluate`: score colorizers against the color originals, per image and on average.

Every method sees only the grayscale image. Methods: `grayscale` (the trivial baseline: return
the gray image), `original` (the RGB autoencoder, output upscaled to full size), `ours` (chroma
model + full-resolution luminance) and, when given, `ours_fp16`. Scopes: `tile` (128×128 test
tiles) and `full` (whole photos at their own resolution). Writes metrics.csv (per image),
summary.json and summary.md (averages, FP16 drift) and grid.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from skimage.metrics import structural_similarity
from tqdm import tqdm

from edge import paths
from edge.engines import InferenceEngine, open_engine
from edge.errors import EdgeError
from edge.files import writable_dir
from edge.models.colorizer import Colorizer
from export.onnx_export import onnx_path
from export.tiles import (
    TILE,
    cut_tiles,
    folder_photos,
    read_color_image,
    scaled_for_tiling,
    split_photos,
)

log = logging.getLogger(__name__)
Method = Callable[[np.ndarray], np.ndarray]  # gray uint8 (H, W) -> BGR uint8 (H, W, 3)
GRID_HEIGHT = 192


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images, data range 1."""
    mse = float(np.mean((a.astype(np.float64) / 255 - b.astype(np.float64) / 255) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def scores(result: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MSE (range 0..1), PSNR (dB) and SSIM of a BGR uint8 result against the truth."""
    a, b = result.astype(np.float64) / 255, truth.astype(np.float64) / 255
    return {
        "mse": float(np.mean((a - b) ** 2)),
        "psnr": psnr(result, truth),
        "ssim": float(structural_similarity(a, b, channel_axis=2, data_range=1.0)),
    }


def load_onnx(path: Path) -> InferenceEngine:
    """Open an ONNX model for evaluation; a non-ONNX file gets a one-line error."""
    if path.suffix != ".onnx":
        raise EdgeError(f"{path} is not an ONNX model: convert it with `python -m export onnx`")
    return open_engine(path)


def original_method(engine: InferenceEngine) -> Method:
    """The RGB autoencoder as a method: gray → 128×128 → RGB, resized back to the input size."""
    shape = engine.inputs[0].shape
    if len(shape) != 4 or shape[1:] != (TILE, TILE, 1):
        raise EdgeError(
            f"{engine.path}: input {engine.inputs[0].shape_text()} is not (N, {TILE}, {TILE}, 1)"
        )

    def run(gray: np.ndarray) -> np.ndarray:
        small = cv2.resize(gray, (TILE, TILE), interpolation=cv2.INTER_AREA)
        batch = (small.astype(np.float32) / 255)[np.newaxis, ..., np.newaxis]
        rgb = engine.run({engine.inputs[0].name: batch})[engine.outputs[0].name][0]
        bgr = cv2.resize(rgb[..., ::-1], gray.shape[::-1], interpolation=cv2.INTER_LINEAR)
        return np.clip(bgr * 255 + 0.5, 0, 255).astype(np.uint8)

    return run


def grayscale_baseline(gray: np.ndarray) -> np.ndarray:
    """The trivial colorizer: the gray image itself, as BGR."""
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def _grid(rows: list[list[np.ndarray]], labels: list[str]) -> np.ndarray:
    """Rows of same-height panels, with a header naming each column."""
    scaled = [
        [cv2.resize(p, (round(p.shape[1] * GRID_HEIGHT / p.shape[0]), GRID_HEIGHT)) for p in row]
        for row in rows
    ]
    width = max(p.shape[1] for row in scaled for p in row)
    header = np.full((28, width * len(labels), 3), 255, np.uint8)
    for i, label in enumerate(labels):
        cv2.putText(header, label, (i * width + 6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1)
    body = [
        np.hstack(
            [
                cv2.copyMakeBorder(
                    p, 0, 0, 0, width - p.shape[1], cv2.BORDER_CONSTANT, value=(255, 255, 255)
                )
                for p in row
            ]
        )
        for row in scaled
    ]
    return np.vstack([header, *body])


Row = dict[str, str | float]
Summary = dict[str, dict[str, dict[str, float]]]  # scope -> method -> metric -> mean


def summarize(rows: list[Row], drift_psnr: dict[str, list[float]]) -> Summary:
    """Mean MSE/PSNR/SSIM per scope and method, and the FP16 drift of ours."""
    summary: Summary = {}
    for scope in ("tile", "full"):
        per_method: dict[str, dict[str, float]] = {}
        for method in dict.fromkeys(str(r["method"]) for r in rows if r["scope"] == scope):
            chosen = [r for r in rows if r["scope"] == scope and r["method"] == method]
            per_method[method] = {
                k: float(np.mean([float(r[k]) for r in chosen])) for k in ("mse", "psnr", "ssim")
            }
        if "ours_fp16" in per_method:
            per_method["ours_fp16"]["psnr_vs_fp32"] = float(np.mean(drift_psnr[scope]))
            per_method["ours_fp16"]["delta_psnr"] = (
                per_method["ours_fp16"]["psnr"] - per_method["ours"]["psnr"]
            )
        summary[scope] = per_method
    return summary


def markdown(summary: Summary, count: dict[str, int]) -> str:
    """The summary as a Markdown table."""
    lines = ["| scope | method | MSE | PSNR (dB) | SSIM |", "|---|---|---|---|---|"]
    for scope, methods in summary.items():
        for method, m in methods.items():
            lines.append(
                f"| {scope} ({count[scope]}) | {method} | {m['mse']:.5f} | "
                f"{m['psnr']:.2f} | {m['ssim']:.4f} |"
            )
    for scope, methods in summary.items():
        fp16 = methods.get("ours_fp16")
        if fp16:
            lines.append(
                f"\nFP16 vs FP32 ({scope}): PSNR between outputs {fp16['psnr_vs_fp32']:.2f} dB, "
                f"ΔPSNR against ground truth {fp16['delta_psnr']:+.4f} dB"
            )
    return "\n".join(lines) + "\n"


def evaluate(
    photos: list[Path],
    original: Path,
    ours: Path,
    ours_fp16: Path | None,
    output: Path,
    grid_rows: int = 6,
) -> Summary:
    """Score every method on the photos' test tiles and on the whole photos; write the reports.

    Returns:
        The summary (also written as summary.json and summary.md under `output`).
    """
    output = writable_dir(output)
    images = [read_color_image(p) for p in photos]  # fail on a bad file before any work
    methods: dict[str, Method] = {
        "grayscale": grayscale_baseline,
        "original": original_method(load_onnx(original)),
        "ours": Colorizer(load_onnx(ours)).colorize,
    }
    if ours_fp16 is not None:
        methods["ours_fp16"] = Colorizer(load_onnx(ours_fp16)).colorize
    rows: list[Row] = []
    drift: dict[str, list[float]] = {"tile": [], "full": []}
    grid: list[list[np.ndarray]] = []
    count = {"tile": 0, "full": len(images)}
    for path, image in tqdm(list(zip(photos, images, strict=True)), desc="evaluate", unit="photo"):
        samples = [
            (f"{path.name}#{i}", "tile", t)
            for i, t in enumerate(cut_tiles(scaled_for_tiling(image)))
        ]
        count["tile"] += len(samples)
        for name, scope, truth in [*samples, (path.name, "full", image)]:
            gray = cv2.cvtColor(truth, cv2.COLOR_BGR2GRAY)
            outputs = {method: run(gray) for method, run in methods.items()}
            rows += [
                {"image": name, "scope": scope, "method": m, **scores(out, truth)}
                for m, out in outputs.items()
            ]
            if "ours_fp16" in outputs:
                drift[scope].append(psnr(outputs["ours_fp16"], outputs["ours"]))
            if scope == "full" and len(grid) < grid_rows:
                grid.append([grayscale_baseline(gray), truth, outputs["original"], outputs["ours"]])
    with (output / "metrics.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(
            stream, fieldnames=["image", "scope", "method", "mse", "psnr", "ssim"]
        )
        writer.writeheader()
        writer.writerows(rows)
    summary = summarize(rows, drift)
    (output / "summary.json").write_text(
        json.dumps({"photos": [str(p) for p in photos], "summary": summary}, indent=1)
    )
    (output / "summary.md").write_text(markdown(summary, count))
    labels = ["grayscale input", "color original (truth)", "original method", "ours"]
    cv2.imwrite(str(output / "grid.png"), _grid(grid, labels))
    log.info("wrote %s/{metrics.csv,summary.json,summary.md,grid.png}", output)
    return summary


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `evaluate` command."""
    parser = subparsers.add_parser("evaluate", help="score colorizers on test photos")
    parser.add_argument(
        "--photos", type=Path, help="folder of color photos (default: the test split)"
    )
    parser.add_argument("--original", type=Path, default=onnx_path("rgb"))
    parser.add_argument("--ours", type=Path, default=onnx_path("chroma"))
    parser.add_argument("--ours-fp16", type=Path, default=onnx_path("chroma", fp16=True))
    parser.add_argument("--no-fp16", action="store_true", help="skip the FP16 model")
    parser.add_argument("--output", type=Path, default=paths.OUTPUTS / "evaluation")
    parser.set_defaults(
        func=lambda a: evaluate(
            folder_photos(a.photos) if a.photos else split_photos("test"),
            a.original,
            a.ours,
            None if a.no_fp16 else a.ours_fp16,
            a.output,
        )
    )
