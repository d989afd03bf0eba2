"""Streaming large preference sets: pairs read shard by shard, never all in memory. Torch-free.

A general set of a million pairs (JSONL shards, a glob, a Hugging Face dataset) is read through the same
readers and format parsing as :func:`lite_rm.data.load_preferences`, so a bad line is reported the same
way (file, line, field). The training side (:class:`lite_rm.training.batching.StreamedPlan`) tokenizes
one buffer of pairs at a time; this module supplies the pieces that need no tokenizer:

- :func:`survey`: one pass over every set (parsing only) that counts each set's training pairs (the
  learning-rate schedule needs the number of steps), stops at the first bad record before any training,
  and keeps bounded, seeded samples of validation and training pairs.
- :func:`train_stream`: a set's training pairs in file order from any position (resuming skips pairs by
  parsing them, without tokenizing).
- :func:`buffer_draws`: how many pairs each buffer takes from each set, a uniform random merge of the
  sets, so every buffer mixes them in the ratio of their sizes.
- :func:`wants_streaming`: the automatic choice between this and loading everything.

Why not ``datasets.IterableDataset`` with ``interleave_datasets``: its JSON loader reports a bad line as
an Arrow error without file or line, coerces fields across rows, and samples the mixture, while
``general.proportions`` means an exact number of uses per epoch. Hugging Face datasets are still read
through ``datasets`` (memory-mapped Arrow, row by row, from the local cache when offline).
"""

from __future__ import annotations

import hashlib
import heapq
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lite_rm.data.loading import check_loaded, iter_preferences
from lite_rm.data.readers import count_records, is_dataset_source, is_glob, open_hf_dataset
from lite_rm.data.records import DataError, LoadReport, PreferencePair
from lite_rm.data.splitting import in_validation
from lite_rm.errors import ConfigError

logger = logging.getLogger(__name__)

# Sets holding at least this many records in all are streamed (a glob always is): tokenized in memory as
# Python lists of ids, larger sets would take hundreds of MB.
STREAM_MIN_RECORDS = 100_000
# Validation pairs kept for early stopping and checkpoint choice (a uniform, seeded sample of the
# held-out prompts' pairs): validating a share of a very large set every epoch would cost hours on a CPU.
VALID_MAX_PAIRS = 4096
# Training pairs kept when a stage needs general pairs in memory (replay in the custom stage, text
# for the base stage's masked-LM): a uniform, seeded sample.
SAMPLE_MAX_PAIRS = 50_000
MODES = ("auto", "on", "off")


def source_records(source: str) -> int | None:
    """Records a source holds, from a fast pass (lines of JSONL/CSV files and globs, rows of a dataset);
    ``None`` when that is not known cheaply (a JSON document, a missing source)."""
    if is_dataset_source(source):
        try:
            ds, _ = open_hf_dataset(source, None)
        except DataError:
            return None  # loading reports it
        return len(ds)
    return count_records(source)


def wants_streaming(sources: Mapping[str, str], mode: str = "auto", threshold: int = STREAM_MIN_RECORDS) -> bool:
    """Whether to stream the general sets: ``on``/``off`` as said; ``auto``: when a set is a glob or the
    sets hold at least ``threshold`` records in all.

    Raises:
        ValueError: an unknown mode.
    """
    if mode not in MODES:
        raise ConfigError(f"general.streaming: expected one of {', '.join(MODES)}, found {mode!r}")
    if mode != "auto":
        return mode == "on"
    if any(is_glob(source) for source in sources.values()):
        return True
    return sum(source_records(source) or 0 for source in sources.values()) >= threshold


def train_stream(source: str, valid_fraction: float, seed: int, skip: int = 0) -> Iterator[PreferencePair]:
    """A set's training pairs (those whose prompt is not held out) in file order, after the first ``skip``.

    Raises:
        DataError: a bad record, as :func:`lite_rm.data.load_preferences` would raise it.
    """
    position = 0
    for pair in iter_preferences(source, LoadReport(source=source, format="?")):
        if in_validation(pair.prompt, valid_fraction, seed):
            continue
        if position >= skip:
            yield pair
        position += 1


def _key(seed: int, *texts: str) -> float:
    digest = hashlib.blake2b("\x00".join((str(seed), *texts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class _Sample:
    """The ``size`` items with the smallest keys (a seeded uniform sample, bounded memory); equal keys
    (the same pair twice) are kept once."""

    def __init__(self, size: int):
        self.size = size
        self.heap: list[tuple[float, int, PreferencePair]] = []  # (-key, -order, pair): a max-heap
        self.keys: set[float] = set()

    def offer(self, key: float, order: int, pair: PreferencePair) -> None:
        if self.size <= 0 or key in self.keys:
            return
        if len(self.heap) < self.size:
            heapq.heappush(self.heap, (-key, -order, pair))
            self.keys.add(key)
        elif key < -self.heap[0][0]:
            dropped = heapq.heapreplace(self.heap, (-key, -order, pair))
            self.keys.discard(-dropped[0])
            self.keys.add(key)

    def in_order(self) -> list[PreferencePair]:
        """The kept items in the order they were read."""
        return [pair for _, _, pair in sorted(self.heap, key=lambda item: -item[1])]


@dataclass
class StreamSet:
    """One set as the survey found it.

    Attributes:
        name: the set's name in the run.
        source: the file, glob or dataset it is read from.
        train_pairs: pairs whose prompt is not held out (what an epoch trains on, before proportions).
        held_out_pairs: pairs whose prompt is held out.
        report: what was read, dropped and skipped.
    """

    name: str
    source: str
    train_pairs: int
    held_out_pairs: int
    report: LoadReport


@dataclass
class Survey:
    """The result of :func:`survey`: per-set counts and bounded samples, each in reading order."""

    sets: list[StreamSet]
    valid: list[PreferencePair] = field(default_factory=list)
    train_sample: list[PreferencePair] = field(default_factory=list)

    @property
    def train_pairs(self) -> int:
        return sum(s.train_pairs for s in self.sets)

    @property
    def held_out_pairs(self) -> int:
        return sum(s.held_out_pairs for s in self.sets)


def survey(sources: Mapping[str, str], valid_fraction: float, seed: int, valid_max: int = VALID_MAX_PAIRS,
           train_max: int = 0) -> Survey:
    """Read every set once (no tokenizing): count its training pairs and sample pairs.

    When the held-out pairs number at most ``valid_max``, ``valid`` is all of them in reading order
    (what :func:`lite_rm.data.split_by_prompt` gives); else a seeded uniform sample.

    Args:
        sources: set name -> file, glob or dataset name.
        valid_fraction: the share of prompts held out (by a hash of the prompt, as in training).
        seed: the run's seed (which prompts are held out, which pairs are sampled).
        valid_max: the most validation pairs kept.
        train_max: the most training pairs kept (0: none).

    Raises:
        DataError: a bad record, or a set without a usable pair.
    """
    valid, train = _Sample(valid_max), _Sample(train_max)
    sets: list[StreamSet] = []
    order = 0
    for name, source in sources.items():
        report = LoadReport(source=str(source), format="?")
        n_train = n_valid = 0
        for pair in iter_preferences(source, report):
            order += 1
            held_out = in_validation(pair.prompt, valid_fraction, seed)
            target = valid if held_out else train
            if target.size:
                target.offer(_key(seed + 1, pair.prompt, pair.chosen, pair.rejected), order, pair)
            n_valid += held_out
            n_train += not held_out
        report.pairs = n_train + n_valid
        check_loaded(report)
        logger.info("general set %s: %s", name, report.summary())
        sets.append(StreamSet(name, str(source), n_train, n_valid, report))
    return Survey(sets, valid.in_order(), train.in_order())


def buffer_draws(counts: Sequence[int], buffer_pairs: int, rng: np.random.Generator) -> list[list[int]]:
    """One epoch's buffers: per buffer, how many pairs it takes from each set.

    The sets are merged uniformly at random (multivariate hypergeometric draws without replacement), so
    each buffer holds them in the ratio of their remaining sizes and every set is used up by the end
    of the epoch. Sets no larger than one buffer in all give one buffer with everything.
    """
    if buffer_pairs < 1:
        raise ValueError(f"buffer_pairs: expected a positive integer, found {buffer_pairs!r}")
    left = np.asarray(counts, dtype=np.int64)
    draws: list[list[int]] = []
    while left.sum() > 0:
        drawn = rng.multivariate_hypergeometric(left, int(min(buffer_pairs, left.sum())))
        left = left - drawn
        draws.append([int(n) for n in drawn])
    return draws


def recorded_source(source: str | Path) -> str:
    """A data source as a checkpoint records it: an existing path or a glob made absolute, else (a
    dataset name) as is."""
    path = Path(source)
    if path.exists():
        return str(path.resolve())
    if is_glob(source):
        return str(path.expanduser().absolute())
    return str(source)
