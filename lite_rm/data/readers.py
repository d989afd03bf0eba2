"""Reading raw records from files: JSON, JSONL (plain or gzip), CSV, and Hugging Face datasets.

Each reader yields ``(location, record)`` where location is ``"file line N"`` or ``"file item N"``
(1-based), so that every later error can name where the bad record is. File-level damage (bytes that
are not UTF-8 in a JSON file, invalid JSON, a truncated gzip stream) raises :class:`DataError` with the
line; record-level damage in line-based files is yielded as a :class:`DataError` so that the caller can
stop or skip it.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lite_rm.data.records import DataError

RawRecord = tuple[str, "dict[str, Any] | DataError"]


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = _line_of(data, err.start)
        raise DataError(
            f"{name} line {line}",
            f"bytes that are not UTF-8 ({data[err.start:err.start + 4]!r} at byte {err.start}); "
            "expected a UTF-8 text file",
            reason="not UTF-8",
        ) from None


def is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def iter_jsonl(path: Path) -> Iterator[RawRecord]:
    """JSON lines, plain or gzip (detected from the magic bytes, whatever the extension)."""
    name = str(path)
    opener = gzip.open if is_gzip(path) else open
    lineno = 0
    with opener(path, "rb") as fh:  # type: ignore[operator]
        while True:
            try:
                raw = fh.readline()
            except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as err:
                raise DataError(
                    f"{name} line {lineno + 1}",
                    f"the gzip stream is truncated or corrupt after line {lineno} ({err}); "
                    "expected a complete gzip file: download or compress it again",
                    reason="truncated gzip",
                ) from None
            if not raw:
                break
            lineno += 1
            loc = f"{name} line {lineno}"
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as err:
                yield loc, DataError(
                    loc,
                    f"bytes that are not UTF-8 ({raw[err.start:err.start + 4]!r} at column {err.start + 1}); "
                    "expected UTF-8 text",
                    reason="not UTF-8",
                )
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                yield loc, DataError(
                    loc, f"invalid JSON at column {err.colno}: {err.msg}", reason="invalid JSON"
                )
                continue
            if not isinstance(record, dict):
                yield loc, DataError(
                    loc, f"expected a JSON object, found {type(record).__name__}", reason="not an object"
                )
                continue
            yield loc, record


def iter_json(path: Path) -> Iterator[RawRecord]:
    """A JSON file holding a list of objects. Falls back to JSON lines for ``.json`` files that are
    really JSONL (``datasets.Dataset.to_json`` writes those)."""
    name = str(path)
    data = path.read_bytes()
    text = _decode(data, name)
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data" and text.lstrip().startswith("{"):
            yield from iter_jsonl(path)
            return
        raise DataError(
            f"{name} line {err.lineno}",
            f"invalid JSON at column {err.colno}: {err.msg}",
            reason="invalid JSON",
        ) from None
    if isinstance(items, dict) and len(items) == 1 and isinstance(next(iter(items.values())), list):
        items = next(iter(items.values()))  # {"data": [...]} wrappers
    if not isinstance(items, list):
        raise DataError(name, f"expected a JSON list of records, found {type(items).__name__}")
    for i, record in enumerate(items, start=1):
        loc = f"{name} item {i}"
        if not isinstance(record, dict):
            yield loc, DataError(
                loc, f"expected a JSON object, found {type(record).__name__}", reason="not an object"
            )
        else:
            yield loc, record


def iter_csv(path: Path) -> Iterator[RawRecord]:
    """CSV (or TSV for ``.tsv``) with a header row; every value is a string."""
    name = str(path)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    text = _decode(data, name)
    delimiter = "\t" if path.name.endswith((".tsv", ".tsv.gz")) else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    if not reader.fieldnames:
        return
    for row in reader:
        loc = f"{name} line {reader.line_num}"
        width = len(reader.fieldnames)
        extra = row.pop(None, None)  # type: ignore[call-overload]
        missing = sum(1 for v in row.values() if v is None)
        if extra or missing:
            found = width + len(extra or ()) - missing
            yield loc, DataError(
                loc, f"expected {width} columns as in the header, found {found}", reason="wrong column count"
            )
            continue
        yield loc, dict(row)


def iter_hf_dataset(name: str, split: str | None) -> Iterator[RawRecord]:
    """Rows of a Hugging Face dataset: a folder written by ``save_to_disk`` or a hub name."""
    from lite_rm.extras import require

    datasets = require("datasets")
    path = Path(name)
    if path.is_dir() and (
        (path / "dataset_info.json").exists()
        or (path / "dataset_dict.json").exists()
        or (path / "state.json").exists()
    ):
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
    label = f"{name}[{split}]" if split else name
    for i, row in enumerate(ds, start=1):
        yield f"{label} row {i}", dict(row)


def iter_records(path: Path) -> Iterator[RawRecord]:
    """Pick the reader by file name: ``.jsonl``/``.gz`` lines, ``.csv``/``.tsv``, else JSON."""
    suffixes = "".join(path.suffixes[-2:]).lower()
    if suffixes.endswith((".csv", ".tsv", ".csv.gz", ".tsv.gz")):
        return iter_csv(path)
    if suffixes.endswith((".jsonl", ".jsonl.gz", ".ndjson")) or is_gzip(path):
        return iter_jsonl(path)
    return iter_json(path)
