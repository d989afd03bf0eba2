"""One reward step: a batch's texts through one forward pass, and the loss of every data source in it.

A batch can mix sources (the custom data and replayed general pairs); each source is pairwise
(Bradley-Terry) or listwise (a softmax over a multi-response list). The validation metric of every
reward stage, :func:`pair_accuracy`, lives here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lite_rm.scoring.encoding import EncodedPairs
from lite_rm.scoring.evaluation import pair_correctness
from lite_rm.training.batching import PairData
from lite_rm.training.losses import bradley_terry_loss, listwise_softmax_loss, pair_metrics
from lite_rm.training.modeling import score_all, score_ids


@dataclass
class StepSource:
    """One data source of a step.

    Attributes:
        data: the encoded data.
        units: the step's unit ids: pair-group ids when pairwise, list ids when listwise.
        listwise: train the source's lists with a softmax (needs ``data.lists``).
    """

    data: PairData
    units: list[int]
    listwise: bool = False


@dataclass
class RewardStep:
    """What a reward step computed.

    Attributes:
        loss: the reward loss (pairs weigh equally across sources), to minimize.
        metrics: the first source's accuracy, margin and mean reward; ``replay_acc`` for a second one.
        pairs: how many pairs the step trained on (a list of k responses counts k - 1).
        texts: the batch's texts in the order they were scored (for an extra loss on them).
        preferred_rows: rows of ``texts`` holding the first source's preferred responses.
    """

    loss: torch.Tensor
    metrics: dict[str, float]
    pairs: int
    texts: EncodedPairs
    preferred_rows: list[int]


@dataclass
class _SourceLoss:
    loss: torch.Tensor
    pairs: int
    chosen: torch.Tensor
    rejected: torch.Tensor
    preferred_rows: list[int]


def _rows(source: StepSource) -> list[int]:
    """The text ids a source's units need, each once."""
    data = source.data
    if source.listwise and data.lists is not None:
        return sorted({t for u in source.units for t in data.lists[u]})
    return sorted({int(t) for u in source.units for p in data.units[u] for t in data.pairs[p]})


def _gather(tables: list[tuple[EncodedPairs, list[int]]]) -> EncodedPairs:
    """One batch's texts from one or more tables, in order (for a single forward pass)."""
    ids, types, cut = [], [], []
    for texts, rows in tables:
        for r in rows:
            ids.append(texts.input_ids[r])
            types.append(texts.token_type_ids[r])
            cut.append(texts.truncated[r])
    return EncodedPairs(ids, types, cut)


def _listwise_loss(source: StepSource, rewards: torch.Tensor, local: dict[int, int]) -> _SourceLoss:
    lists = [[local[t] for t in source.data.lists[u]] for u in source.units]  # type: ignore[index]
    width = max(len(x) for x in lists)
    device = rewards.device  # index and mask where the rewards are (a GPU)
    idx = torch.tensor([x + [0] * (width - len(x)) for x in lists], device=device)
    mask = torch.tensor([[True] * len(x) + [False] * (width - len(x)) for x in lists], device=device)
    scores = rewards[idx]
    loss = listwise_softmax_loss(scores, mask, torch.zeros(len(lists), dtype=torch.long, device=device))
    # the metrics see a list as its preferred response against each other one
    chosen = torch.cat([scores[j, :1].expand(len(x) - 1) for j, x in enumerate(lists)])
    rejected = torch.cat([scores[j, 1:len(x)] for j, x in enumerate(lists)])
    return _SourceLoss(loss, int(mask.sum()) - len(lists), chosen, rejected, [x[0] for x in lists])


def _pairwise_loss(source: StepSource, rewards: torch.Tensor, local: dict[int, int]) -> _SourceLoss:
    data = source.data
    pair_ids = [p for u in source.units for p in data.units[u]]
    ci = torch.tensor([local[int(data.pairs[p, 0])] for p in pair_ids], device=rewards.device)
    ri = torch.tensor([local[int(data.pairs[p, 1])] for p in pair_ids], device=rewards.device)
    chosen, rejected = rewards[ci], rewards[ri]
    return _SourceLoss(bradley_terry_loss(chosen, rejected), len(pair_ids), chosen, rejected,
                       sorted(set(ci.tolist())))


def reward_step(model: Any, sources: list[StepSource], pad_id: int, bf16: bool) -> RewardStep:
    """Rewards of a batch's texts in one forward pass, and the reward loss of every source.

    Args:
        model: the reward model.
        sources: the step's data sources; the first one's metrics are logged, a second one's
            accuracy as ``replay_acc``.
        pad_id: the padding id.
        bf16: autocast.
    """
    tables, locals_ = [], []
    offset = 0
    for source in sources:
        rows = _rows(source)
        tables.append((source.data.texts, rows))
        locals_.append({t: offset + i for i, t in enumerate(rows)})
        offset += len(rows)
    texts = _gather(tables)
    rewards = score_ids(model, texts, range(len(texts)), pad_id, bf16)

    parts: list[_SourceLoss] = []
    metrics: dict[str, float] = {}
    for i, (source, local) in enumerate(zip(sources, locals_, strict=True)):
        if not source.units:
            continue
        listwise = source.listwise and source.data.lists is not None
        part = (_listwise_loss if listwise else _pairwise_loss)(source, rewards, local)
        if i == 0:
            metrics = pair_metrics(part.chosen, part.rejected)
        else:
            metrics["replay_acc"] = pair_metrics(part.chosen, part.rejected)["acc"]
        parts.append(part)
    total = sum(p.pairs for p in parts)
    loss = torch.stack([p.pairs / total * p.loss for p in parts]).sum()
    preferred = parts[0].preferred_rows if parts and sources[0].units else []
    return RewardStep(loss, metrics, total, texts, preferred)


def pair_accuracy(model: Any, data: PairData, pad_id: int, bf16: bool, batch_size: int) -> float:
    """Pairwise accuracy of a model on encoded pairs (validation), ties counting half."""
    if len(data) == 0:
        return float("nan")
    return float(np.mean(pair_correct(model, data, pad_id, bf16, batch_size)))


def pair_correct(model: Any, data: PairData, pad_id: int, bf16: bool, batch_size: int) -> np.ndarray:
    """Per pair of ``data``: 1 when the model prefers the preferred response, 0.5 for a tie, 0 otherwise
    (:func:`lite_rm.scoring.evaluation.pair_correctness`; its mean is :func:`pair_accuracy`)."""
    if len(data) == 0:
        return np.zeros(0)
    rewards = np.asarray(score_all(model, data.texts, pad_id, bf16, batch_size), dtype=np.float64)
    return pair_correctness(rewards[data.pairs[:, 0]] - rewards[data.pairs[:, 1]])
