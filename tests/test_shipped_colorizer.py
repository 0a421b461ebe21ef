"""The released general colorizer (models/colorizer_chroma.keras) and its model card."""

from __future__ import annotations

import re
from pathlib import Path

import onnx

from edge.files import sha256
from export.adapt import load_chroma_model
from export.evaluate import evaluate
from export.onnx_export import SHIPPED_CHROMA, export_chroma, general_keras
from export.tiles import split_photos

CARD = Path(__file__).resolve().parent.parent / "docs" / "colorizer-model-card.md"


def test_the_card_names_the_shipped_weights_by_their_sha256() -> None:
    named = re.findall(r"sha256 `([0-9a-f]{64})`", CARD.read_text())
    assert named == [sha256(SHIPPED_CHROMA)], (
        f"{CARD.name} must name {SHIPPED_CHROMA.name}'s sha256 once: update the card with the "
        "weights (their scores, recipe and seed)"
    )


def test_the_shipped_weights_adapt_and_export_without_training(tmp_path: Path) -> None:
    assert general_keras(tmp_path) == SHIPPED_CHROMA  # nothing trained there: the shipped one
    load_chroma_model(SHIPPED_CHROMA)  # what `export adapt` starts from
    written = export_chroma(SHIPPED_CHROMA, tmp_path)  # checked against Keras on real photos
    assert [p.name for p in written] == ["colorizer.onnx", "colorizer_fp16.onnx"]
    metadata = {p.key: p.value for p in onnx.load(written[0]).metadata_props}
    assert metadata["edge.source_sha256"] == sha256(SHIPPED_CHROMA)
    # Scored alone (no original method trained): the card's command for the shipped weights.
    summary = evaluate({"test": split_photos("test")[:2]}, None, written[0], tmp_path / "eval")
    assert list(summary["test"]) == ["grayscale", "ours"]
    assert (tmp_path / "eval" / "grid_test.png").is_file()
