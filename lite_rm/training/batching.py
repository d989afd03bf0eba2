"""Training data as token ids, and the batch plan: which pairs go into which step.

Texts are encoded once with the input rule (:func:`lite_rm.scoring.encoding.encode_pairs`) and stored without
padding; every (prompt, response) text is stored once, so a DSP query's preferred response, shared by
its four pairs, is encoded and run through the model once per step.

The whole plan (every step's pairs, for every epoch) is drawn up front from the seed. That makes a
resumed run take exactly the batches an uninterrupted run would have taken. Sets too large to hold are
planned one buffer at a time (:class:`StreamedPlan`), with the same guarantee.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from lite_rm.data import PreferencePair, RankedList
from lite_rm.scoring.encoding import EncodedPairs, InputRule, encode_pairs

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
        part = min(1.0, epochs - epoch)
        batches = plan_part(lengths, sizes, fractions, part, batch_size, rng)
        if epoch == 0:
            steps_per_epoch = epoch_steps(len(batches), part)
        plan.extend(batches)
    return plan, max(1, steps_per_epoch)


def epoch_steps(batches: int, part: float) -> int:
    """Steps of one full epoch from the batches of its first pass (a fractional epoch scaled up)."""
    return batches if part == 1.0 else math.ceil(batches / part)


def plan_part(
    lengths: np.ndarray, sizes: np.ndarray, fractions: Sequence[float] | None, part: float, batch_size: int,
    rng: np.random.Generator,
) -> list[list[int]]:
    """One pass over some units (all of them, or one streamed buffer): a weighted random order, cut to
    ``part`` of it (a fractional last epoch), grouped by length into batches.

    The draws from ``rng`` depend only on the number of units, their sizes and fractions, never on
    their lengths: a streamed plan replays them without tokenizing (:class:`StreamedPlan`).
    """
    order = _weighted_order(len(lengths), rng, fractions)
    if part < 1.0:
        order = order[: max(1, int(round(part * len(order))))]
    return group_by_length(order, lengths, sizes, batch_size, rng)


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


@dataclass(frozen=True)
class _Buffer:
    """One streamed buffer: which pairs it reads and which steps its batches are."""

    epoch: int
    start: tuple[int, ...]  # per set, training pairs read before this buffer in its epoch
    draws: tuple[int, ...]  # per set, pairs it takes
    part: float  # share of the buffer's order kept (a fractional last epoch)
    first_step: int
    steps: int
    rng_state: Mapping[str, Any]  # the plan's RNG before this buffer (resuming restores it)


class StreamedPlan(Sequence[list[int]]):
    """The batch plan of sets too large to hold: the sets are read pair by pair, one buffer at a time
    (:func:`lite_rm.data.streaming.buffer_draws` mixes them), and each buffer is tokenized and planned
    like a whole in-memory set (:func:`plan_part`: proportions, length grouping, shuffled batches).

    Memory is bounded by the buffer. Every pair is its own unit (pairs sharing a prompt are not kept in
    one batch; their texts are still encoded once per buffer), so a buffer's number of batches and its
    draws from the seeded RNG follow from its pair counts alone: the whole plan's length (for the
    learning-rate schedule) and every buffer's RNG state are worked out up front without tokenizing,
    and ``plan[k]`` after a resume re-reads only the buffer holding step ``k``. When one buffer holds
    everything (sets with unique prompts), the plan is the in-memory :func:`plan_epochs` plan.

    ``plan[k]`` returns unit ids of :attr:`data`, the buffer holding step ``k``: read :attr:`data`
    right after indexing (the training loop does: index, then step).
    """

    def __init__(self, open_set: Callable[[int, int], Iterator[PreferencePair]], counts: Sequence[int],
                 fractions: Sequence[float], tokenizer: Tokenizer, rule: InputRule, batch_size: int, epochs: float,
                 seed: int, buffer_pairs: int):
        """
        Args:
            open_set: ``(set index, skip) -> pairs``: a set's training pairs after the first ``skip``.
            counts: training pairs per set.
            fractions: uses per epoch of each set's pairs (proportions).
            tokenizer, rule: how pairs are encoded.
            batch_size: pairs per step.
            epochs: passes over the sets (a fraction allowed).
            seed: the plan's seed (the same RNG use as :func:`plan_epochs`).
            buffer_pairs: pairs read, tokenized and grouped at a time.
        """
        from lite_rm.data.streaming import buffer_draws

        self.open_set, self.fractions = open_set, list(fractions)
        self.tokenizer, self.rule, self.batch_size = tokenizer, rule, batch_size
        rng, mix = np.random.default_rng(seed), np.random.default_rng([seed, 1])
        self.buffers: list[_Buffer] = []
        step, self.steps_per_epoch = 0, 0
        for epoch in range(math.ceil(epochs)):
            part = min(1.0, epochs - epoch)
            start = [0] * len(counts)
            epoch_first = step
            for draws in buffer_draws(counts, buffer_pairs, mix):
                state = rng.bit_generator.state
                n = sum(draws)  # replay the RNG draws with placeholder lengths: they do not depend on them
                steps = len(plan_part(np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64),
                                      self._unit_fractions(draws), part, batch_size, rng))
                self.buffers.append(_Buffer(epoch, tuple(start), tuple(draws), part, step, steps, state))
                start = [a + b for a, b in zip(start, draws, strict=True)]
                step += steps
            if epoch == 0:
                self.steps_per_epoch = max(1, epoch_steps(step - epoch_first, part))
        self.total = step
        self.data: PairData | None = None
        self._current: _Buffer | None = None
        self._batches: list[list[int]] = []
        self._readers: dict[int, tuple[int, int, Iterator[PreferencePair]]] = {}  # set -> (epoch, position, it)

    def _unit_fractions(self, draws: Sequence[int]) -> list[float]:
        return [f for f, n in zip(self.fractions, draws, strict=True) for _ in range(n)]

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, step: int) -> list[int]:  # type: ignore[override]
        if not 0 <= step < self.total:
            raise IndexError(f"step {step} out of range: the plan has {self.total} steps")
        buffer = self._current
        if buffer is None or not buffer.first_step <= step < buffer.first_step + buffer.steps:
            planned = [b for b in self.buffers if b.steps]  # first steps strictly increasing
            buffer = planned[bisect.bisect_right([b.first_step for b in planned], step) - 1]
            self._load(buffer)
        return self._batches[step - buffer.first_step]

    def _read(self, index: int, epoch: int, start: int, n: int) -> list[PreferencePair]:
        """``n`` training pairs of set ``index`` from position ``start`` (continuing an open reader when
        it is there, else opening the set again and skipping)."""
        if n == 0:
            return []
        held = self._readers.get(index)
        if held is None or held[:2] != (epoch, start):
            held = (epoch, start, self.open_set(index, start))
        pairs = list(itertools.islice(held[2], n))
        if len(pairs) < n:
            raise RuntimeError(f"general set {index}: expected {n} more training pairs after {start}, found "
                               f"{len(pairs)}; the file changed while training")
        self._readers[index] = (epoch, start + n, held[2])
        return pairs

    def _load(self, buffer: _Buffer) -> None:
        """Read, tokenize and plan one buffer (its RNG restored, so its batches are the same on resume)."""
        pairs = [p for i, (start, n) in enumerate(zip(buffer.start, buffer.draws, strict=True))
                 for p in self._read(i, buffer.epoch, start, n)]
        data = encode_preferences(self.tokenizer, self.rule, pairs)
        data.units = [[i] for i in range(len(pairs))]
        rng = np.random.default_rng()
        rng.bit_generator.state = dict(buffer.rng_state)
        lengths = np.array([data.unit_length(u) for u in range(data.n_units)], dtype=np.int64)
        self._batches = plan_part(lengths, np.ones(len(pairs), dtype=np.int64),
                                  self._unit_fractions(buffer.draws), buffer.part, self.batch_size, rng)
        if len(self._batches) != buffer.steps:  # cannot happen: batch counts depend on pair counts only
            raise RuntimeError(f"streamed buffer: planned {buffer.steps} steps, found {len(self._batches)}")
        self.data, self._current = data, buffer
