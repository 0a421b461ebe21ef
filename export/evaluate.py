"""`export evaluate`: score colorizers against the color originals, per image and on average.

Every method sees only the grayscale image. Methods: `grayscale` (the trivial baseline: return
the gray image), `original` (the RGB autoencoder, output upscaled to full size), `ours` (chroma
model + full-resolution luminance). Every photo is scored whole,
as the runtime sees a frame; photos larger than a 1920-pixel camera frame are first scaled down
to one (INTER_AREA). Photo sets: by default the held-out packages (`test`), the outside check
(`outside`) and the earlier test photos (`previous_test`), see `colorizer_split.json`; or one
folder of the user's photos. Writes metrics.csv (per image), summary.json and summary.md (means,
the worst photo's PSNR against its gray input) and a grid per set
(grid_<set>.png; grid.png is the first set's).

There is no tile scope any more: the runtime never sees a 128×128 crop of a photo, it squashes
whole frames, so scores on tiles measured a use that does not happen.
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

from edge import paths
from edge.engines import InferenceEngine, open_engine
from edge.errors import EdgeError
from edge.files import writable_dir
from edge.models.colorizer import Colorizer
from export.onnx_export import onnx_path
from export.tiles import (
    REPORT_SETS,
    SPLITS,
    TILE,
    folder_photos,
    read_color_image,
    shrunk,
    split_photos,
)

log = logging.getLogger(__name__)
Method = Callable[[np.ndarray], np.ndarray]  # gray uint8 (H, W) -> BGR uint8 (H, W, 3)
GRID_HEIGHT = 192
MAX_SIDE = 1920  # longer side of the photos as scored: a Full HD camera frame
DEFAULT_SETS = ("test", "outside", "previous_test")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images, data range 1."""
    mse = float(np.mean((a.astype(np.float64) / 255 - b.astype(np.float64) / 255) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def scores(result: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MSE (range 0..1), PSNR (dB) and SSIM of a BGR uint8 result against the truth."""
    # Imported here: `export quantize` (run on the Jetson) imports this module through
    # export.adapt, and requirements-jetson.txt has no scikit-image.
    from skimage.metrics import structural_similarity

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


def as_camera_frame(image: np.ndarray) -> np.ndarray:
    """The photo scaled down (INTER_AREA) so that its longer side is at most MAX_SIDE."""
    return shrunk(image, MAX_SIDE / max(image.shape[:2]))


def photo_label(path: Path) -> str:
    """A photo's name in reports: its path under the data folder, else its file name."""
    return path.relative_to(paths.DATA).as_posix() if path.is_relative_to(paths.DATA) else path.name


def grayscale_baseline(gray: np.ndarray) -> np.ndarray:
    """The trivial colorizer: the gray image itself, as BGR."""
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def picture_grid(rows: list[list[np.ndarray]], labels: list[str]) -> np.ndarray:
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
Summary = dict[str, dict[str, dict[str, float | str]]]  # set -> method -> metric -> value


def summarize(rows: list[Row]) -> Summary:
    """Per set and method: mean MSE/PSNR/SSIM and the worst photo's PSNR minus its gray input's.

    FP16 drift is measured by `python -m benchmarks drift`, not here."""
    summary: Summary = {}
    for photo_set in dict.fromkeys(str(r["set"]) for r in rows):
        in_set = [r for r in rows if r["set"] == photo_set]
        gray = {r["image"]: float(r["psnr"]) for r in in_set if r["method"] == "grayscale"}
        per_method: dict[str, dict[str, float | str]] = {}
        for method in dict.fromkeys(str(r["method"]) for r in in_set):
            chosen = [r for r in in_set if r["method"] == method]
            means: dict[str, float | str] = {
                k: float(np.mean([float(r[k]) for r in chosen])) for k in ("mse", "psnr", "ssim")
            }
            deltas = {str(r["image"]): float(r["psnr"]) - gray[r["image"]] for r in chosen}
            worst = min(deltas, key=deltas.__getitem__)
            means |= {"worst_delta_psnr": deltas[worst], "worst_image": worst}
            per_method[method] = means
        summary[photo_set] = per_method
    return summary


def markdown(summary: Summary, count: dict[str, int]) -> str:
    """The summary as a Markdown table."""
    lines = [
        "| set | method | MSE | PSNR (dB) | Δ vs gray (dB) | worst photo Δ (dB) | SSIM |",
        "|---|---|---|---|---|---|---|",
    ]
    for photo_set, methods in summary.items():
        gray_psnr = float(methods["grayscale"]["psnr"])
        for method, m in methods.items():
            worst = (
                f"{float(m['worst_delta_psnr']):+.2f} ({m['worst_image']})"
                if method != "grayscale"
                else ""
            )
            lines.append(
                f"| {photo_set} ({count[photo_set]}) | {method} | {float(m['mse']):.5f} | "
                f"{float(m['psnr']):.2f} | {float(m['psnr']) - gray_psnr:+.2f} | {worst} | "
                f"{float(m['ssim']):.4f} |"
            )
    return "\n".join(lines) + "\n"


def evaluate(
    photo_sets: dict[str, list[Path]],
    original: Path | None,
    ours: Path,
    output: Path,
    grid_rows: int = 16,
) -> Summary:
    """Score every method on each set's whole photos; write the reports.

    Args:
        photo_sets: set name -> its photos.
        original: the original method's ONNX model; None leaves that method out.
        grid_rows: at most this many photos of each set in its grid.

    Returns:
        The summary (also written as summary.json and summary.md under `output`).
    """
    from tqdm import tqdm

    output = writable_dir(output)
    for photos in photo_sets.values():  # fail on a bad file before any work
        for path in photos:
            read_color_image(path)
    methods: dict[str, Method] = {"grayscale": grayscale_baseline}
    if original is not None:
        methods["original"] = original_method(load_onnx(original))
    methods["ours"] = Colorizer(load_onnx(ours)).colorize
    shown = [m for m in methods if m != "grayscale"]
    rows: list[Row] = []
    grids: dict[str, list[list[np.ndarray]]] = {name: [] for name in photo_sets}
    todo = [(name, path) for name, photos in photo_sets.items() for path in photos]
    for photo_set, path in tqdm(todo, desc="evaluate", unit="photo"):
        truth = as_camera_frame(read_color_image(path))
        gray = cv2.cvtColor(truth, cv2.COLOR_BGR2GRAY)
        outputs = {method: run(gray) for method, run in methods.items()}
        rows += [
            {"image": photo_label(path), "set": photo_set, "method": m, **scores(out, truth)}
            for m, out in outputs.items()
        ]
        if len(grids[photo_set]) < grid_rows:
            grids[photo_set].append([grayscale_baseline(gray), truth, *(outputs[m] for m in shown)])
    with (output / "metrics.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(
            stream, fieldnames=["image", "set", "method", "mse", "psnr", "ssim"]
        )
        writer.writeheader()
        writer.writerows(rows)
    summary = summarize(rows)
    sets_written = {name: [str(p) for p in photos] for name, photos in photo_sets.items()}
    (output / "summary.json").write_text(
        json.dumps({"photos": sets_written, "summary": summary}, indent=1)
    )
    count = {name: len(photos) for name, photos in photo_sets.items()}
    (output / "summary.md").write_text(markdown(summary, count))
    names = {"original": "original method", "ours": "ours"}
    labels = ["grayscale input", "color original (truth)", *(names[m] for m in shown)]
    for index, (photo_set, rows) in enumerate(grids.items()):
        picture = picture_grid(rows, labels)
        cv2.imwrite(str(output / f"grid_{photo_set}.png"), picture)
        if index == 0:
            cv2.imwrite(str(output / "grid.png"), picture)
    log.info("wrote %s/{metrics.csv,summary.json,summary.md,grid*.png}", output)
    return summary


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `evaluate` command."""
    parser = subparsers.add_parser("evaluate", help="score colorizers on test photos")
    parser.add_argument(
        "--photos", type=Path, help="folder of color photos (instead of the photo sets)"
    )
    parser.add_argument(
        "--sets",
        default=",".join(DEFAULT_SETS),
        help=f"sets (colorizer_split.json): {', '.join(SPLITS + REPORT_SETS)}",
    )
    parser.add_argument("--original", type=Path, default=onnx_path("rgb"))
    parser.add_argument(
        "--no-original",
        action="store_true",
        help="leave the original method out (only ours and the gray input are scored)",
    )
    parser.add_argument("--ours", type=Path, default=onnx_path("chroma"))
    parser.add_argument("--output", type=Path, default=paths.OUTPUTS / "evaluation")
    parser.set_defaults(
        func=lambda a: evaluate(
            {"photos": folder_photos(a.photos)}
            if a.photos
            else {name: split_photos(name) for name in a.sets.split(",")},
            None if a.no_original else a.original,
            a.ours,
            a.output,
        )
    )
