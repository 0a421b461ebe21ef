"""Colorizer data: photos, the split by source package, and the 128×128 samples cut from them.

Two kinds of samples. Tiles (`tiles_from`): 128×128 windows of photos scaled to a short side of
at most 512 px, what the original method trained on. The training mix (`training_mix`): what the
runtime feeds the chroma model — a whole frame squashed to 128×128 by `edge`'s own `model_input`
— plus crops at several scales and aspects, squashed the same way, each also flipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from edge import paths
from edge.errors import EdgeError
from edge.files import sha256
from edge.models.colorizer import lightness, model_input

SPLIT_FILE = Path(__file__).with_name("colorizer_split.json")
SPLITS = ("train", "validation", "test")
# Photo sets that are not part of the split: Python packages' sample pictures (never trained on)
# and the six photos the earlier by-photo split tested on (training photos now).
REPORT_SETS = ("outside", "previous_test")
TILE = 128
# Photos are first scaled so their shorter side is at most this: a 128 tile of a 2560×1600
# wallpaper would hold texture, not a scene.
MAX_SHORT_SIDE = 512
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def read_color_image(path: Path) -> np.ndarray:
    """BGR uint8 image; raises EdgeError naming the file when it is missing or not an image."""
    if not path.is_file():
        raise EdgeError(f"image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise EdgeError(f"not a readable image: {path} (remove it or convert it to JPEG/PNG)")
    return image


def split_photos(split: str, data_dir: Path | None = None) -> list[Path]:
    """Paths of the photos in one split (or report set) of `colorizer_split.json`."""
    if split not in SPLITS + REPORT_SETS:
        raise EdgeError(f"unknown split '{split}': choose one of {', '.join(SPLITS + REPORT_SETS)}")
    data_dir = data_dir or paths.DATA
    photos = [data_dir / name for name in json.loads(SPLIT_FILE.read_text())[split]]
    missing = [p for p in photos if not p.is_file()]
    if missing:
        raise EdgeError(
            f"{len(missing)} {split} photo(s) missing, e.g. {missing[0]}: run `make data` first"
        )
    return photos


def folder_photos(folder: Path) -> list[Path]:
    """Image files in a user's folder, sorted; raises EdgeError if there are none."""
    if not folder.is_dir():
        raise EdgeError(f"photo folder not found: {folder}")
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        raise EdgeError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return photos


def own_train_photos(folder: Path) -> list[Path]:
    """A user's folder of color photos to train on besides the train split, sorted.

    Raises:
        EdgeError: the folder is missing or has no images, or one of them has the same bytes as a
            validation, test or outside photo (training on it would overrate the model).
    """
    photos = folder_photos(folder)
    held_out = {
        sha256(p): (name, p)
        for name in ("validation", "test", "outside")
        for p in split_photos(name)
    }
    for photo in photos:
        if (twin := held_out.get(sha256(photo))) is not None:
            name, path = twin
            raise EdgeError(f"{photo} is the {name} photo {path}: remove it from {folder}")
    return photos


def shrunk(image: np.ndarray, scale: float) -> np.ndarray:
    """The image scaled by `scale` (INTER_AREA) when that makes it smaller, else as it is."""
    if scale >= 1:
        return image
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def scaled_for_tiling(image: np.ndarray) -> np.ndarray:
    """The image scaled down so its shorter side is at most MAX_SHORT_SIDE."""
    return shrunk(image, MAX_SHORT_SIDE / min(image.shape[:2]))


def cut_tiles(image: np.ndarray, stride: int = TILE) -> np.ndarray:
    """All TILE×TILE windows of `image` on a grid with the given stride, as (N, TILE, TILE, 3)."""
    height, width = image.shape[:2]
    tiles = [
        image[y : y + TILE, x : x + TILE]
        for y in range(0, height - TILE + 1, stride)
        for x in range(0, width - TILE + 1, stride)
    ]
    return np.stack(tiles) if tiles else np.empty((0, TILE, TILE, 3), np.uint8)


def tiles_from(photos: list[Path], stride: int, limit: int | None, seed: int) -> np.ndarray:
    """Tiles of the photos (scaled for tiling); a seeded random subset of `limit` if given.

    Raises:
        EdgeError: a photo is unreadable, or the photos yield no tile.
    """
    tiles = np.concatenate(
        [cut_tiles(scaled_for_tiling(read_color_image(p)), stride) for p in photos]
    )
    if len(tiles) == 0:
        raise EdgeError(f"photos smaller than {TILE}×{TILE} give no tiles: {photos}")
    if limit is not None and limit < len(tiles):
        tiles = tiles[np.random.default_rng(seed).choice(len(tiles), limit, replace=False)]
    return tiles


# Crops of the training mix cover this range of each side of a photo (fractions), drawn
# independently for width and height, so a crop's aspect varies as squashed frames' do.
CROP_SCALES = (0.2, 0.8)


def runtime_sample(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One training sample of a BGR uint8 image (any size), made the way the runtime makes it.

    Returns:
        The model input — `model_input(lightness(gray))`, exactly what `Colorizer` computes for a
        gray frame — and the color target: the image squashed to TILE×TILE (INTER_AREA), BGR uint8.
    """
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    target = cv2.resize(image, (TILE, TILE), interpolation=cv2.INTER_AREA)
    return model_input(lightness(gray), TILE), target


def random_crop(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A crop of CROP_SCALES of each side at a random place, flipped left-right half the time."""
    height, width = image.shape[:2]
    low, high = CROP_SCALES
    crop_h = max(1, round(height * rng.uniform(low, high)))
    crop_w = max(1, round(width * rng.uniform(low, high)))
    y = int(rng.integers(0, height - crop_h + 1))
    x = int(rng.integers(0, width - crop_w + 1))
    crop = image[y : y + crop_h, x : x + crop_w]
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def training_mix(
    images: Iterable[np.ndarray], crops_per_image: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs (N, TILE, TILE, 1) and BGR targets (N, TILE, TILE, 3) for BGR uint8 images.

    Per image: the whole image and its mirror image (as the runtime squashes a frame), then
    `crops_per_image` random crops (`random_crop`), all through `runtime_sample`. Seeded. Images
    are read one at a time from an iterator: only the 128×128 samples stay in memory.
    """
    rng = np.random.default_rng(seed)
    inputs, targets = [], []
    for image in images:
        views = [image, image[:, ::-1]]
        views += [random_crop(image, rng) for _ in range(crops_per_image)]
        for view in views:
            x, y = runtime_sample(np.ascontiguousarray(view))
            inputs.append(x)
            targets.append(y)
    return np.stack(inputs), np.stack(targets)
