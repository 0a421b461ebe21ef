"""`export adapt`: fit the general chroma colorizer to one camera's scene from its daytime video.

A fixed camera sees the same scene every day; by day, in color, it shows the very colors the
model must put back at night. `adapt` learns them from color frames sampled from the earlier part
of a video (or of a folder of frames, sorted by name = time order):

1. targets: for each frame, the chroma from which the runtime rebuilds it best (`chroma_target`),
   which is not quite the frame's own Lab a, b;
2. a scene map: the general model is followed by a learned 128×128 chroma map (`SceneChroma`),
   set to the mean of what the general model misses on those frames — the fixed scene's colors,
   which a general model can only guess from texture;
3. a short fine-tuning of the whole (Adam, cosine decay, MSE) for what moves: people, shadows.

It then scores the adapted model on the later part (`--holdout`: a split in time, never random
frames) seen as gray, exactly as the runtime colorizes a frame: the exported ONNX model run by
`edge.models.colorizer.Colorizer` (the whole frame squashed to the model's input, its chroma
upsampled onto the frame's own full-resolution luminance); the general model and the gray input
likewise. It writes the ONNX model and its FP16 copy, with the provenance and the scores in their
metadata, plus a report (`NAME.report.json`, `NAME.report.md`) and a picture grid
(`NAME.grid.png`: gray | adapted | general | truth on a few held-out frames) beside them. All or
nothing: a failure leaves the files of an earlier run as they were.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import math
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx

from edge.engines import open_engine
from edge.errors import EdgeError
from edge.files import replaced_on_success, sha256, writable_dir
from edge.models.colorizer import (
    AB_SCALE,
    COLORED_SHARE,
    Colorizer,
    colored_share,
    lightness,
    to_lab,
)
from edge.video.files import frame_rate, read_frames
from export.evaluate import grayscale_baseline, picture_grid, psnr
from export.onnx_export import fp16_path, general_keras, keras_to_onnx, load_keras, to_fp16
from export.tiles import TILE, folder_photos, read_color_image, runtime_sample

log = logging.getLogger(__name__)
MIN_LEARN_FRAMES = 8  # frames before the split needed to learn from
MIN_HELD_OUT_FRAMES = 2  # frames after it needed to score on
DEFAULT_FRAMES = 200  # consecutive frames differ little: 200 of 400 learn as much as all 400
DEFAULT_TEST_FRAMES = 1000
DEFAULT_HOLDOUT = 0.2
GRID_FRAMES = 4
TARGET_STEPS = 2  # Gauss-Newton steps fitting each chroma target to the runtime's rebuild
TANH_REACH = 0.99  # targets stay within what the model's tanh output reaches
_STEP = 0.5  # Lab units: the finite difference of the targets' Jacobian
_DAMPING = 1e-6  # solvable where chroma hardly changes the color (black, white pixels)
METHODS = ("gray", "general", "adapted", "adapted_fp16")


@dataclass(frozen=True)
class Recipe:
    """How the general model is fine-tuned: a scene map, then Adam with cosine decay, MSE."""

    epochs: int = 5
    batch_size: int = 16
    learning_rate: float = 1e-3
    seed: int = 0

    def check(self) -> None:
        """Raise EdgeError naming the first out-of-range value."""
        if self.epochs < 0:
            raise EdgeError(f"--epochs must be at least 0 (the scene map alone), got {self.epochs}")
        if self.batch_size < 1:
            raise EdgeError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise EdgeError(f"--learning-rate must be positive, got {self.learning_rate}")


@dataclass(frozen=True)
class Footage:
    """Color frames in time order: a video file, or a folder of images sorted by name."""

    path: Path
    count: int
    fps: float | None  # None for a folder of images
    images: tuple[Path, ...] = ()  # the folder's images; empty for a video

    def frames(self, wanted: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
        """(index, BGR frame) for each of the sorted indices `wanted`, in order.

        Raises:
            EdgeError: a frame cannot be read (the file changed or is damaged there).
        """
        if self.images:
            for index in wanted:
                yield index, read_color_image(self.images[index])
            return
        remaining = iter(wanted)
        target = next(remaining, None)
        with closing(read_frames(self.path)) as stream:
            for index, frame in enumerate(stream):
                if index == target:
                    yield index, frame
                    target = next(remaining, None)
                if target is None:
                    return
        raise EdgeError(
            f"cannot decode frame {target} of {self.path}: the file changed or is damaged"
        )

    def seconds(self, indices: Sequence[int]) -> list[float] | None:
        """Times of the first and last of `indices` in seconds, when the frame rate is known."""
        if self.fps is None:
            return None
        return [round(indices[0] / self.fps, 3), round(indices[-1] / self.fps, 3)]

    def sha256(self) -> str:
        """sha256 of the video file; of the images' names and sha256s for a folder."""
        if not self.images:
            return sha256(self.path)
        digest = hashlib.sha256()
        for image in self.images:
            digest.update(f"{image.name}\0{sha256(image)}\n".encode())
        return digest.hexdigest()


def open_footage(path: Path) -> Footage:
    """Count the frames of a video file or a folder of images.

    Raises:
        EdgeError: the path is missing, the video cannot be decoded, the folder holds no image.
    """
    from tqdm import tqdm

    if path.is_dir():
        images = tuple(folder_photos(path))
        return Footage(path, len(images), None, images)
    if not path.is_file():
        raise EdgeError(f"video not found: {path}")
    count = sum(1 for _ in tqdm(read_frames(path), desc="count frames", unit="frame"))
    fps = frame_rate(path, default=0.0)
    return Footage(path, count, fps or None)


def evenly(start: int, stop: int, limit: int) -> list[int]:
    """At most `limit` indices spread evenly over range(start, stop), first and last included."""
    count = min(limit, stop - start)
    return [int(i) for i in np.linspace(start, stop - 1, count).round()]


def split_in_time(
    footage: Footage, holdout: float, frames: int, test_frames: int
) -> tuple[list[int], list[int]]:
    """Indices to learn from (the earlier part) and to score on (the last `holdout` of it).

    The sides are sampled evenly to at most `frames` and `test_frames` frames.

    Raises:
        EdgeError: either side would have too few frames.
    """
    held_out = round(footage.count * holdout)
    learn = footage.count - held_out
    if learn < MIN_LEARN_FRAMES or held_out < MIN_HELD_OUT_FRAMES:
        raise EdgeError(
            f"too few frames: {footage.path} has {footage.count}, so --holdout {holdout} leaves "
            f"{learn} to learn from and {held_out} to test on; adapting needs at least "
            f"{MIN_LEARN_FRAMES} and {MIN_HELD_OUT_FRAMES}"
        )
    return evenly(0, learn, frames), evenly(learn, footage.count, test_frames)


def _lab_to_bgr(light: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """Float BGR (0..1, clipped as the runtime clips) of Lab planes."""
    bgr = cv2.cvtColor(np.dstack([light, ab]), cv2.COLOR_Lab2BGR)
    return np.clip(bgr, 0.0, 1.0, out=bgr)


def chroma_target(frame: np.ndarray, size: int, steps: int = TARGET_STEPS) -> np.ndarray:
    """The chroma (size×size×2, ±1) from which the runtime rebuilds the BGR `frame` best.

    The runtime puts the model's chroma, upsampled, on the gray frame's own lightness
    (`rebuild_bgr`). The color frame's own Lab a, b are not the best chroma for that: the gray
    frame's lightness (from luma) is not the color frame's Lab L, and size×size chroma is blurred
    when upsampled. Starting from the frame's a, b (area-averaged), each step is a Gauss-Newton
    step, per size×size cell, on the squared BGR error of the rebuilt frame, worked at 2×size.
    On vtest.avi's later half the runtime rebuilds the frames at 33.1 dB PSNR from their true
    chroma, at 35.0 dB from this target: the ceiling of what a model can learn is 1.9 dB higher.
    """
    work = cv2.resize(frame, (2 * size, 2 * size), interpolation=cv2.INTER_AREA)
    light = lightness(cv2.cvtColor(work, cv2.COLOR_BGR2GRAY))
    truth = work.astype(np.float32) / 255

    def per_cell(values: np.ndarray) -> np.ndarray:
        return cv2.resize(values, (size, size), interpolation=cv2.INTER_AREA)

    chroma = per_cell(to_lab(work)[..., 1:])
    for _ in range(steps):
        full = cv2.resize(chroma, (2 * size, 2 * size), interpolation=cv2.INTER_LINEAR)
        rebuilt = _lab_to_bgr(light, full)
        d_a = (_lab_to_bgr(light, full + np.float32([_STEP, 0])) - rebuilt) / _STEP
        d_b = (_lab_to_bgr(light, full + np.float32([0, _STEP])) - rebuilt) / _STEP
        error = rebuilt - truth
        h_aa = per_cell((d_a * d_a).sum(-1)) + _DAMPING
        h_ab = per_cell((d_a * d_b).sum(-1))
        h_bb = per_cell((d_b * d_b).sum(-1)) + _DAMPING
        g_a, g_b = per_cell((d_a * error).sum(-1)), per_cell((d_b * error).sum(-1))
        det = h_aa * h_bb - h_ab * h_ab
        chroma -= np.dstack([(h_bb * g_a - h_ab * g_b) / det, (h_aa * g_b - h_ab * g_a) / det])
        np.clip(chroma, -TANH_REACH * AB_SCALE, TANH_REACH * AB_SCALE, out=chroma)
    return chroma / AB_SCALE


def learning_pairs(footage: Footage, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Network inputs (each frame seen as gray, fed as the runtime feeds it) and chroma targets.

    Raises:
        EdgeError: the frames carry no color.
    """
    from tqdm import tqdm

    inputs, targets, chroma = [], [], []
    for _, frame in tqdm(footage.frames(indices), total=len(indices), desc="read", unit="frame"):
        seen, squashed = runtime_sample(frame)
        inputs.append(seen)
        targets.append(chroma_target(frame, TILE))
        chroma.append(to_lab(squashed)[..., 1:])
    share = colored_share(np.stack(chroma))
    if share < COLORED_SHARE:
        raise EdgeError(
            f"nothing to learn: the frames are gray (only {share:.2%} of the pixels of the "
            f"{len(indices)} frames before the split carry color): adapt needs daytime color "
            "footage"
        )
    return np.stack(inputs), np.stack(targets).astype(np.float32)


def load_chroma_model(path: Path):  # type: ignore[no-untyped-def]
    """The Keras model at `path`, which must map (N, 128, 128, 1) lightness to (N, 128, 128, 2)."""
    model = load_keras(path)
    want_in, want_out = (None, TILE, TILE, 1), (None, TILE, TILE, 2)
    if not (
        isinstance(model.input_shape, tuple)
        and tuple(model.input_shape) == want_in
        and tuple(model.output_shape) == want_out
    ):
        raise EdgeError(
            f"{path}: input {model.input_shape} -> output {model.output_shape} is not a chroma "
            f"colorizer {want_in} -> {want_out}"
        )
    return model


@functools.cache
def scene_chroma_layer() -> type:
    """The `SceneChroma` Keras layer class (defined on first use: Keras is slow to import)."""
    import keras

    @keras.saving.register_keras_serializable(package="edge")
    class SceneChroma(keras.layers.Layer):  # type: ignore[misc]
        """This camera's scene as a learned chroma map (S×S×2) added to a model's output.

        A fixed camera shows the same place in the same pixels: where a general model can only
        guess a wall's color from its texture, the map remembers it.
        """

        def build(self, input_shape: tuple[int | None, ...]) -> None:
            self.chroma = self.add_weight(
                shape=tuple(input_shape[1:]), initializer="zeros", name="chroma"
            )

        def call(self, inputs):  # type: ignore[no-untyped-def]
            return inputs + self.chroma

    return SceneChroma


def with_scene_map(model, inputs: np.ndarray, targets: np.ndarray):  # type: ignore[no-untyped-def]
    """`model` followed by a SceneChroma map set to the mean of what it misses on the frames."""
    import keras

    layer = scene_chroma_layer()(name="scene_chroma")
    adapted = keras.Model(model.input, layer(model.output), name=f"{model.name}_adapted")
    misses = targets - model.predict(inputs, batch_size=32, verbose=0)
    layer.chroma.assign(misses.mean(axis=0))
    return adapted


def fine_tune(model, inputs: np.ndarray, targets: np.ndarray, recipe: Recipe) -> list[float]:  # type: ignore[no-untyped-def]
    """Fine-tune `model` in place; return the training loss per epoch (none for 0 epochs)."""
    import keras
    from tqdm import tqdm

    keras.utils.set_random_seed(recipe.seed)
    if recipe.epochs == 0:
        return []
    steps = recipe.epochs * math.ceil(len(inputs) / recipe.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(recipe.learning_rate, steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse")
    losses = []
    with tqdm(total=recipe.epochs, desc="fine-tune", unit="epoch") as progress:
        for epoch in range(recipe.epochs):
            history = model.fit(
                inputs,
                targets,
                batch_size=recipe.batch_size,
                epochs=epoch + 1,
                initial_epoch=epoch,
                shuffle=True,
                verbose=0,
            )
            losses.append(float(history.history["loss"][-1]))
            progress.set_postfix(loss=f"{losses[-1]:.5f}")
            progress.update()
    return losses


Row = dict[str, float]


def score(
    footage: Footage, indices: list[int], models: dict[str, Path]
) -> tuple[list[Row], list[list[np.ndarray]]]:
    """PSNR of each method on each held-out frame seen as gray, and the picture grid's rows.

    `models` maps method names to ONNX chroma colorizers, run as the runtime runs them.
    """
    from tqdm import tqdm

    shown = set(evenly(0, len(indices), GRID_FRAMES))
    rows: list[Row] = []
    grid: list[list[np.ndarray]] = []
    with ExitStack() as stack:
        methods = {"gray": grayscale_baseline} | {
            name: Colorizer(stack.enter_context(open_engine(path))).colorize
            for name, path in models.items()
        }
        frames = footage.frames(indices)
        for position, (index, frame) in enumerate(
            tqdm(frames, total=len(indices), desc="score", unit="frame")
        ):
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            outputs = {name: run(gray) for name, run in methods.items()}
            rows.append({"frame": index, **{m: psnr(out, frame) for m, out in outputs.items()}})
            if position in shown:
                grid.append([outputs["gray"], outputs["adapted"], outputs["general"], frame])
    return rows, grid


def summarize(rows: list[Row]) -> dict[str, Any]:
    """Mean, min and max PSNR per method; the adapted model's margin over the general one."""
    summary: dict[str, Any] = {
        m: {
            k: float(f([r[m] for r in rows]))
            for k, f in (("mean", np.mean), ("min", np.min), ("max", np.max))
        }
        for m in METHODS
    }
    margins = [r["adapted"] - r["general"] for r in rows]
    worst = int(np.argmin(margins))
    summary["margin_over_general"] = {
        "mean": float(np.mean(margins)),
        "min": margins[worst],
        "min_frame": int(rows[worst]["frame"]),
        "frames_better": int(sum(m > 0 for m in margins)),
        "frames": len(margins),
    }
    return summary


def metadata(report: dict[str, Any]) -> dict[str, str]:
    """The report's provenance and scores as ONNX metadata (string values)."""
    psnr_means = {m: f"{report['psnr'][m]['mean']:.3f}" for m in METHODS}
    return {
        "edge.adapt.video": Path(report["video"]).name,
        "edge.adapt.video_sha256": report["video_sha256"],
        "edge.adapt.video_frames": str(report["video_frames"]),
        "edge.adapt.train_frames": str(len(report["train"]["indices"])),
        "edge.adapt.train_indices": json.dumps(report["train"]["indices"]),
        "edge.adapt.train_seconds": json.dumps(report["train"]["seconds"]),
        "edge.adapt.heldout_frames": str(len(report["heldout"]["indices"])),
        "edge.adapt.heldout_indices": json.dumps(report["heldout"]["indices"]),
        "edge.adapt.heldout_seconds": json.dumps(report["heldout"]["seconds"]),
        **{f"edge.adapt.psnr_{m}": value for m, value in psnr_means.items()},
        "edge.adapt.base": Path(report["base"]).name,
        "edge.adapt.base_sha256": report["base_sha256"],
        "edge.adapt.epochs": str(report["recipe"]["epochs"]),
        "edge.adapt.recipe": json.dumps(report["recipe"]),
    }


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: what was learned from, the scores, the recipe, the time taken."""
    train, heldout, margin = (
        report["train"],
        report["heldout"],
        report["psnr"]["margin_over_general"],
    )

    def span(part: dict[str, Any]) -> str:
        indices, seconds = part["indices"], part["seconds"]
        when = f", {seconds[0]:.1f}–{seconds[1]:.1f} s" if seconds else ""
        return f"{len(indices)} frames ({indices[0]}–{indices[-1]}{when})"

    names = {
        "gray": "grayscale input",
        "general": "general model",
        "adapted": "**adapted**",
        "adapted_fp16": "adapted, FP16",
    }
    lines = [
        f"# Scene adaptation: {Path(report['output']).name}",
        "",
        f"Base `{report['base']}` fine-tuned on {span(train)} of `{report['video']}` "
        f"({report['video_frames']} frames, sha256 {report['video_sha256'][:12]}…); scored on "
        f"the later {span(heldout)} seen as gray, as the runtime colorizes them.",
        "",
        "| method | mean PSNR (dB) | min | max |",
        "|---|---:|---:|---:|",
        *(
            f"| {names[m]} | {report['psnr'][m]['mean']:.2f} | {report['psnr'][m]['min']:.2f} "
            f"| {report['psnr'][m]['max']:.2f} |"
            for m in METHODS
        ),
        "",
        f"Adapted minus general, per frame: mean {margin['mean']:+.2f} dB, "
        f"min {margin['min']:+.2f} dB (frame {margin['min_frame']}); "
        f"better on {margin['frames_better']} of {margin['frames']} frames.",
        "",
        "Method: chroma targets fitted to the runtime's rebuild, a scene chroma map set to what "
        "the base misses, then fine-tuning of the whole. Recipe: "
        + ", ".join(f"{k} {v}" for k, v in report["recipe"].items())
        + ".",
        "Time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in report["seconds"].items()) + ".",
    ]
    return "\n".join(lines) + "\n"


def with_metadata(source: Path, target: Path, values: dict[str, str]) -> None:
    """Copy an ONNX model, adding metadata (the temporary Keras file's sha256 is dropped)."""
    model = onnx.load(source)
    props = {p.key: p.value for p in model.metadata_props if p.key != "edge.source_sha256"}
    onnx.helper.set_model_props(model, props | values)
    onnx.save(model, target)


def report_paths(output: Path) -> dict[str, Path]:
    """Every file `adapt` writes for `--output NAME.onnx`."""
    return {
        "onnx": output,
        "onnx_fp16": fp16_path(output),
        "json": output.with_name(f"{output.stem}.report.json"),
        "markdown": output.with_name(f"{output.stem}.report.md"),
        "grid": output.with_name(f"{output.stem}.grid.png"),
    }


def adapt(
    video: Path,
    output: Path,
    base: Path | None = None,
    frames: int = DEFAULT_FRAMES,
    holdout: float = DEFAULT_HOLDOUT,
    recipe: Recipe | None = None,
    test_frames: int = DEFAULT_TEST_FRAMES,
) -> dict[str, Any]:
    """Fine-tune `base` on the earlier part of `video`, score on the later part, write the files.

    Returns:
        The report (also written as JSON and Markdown beside `output`).

    Raises:
        EdgeError: a bad argument, a missing or unreadable video, gray or too few frames, a base
            model that is not a chroma colorizer, an output that cannot be written. Nothing is
            written then.
    """
    started = time.monotonic()
    recipe = recipe or Recipe()
    base = base or general_keras()
    if not 0 < holdout < 1:
        raise EdgeError(
            f"--holdout must be between 0 and 1 (the share of frames, from the end, kept to "
            f"test on), got {holdout}"
        )
    if frames < MIN_LEARN_FRAMES:
        raise EdgeError(f"--frames must be at least {MIN_LEARN_FRAMES}, got {frames}")
    if test_frames < MIN_HELD_OUT_FRAMES:
        raise EdgeError(f"--test-frames must be at least {MIN_HELD_OUT_FRAMES}, got {test_frames}")
    recipe.check()
    if output.suffix != ".onnx":
        raise EdgeError(f"--output must name an .onnx file, got {output}")
    writable_dir(output.parent)
    model = load_chroma_model(base)
    footage = open_footage(video)
    learn, heldout = split_in_time(footage, holdout, frames, test_frames)
    inputs, targets = learning_pairs(footage, learn)
    seconds = {"read": time.monotonic() - started}
    log.info("fine-tuning %s on %d frames of %s", base.name, len(learn), video)
    model = with_scene_map(model, inputs, targets)
    losses = fine_tune(model, inputs, targets, recipe)
    seconds["fine-tune"] = time.monotonic() - started - sum(seconds.values())
    with tempfile.TemporaryDirectory(prefix="adapt-") as folder:
        work = Path(folder)
        model.save(work / "adapted.keras")
        models = {"general": work / "general.onnx", "adapted": work / "adapted.onnx"}
        keras_to_onnx("chroma", base, models["general"])
        keras_to_onnx("chroma", work / "adapted.keras", models["adapted"])
        models["adapted_fp16"] = to_fp16(models["adapted"], work / "adapted_fp16.onnx")
        seconds["export"] = time.monotonic() - started - sum(seconds.values())
        rows, grid = score(footage, heldout, models)
        seconds["score"] = time.monotonic() - started - sum(seconds.values())
        seconds["total"] = time.monotonic() - started
        paths = report_paths(output)
        report: dict[str, Any] = {
            "video": str(video),
            "video_sha256": footage.sha256(),
            "video_frames": footage.count,
            "fps": footage.fps,
            "base": str(base),
            "base_sha256": sha256(base),
            "files": {k: str(v) for k, v in paths.items()},
            "output": str(output),
            "holdout": holdout,
            "train": {"indices": learn, "seconds": footage.seconds(learn)},
            "heldout": {"indices": heldout, "seconds": footage.seconds(heldout)},
            "recipe": asdict(recipe),
            "loss": losses,
            "psnr": summarize(rows),
            "per_frame": rows,
            "seconds": seconds,
        }
        values = metadata(report)
        with ExitStack() as stack:
            temporary = {k: stack.enter_context(replaced_on_success(v)) for k, v in paths.items()}
            with_metadata(models["adapted"], temporary["onnx"], values)
            with_metadata(models["adapted_fp16"], temporary["onnx_fp16"], values)
            temporary["json"].write_text(json.dumps(report, indent=1))
            temporary["markdown"].write_text(markdown(report))
            labels = ["gray input", "adapted", "general", "truth"]
            if not cv2.imwrite(str(temporary["grid"]), picture_grid(grid, labels)):
                raise EdgeError(f"cannot write {paths['grid']}")
    margin = report["psnr"]["margin_over_general"]
    log.info(
        "held-out PSNR: adapted %.2f dB, general %.2f, gray %.2f; adapted better on %d/%d "
        "frames; wrote %s (+FP16, report, grid)",
        report["psnr"]["adapted"]["mean"],
        report["psnr"]["general"]["mean"],
        report["psnr"]["gray"]["mean"],
        margin["frames_better"],
        margin["frames"],
        output,
    )
    if margin["mean"] <= 0:
        log.warning("the adapted model is not better than the general one on the held-out frames")
    return report


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `adapt` command."""
    parser = subparsers.add_parser(
        "adapt", help="fine-tune the colorizer to one camera's scene from its daytime color video"
    )
    parser.add_argument(
        "--video",
        type=Path,
        required=True,
        help="daytime color video, or a folder of frames (sorted by name = time order)",
    )
    parser.add_argument("--output", type=Path, required=True, help="adapted model, NAME.onnx")
    parser.add_argument(
        "--base",
        type=Path,
        help="general Keras chroma model (default: the one `export train` made, else the "
        "shipped models/colorizer_chroma.keras)",
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=DEFAULT_FRAMES,
        help="frames sampled evenly from the earlier part to learn from",
    )
    parser.add_argument(
        "--test-frames",
        type=int,
        default=DEFAULT_TEST_FRAMES,
        help="at most this many held-out frames, sampled evenly, are scored",
    )
    parser.add_argument(
        "--holdout",
        type=float,
        default=DEFAULT_HOLDOUT,
        help="share of the frames, from the end, kept to test on",
    )
    defaults = Recipe()
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.set_defaults(
        func=lambda a: adapt(
            a.video,
            a.output,
            a.base,
            a.frames,
            a.holdout,
            Recipe(a.epochs, a.batch_size, a.learning_rate, a.seed),
            a.test_frames,
        )
    )
