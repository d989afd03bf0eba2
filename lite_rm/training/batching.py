"""Training data as token ids, and the batch plan: which pairs go into which step.

Texts are encoded once with the input rule (:func:`lite_rm.encoding.encode_pairs`) and stored without
padding; every (prompt, response) text is stored once, so a DSP query's preferred response, shared by
its four pairs, is encoded and run through the model once per step.

The whole plan (every step's pairs, for every epoch) is drawn up front from the seed. That makes a
resumed run take exactly the batches an uninterrupted run would have taken.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

from lite_rm.data import PreferencePair, RankedList
from lite_rm.encoding import EncodedPairs, InputRule, encode_pairs

# Sort this many batches' worth of units by length at a time: batches of similar length waste little
# padding, while the order stays random across chunks (the "megabatch" trick of length grouping).
MEGABATCH = 32


@dataclass
class PairData:
    """Encoded comparisons.

    Attributes:
        texts: every distinct (prompt, response) text, encoded and unpadded.
        pairs: ``(n, 2)`` text ids of (chosen, rejected).
        units: groups of pair ids that go into a batch together (pairs sharing a prompt).
        lists: for listwise training, each list's text ids with the preferred one first.
    """

    texts: EncodedPairs
    pairs: np.ndarray
    units: list[list[int]]
    lists: list[list[int]] | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def unit_length(self, unit: int) -> int:
        """Tokens of the longest text of a unit (what its batch will be padded to)."""
        if self.lists is not None:
            return max(len(self.texts.input_ids[t]) for t in self.lists[unit])
        return max(len(self.texts.input_ids[t]) for p in self.units[unit] for t in self.pairs[p])

    def unit_pairs(self, unit: int) -> int:
        """How many pairs a unit counts as (a list of k responses counts as k - 1)."""
        if self.lists is not None:
            return len(self.lists[unit]) - 1
        return len(self.units[unit])

    @property
    def n_units(self) -> int:
        return len(self.lists) if self.lists is not None else len(self.units)


def encode_preferences(
    tokenizer: Tokenizer,
    rule: InputRule,
    pairs: Sequence[PreferencePair],
    lists: Sequence[RankedList] | None = None,
) -> PairData:
    """Encode pairs (and optionally their listwise view) into :class:`PairData`.

    Args:
        tokenizer: the model's tokenizer.
        rule: the input rule.
        pairs: the comparisons (used for pairwise training and for validation accuracy).
        lists: multi-response items for listwise training; duplicates of the preferred text are
            dropped from each list (they carry no preference).
    """
    index: dict[tuple[str, str], int] = {}

    def text_id(prompt: str, response: str) -> int:
        return index.setdefault((prompt, response), len(index))

    pair_ids = np.array([[text_id(p.prompt, p.chosen), text_id(p.prompt, p.rejected)] for p in pairs],
                        dtype=np.int64).reshape(-1, 2)
    by_prompt: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        by_prompt.setdefault(p.prompt, []).append(i)
    list_ids: list[list[int]] | None = None
    if lists is not None:
        list_ids = []
        for item in lists:
            best = item.responses[item.preferred]
            others = [r for i, r in enumerate(item.responses) if i != item.preferred and r != best]
            ids = [text_id(item.prompt, best)] + [text_id(item.prompt, r) for r in dict.fromkeys(others)]
            if len(ids) > 1:
                list_ids.append(ids)
    keys = sorted(index, key=index.__getitem__)
    texts = encode_pairs(tokenizer, [k[0] for k in keys], [k[1] for k in keys], rule)
    return PairData(texts, pair_ids, list(by_prompt.values()), list_ids)


def epoch_units(n_units: int, rng: np.random.Generator, fraction: float = 1.0) -> list[int]:
    """A random order of units; ``fraction`` < 1 keeps a random part, > 1 repeats (for proportions)."""
    whole, part = divmod(fraction, 1.0)
    order: list[int] = []
    for _ in range(int(whole)):
        order.extend(rng.permutation(n_units).tolist())
    if part > 0:
        order.extend(rng.permutation(n_units)[: int(round(part * n_units))].tolist())
    rng.shuffle(order)  # type: ignore[arg-type]
    return order


def group_by_length(
    order: list[int], length: Sequence[int] | np.ndarray, size: Sequence[int] | np.ndarray, batch_size: int,
    rng: np.random.Generator,
) -> list[list[int]]:
    """Cut a unit order into batches of about ``batch_size`` pairs of similar length.

    Within each chunk of :data:`MEGABATCH` batches, units are sorted by length and cut into batches;
    the batches are then shuffled so that long and short ones alternate across the epoch.
    """
    batches: list[list[int]] = []
    chunk = MEGABATCH * batch_size
    start = 0
    while start < len(order):
        # take units until the chunk holds `chunk` pairs
        end, pairs = start, 0
        while end < len(order) and pairs < chunk:
            pairs += int(size[order[end]])
            end += 1
        part = sorted(order[start:end], key=lambda u: -int(length[u]))
        current: list[int] = []
        count = 0
        for u in part:
            current.append(u)
            count += int(size[u])
            if count >= batch_size:
                batches.append(current)
                current, count = [], 0
        if current:
            batches.append(current)
        start = end
    perm = rng.permutation(len(batches))
    return [batches[i] for i in perm]


def plan_epochs(
    data: PairData, batch_size: int, epochs: float, seed: int, fractions: Sequence[float] | None = None,
) -> tuple[list[list[int]], int]:
    """Every step's units for ``epochs`` passes (a fractional last epoch takes part of an epoch).

    Args:
        data: the encoded training data.
        batch_size: pairs per step.
        epochs: passes over the data.
        seed: the plan's seed.
        fractions: per unit, how many times it is used per epoch (general set proportions); ``None``:
            once.

    Returns:
        The batches (unit ids) and the number of steps in one full epoch.
    """
    rng = np.random.default_rng(seed)
    lengths = np.array([data.unit_length(u) for u in range(data.n_units)])
    sizes = np.array([data.unit_pairs(u) for u in range(data.n_units)])
    plan: list[list[int]] = []
    steps_per_epoch = 0
    for epoch in range(math.ceil(epochs)):
        order = _weighted_order(data.n_units, rng, fractions)
        part = min(1.0, epochs - epoch)
        if part < 1.0:
            order = order[: max(1, int(round(part * len(order))))]
        batches = group_by_length(order, lengths, sizes, batch_size, rng)
        if epoch == 0:
            steps_per_epoch = len(batches) if part == 1.0 else math.ceil(len(batches) / part)
        plan.extend(batches)
    return plan, max(1, steps_per_epoch)


def _weighted_order(n_units: int, rng: np.random.Generator, fractions: Sequence[float] | None) -> list[int]:
    if fractions is None:
        return rng.permutation(n_units).tolist()
    per_unit = np.asarray(fractions, dtype=float)
    order: list[int] = []
    for value in np.unique(per_unit):
        members = np.flatnonzero(per_unit == value)
        order.extend(members[epoch_units(len(members), rng, float(value))].tolist())
    rng.shuffle(order)  # type: ignore[arg-type]
    return order


def add_replay(
    plan: list[list[int]], data: PairData, replay_pairs: int, share: float, seed: int
) -> list[tuple[list[int], list[int]]]:
    """General replay: give each step ``share`` of its pairs from the general set.

    Args:
        plan: the custom batches (unit ids).
        data: the custom data (to count pairs per batch).
        replay_pairs: how many general pairs there are to draw from.
        share: the share of each batch's pairs that are general pairs, in [0, 1).
        seed: seeds the draw; general pairs are drawn without replacement, cycling through them.

    Returns:
        Per step: (custom unit ids, general pair ids).
    """
    rng = np.random.default_rng(seed + 7919)
    pool: list[int] = []
    out: list[tuple[list[int], list[int]]] = []
    for batch in plan:
        n_custom = sum(data.unit_pairs(u) for u in batch)
        k = int(round(share / (1.0 - share) * n_custom)) if share > 0 and replay_pairs else 0
        drawn: list[int] = []
        while len(drawn) < k:
            if not pool:
                pool = rng.permutation(replay_pairs).tolist()
            drawn.append(pool.pop())
        out.append((batch, drawn))
    return out
