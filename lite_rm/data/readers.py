"""Reading raw records: JSON, JSONL and CSV/TSV (plain or gzip, from a file or stdin) and Hugging Face
datasets. The one reader of records in lite-rm: training, ``data check`` and ``lite-rm score`` all read
through :func:`read_rows`, so they accept and reject the same input.

Each reader yields :class:`Row` ``(number, location, record)``: the number is the 1-based line a JSONL or
CSV record starts on (or the item/row number of a JSON list or dataset), the location is ``"FILE line
N"``, ``"FILE item N"`` or ``"NAME[split] row N"``, so that every later error can name where the bad
record is. Line-based files are streamed (memory stays flat). A glob (``shards/*.jsonl.gz``) reads every
matching file in sorted order, each located by its own name. File-level damage (a truncated gzip
stream, invalid JSON in a JSON document) raises :class:`DataError`; damage confined to one record (a
line that is not JSON, bytes that are not UTF-8, a lone surrogate, a wrong number of CSV columns) is
yielded in place of the record, so that the caller can stop or skip it. A UTF-8 byte order mark (Excel's
"CSV UTF-8") is accepted everywhere.
"""

from __future__ import annotations

import csv
import glob
import gzip
import io
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol, TypeVar

from lite_rm.data.records import DataError, Skips
from lite_rm.data.text import may_hold_surrogates, parse_json_line, parse_json_text, text_error

STDIN = "-"
KINDS = ("jsonl", "json", "csv", "tsv")
_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"

RawRecord = tuple[str, "dict[str, Any] | DataError"]
T = TypeVar("T")


class Row(NamedTuple):
    """One raw record and where it came from."""

    number: int
    location: str
    record: dict[str, Any] | DataError


def display_name(source: str | Path) -> str:
    """How a source is named in messages (``<stdin>`` for ``-``)."""
    return "<stdin>" if str(source) == STDIN else str(source)


def is_glob(source: str | Path) -> bool:
    """Whether a source is a shard pattern (``*``, ``?`` or ``[`` in a name that is not an existing path)."""
    text = str(source)
    return text != STDIN and glob.has_magic(text) and not Path(text).exists()


def expand_glob(pattern: str | Path) -> list[Path]:
    """The files a shard pattern matches, sorted by name (``~`` expanded; ``**`` crosses folders).

    Raises:
        DataError: no file matches.
    """
    text = str(pattern)
    files = sorted(Path(p) for p in glob.glob(str(Path(text).expanduser()), recursive=True) if Path(p).is_file())
    if not files:
        raise DataError(text, "no file matches this pattern; expected one or more preference files "
                              "(e.g. shards/*.jsonl.gz)", "file not found")
    return files


def kind_from_name(name: str | Path) -> str | None:
    """``jsonl``, ``json``, ``csv`` or ``tsv`` from a file name (optionally ``.gz``); None if it does not say."""
    lower = str(name).lower().removesuffix(".gz")
    for suffixes, kind in (((".jsonl", ".ndjson"), "jsonl"), ((".json",), "json"), ((".csv",), "csv"),
                           ((".tsv",), "tsv")):
        if lower.endswith(suffixes):
            return kind
    return None


def _sniff_kind(head: bytes) -> str:
    """From the first bytes: a JSON list, JSON lines, or else CSV."""
    text = head.removeprefix(_BOM).lstrip()
    if text.startswith(b"["):
        return "json"
    return "jsonl" if text.startswith(b"{") or not text else "csv"


@contextmanager
def _open_input(source: str | Path) -> Iterator[tuple[IO[bytes], bool]]:
    """A binary stream of the source's content (gzip undone, detected from its magic bytes) and whether
    it was gzip. ``-`` is stdin."""
    if str(source) == STDIN:
        raw: Any = sys.stdin.buffer
        if not hasattr(raw, "peek"):
            raw = io.BufferedReader(raw)  # a peekable view (click's test runner gives a plain BytesIO)
        owned = False
    else:
        raw = open(source, "rb")  # noqa: SIM115 - closed below
        owned = True
    try:
        gz = raw.peek(2)[:2] == _GZIP_MAGIC
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw  # type: ignore[assignment]
        yield stream, gz
    finally:
        if owned:
            raw.close()


def _truncated(name: str, lineno: int, err: Exception) -> DataError:
    return DataError(
        f"{name} line {lineno + 1}",
        f"the gzip stream is truncated or corrupt after line {lineno} ({err or type(err).__name__}); "
        "expected a complete gzip file: download or compress it again",
        reason="truncated gzip",
    )


def _lines(stream: IO[bytes], name: str, gz: bool) -> Iterator[tuple[int, bytes]]:
    """``(line number, bytes)`` of a stream, without a leading byte order mark."""
    lineno = 0
    while True:
        try:
            raw = stream.readline()
        except (EOFError, gzip.BadGzipFile, zlib.error) as err:
            raise _truncated(name, lineno, err) from None
        except OSError as err:
            if not gz:
                raise
            raise _truncated(name, lineno, err) from None
        if not raw:
            return
        lineno += 1
        yield lineno, raw.removeprefix(_BOM) if lineno == 1 else raw


def _read_all(stream: IO[bytes], name: str, gz: bool) -> bytes:
    return b"".join(raw for _, raw in _lines(stream, name, gz))


def _jsonl(lines: Iterable[tuple[int, bytes]], name: str) -> Iterator[Row]:
    for lineno, raw in lines:
        if raw.strip():
            loc = f"{name} line {lineno}"
            yield Row(lineno, loc, parse_json_line(raw, loc))


def _json_document(data: bytes, name: str) -> Iterator[Row]:
    """A JSON list of objects (or ``{"data": [...]}``). A ``.json`` file that is really JSON lines
    (``datasets.Dataset.to_json`` writes those) is read as such."""
    items = parse_json_text(data, name)
    if items is None:  # several top-level objects: JSON lines
        yield from _jsonl(enumerate(data.splitlines(keepends=True), start=1), name)
        return
    if isinstance(items, dict) and len(items) == 1 and isinstance(next(iter(items.values())), list):
        items = next(iter(items.values()))  # {"data": [...]} wrappers
    if not isinstance(items, list):
        raise DataError(name, f"expected a JSON list of records, found {type(items).__name__}", "not a list")
    check_text = may_hold_surrogates(data)
    for i, record in enumerate(items, start=1):
        loc = f"{name} item {i}"
        if not isinstance(record, dict):
            found = type(record).__name__
            yield Row(i, loc, DataError(loc, f"expected a JSON object, found {found}", "not an object"))
        else:
            yield Row(i, loc, (text_error(record, loc) if check_text else None) or record)


def _csv(lines: Iterable[tuple[int, bytes]], name: str, delimiter: str) -> Iterator[Row]:
    """CSV rows with a header; every value a string. Streams: quoted fields may span lines."""
    state = {"line": 0, "dirty": False}

    def text_lines() -> Iterator[str]:
        for lineno, raw in lines:
            state["line"] = lineno
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                # Keep reading: the bad bytes become surrogates, reported for their own row below.
                state["dirty"] = True
                yield raw.decode("utf-8", errors="surrogateescape")

    reader = csv.reader(text_lines(), delimiter=delimiter)
    header: list[str] | None = None
    start = 1
    try:
        for fields in reader:
            loc, number, start = f"{name} line {start}", start, int(state["line"]) + 1
            dirty, state["dirty"] = state["dirty"], False
            if not fields:
                continue  # a blank line
            if header is None:
                header = fields
                bad = text_error(dict.fromkeys(fields, ""), loc, "csv") if dirty else None
                if bad:
                    raise bad
                continue
            if len(fields) != len(header):
                yield Row(number, loc, DataError(
                    loc, f"expected {len(header)} columns as in the header, found {len(fields)}",
                    "wrong column count"))
                continue
            record = dict(zip(header, fields, strict=True))
            yield Row(number, loc, (text_error(record, loc, "csv") if dirty else None) or record)
    except csv.Error as err:
        raise DataError(f"{name} line {start}", f"malformed CSV ({err})", "malformed CSV") from None


def _file_rows(source: str | Path, kind: str | None) -> Iterator[Row]:
    name = display_name(source)
    with _open_input(source) as (stream, gz):
        try:
            kind = kind or kind_from_name(name) or _sniff_kind(stream.peek(4096)[:4096])  # type: ignore[attr-defined]
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as err:
            raise _truncated(name, 0, err) from None
        if kind == "json":
            yield from _json_document(_read_all(stream, name, gz), name)
        elif kind in ("csv", "tsv"):
            yield from _csv(_lines(stream, name, gz), name, "\t" if kind == "tsv" else ",")
        else:
            yield from _jsonl(_lines(stream, name, gz), name)


def open_hf_dataset(name: str, split: str | None) -> tuple[Any, str]:
    """A Hugging Face dataset (a ``save_to_disk`` folder or a hub name, from the local cache when offline)
    and its label in messages. Arrow-backed and memory-mapped: rows are read from disk as iterated."""
    from lite_rm.extras import require

    datasets = require("datasets")
    path = Path(name)
    if path.is_dir() and any((path / f).exists() for f in ("dataset_info.json", "dataset_dict.json", "state.json")):
        ds = datasets.load_from_disk(str(path))
    else:
        try:
            ds = datasets.load_dataset(name, split=split) if split else datasets.load_dataset(name)
        except Exception as err:  # the hub client raises many kinds; all mean "could not load"
            raise DataError(
                name,
                f"could not load the Hugging Face dataset {name!r} ({type(err).__name__}: {err}). "
                "Give a local file (JSONL, JSON, CSV), a folder saved with Dataset.save_to_disk, "
                "or a dataset name reachable from this machine",
                reason="dataset not found",
            ) from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            split = "train" if "train" in ds else next(iter(ds))
        if split not in ds:
            raise DataError(name, f"split {split!r} not found; the dataset has splits {sorted(ds)}")
        ds = ds[split]
    return ds, f"{name}[{split}]" if split else name


def iter_hf_dataset(name: str, split: str | None) -> Iterator[Row]:
    """Rows of a Hugging Face dataset: a folder written by ``save_to_disk`` or a hub name."""
    ds, label = open_hf_dataset(name, split)
    for i, row in enumerate(ds, start=1):
        yield Row(i, f"{label} row {i}", dict(row))


def is_dataset_source(text: str, hf: bool = False) -> bool:
    """Whether :func:`read_rows` reads ``text`` as a Hugging Face dataset (a folder or a hub name)."""
    path = Path(text)
    return hf or path.is_dir() or (not path.exists() and _looks_like_hub_name(text))


def _looks_like_hub_name(source: str) -> bool:
    return not Path(source).suffix and source.count("/") <= 1 and not source.startswith((".", "/"))


def read_rows(source: str | Path, *, split: str | None = None, hf: bool = False,
              kind: str | None = None) -> Iterator[Row]:
    """The records of a source, streamed where the format allows.

    Args:
        source: a file (``.jsonl``, ``.json``, ``.csv``, ``.tsv``, optionally gzip; other names are
            judged by their content), a glob of such files (read in sorted order), ``-`` for stdin, a
            ``save_to_disk`` folder or a dataset name.
        split: the split of a Hugging Face dataset (default: ``train`` when present).
        hf: read ``source`` as a Hugging Face dataset whatever it looks like.
        kind: ``jsonl``, ``json``, ``csv`` or ``tsv`` when the name does not say (stdin).

    Raises:
        DataError: the source is missing or damaged as a whole (raised when iterated), or a glob matches
            no file (raised at once).
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, found {kind!r}")
    text = str(source)
    path = Path(source)
    if text == STDIN:
        return _file_rows(source, kind)
    if is_glob(text) and not hf:
        files = expand_glob(text)  # raises now: a pattern matching nothing is a mistake in the command
        return (row for file in files for row in _file_rows(file, kind))
    if is_dataset_source(text, hf):
        return iter_hf_dataset(text, split)
    if not path.exists():
        raise DataError(
            text,
            "file not found; expected a preference file (JSONL, JSON, CSV, optionally gzip), a folder saved "
            "with datasets' save_to_disk, or a Hugging Face dataset name",
            "file not found",
        )
    if not path.is_file():
        raise DataError(text, "expected a regular file", "file not found")
    return _file_rows(path, kind)


def iter_records(path: Path) -> Iterator[RawRecord]:
    """``(location, record)`` of a file (see :func:`read_rows`)."""
    return ((row.location, row.record) for row in read_rows(path))


def count_records(source: str | Path, kind: str | None = None) -> int | None:
    """How many records a line-based file holds (a fast pass, for a progress bar's total): non-blank
    JSONL lines or CSV rows, summed over a glob's files; None for stdin, JSON documents and datasets, or
    if a file is damaged."""
    if is_glob(source):
        try:
            counts = [count_records(file, kind) for file in expand_glob(source)]
        except DataError:
            return None
        return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)
    if str(source) == STDIN or not Path(source).is_file():
        return None
    kind = kind or kind_from_name(source)
    try:
        with _open_input(source) as (stream, gz):
            kind = kind or _sniff_kind(stream.peek(4096)[:4096])  # type: ignore[attr-defined]
            if kind == "jsonl":
                return sum(1 for _, raw in _lines(stream, "", gz) if raw.strip())
            if kind in ("csv", "tsv"):
                text = (raw.decode("utf-8", errors="replace") for _, raw in _lines(stream, "", gz))
                return max(0, sum(1 for fields in csv.reader(text, delimiter="\t" if kind == "tsv" else ",")
                                  if fields) - 1)
    except (DataError, csv.Error, OSError, EOFError):
        return None
    return None


class Tally(Protocol):
    """A report that counts records read and records skipped (``LoadReport``, ``ScoreReport``)."""

    records: int
    skips: Skips


def convert_rows(rows: Iterable[Row], convert: Callable[[Row, dict[str, Any]], T], tally: Tally, *,
                 skip_invalid: bool,
                 fatal: tuple[str, ...] = ("no domain",)) -> Iterator[T]:
    """``convert(row, record)`` for every record: the one policy for bad records, shared by every reader.

    A bad record (a :class:`DataError` from the reader or from ``convert``) stops the run, or with
    ``skip_invalid`` is counted in ``tally.skips`` (reasons in ``fatal`` always stop). A truncated gzip
    stream ends the rows; with ``skip_invalid`` what was read before the damage is kept.
    """
    try:
        for row in rows:
            tally.records += 1
            try:
                if isinstance(row.record, DataError):
                    raise row.record
                result = convert(row, row.record)
            except DataError as err:
                if not skip_invalid or err.reason in fatal:
                    raise
                tally.skips.add(err)
                continue
            yield result
    except DataError as err:
        if not (skip_invalid and err.reason == "truncated gzip"):
            raise
        tally.skips.add(err)
