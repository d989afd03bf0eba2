"""Reward losses: Bradley-Terry for pairs, a softmax over the list for multi-response items."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """Mean Bradley-Terry loss of reward pairs.

    ``loss = -log sigmoid(r(x, y_chosen) - r(x, y_rejected) - margin)``, averaged over the pairs.

    Args:
        r_chosen: rewards of the preferred responses, shape ``(n,)``.
        r_rejected: rewards of the other responses, shape ``(n,)``.
        margin: a required reward gap (0: the plain Bradley-Terry model).
    """
    return -F.logsigmoid(r_chosen.float() - r_rejected.float() - margin).mean()


def listwise_softmax_loss(scores: torch.Tensor, mask: torch.Tensor, preferred: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the preferred response under a softmax over each list.

    ``loss = -log( exp(r_preferred) / sum_j exp(r_j) )`` over the responses ``j`` of a list; with two
    responses this is exactly the Bradley-Terry loss.

    Args:
        scores: rewards, shape ``(lists, max_list_length)``; padded slots are ignored.
        mask: ``True`` where a slot holds a response, same shape.
        preferred: index of the preferred response in each list, shape ``(lists,)``.
    """
    scores = scores.float().masked_fill(~mask, float("-inf"))
    return F.cross_entropy(scores, preferred)


def pair_metrics(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> dict[str, float]:
    """Pairwise accuracy (ties count half), mean margin and mean reward of a batch, as TRL logs them."""
    diff = (r_chosen - r_rejected).detach().float()
    acc = ((diff > 0).float() + 0.5 * (diff == 0).float()).mean().item()
    reward = torch.cat([r_chosen.detach(), r_rejected.detach()]).float().mean().item()
    return {"acc": acc, "margin": diff.mean().item(), "reward": reward}
