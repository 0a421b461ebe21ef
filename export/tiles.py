"""Colorizer data: photos, the split by source photo, and 128×128 tiles cut from them."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from edge import paths
from edge.errors import EdgeError

SPLIT_FILE = Path(__file__).with_name("colorizer_split.json")
SPLITS = ("train", "validation", "test")
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
    """Paths of the photos in one split of `colorizer_split.json`."""
    if split not in SPLITS:
        raise EdgeError(f"unknown split '{split}': choose one of {', '.join(SPLITS)}")
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


def scaled_for_tiling(image: np.ndarray) -> np.ndarray:
    """The image scaled down so its shorter side is at most MAX_SHORT_SIDE."""
    scale = MAX_SHORT_SIDE / min(image.shape[:2])
    if scale >= 1:
        return image
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


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
