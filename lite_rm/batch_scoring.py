"""Streaming batch scoring of large JSONL/CSV files with a bundle (the engine of ``lite-rm score``). Torch-free.

Rows are read one at a time and scored in chunks, and every chunk's results are appended to
``OUTPUT.partial`` and flushed, so memory stays flat whatever the file's size. When the input is done
the partial file is renamed to ``OUTPUT``. Every output row carries the input's line number, which is
how ``resume`` finds where an interrupted run stopped: it keeps the complete rows of the partial file
and skips input lines up to the last one written.

Two kinds of rows, told apart by their fields:

* ``prompt`` + ``response`` -> ``score``;
* ``prompt`` + ``a`` + ``b`` -> ``probability`` (that ``a`` is preferred, calibrated), ``score_a``, ``score_b``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from lite_rm.scorer import Scorer

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
LINE_FIELD = "line"
_KEEP_ERRORS = 5


class RowError(ValueError):
    """A bad input row; the message starts with ``FILE:LINE``; ``reason`` is a short kind for counts."""

    def __init__(self, message: str, reason: str = "invalid row") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Fields:
    """Names of the input columns (mappable, like the preference loaders' ``columns``)."""

    prompt: str = "prompt"
    response: str = "response"
    a: str = "a"
    b: str = "b"


@dataclass
class ScoreReport:
    """What a :func:`score_file` run did."""

    input: str
    output: str
    mode: str = "?"
    rows: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)
    resumed_after_line: int = 0
    seconds: float = 0.0
    preferred_a: int = 0  # rows where P(a preferred) > 0.5: pairwise accuracy when a is the chosen one

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        text = f"scored {self.rows} rows ({self.mode}) in {self.seconds:.1f}s"
        if self.seconds > 0:
            text += f", {self.rows / self.seconds:.1f} rows/s"
        if self.resumed_after_line:
            text += f"; resumed after line {self.resumed_after_line}"
        if self.mode == "preference" and self.rows:
            text += f"; a preferred in {self.preferred_a / self.rows:.3f} of rows"
        if self.skipped:
            text += f"; skipped {self.skipped_total} invalid rows (" + ", ".join(
                f"{n} {why}" for why, n in self.skipped.most_common()) + ")"
        return text


def file_format(path: str | Path, given: str | None = None) -> str:
    """``jsonl``, ``csv`` or ``preferences`` (a ``.json`` preference file of any format lite-rm loads),
    from ``given`` or the file name (``.csv``/``.tsv``/``.json``, optionally ``.gz``)."""
    if given:
        if given not in ("jsonl", "csv", "preferences"):
            raise ValueError(f"format: expected 'jsonl', 'csv' or 'preferences', found {given!r}")
        return given
    name = str(path).lower().removesuffix(".gz")
    if name.endswith(".json"):
        return "preferences"
    return "csv" if name.endswith((".csv", ".tsv")) else "jsonl"


def _preference_rows(path: Path, domain: str | None) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """(prompt, a=chosen, b=rejected) rows of a preference file (DSP, text/score, ...; not streamed:
    these formats are single JSON documents). The row number is the pair's 1-based position."""
    from lite_rm.data import DataError, load_preferences

    try:
        pairs = load_preferences(path, domain=domain).pairs
    except DataError as err:
        raise RowError(str(err), err.reason) from None
    for i, pair in enumerate(pairs, 1):
        yield i, {"prompt": pair.prompt, "a": pair.chosen, "b": pair.rejected, "source": pair.source}


def _open_binary(path: Path) -> IO[bytes]:
    if str(path).endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")  # noqa: SIM115


def _count_lines(path: Path) -> int | None:
    """Lines in a plain file (a fast pass over bytes), for the progress bar's total; None for gzip."""
    if str(path).endswith(".gz"):
        return None
    count = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            count += block.count(b"\n")
    return count


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    with _open_binary(path) as f:
        for line_no, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as err:
                where = f"{path}:{line_no}"
                yield line_no, RowError(f"{where}: not UTF-8 text ({err.reason} at byte {err.start})", "not UTF-8")
                continue
            except json.JSONDecodeError as err:
                where = f"{path}:{line_no}"
                yield line_no, RowError(f"{where}: invalid JSON ({err.msg}, column {err.colno})", "invalid JSON")
                continue
            if not isinstance(obj, dict):
                found = type(obj).__name__
                yield line_no, RowError(f"{path}:{line_no}: expected a JSON object, found {found}", "not an object")
                continue
            yield line_no, obj


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    delimiter = "\t" if str(path).lower().removesuffix(".gz").endswith(".tsv") else ","
    with _open_binary(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        reader = csv.DictReader(text, delimiter=delimiter)
        start = 2  # line 1 is the header
        try:
            for row in reader:
                if None in row:
                    message = f"{path}:{start}: more values than the header has columns"
                    yield start, RowError(message, "wrong column count")
                elif None in row.values():
                    missing = [k for k, v in row.items() if v is None]
                    message = f"{path}:{start}: too few values (no {', '.join(missing)})"
                    yield start, RowError(message, "wrong column count")
                else:
                    yield start, row
                start = reader.line_num + 1
        except UnicodeDecodeError as err:
            raise RowError(f"{path}: not UTF-8 text after line {start - 1} ({err.reason})") from None
        except csv.Error as err:
            raise RowError(f"{path}:{start}: malformed CSV ({err})") from None


def _detect_mode(row: dict[str, Any], fields: Fields, where: str) -> str:
    if fields.response in row:
        return "score"
    if fields.a in row and fields.b in row:
        return "preference"
    raise RowError(
        f"{where}: expected fields {fields.prompt!r} + {fields.response!r} (scores) or {fields.prompt!r} + "
        f"{fields.a!r} + {fields.b!r} (preference probabilities); found {sorted(row)[:10]}; map other names "
        "with --prompt-field/--response-field/--a-field/--b-field"
    )


def _texts(row: dict[str, Any], names: tuple[str, ...], where: str) -> tuple[str, ...]:
    out = []
    for name in names:
        if name not in row:
            raise RowError(f"{where}: field {name!r} is missing", "missing field")
        value = row[name]
        if not isinstance(value, str):
            raise RowError(f"{where}: field {name!r}: expected a string, found {type(value).__name__}", "not a string")
        out.append(value)
    return tuple(out)


def _resume_point(partial: Path, fmt: str) -> int:
    """The last input line written to ``partial``; drops a half-written last row (from a kill) first."""
    if not partial.exists() or partial.stat().st_size == 0:
        return 0
    with open(partial, "rb+") as f:
        data_end = partial.stat().st_size
        # Keep whole lines only: cut after the last newline.
        f.seek(max(0, data_end - (1 << 16)))
        tail = f.read()
        cut = tail.rfind(b"\n")
        if cut < 0 and data_end > len(tail):
            raise RowError(f"{partial}: cannot find a complete row to resume from; delete it and start over")
        keep = data_end - len(tail) + cut + 1 if cut >= 0 else 0
        f.truncate(keep)
    last = 0
    with open(partial, encoding="utf-8", newline="") as f:
        if fmt == "jsonl":
            for line in f:
                if line.strip():
                    last = int(json.loads(line)[LINE_FIELD])
        else:
            for row in csv.DictReader(f):
                last = int(row[LINE_FIELD])
    return last


class _Writer:
    """Appends result rows to the partial file in the output's format."""

    def __init__(self, path: Path, fmt: str, append: bool) -> None:
        self.fmt = fmt
        self.file = open(path, "a" if append else "w", encoding="utf-8", newline="")  # noqa: SIM115
        self.csv: csv.DictWriter[str] | None = None
        self.header_written = append and path.stat().st_size > 0

    def write(self, rows: list[dict[str, Any]]) -> None:
        if self.fmt == "jsonl":
            self.file.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        else:
            if self.csv is None:
                self.csv = csv.DictWriter(self.file, fieldnames=list(rows[0]), extrasaction="ignore")
                if not self.header_written:
                    self.csv.writeheader()
            self.csv.writerows(rows)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def score_file(
    scorer: Scorer,
    input_path: str | Path,
    output_path: str | Path,
    *,
    input_format: str | None = None,
    fields: Fields = Fields(),
    skip_invalid: bool = False,
    resume: bool = False,
    chunk_size: int = 256,
    progress: bool = True,
    domain: str | None = None,
) -> ScoreReport:
    """Score every row of a JSONL or CSV file and write the results, streaming.

    Args:
        scorer: an open :class:`~lite_rm.scorer.Scorer`.
        input_path: JSONL or CSV (optionally gzip) with prompt+response or prompt+a+b rows.
        output_path: where results go (JSONL, or CSV if the name ends in .csv/.tsv); each output row is
            the input row plus ``line`` and ``score`` (or ``probability``, ``score_a``, ``score_b``).
        input_format: ``jsonl`` or ``csv`` (default: from the file name).
        fields: input column names.
        skip_invalid: skip bad rows and count them instead of stopping at the first.
        resume: continue an interrupted run from ``OUTPUT.partial``.
        chunk_size: rows scored per call (memory use is proportional to it).
        progress: show a progress bar with rows/s on stderr.
        domain: for a DSP preference file (``.json``), the domain whose response is preferred.

    Returns:
        A report of rows scored and skipped.

    Raises:
        RowError: a bad row (without ``skip_invalid``); the message names file and line.
        FileNotFoundError: the input is missing.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise FileNotFoundError(f"input file {input_path} not found")
    in_fmt = file_format(input_path, input_format)
    out_fmt = file_format(output_path)
    partial = output_path.with_name(output_path.name + PARTIAL_SUFFIX)
    report = ScoreReport(str(input_path), str(output_path))
    start_after = 0
    if resume:
        start_after = _resume_point(partial, out_fmt)
        report.resumed_after_line = start_after
        if start_after:
            logger.info("resuming after input line %d (%s)", start_after, partial)
    elif partial.exists():
        logger.info("%s exists from an earlier run; starting over (use --resume to continue it)", partial)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    if in_fmt == "preferences":
        rows_iter = _preference_rows(input_path, domain)
        fields = Fields()
    else:
        rows_iter = _jsonl_rows(input_path) if in_fmt == "jsonl" else _csv_rows(input_path)
    writer = _Writer(partial, out_fmt, append=bool(start_after))
    total = _count_lines(input_path) if progress and in_fmt != "preferences" else None
    bar = tqdm(total=total, unit="rows", disable=not progress,
               dynamic_ncols=True, desc="scoring")
    t0 = time.perf_counter()
    pending: list[tuple[int, dict[str, Any], tuple[str, ...]]] = []
    try:
        for line_no, row in rows_iter:
            bar.update(1)
            if line_no <= start_after:
                continue
            try:
                if isinstance(row, RowError):
                    raise row
                where = f"{input_path}:{line_no}"
                if report.mode == "?":
                    report.mode = _detect_mode(row, fields, where)
                names = ((fields.prompt, fields.response) if report.mode == "score"
                         else (fields.prompt, fields.a, fields.b))
                pending.append((line_no, row, _texts(row, names, where)))
            except RowError as err:
                if not skip_invalid:
                    raise
                report.skipped[err.reason] += 1
                if len(report.first_errors) < _KEEP_ERRORS:
                    report.first_errors.append(str(err))
                continue
            if len(pending) >= chunk_size:
                _flush(scorer, pending, report, writer)
                pending = []
        if pending:
            _flush(scorer, pending, report, writer)
    finally:
        writer.close()
        bar.close()
        report.seconds = time.perf_counter() - t0
    if report.rows == 0 and not start_after:
        partial.unlink(missing_ok=True)
        raise RowError(f"{input_path}: no row to score" + (f" ({report.skipped_total} invalid rows skipped)"
                                                          if report.skipped else " (the file is empty)"))
    os.replace(partial, output_path)
    return report


def _flush(scorer: Scorer, pending: list[tuple[int, dict[str, Any], tuple[str, ...]]], report: ScoreReport,
           writer: _Writer) -> None:
    out: list[dict[str, Any]]
    if report.mode == "score":
        scores = scorer.score_pairs([t[0] for _, _, t in pending], [t[1] for _, _, t in pending])
        out = [{**row, LINE_FIELD: line, "score": float(s)} for (line, row, _), s in zip(pending, scores, strict=True)]
    else:
        prompts = [t[0] for _, _, t in pending]
        both = scorer.score_pairs(prompts + prompts, [t[1] for _, _, t in pending] + [t[2] for _, _, t in pending])
        n = len(pending)
        probs = scorer.probability_from_scores(both[:n], both[n:])
        out = [{**row, LINE_FIELD: line, "probability": float(p), "score_a": float(sa), "score_b": float(sb)}
               for (line, row, _), p, sa, sb in zip(pending, probs, both[:n], both[n:], strict=True)]
        report.preferred_a += int((probs > 0.5).sum())
    writer.write(out)
    report.rows += len(out)
