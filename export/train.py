"""`export train`: train the original RGB autoencoder or our chroma model on the train split.

The original method trains as it did: 500 tiles of the train photos, 20 epochs, batch 16, Adam,
MSE. Ours trains on the training mix (`export.tiles.training_mix`: whole photos squashed as the
runtime squashes frames, plus multi-scale crops, all mirrored too) with the `psnr` loss and a
learning rate that decays on a cosine; it validates on the validation packages' whole photos and
keeps the epoch that did best there. Ours also sees what the picture shows: ImageNet features of
the gray frame from a frozen MobileNetV2 (`export.imagenet`), computed once per sample since they
never change; the saved model joins that encoder and the U-Net (L in, chroma out). `--photos DIR`
adds a folder of the user's own color photos to ours' train photos (never a validation, test or
outside photo). Every sample stays in memory: about 1 MB each at peak (the default run's 3,030
train and 45 validation samples peak at 4.2 GB), so 1,000 own photos at 8 crops (10 samples each)
add about 10 GB; `--crops 2` takes 4 GB.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from edge import paths
from edge.errors import EdgeError
from edge.files import replaced_on_success, writable_dir
from edge.models.colorizer import AB_SCALE, L_SCALE, lightness, to_lab
from export.tiles import (
    own_train_photos,
    read_color_image,
    runtime_sample,
    split_photos,
    tiles_from,
    training_mix,
)

log = logging.getLogger(__name__)
TRAIN_STRIDE = 64  # overlapping train tiles; validation and test tiles never overlap
ORIGINAL_TILE_COUNT = 500  # the original method trained on 500 images
KINDS = ("rgb", "chroma")  # the original method's RGB autoencoder; our chroma model


@dataclass(frozen=True)
class Recipe:
    """How a kind trains by default (the CLI overrides each value)."""

    epochs: int
    batch_size: int
    samples: int | None  # rgb: tiles; chroma: a seeded subset of the mix (None: all of it)
    loss: str = "mse"
    crops_per_image: int = 0  # chroma: random crops per train photo, besides the whole photo


RECIPES = {
    "rgb": Recipe(epochs=20, batch_size=16, samples=ORIGINAL_TILE_COUNT),
    "chroma": Recipe(epochs=8, batch_size=16, samples=None, loss="psnr", crops_per_image=8),
}


def keras_path(kind: str, models_dir: Path | None = None) -> Path:
    """Where `train` stores a model of this kind."""
    return (models_dir or paths.MODELS) / f"colorizer_{kind}.keras"


def save_keras(model, target: Path) -> None:  # type: ignore[no-untyped-def]
    """Save `model` as `.keras` with its members deflated (Keras stores them uncompressed):
    lossless, and an eighth smaller for the chroma model (12.3 → 10.8 MB)."""
    with replaced_on_success(target) as temporary:
        stored = temporary.with_name(f"{temporary.stem}.stored.keras")
        try:
            model.save(stored)
            with (
                zipfile.ZipFile(stored) as source,
                zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out,
            ):
                for member in source.infolist():
                    out.writestr(member.filename, source.read(member))
        finally:
            stored.unlink(missing_ok=True)


def gray_of(tiles: np.ndarray) -> np.ndarray:
    """Grayscale (N, H, W) uint8 of BGR tiles: what a monochrome camera sees."""
    return np.stack([cv2.cvtColor(t, cv2.COLOR_BGR2GRAY) for t in tiles])


def training_pairs(kind: str, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs and targets for BGR uint8 tiles.

    Both kinds see only the grayscale tile. `rgb`: gray/255 -> RGB/255. `chroma`: L of the gray
    tile (as the runtime computes it) -> a, b of the color tile, scaled to ±1.
    """
    gray = gray_of(tiles)
    if kind == "rgb":
        inputs = gray[..., np.newaxis].astype(np.float32) / 255.0
        return inputs, tiles[..., ::-1].astype(np.float32) / 255.0
    inputs = np.stack([lightness(g) for g in gray])[..., np.newaxis] / L_SCALE
    chroma = np.stack([to_lab(t)[..., 1:] for t in tiles]) / AB_SCALE
    return inputs.astype(np.float32), chroma.astype(np.float32)


def chroma_targets(inputs: np.ndarray, targets: np.ndarray, loss: str) -> np.ndarray:
    """What the chroma model's loss compares its output with, for BGR uint8 targets.

    `mse`: a, b of the target, scaled to ±1 (N, H, W, 2). `psnr`: the input L/100 and the target
    RGB in 0..1 (N, H, W, 4): the loss rebuilds the RGB picture from L and the predicted chroma.
    """
    if loss == "mse":
        return (np.stack([to_lab(t)[..., 1:] for t in targets]) / AB_SCALE).astype(np.float32)
    rgb = targets[..., ::-1].astype(np.float32) / 255.0
    return np.concatenate([inputs, rgb], axis=-1)


def chroma_data(
    recipe: Recipe, seed: int, own_photos: list[Path]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training mix of the train photos (and the user's own) and whole validation photos, as
    (x, y, x_val, y_val)."""
    photos = split_photos("train") + own_photos
    rng = np.random.default_rng(seed)
    if recipe.samples is not None:  # a capped mix reads only the photos it needs
        needed = -(-recipe.samples // (2 + recipe.crops_per_image))
        photos = [photos[i] for i in sorted(rng.permutation(len(photos))[:needed])]
    x, targets = training_mix((read_color_image(p) for p in photos), recipe.crops_per_image, seed)
    if recipe.samples is not None and recipe.samples < len(x):
        chosen = rng.choice(len(x), recipe.samples, replace=False)
        x, targets = x[chosen], targets[chosen]
    pairs = [runtime_sample(read_color_image(p)) for p in split_photos("validation")]
    x_val = np.stack([x for x, _ in pairs])
    y_val = chroma_targets(x_val, np.stack([t for _, t in pairs]), recipe.loss)
    return x, chroma_targets(x, targets, recipe.loss), x_val, y_val


def train(
    kind: str,
    epochs: int | None = None,
    batch_size: int | None = None,
    tile_count: int | None = None,
    seed: int = 0,
    models_dir: Path | None = None,
    loss: str | None = None,
    crops_per_image: int | None = None,
    photos: Path | None = None,
) -> Path:
    """Train a colorizer on the train split, validate on the validation split, save `.keras`.

    Arguments left as None take the kind's `RECIPES` value; `tile_count` is the number of tiles
    (rgb) or a cap on the training mix (chroma); `photos` is a folder of the user's own color
    photos that ours (chroma) trains on besides the train split.

    Returns:
        The saved model's path (plus a `.history.json` beside it with the loss per epoch).
    """
    import keras
    from tqdm import tqdm

    from export.colorizer_models import LOSSES, build, imagenet_colorizer
    from export.imagenet import imagenet_encoder
    from export.reid import default_weights

    if kind not in KINDS:
        raise EdgeError(f"unknown model '{kind}': choose one of {', '.join(KINDS)}")
    chosen = {"epochs": epochs, "batch_size": batch_size, "samples": tile_count}
    chosen |= {"loss": loss, "crops_per_image": crops_per_image}
    recipe = replace(RECIPES[kind], **{k: v for k, v in chosen.items() if v is not None})
    for name, value in (
        ("epochs", recipe.epochs),
        ("batch size", recipe.batch_size),
        ("tiles", 1 if recipe.samples is None else recipe.samples),
    ):
        if value < 1:
            raise EdgeError(f"{name} must be at least 1, got {value}")
    if recipe.crops_per_image < 0:
        raise EdgeError(f"crops must be at least 0, got {recipe.crops_per_image}")
    if recipe.loss not in LOSSES:
        raise EdgeError(f"unknown loss '{recipe.loss}': choose one of {', '.join(LOSSES)}")
    if kind == "rgb" and recipe.loss != "mse":
        raise EdgeError("the original method (rgb) trains with MSE only: drop --loss")
    if kind == "rgb" and photos is not None:
        raise EdgeError("the original method (rgb) trains on the train split only: drop --photos")
    own_photos = [] if photos is None else own_train_photos(photos)
    target = keras_path(kind, writable_dir(models_dir or paths.MODELS))
    keras.utils.set_random_seed(seed)
    started = time.monotonic()
    if kind == "rgb":
        tiles = tiles_from(split_photos("train"), TRAIN_STRIDE, recipe.samples, seed)
        x_train, y_train = training_pairs(kind, tiles)
        x_val, y_val = training_pairs(kind, tiles_from(split_photos("validation"), 128, None, seed))
        fed_train, fed_val = x_train, x_val
    else:
        x_train, y_train, x_val, y_val = chroma_data(recipe, seed, own_photos)
        encoder = imagenet_encoder(default_weights())
        log.info("ImageNet features of %d samples", len(x_train) + len(x_val))
        fed_train, fed_val = (
            [x, encoder.predict(x, batch_size=32, verbose=0)] for x in (x_train, x_val)
        )
    log.info("training %s on %d samples, validating on %d", kind, len(x_train), len(x_val))
    epochs, batch_size = recipe.epochs, recipe.batch_size

    progress = tqdm(total=epochs, desc=f"train {kind}", unit="epoch")

    class Progress(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            progress.set_postfix({k: f"{v:.5f}" for k, v in (logs or {}).items()})
            progress.update()

    callbacks: list[keras.callbacks.Callback] = [Progress()]
    if kind == "chroma":
        steps = epochs * -(-len(x_train) // batch_size)
        model = build(kind, recipe.loss, steps, imagenet=encoder.output_shape[-1])
        # Keep the epoch that did best on the validation packages' whole photos.
        best = keras.callbacks.EarlyStopping(patience=epochs, restore_best_weights=True)
        callbacks.append(best)
    else:
        model = build(kind)  # the original method as it was: its last epoch
    history = model.fit(
        fed_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        verbose=0,
        validation_data=(fed_val, y_val),
        # Ours keeps its best epoch, so it validates after each; the original method keeps its
        # last, so it validates once, at the end.
        validation_freq=1 if kind == "chroma" else epochs,
        callbacks=callbacks,
    )
    progress.close()
    seconds = time.monotonic() - started
    if kind == "chroma":
        model = imagenet_colorizer(model, encoder)
    save_keras(model, target)
    record = {
        "kind": kind,
        "epochs": epochs,
        "batch_size": batch_size,
        "tiles": len(x_train),
        "loss": recipe.loss,
        "crops_per_image": recipe.crops_per_image,
        "own_photos": None if photos is None else {"folder": str(photos), "count": len(own_photos)},
        "seed": seed,
        "seconds": round(seconds, 1),
        "kept_epoch": int(np.argmin(history.history["val_loss"])) + 1
        if kind == "chroma"
        else epochs,
        "history": history.history,
    }
    target.with_suffix(".history.json").write_text(json.dumps(record, indent=1))
    log.info(
        "saved %s (epoch %d of %d, val_loss %.5f, %.0f s)",
        target,
        record["kept_epoch"],
        epochs,
        min(history.history["val_loss"]) if kind == "chroma" else history.history["val_loss"][-1],
        seconds,
    )
    return target


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `train` command."""
    parser = subparsers.add_parser("train", help="train a colorizer on the train split")
    parser.add_argument(
        "--model",
        choices=KINDS,
        default="chroma",
        help="rgb: the original method; chroma: ours (default)",
    )
    defaults = ", ".join(
        f"{k}: {r.epochs} epochs, batch {r.batch_size}" for k, r in RECIPES.items()
    )
    parser.add_argument("--epochs", type=int, help=f"default per model ({defaults})")
    parser.add_argument("--batch-size", type=int, help="default per model (see --epochs)")
    parser.add_argument(
        "--tiles",
        type=int,
        help=f"rgb: training tiles (default {ORIGINAL_TILE_COUNT}); chroma: cap on the mix",
    )
    parser.add_argument(
        "--crops",
        type=int,
        help=f"chroma: crops per train photo (default {RECIPES['chroma'].crops_per_image})",
    )
    parser.add_argument(
        "--loss", choices=("mse", "psnr"), help="chroma: training loss (default psnr)"
    )
    parser.add_argument(
        "--photos",
        type=Path,
        help="chroma: a folder of your own color photos to train on besides the train split",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=paths.MODELS, help="models folder")
    parser.set_defaults(
        func=lambda a: train(
            a.model, a.epochs, a.batch_size, a.tiles, a.seed, a.output, a.loss, a.crops, a.photos
        )
    )
