"""How far a reduced-precision model (FP16, INT8) strays from its FP32 original on the same input.

Detector: the candidate's boxes matched to the FP32 boxes (same class, IoU ≥ 0.5, greedy, most
confident first): precision, recall, mean IoU, score change and mAP@0.5 taking FP32 as the
reference. Embedder: cosine of both embeddings of the same boxes. Shared by the INT8 accuracy
gate (`export quantize`) and the drift benchmark (`benchmarks drift`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edge.detections import Detections
from edge.errors import EdgeError
from edge.models.detector import Detector, box_iou
from edge.models.embedder import Embedder

MATCH_IOU = 0.5


def match(reference: Detections, found: Detections) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy same-class matching at IoU ≥ 0.5, most confident found box first.

    Returns:
        For each found box: whether it matched, the reference index (-1 if not) and the IoU.
    """
    taken = np.zeros(len(reference), bool)
    matched = np.zeros(len(found), bool)
    partner = np.full(len(found), -1)
    ious = np.zeros(len(found))
    for index in np.argsort(-found.confidence, kind="stable"):
        candidates = (reference.class_id == found.class_id[index]) & ~taken
        if not candidates.any():
            continue
        iou = np.where(candidates, box_iou(found.xyxy[index], reference.xyxy), -1.0)
        best = int(iou.argmax())
        if iou[best] >= MATCH_IOU:
            taken[best], matched[index], partner[index], ious[index] = True, True, best, iou[best]
    return matched, partner, ious


def average_precision(confidence: np.ndarray, hit: np.ndarray, positives: int) -> float:
    """All-point interpolated AP of ranked detections (VOC/COCO style)."""
    if positives == 0:
        return float("nan")
    order = np.argsort(-confidence, kind="stable")
    tp = np.cumsum(hit[order])
    recall = np.concatenate([[0.0], tp / positives, [1.0]])
    precision = np.concatenate([[1.0], tp / np.arange(1, len(order) + 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall) * precision[1:]))


def detector_agreement(
    reference: Detector, candidate: Detector, frames: Sequence[np.ndarray], label: str
) -> tuple[dict[str, Any], list[dict[str, Any]], list[Detections]]:
    """Match the candidate's detections to the FP32 reference's on each frame.

    Args:
        label: the candidate's name in the results ("fp16", "int8").

    Returns:
        The summary, one row per frame, and the reference's detections per frame.
    """
    rows, references = [], []
    ranked: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # confidence, hit, class
    ious, score_changes = [], []
    for index, frame in enumerate(frames):
        expected, found = reference(frame), candidate(frame)
        matched, partner, iou = match(expected, found)
        references.append(expected)
        ranked.append((found.confidence, matched, found.class_id))
        ious += list(iou[matched])
        score_changes += list(found.confidence[matched] - expected.confidence[partner[matched]])
        rows.append({"frame": index, "fp32": len(expected), label: len(found),
                     "matched": int(matched.sum())})  # fmt: skip
    total32 = sum(r["fp32"] for r in rows)
    total = sum(r[label] for r in rows)
    hits = sum(r["matched"] for r in rows)
    confidence, hit, class_id = (np.concatenate(parts) for parts in zip(*ranked, strict=True))
    reference_classes = np.concatenate([r.class_id for r in references])
    per_class = {
        reference.names[c]: average_precision(
            confidence[class_id == c], hit[class_id == c], int((reference_classes == c).sum())
        )
        for c in np.unique(reference_classes)
    }
    summary = {
        "frames": len(frames),
        "boxes_fp32": total32,
        f"boxes_{label}": total,
        "precision": hits / total if total else float("nan"),
        "recall": hits / total32 if total32 else float("nan"),
        "mean_iou": float(np.mean(ious)) if ious else float("nan"),
        "mean_abs_score_change": float(np.mean(np.abs(score_changes))) if ious else float("nan"),
        "max_abs_score_change": float(np.max(np.abs(score_changes))) if ious else float("nan"),
        "map50_vs_fp32": float(np.mean(list(per_class.values()))) if per_class else float("nan"),
        "ap50_per_class": per_class,
    }
    return summary, rows, references


def embedder_cosines(
    reference: Embedder,
    candidate: Embedder,
    frames: Sequence[np.ndarray],
    boxes: Sequence[Detections],
) -> list[float]:
    """Cosine similarity of the candidate's and the FP32 reference's embeddings of each box.

    Raises:
        EdgeError: there is no box to embed.
    """
    cosines: list[float] = []
    for frame, found in zip(frames, boxes, strict=True):
        a, b = reference(frame, found.xyxy), candidate(frame, found.xyxy)
        cosines += [float(v) for v in np.sum(a * b, axis=1)]  # unit vectors
    if not cosines:
        raise EdgeError("the detector found no boxes to embed: no embedder agreement measured")
    return cosines
