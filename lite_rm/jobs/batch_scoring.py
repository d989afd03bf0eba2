"""Streaming batch scoring of large files with a bundle (the engine of ``lite-rm score``). Torch-free.

Records come from :func:`lite_rm.data.readers.read_rows` (the one reader of lite-rm: JSONL, JSON, CSV,
optionally gzip, stdin, datasets) and are scored in chunks; every chunk's results are appended to
``OUTPUT.partial`` and flushed, so memory stays flat whatever the file's size, and the partial file is
renamed to ``OUTPUT`` at the end (see :mod:`lite_rm.jobs.batch_output` for the lock, disk-full and resume
handling). Every output row carries the input's ``line`` (the line a record starts on, or its item
number), which is how ``resume`` finds where an interrupted run stopped.

Three kinds of input, told apart by the first record's fields:

* ``prompt`` + ``response`` -> ``score``;
* ``prompt`` + ``a`` + ``b`` -> ``probability`` (that ``a`` is preferred, calibrated), ``score_a``, ``score_b``;
* a preference record of any format lite-rm loads (TRL ``prompt``/``chosen``/``rejected``, conversational
  messages, hh-rlhf dialogues, text/score, DSP with a domain) -> the same as ``prompt`` + ``a`` = chosen +
  ``b`` = rejected; the share of rows where ``a`` wins is the pairwise accuracy. A record of plain fields
  keeps its own columns; other records give ``prompt`` and the texts as scored, named ``chosen`` and
  ``rejected`` for formats with those fields (TRL, conversational, hh-rlhf), else ``a`` and ``b``.

Prompts and responses may be chat messages (``[{"role", "content"}, ...]``), rendered as in training.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from tqdm import tqdm

from lite_rm.data.formats import FORMATS, Identical, Tie, detect_format, pairs_from_record
from lite_rm.data.loading import map_columns
from lite_rm.data.readers import Row, convert_rows, count_records, display_name, read_rows
from lite_rm.data.records import DataError, Skips
from lite_rm.data.text import check_text
from lite_rm.files import OutputError, input_identity
from lite_rm.jobs.batch_output import (
    LINE_FIELD,
    PARTIAL_SUFFIX,
    STDOUT,
    ResumePoint,
    open_output,
    refuse_folder,
)
from lite_rm.scoring.evaluation import pair_correctness
from lite_rm.scoring.scorer import Scorer

logger = logging.getLogger(__name__)

_SCALARS = (str, int, float, bool, type(None))
# Formats whose records name their responses chosen and rejected: their rows keep those names.
_CHOSEN_REJECTED = ("pairs", "hh-rlhf")


@dataclass
class ScoreReport:
    """What a :func:`score_file` run did."""

    input: str
    output: str
    mode: str = "?"
    records: int = 0
    rows: int = 0
    no_preference: int = 0  # preference records without a preference (ties, identical responses)
    skips: Skips = field(default_factory=Skips)
    resumed_after_line: int = 0
    seconds: float = 0.0
    preferred_a: float = 0.0  # rows where P(a preferred) > 0.5, a tie counting half: accuracy when a is chosen
    a_is_chosen: bool = False  # preference records (a = chosen), not (prompt, a, b) rows

    @property
    def accuracy(self) -> float | None:
        """Share of preference rows where ``a`` is preferred, a tie counting half (the pairwise accuracy when
        a = chosen)."""
        return self.preferred_a / self.rows if self.mode == "preference" and self.rows else None

    def summary(self) -> str:
        text = f"scored {self.rows} rows ({self.mode}) in {self.seconds:.1f}s"
        if self.seconds > 0:
            text += f", {self.rows / self.seconds:.1f} rows/s"
        if self.resumed_after_line:
            text += f"; resumed after line {self.resumed_after_line}"
        if self.accuracy is not None:
            text += (f"; chosen preferred in {self.accuracy:.3f} of rows (pairwise accuracy)" if self.a_is_chosen
                     else f"; a preferred in {self.accuracy:.3f} of rows")
        if self.no_preference:
            text += f"; {self.no_preference} records without a preference (tie or identical) not scored"
        if self.skips.total:
            text += "; " + self.skips.describe("rows")
        return text

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able data (``lite-rm score --json``)."""
        return {
            "input": self.input, "output": self.output, "mode": self.mode, "records": self.records,
            "rows": self.rows, "seconds": round(self.seconds, 3), "resumed_after_line": self.resumed_after_line,
            "accuracy": self.accuracy, "no_preference": self.no_preference,
            "skipped": dict(self.skips.counts), "first_errors": list(self.skips.first_errors),
        }


class Item(NamedTuple):
    """One row to score: the input line it came from, the output row so far, and its texts."""

    number: int
    out: dict[str, Any]
    texts: tuple[str, ...]


class _Rows:
    """Turns raw records into rows to score; the first usable record decides the kind of input."""

    def __init__(self, columns: Mapping[str, str] | None, data_format: str | None, domain: str | None) -> None:
        self.columns = dict(columns or {})
        self.domain = domain
        self.fmt = data_format if data_format in FORMATS else None  # a preference format, or None
        self.kind = "records" if self.fmt else "?"  # "score", "rows" (prompt+a+b) or "records"

    @property
    def mode(self) -> str:
        return {"?": "?", "score": "score"}.get(self.kind, "preference")

    def _detect(self, record: dict[str, Any], loc: str) -> None:
        if "response" in record:
            self.kind = "score"
        elif "a" in record and "b" in record:
            self.kind = "rows"
        else:
            try:
                self.fmt = detect_format(record, loc)
            except DataError:
                raise DataError(
                    loc,
                    f"expected fields 'prompt' + 'response' (scores), 'prompt' + 'a' + 'b' (preference "
                    "probabilities), or a preference record ('prompt' + 'chosen' + 'rejected', 'messages' + "
                    f"'chosen' + 'rejected', ...); found {sorted(record)[:10]}; map other names with "
                    "--column FIELD=COLUMN", "unknown format") from None
            self.kind = "records"

    def items(self, row: Row, raw: dict[str, Any]) -> list[Item]:
        """The rows to score from one record. Raises DataError, Tie or Identical."""
        record = map_columns(raw, self.columns)
        if self.kind == "?":
            self._detect(record, row.location)
        if self.kind != "records":
            names = ("prompt", "response") if self.kind == "score" else ("prompt", "a", "b")
            return [Item(row.number, dict(raw), _texts(record, names, row.location))]
        pairs = pairs_from_record(self.fmt or "pairs", record, row.location, self.domain)
        flat = len(pairs) == 1 and all(isinstance(v, _SCALARS) for v in raw.values())
        first, second = ("chosen", "rejected") if (self.fmt or "pairs") in _CHOSEN_REJECTED else ("a", "b")
        items = []
        for pair in pairs:
            # A flat record keeps its own columns (ids and all); others get the texts as scored.
            out = dict(raw) if flat else {"prompt": pair.prompt, first: pair.chosen, second: pair.rejected}
            if pair.rejected_label and not flat:
                out["b_label"] = pair.rejected_label
            items.append(Item(row.number, out, (pair.prompt, pair.chosen, pair.rejected)))
        return items


def _texts(record: dict[str, Any], names: tuple[str, ...], loc: str) -> tuple[str, ...]:
    """The named fields as text; chat-message lists are rendered as in training."""
    for name in names:
        if name not in record:
            raise DataError(loc, f"field {name!r} is missing; found fields {sorted(record)[:10]}", "missing field")
    return tuple(check_text(record[name], name, loc) for name in names)


class _LastLine:
    """The number of the last input row read (a resumed partial may not end past it) and how many were read."""

    def __init__(self) -> None:
        self.line = 0
        self.read = 0

    def track(self, rows: Iterable[Row]) -> Iterator[Row]:
        for row in rows:
            self.line = row.number
            self.read += 1
            yield row


class _ResumeFilter:
    """Skips the rows an interrupted run already wrote: every row of an earlier line, and the first
    ``done`` rows of the last line written (a record can give several rows)."""

    def __init__(self, point: ResumePoint) -> None:
        self.point = point
        self.seen_at_line = 0

    def written(self, item: Item) -> bool:
        if item.number != self.point.line:
            return item.number < self.point.line
        self.seen_at_line += 1
        return self.seen_at_line <= self.point.done


def _items(rows: Iterable[Row], adapter: _Rows, report: ScoreReport, skip_invalid: bool,
           resume: _ResumeFilter) -> Iterator[Item]:
    """The rows still to score, bad records raised or (``skip_invalid``) counted."""

    def convert(row: Row, record: dict[str, Any]) -> list[Item]:
        try:
            new = adapter.items(row, record)
        except (Tie, Identical):
            report.no_preference += 1
            return []
        report.mode = adapter.mode
        report.a_is_chosen = adapter.kind == "records"
        return [item for item in new if not resume.written(item)]

    # Records before the resume point were dealt with by the interrupted run (scored or skipped).
    todo = (row for row in rows if row.number >= resume.point.line)
    for new in convert_rows(todo, convert, report, skip_invalid=skip_invalid):
        yield from new


def check_rows(input_path: str | Path, *, kind: str | None = None, data_format: str | None = None,
               columns: Mapping[str, str] | None = None, split: str | None = None, skip_invalid: bool = False,
               ) -> tuple[ScoreReport, list[tuple[str, ...]]]:
    """Read and check the rows :func:`score_file` would score, without a model (``lite-rm data check``).

    Returns:
        The report (``mode``, ``records``, ``rows``, ``skips``) and each row's texts: ``(prompt, response)``
        or ``(prompt, a, b)``.

    Raises:
        DataError: a bad record (without ``skip_invalid``), as :func:`score_file` raises it.
    """
    rows = read_rows(input_path, split=split, hf=data_format == "hf", kind=kind)
    report = ScoreReport(display_name(input_path), "")
    adapter = _Rows(columns, data_format, None)
    texts = [item.texts for item in _items(rows, adapter, report, skip_invalid, _ResumeFilter(ResumePoint()))]
    report.rows = len(texts)
    return report, texts


def score_file(
    scorer: Scorer,
    input_path: str | Path,
    output_path: str | Path,
    *,
    kind: str | None = None,
    data_format: str | None = None,
    columns: Mapping[str, str] | None = None,
    split: str | None = None,
    domain: str | None = None,
    skip_invalid: bool = False,
    resume: bool = False,
    chunk_size: int = 256,
    progress: bool = True,
) -> ScoreReport:
    """Score every record of a file (or stdin) and write the results, streaming.

    Args:
        scorer: an open :class:`~lite_rm.scoring.scorer.Scorer`.
        input_path: JSONL, JSON or CSV/TSV (optionally gzip), ``-`` for stdin, or a dataset folder/name.
        output_path: where results go (JSONL, or CSV if the name ends in .csv/.tsv; ``-``: JSONL on
            stdout); each output row is the input row plus ``line`` and ``score`` (or ``probability``,
            ``score_a``, ``score_b``).
        kind: ``jsonl``, ``json``, ``csv`` or ``tsv`` when the name does not say (default: the name,
            else the content).
        data_format: a preference format (``dsp``, ``text-score``, ``hh-rlhf``, ``pairs``; ``hf`` reads
            a dataset); default: told from the first record.
        columns: our field name -> the input's column name (``prompt``, ``response``, ``a``, ``b``,
            ``chosen``, ``rejected``).
        split: the split of a Hugging Face dataset.
        domain: for DSP data, the domain whose response is preferred.
        skip_invalid: skip bad records and count them instead of stopping at the first.
        resume: continue an interrupted run from ``OUTPUT.partial``.
        chunk_size: rows scored per call (memory use is proportional to it).
        progress: show a progress bar of input records with rows/s on stderr.

    Returns:
        A report of rows scored and skipped.

    Raises:
        DataError: a bad record (without ``skip_invalid``); the message names file and line.
        OutputError: the output is locked by another run, or cannot be written (disk full); the partial to
            resume was written from another input or with other options, or ends past the input's end.
    """
    refuse_folder(output_path)  # before the input is read or counted
    name = display_name(input_path)
    rows = read_rows(input_path, split=split, hf=data_format == "hf", kind=kind)
    report = ScoreReport(name, "<stdout>" if str(output_path) == STDOUT else str(output_path))
    adapter = _Rows(columns, data_format, domain)
    total = count_records(input_path, kind) if progress else None
    # What a resumed partial must come from (skip_invalid may change between runs: it is the way on
    # after a bad row).
    source = {"input": input_identity(input_path),
              "options": {"kind": kind, "format": data_format, "columns": dict(columns or {}), "split": split,
                          "domain": domain}}
    last = _LastLine()
    with open_output(output_path, resume=resume, source=source) as out, \
            tqdm(total=total, unit="records", disable=not progress, dynamic_ncols=True, desc="scoring") as bar:
        report.resumed_after_line = out.resume.line
        t0 = time.perf_counter()
        # the bar moves when a chunk is written, not when it is read (reading runs a chunk ahead)
        _score_chunks(scorer, _items(last.track(rows), adapter, report, skip_invalid, _ResumeFilter(out.resume)),
                      report, out, chunk_size, lambda: bar.update(last.read - bar.n))
        report.seconds = time.perf_counter() - t0
        if out.resume.rows and last.line < out.resume.line:
            raise OutputError(
                f"{output_path}{PARTIAL_SUFFIX} ends at input line {out.resume.line}, but {name} ends at line "
                f"{last.line}: the partial was not written from this input. Rerun without --resume to start over "
                "(the partial is replaced)")
        if report.rows == 0 and not out.resume.rows:
            found = f"{report.skips.total} invalid rows skipped" if report.skips.total else \
                f"{report.records} records" if report.records else "the input is empty"
            raise DataError(name, f"no row to score ({found})", "no rows")
        out.commit()
    return report


def _score_chunks(scorer: Scorer, items: Iterator[Item], report: ScoreReport, out: Any, chunk_size: int,
                  written: Callable[[], None]) -> None:
    pending: list[Item] = []
    try:
        for item in items:
            pending.append(item)
            if len(pending) >= chunk_size:
                _flush(scorer, pending, report, out)
                written()
                pending = []
    except DataError:
        # The rows read before a bad one are written: --resume starts at the bad row.
        if pending:
            _flush(scorer, pending, report, out)
        raise
    if pending:
        _flush(scorer, pending, report, out)
    written()


def _flush(scorer: Scorer, pending: list[Item], report: ScoreReport, out: Any) -> None:
    out_rows: list[dict[str, Any]]
    prompts = [item.texts[0] for item in pending]
    if report.mode == "score":
        scores = scorer.score_pairs(prompts, [item.texts[1] for item in pending])
        out_rows = [{**item.out, LINE_FIELD: item.number, "score": float(s)}
                    for item, s in zip(pending, scores, strict=True)]
    else:
        compared = scorer.compare(prompts, [item.texts[1] for item in pending], [item.texts[2] for item in pending])
        out_rows = [{**item.out, LINE_FIELD: item.number, "probability": float(p), "score_a": float(sa),
                     "score_b": float(sb)} for item, p, sa, sb in
                    zip(pending, compared.probabilities, compared.score_a, compared.score_b, strict=True)]
        report.preferred_a += float(pair_correctness(compared.probabilities - 0.5).sum())
    out.write(out_rows)
    report.rows += len(out_rows)
