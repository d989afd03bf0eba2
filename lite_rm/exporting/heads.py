"""The heads step: the checkpoint's own heads (``custom.multitask``) shipped beside the graph, each
calibrated on its domain's held-out pairs as scored by the exported graph."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from lite_rm.errors import ExportError
from lite_rm.exporting.calibration import calibrate
from lite_rm.exporting.writer import stage_bundle
from lite_rm.scoring.bundle import Calibration, Manifest
from lite_rm.scoring.heads import LinearHead
from lite_rm.training.checkpoint import META_FILE, read_meta, validation_split_of


def _widened(head: LinearHead, dim: int | None) -> LinearHead:
    """A training head reads the score layer's input, the embedding's first part: zeros for the rest."""
    if dim is None or head.dim == dim:
        return head
    if head.dim > dim:
        raise ExportError(f"head {head.name!r} has {head.dim} weights, more than the embedding's {dim}")
    return replace(head, weight=np.concatenate([head.weight, np.zeros(dim - head.dim, dtype=np.float32)]))


def checkpoint_heads(checkpoint: Path, model: Path, tokenizer_dir: Path, base: Manifest, work: Path,
                     backbone: str, threads: int | None = None) -> list[LinearHead]:
    """The heads recorded in the checkpoint's ``lite_rm.json`` (none for a one-head model), calibrated.

    Args:
        checkpoint: the checkpoint folder.
        model: the graph being shipped (with its ``embedding`` output).
        tokenizer_dir: the bundle's tokenizer files.
        base: the manifest so far (input rule, embedding).
        work: a scratch folder.
        backbone: the checkpoint's digest, recorded in every head.

    Raises:
        BundleError: a malformed head record (naming the checkpoint file and the head).
    """
    from lite_rm.scoring.scorer import Scorer

    records: dict[str, Any] = read_meta(checkpoint).get("heads") or {}
    if not records:
        return []
    heads = [_widened(LinearHead.from_dict(data, f"{checkpoint / META_FILE} heads[{name!r}]"), base.embedding_dim)
             for name, data in records.items()]
    split = validation_split_of(checkpoint)
    held = split.held_out() if split else {}
    scorer = Scorer(stage_bundle(work / "heads-check", model, tokenizer_dir, base), threads=threads)
    out = []
    for head in heads:
        pairs = held.get(head.name, [])
        calibration = Calibration()
        if pairs:
            n = len(pairs)
            embedded = scorer.embed_pairs([p.prompt for p in pairs] * 2,
                                          [p.chosen for p in pairs] + [p.rejected for p in pairs])
            scores = head.scores(embedded)
            calibration = calibrate(scores[:n], scores[n:])
        out.append(replace(head, calibration=calibration, backbone=backbone))
    return out
