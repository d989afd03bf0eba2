"""Load preference data from any supported source into :class:`PreferenceSet`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lite_rm.data.formats import (
    FORMATS,
    Identical,
    Tie,
    detect_format,
    dsp_identical_count,
    pairs_from_record,
    ranked_list_from_dsp,
)
from lite_rm.data.readers import read_rows
from lite_rm.data.records import DataError, LoadReport, PreferencePair, PreferenceSet, RankedList

logger = logging.getLogger(__name__)


def map_columns(record: dict[str, Any], columns: Mapping[str, str] | None) -> dict[str, Any]:
    """A copy of ``record`` with the source's column names renamed to ours (``{ours: theirs}``)."""
    if not columns:
        return record
    record = dict(record)
    for ours, theirs in columns.items():
        if theirs in record and ours != theirs:
            record[ours] = record.pop(theirs)
    return record


def load_preferences(
    source: str | Path,
    *,
    format: str | None = None,  # noqa: A002 - the natural name for users
    domain: str | None = None,
    skip_invalid: bool = False,
    columns: Mapping[str, str] | None = None,
    split: str | None = None,
    listwise: bool = False,
) -> PreferenceSet:
    """Load comparisons from a file, a saved Hugging Face dataset folder or a dataset name.

    Strict by default: the first malformed record raises :class:`DataError` naming the file, line or
    item, field, what was expected and what was found. Ties and identical responses carry no
    preference; they are dropped and counted in the report.

    Args:
        source: a path (``.json``, ``.jsonl``, ``.jsonl.gz``, ``.csv``, ``.tsv``, a ``save_to_disk``
            folder) or a Hugging Face dataset name.
        format: one of ``dsp``, ``text-score``, ``hh-rlhf``, ``pairs``, ``hf``; detected when omitted.
        domain: for DSP data, the domain whose response is preferred.
        skip_invalid: skip malformed records (counted in the report) instead of stopping.
        columns: our field name -> the source's column name, e.g. ``{"prompt": "question"}``.
        split: the split of a Hugging Face dataset (default: ``train`` when present).
        listwise: also keep the listwise view (:class:`RankedList`) of multi-response data.

    Returns:
        The pairs with a :class:`LoadReport`.

    Raises:
        DataError: bad input, or no usable pair at all.
    """
    if format is not None and format not in (*FORMATS, "hf"):
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join((*FORMATS, 'hf'))}")
    record_format = None if format == "hf" else format
    report = LoadReport(source=str(source), format=record_format or "?")
    pairs: list[PreferencePair] = []
    lists: list[RankedList] = []
    rows = read_rows(source, split=split, hf=format == "hf")
    try:
        for _, loc, record in rows:
            report.records += 1
            try:
                if isinstance(record, DataError):
                    raise record
                record = map_columns(record, columns)
                if record_format is None:
                    record_format = detect_format(record, loc)
                    report.format = record_format
                if record_format == "dsp":
                    lst = ranked_list_from_dsp(record, loc, domain)
                    new = lst.to_pairs()
                    report.identical += dsp_identical_count(lst)
                    if listwise and new:
                        lists.append(lst)
                    pairs.extend(new)
                else:
                    pairs.extend(pairs_from_record(record_format, record, loc, domain))
            except Tie:
                report.ties += 1
            except Identical:
                report.identical += 1
            except DataError as err:
                if not skip_invalid or err.reason in ("no domain", "unknown format"):
                    raise
                report.skips.add(err)
    except DataError as err:
        # A truncated gzip stream: in skip mode keep what was read before the damage.
        if not (skip_invalid and err.reason == "truncated gzip"):
            raise
        report.skips.add(err)
    report.pairs = len(pairs)
    if not pairs:
        found = f"{report.records} records"
        if report.ties or report.identical or report.skipped:
            found += f": {report.ties} ties, {report.identical} identical, {report.skipped_total} invalid"
        raise DataError(
            str(source),
            f"no usable preference pair; expected at least one comparison with a preference, found {found}",
            "no pairs",
        )
    if report.skipped:
        logger.warning("%s: %s", source, report.summary())
    return PreferenceSet(pairs, report, lists if listwise else None)
