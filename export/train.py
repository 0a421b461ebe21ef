"""`export train`: train the original RGB autoencoder or our chroma model on the train split."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import cv2
import numpy as np

from edge import paths
from edge.errors import EdgeError
from edge.files import replaced_on_success, writable_dir
from edge.models.colorizer import AB_SCALE, L_SCALE, lightness, to_lab
from export.tiles import split_photos, tiles_from

log = logging.getLogger(__name__)
TRAIN_STRIDE = 64  # overlapping train tiles; validation and test tiles never overlap
ORIGINAL_TILE_COUNT = 500  # the original method trained on 500 images
KINDS = ("rgb", "chroma")  # the original method's RGB autoencoder; our chroma model


def keras_path(kind: str, models_dir: Path | None = None) -> Path:
    """Where `train` stores a model of this kind."""
    return (models_dir or paths.MODELS) / f"colorizer_{kind}.keras"


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


def train(
    kind: str,
    epochs: int = 20,
    batch_size: int = 16,
    tile_count: int = ORIGINAL_TILE_COUNT,
    seed: int = 0,
    models_dir: Path | None = None,
) -> Path:
    """Train a colorizer on the train split, validate on the validation split, save `.keras`.

    Returns:
        The saved model's path (plus a `.history.json` beside it with the loss per epoch).
    """
    import keras
    from tqdm import tqdm

    from export.colorizer_models import build

    if kind not in KINDS:
        raise EdgeError(f"unknown model '{kind}': choose one of {', '.join(KINDS)}")
    for name, value in (("epochs", epochs), ("batch size", batch_size), ("tiles", tile_count)):
        if value < 1:
            raise EdgeError(f"{name} must be at least 1, got {value}")
    target = keras_path(kind, writable_dir(models_dir or paths.MODELS))
    keras.utils.set_random_seed(seed)
    x_train, y_train = training_pairs(
        kind, tiles_from(split_photos("train"), TRAIN_STRIDE, tile_count, seed)
    )
    x_val, y_val = training_pairs(kind, tiles_from(split_photos("validation"), 128, None, seed))
    log.info("training %s on %d tiles, validating on %d", kind, len(x_train), len(x_val))

    progress = tqdm(total=epochs, desc=f"train {kind}", unit="epoch")

    class Progress(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            progress.set_postfix({k: f"{v:.5f}" for k, v in (logs or {}).items()})
            progress.update()

    model = build(kind)
    history = model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        verbose=0,
        validation_data=(x_val, y_val),
        callbacks=[Progress()],
    )
    progress.close()
    with replaced_on_success(target) as temporary:
        model.save(temporary)
    record = {
        "kind": kind,
        "epochs": epochs,
        "batch_size": batch_size,
        "tiles": len(x_train),
        "seed": seed,
        "history": history.history,
    }
    target.with_suffix(".history.json").write_text(json.dumps(record, indent=1))
    log.info("saved %s (val_loss %.5f)", target, history.history["val_loss"][-1])
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
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--tiles",
        type=int,
        default=ORIGINAL_TILE_COUNT,
        help="training tiles drawn from the train photos",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=paths.MODELS, help="models folder")
    parser.set_defaults(
        func=lambda a: train(a.model, a.epochs, a.batch_size, a.tiles, a.seed, a.output)
    )
