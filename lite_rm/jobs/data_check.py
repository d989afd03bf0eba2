"""What ``lite-rm data check`` reports: counts, token lengths against the input rule, and leaks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lite_rm.data.formats import DSP_DOMAINS
from lite_rm.data.loading import load_preferences
from lite_rm.data.records import DataError, LoadReport, PreferencePair, Skips
from lite_rm.scoring.encoding import InputRule


@dataclass
class LengthStats:
    """Token counts of prompts, responses and whole encoded pairs (special tokens included)."""

    prompt: dict[str, float]
    response: dict[str, float]
    pair: dict[str, float]
    truncated_share: float
    max_length: int


@dataclass
class FileCheck:
    """The check of one source: its load report(s), lengths, and prompts (for the leak check)."""

    source: str
    reports: dict[str, LoadReport]  # "" for single-preference files, the domain for DSP
    lengths: LengthStats | None = None
    prompts: set[str] = field(default_factory=set)

    @property
    def format(self) -> str:
        return next(iter(self.reports.values())).format

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "format": self.format, "sets": {}}
        for key, rep in self.reports.items():
            out["sets"][key or "all"] = {
                "records": rep.records, "pairs": rep.pairs, "ties": rep.ties, "identical": rep.identical,
                "invalid_skipped": dict(rep.skipped),
            }
        if self.lengths:
            out["lengths"] = self.lengths.__dict__
        out["prompts"] = len(self.prompts)
        return out


@dataclass
class RowsCheck:
    """The check of a source of rows to score (``prompt`` + ``response``, or ``prompt`` + ``a`` + ``b``):
    what ``lite-rm score`` takes, not preference pairs to train on."""

    source: str
    fields: str  # "prompt+response" or "prompt+a+b"
    records: int
    rows: int
    skips: Skips
    lengths: LengthStats | None = None
    prompts: set[str] = field(default_factory=set)

    @property
    def format(self) -> str:
        return f"rows to score: {self.fields}"

    def summary(self) -> str:
        text = (f"{self.rows} rows to score ({self.fields}) from {self.records} records: input for lite-rm score; "
                "training and eval need preference pairs (prompt+chosen+rejected)")
        return text + ("; " + self.skips.describe() if self.skips.total else "")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "format": "rows", "fields": self.fields,
                               "records": self.records, "rows": self.rows, "invalid_skipped": dict(self.skips.counts)}
        if self.lengths:
            out["lengths"] = self.lengths.__dict__
        out["prompts"] = len(self.prompts)
        return out


def rows_check(source: str, fields: str, records: int, skips: Skips, texts: Sequence[tuple[str, ...]],
               tokenizer: Any = None, rule: InputRule | None = None) -> RowsCheck:
    """A :class:`RowsCheck` from rows already read and validated (each ``(prompt, response)`` or
    ``(prompt, a, b)``)."""
    check = RowsCheck(source, fields, records, len(texts), skips, prompts={t[0].strip() for t in texts})
    if tokenizer is not None and texts:
        inputs = {(t[0], r) for t in texts for r in t[1:]}
        check.lengths = input_length_stats(inputs, tokenizer, rule or InputRule())
    return check


def _stats(values: Sequence[int]) -> dict[str, float]:
    arr = np.asarray(values)
    return {
        "mean": float(arr.mean()), "median": float(np.median(arr)),
        "p95": float(np.percentile(arr, 95)), "max": int(arr.max()),
    }


def _token_counts(tokenizer: Any, texts: list[str]) -> dict[str, int]:
    encoded = tokenizer.encode_batch(texts, add_special_tokens=False)
    return {text: len(enc.ids) for text, enc in zip(texts, encoded, strict=True)}


def length_stats(pairs: Sequence[PreferencePair], tokenizer: Any, rule: InputRule) -> LengthStats:
    """Token lengths of the texts and the share of (prompt, response) inputs the rule truncates."""
    return input_length_stats({(p.prompt, r) for p in pairs for r in (p.chosen, p.rejected)}, tokenizer, rule)


def input_length_stats(inputs: set[tuple[str, str]], tokenizer: Any, rule: InputRule) -> LengthStats:
    """Token lengths of the (prompt, response) inputs' texts and the share of inputs the rule truncates."""
    prompts = sorted({p for p, _ in inputs})
    responses = sorted({r for _, r in inputs})
    n_prompt = _token_counts(tokenizer, prompts)
    n_resp = _token_counts(tokenizer, responses)
    special = tokenizer.num_special_tokens_to_add(is_pair=True)
    totals = [n_prompt[p] + n_resp[r] + special for p, r in inputs]
    return LengthStats(
        prompt=_stats(list(n_prompt.values())),
        response=_stats(list(n_resp.values())),
        pair=_stats(totals),
        truncated_share=float(np.mean([t > rule.max_length for t in totals])),
        max_length=rule.max_length,
    )


def check_source(
    source: str | Path,
    *,
    format: str | None = None,  # noqa: A002
    domain: str | None = None,
    skip_invalid: bool = False,
    columns: Mapping[str, str] | None = None,
    split: str | None = None,
    tokenizer: Any = None,
    rule: InputRule | None = None,
) -> FileCheck:
    """Load one source the way training would and summarize it. DSP files without a domain are
    checked for every domain. Raises :class:`DataError` on bad input (unless skipping)."""
    kwargs: dict[str, Any] = dict(format=format, skip_invalid=skip_invalid, columns=columns, split=split)
    reports: dict[str, LoadReport] = {}
    pairs: list[PreferencePair] = []
    try:
        loaded = load_preferences(source, domain=domain, **kwargs)
        reports[domain or ""] = loaded.report
        pairs = loaded.pairs
    except DataError as err:
        if err.reason != "no domain":
            raise
        for dom in DSP_DOMAINS:
            loaded = load_preferences(source, domain=dom, **kwargs)
            reports[dom] = loaded.report
            pairs.extend(loaded.pairs)
    check = FileCheck(str(source), reports, prompts={p.prompt.strip() for p in pairs})
    if tokenizer is not None:
        check.lengths = length_stats(pairs, tokenizer, rule or InputRule())
    return check


def find_leaks(checks: Sequence[FileCheck | RowsCheck]) -> list[tuple[str, str, int, str]]:
    """Prompts shared between sources: (source a, source b, how many, one example)."""
    leaks = []
    for i, a in enumerate(checks):
        for b in checks[i + 1 :]:
            shared = a.prompts & b.prompts
            if shared:
                example = min(shared, key=len)
                leaks.append((a.source, b.source, len(shared), example[:80]))
    return leaks
