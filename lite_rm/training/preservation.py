"""Ways to keep what the general stage learned while customizing.

Imitation learning lives in :mod:`lite_rm.training.mlm` and general replay in
:func:`lite_rm.training.batching.add_replay`; here are the weight-space ones: freezing, the L2-SP pull
toward the stage-2 weights, and interpolation between the general and the customized weights.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

from lite_rm.errors import ConfigError
from lite_rm.training.selection import general_tolerance

logger = logging.getLogger(__name__)

ALPHA_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def freeze(model: Any, embeddings: bool, layers: int) -> list[str]:
    """Stop gradients to the embeddings and/or the lowest ``layers`` transformer layers.

    Returns:
        The names of the frozen parameters.

    Raises:
        ValueError: ``layers`` exceeds the model's layer count.
    """
    encoder = model.base_model
    blocks = encoder.encoder.layer
    if layers > len(blocks):
        raise ConfigError(f"custom.freeze_layers: the model has {len(blocks)} layers, found {layers}")
    modules = ([encoder.embeddings] if embeddings else []) + list(blocks[:layers])
    frozen_ids: set[int] = set()
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(False)
            frozen_ids.add(id(p))
    names = [n for n, p in model.named_parameters() if id(p) in frozen_ids]
    if names:
        logger.info("frozen: %d tensors (%s)", len(names),
                    "embeddings + " * embeddings + f"{layers} lower layers")
    return names


class L2SP:
    """A pull of the encoder's trainable weights toward their values at creation (the general model).

    Applied decoupled from the loss, like AdamW's weight decay but toward ``w0`` instead of 0: after
    each optimizer step, ``w <- w - coef * (lr_t / lr_max) * (w - w0)``. As a loss term
    ``coef * ||w - w0||^2`` (Li et al. 2018) it misbehaves under Adam: Adam rescales the penalty's tiny
    gradient on rows the reward loss never touches (most of the word embeddings) into full-size
    steps, moving them *away*, further than no pull at all would. The reward head is left free.

    Args:
        model: the reward model (its ``base_model`` is pulled).
        coef: the share of the distance to ``w0`` removed per step at the peak learning rate, in [0, 1).
    """

    def __init__(self, model: Any, coef: float):
        self.coef = coef
        self.params = [p for p in model.base_model.parameters() if p.requires_grad]
        self.reference = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def pull(self, lr_scale: float = 1.0) -> None:
        """Move every weight ``coef * lr_scale`` of the way back to its reference."""
        rate = self.coef * lr_scale
        for p, ref in zip(self.params, self.reference, strict=True):
            p.sub_(rate * (p - ref))

    @torch.no_grad()
    def distance(self) -> float:
        """``sum ||w - w0||^2`` (for logging)."""
        pairs = zip(self.params, self.reference, strict=True)
        return float(sum(float((p - ref).pow(2).sum()) for p, ref in pairs))


def interpolate(
    general: dict[str, torch.Tensor], custom: dict[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """``alpha * custom + (1 - alpha) * general`` for floating tensors; other tensors from ``custom``."""
    out = {}
    for name, value in custom.items():
        base = general[name]
        out[name] = (alpha * value + (1.0 - alpha) * base).to(value.dtype) if value.is_floating_point() else value
    return out


def choose_alpha(
    evaluate: Callable[[float], tuple[float, float]],
    general_reference: float,
    tolerance: float,
    grid: Sequence[float] = ALPHA_GRID,
    general_pairs: int = 0,
) -> tuple[float, list[dict[str, float]]]:
    """Pick the interpolation weight on validation splits.

    Among the alphas whose general validation accuracy is at most ``tolerance`` below the general
    model's (``general_reference``), the one with the best custom validation accuracy wins (ties: the
    smaller alpha, closer to the general model). When none qualifies, the best sum of both. Alpha 0
    (the general model itself) is never chosen.

    The accepted drop is at least one standard error of the general validation accuracy,
    ``sqrt(0.25 / general_pairs)`` (0.036 for 190 pairs): a smaller drop is indistinguishable from
    noise, and treating it as real would give up custom accuracy for a general "drop" that is not there.

    Args:
        evaluate: alpha -> (custom validation accuracy, general validation accuracy).
        general_reference: the general model's general validation accuracy.
        tolerance: accepted drop of general validation accuracy.
        grid: the alphas tried.
        general_pairs: size of the general validation split (0: no noise allowance).

    Returns:
        The chosen alpha, and one row per alpha tried.
    """
    tolerance = general_tolerance(tolerance, general_pairs)
    rows = []
    for alpha in grid:
        custom_acc, general_acc = evaluate(alpha)
        rows.append({"alpha": alpha, "custom_valid": custom_acc, "general_valid": general_acc})
        logger.info("interpolation alpha=%.2f: custom valid %.4f, general valid %.4f", alpha, custom_acc, general_acc)
    # alpha 0 is the general model unchanged: it stays in the grid as a reference but is never chosen,
    # or a domain whose training costs general accuracy would get its customization thrown away.
    candidates = [r for r in rows if r["alpha"] > 0] or rows
    ok = [r for r in candidates if r["general_valid"] >= general_reference - tolerance - 1e-9]
    if ok:
        best = max(ok, key=lambda r: (r["custom_valid"], -r["alpha"]))
    else:
        best = max(candidates, key=lambda r: (r["custom_valid"] + r["general_valid"], -r["alpha"]))
    return float(best["alpha"]), rows
