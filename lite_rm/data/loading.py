"""Load preference data from any supported source into :class:`PreferenceSet`."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lite_rm.data.formats import (
    SOURCE_FORMATS,
    Identical,
    Tie,
    detect_format,
    dsp_identical_count,
    pairs_from_record,
    ranked_list_from_dsp,
)
from lite_rm.data.readers import Row, convert_rows, read_rows
from lite_rm.data.records import DataError, LoadReport, PreferencePair, PreferenceSet, RankedList
from lite_rm.errors import ConfigError

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


def _pairs_of(record: dict[str, Any], loc: str, report: LoadReport, domain: str | None,
              lists: list[RankedList] | None) -> list[PreferencePair]:
    """The pairs of one record (the first one sets the format); ties and identical responses are counted
    in the report; DSP lists are kept in ``lists`` when given."""
    if report.format == "?":
        report.format = detect_format(record, loc)
    try:
        if report.format != "dsp":
            return pairs_from_record(report.format, record, loc, domain)
        lst = ranked_list_from_dsp(record, loc, domain)
        report.identical += dsp_identical_count(lst)
        new = lst.to_pairs()
        if lists is not None and new:
            lists.append(lst)
        return new
    except Tie:
        report.ties += 1
    except Identical:
        report.identical += 1
    return []


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
            folder), a glob of files (``shards/*.jsonl.gz``, read in sorted order) or a Hugging Face
            dataset name.
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
    report = LoadReport(source=str(source), format="?")
    lists: list[RankedList] = []
    pairs = list(iter_preferences(source, report, format=format, domain=domain, skip_invalid=skip_invalid,
                                  columns=columns, split=split, lists=lists if listwise else None))
    report.pairs = len(pairs)
    check_loaded(report)
    return PreferenceSet(pairs, report, lists if listwise else None)


def iter_preferences(
    source: str | Path,
    report: LoadReport,
    *,
    format: str | None = None,  # noqa: A002 - the natural name for users
    domain: str | None = None,
    skip_invalid: bool = False,
    columns: Mapping[str, str] | None = None,
    split: str | None = None,
    lists: list[RankedList] | None = None,
) -> Iterator[PreferencePair]:
    """The comparisons of a source one by one, as :func:`load_preferences` reads them (streamed where the
    reader streams: JSONL/CSV files and globs of them, datasets): the same parsing, the same errors.

    Args:
        source: as for :func:`load_preferences`.
        report: counts records, ties, identical responses and skips as they are read (its ``format`` is
            set from ``format`` or the first record; ``pairs`` is left to the caller).
        format, domain, skip_invalid, columns, split: as for :func:`load_preferences`.
        lists: when given, DSP records' listwise views are appended to it.

    Raises:
        DataError: a bad record (unless skipped), or a source missing or damaged as a whole.
    """
    if format is not None and format not in SOURCE_FORMATS:
        raise ConfigError(f"unknown format {format!r}; expected one of {', '.join(SOURCE_FORMATS)}")
    report.format = "?" if format in (None, "hf") else str(format)

    def convert(row: Row, raw: dict[str, Any]) -> list[PreferencePair]:
        return _pairs_of(map_columns(raw, columns), row.location, report, domain, lists)

    rows = read_rows(source, split=split, hf=format == "hf")
    for new in convert_rows(rows, convert, report, skip_invalid=skip_invalid, fatal=("no domain", "unknown format")):
        yield from new


def check_loaded(report: LoadReport) -> None:
    """After a load: no usable pair at all is an error; skipped records are a warning.

    Raises:
        DataError: ``report.pairs`` is 0.
    """
    if not report.pairs:
        found = f"{report.records} records"
        if report.ties or report.identical or report.skipped:
            found += f": {report.ties} ties, {report.identical} identical, {report.skipped_total} invalid"
        raise DataError(
            report.source,
            f"no usable preference pair; expected at least one comparison with a preference, found {found}",
            "no pairs",
        )
    if report.skipped:
        logger.warning("%s: %s", report.source, report.summary())
