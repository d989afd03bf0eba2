"""Record types for preference data, and the error raised for bad input."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from lite_rm.errors import LiteRMError


@dataclass(frozen=True)
class PreferencePair:
    """One comparison: ``chosen`` is preferred over ``rejected`` as a reply to ``prompt``.

    Attributes:
        prompt: the prompt or dialogue history (may be empty).
        chosen: the preferred response.
        rejected: the other response.
        source: where it came from: ``file:line`` (JSONL/CSV) or ``file#item`` (JSON), 1-based.
        domain: for multi-domain data, the domain whose preference this is.
        rejected_label: for multi-domain data, the label of the other response (e.g. ``"normal"``).
    """

    prompt: str
    chosen: str
    rejected: str
    source: str = ""
    domain: str | None = None
    rejected_label: str | None = None


@dataclass(frozen=True)
class RankedList:
    """A prompt with several responses, one of them preferred (the listwise view of DSP data)."""

    prompt: str
    responses: tuple[str, ...]
    labels: tuple[str, ...]
    preferred: int
    source: str = ""
    domain: str | None = None

    def to_pairs(self) -> list[PreferencePair]:
        """The pairwise view: the preferred response over each other one (the paper's conversion)."""
        best = self.responses[self.preferred]
        return [
            PreferencePair(self.prompt, best, resp, self.source, self.domain, label)
            for i, (resp, label) in enumerate(zip(self.responses, self.labels, strict=True))
            if i != self.preferred and resp != best
        ]


class DataError(LiteRMError, ValueError):
    """Bad preference data. The message names the file, line or item, field, expected and found."""

    def __init__(self, location: str, message: str, reason: str = "invalid record"):
        super().__init__(f"{location}: {message}" if location else message)
        self.location = location
        self.reason = reason


@dataclass
class Skips:
    """Records skipped as invalid (``--skip-invalid``): counts by reason and the first few messages.

    One type for every reader of records (:func:`~lite_rm.data.load_preferences`, ``lite-rm score``),
    so both count and show skipped records the same way.
    """

    counts: Counter[str] = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)
    keep: int = 5  # how many messages to keep, to show what went wrong without flooding the output

    def add(self, err: DataError) -> None:
        """Count one skipped record and keep its message if it is among the first few."""
        self.counts[err.reason] += 1
        if len(self.first_errors) < self.keep:
            self.first_errors.append(str(err))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def describe(self, noun: str = "records") -> str:
        """``"3 invalid records skipped (2 invalid JSON, 1 missing field)"``."""
        why = ", ".join(f"{n} {reason}" for reason, n in self.counts.most_common())
        return f"{self.total} invalid {noun} skipped ({why})"


@dataclass
class LoadReport:
    """What a load found: pairs kept, and what was dropped or skipped and why."""

    source: str
    format: str
    records: int = 0
    pairs: int = 0
    ties: int = 0
    identical: int = 0
    skips: Skips = field(default_factory=Skips)

    @property
    def skipped(self) -> Counter[str]:
        """Skipped records by reason."""
        return self.skips.counts

    @property
    def first_errors(self) -> list[str]:
        return self.skips.first_errors

    @property
    def skipped_total(self) -> int:
        return self.skips.total

    def summary(self) -> str:
        parts = [f"{self.pairs} pairs from {self.records} records ({self.format})"]
        if self.ties:
            parts.append(f"{self.ties} ties dropped")
        if self.identical:
            parts.append(f"{self.identical} identical responses dropped")
        if self.skips.total:
            parts.append(self.skips.describe())
        return "; ".join(parts)


@dataclass
class PreferenceSet:
    """Pairs loaded from one source, with the load report. Iterable and sized like a list."""

    pairs: list[PreferencePair]
    report: LoadReport
    lists: list[RankedList] | None = None  # the listwise view, for multi-response data

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.pairs)

    def __getitem__(self, index: int) -> PreferencePair:
        return self.pairs[index]
