"""Where ``lite-rm score`` writes its results, safely: ``OUTPUT.partial`` under an exclusive lock,
renamed to ``OUTPUT`` when done; or JSON lines on stdout (``-o -``). Torch-free.

* **One writer per output.** The partial file is locked with ``fcntl.flock`` (POSIX: Linux, macOS, BSD)
  before anything in it is touched, so a second run with the same ``-o`` stops with a clear message
  instead of mixing its rows into the first one's. Windows has no ``fcntl``: there the lock is skipped.
* **Nothing lost.** Rows are flushed chunk by chunk; when a write fails (a full disk) the rows written so
  far stay in the partial file and the message points at ``--resume``.
* **Resume** keeps the complete rows of the partial file (a row cut by a kill, even inside a quoted
  multi-line CSV field, is dropped) and says where to carry on: :class:`ResumePoint`. It continues only
  the run it was started as: ``OUTPUT.partial.json`` records the input's identity (path, size, hash of its
  ends: :func:`lite_rm.files.input_identity`) and the reading options, and a mismatch is refused.
"""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lite_rm.errors import ConfigError
from lite_rm.files import OutputError, identity_change, write_json_atomic

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
# Beside the partial file: what it is being written from (input identity and reading options), so that
# --resume never appends the rows of another input to it.
STATE_SUFFIX = ".partial.json"
STATE_FORMAT = "lite-rm-score-partial"
LINE_FIELD = "line"
STDOUT = "-"
_RESULT_FIELDS = ("score", "probability", "score_a", "score_b")


@dataclass(frozen=True)
class ResumePoint:
    """Where an interrupted run stopped: the input ``line`` of the last row written, how many rows of
    that line were written (``done``: a record can give several rows), and all complete ``rows``."""

    line: int = 0
    done: int = 0
    rows: int = 0

    def after(self, line: int) -> ResumePoint:
        """The point after one more row of ``line``."""
        return ResumePoint(line, self.done + 1 if line == self.line else 1, self.rows + 1)


def output_format(path: str | Path) -> str:
    """``csv``/``tsv`` for such names (optionally ``.gz``-less), else ``jsonl``."""
    name = str(path).lower()
    return "csv" if name.endswith(".csv") else "tsv" if name.endswith(".tsv") else "jsonl"


def _jsonl_point(f: IO[bytes]) -> tuple[int, ResumePoint]:
    keep, point = 0, ResumePoint()
    for raw in f:
        try:
            line = int(json.loads(raw)[LINE_FIELD]) if raw.endswith(b"\n") else None
        except (ValueError, TypeError, KeyError, RecursionError):
            line = None
        if line is None:
            break  # a row cut short by a kill, and anything after it
        keep += len(raw)
        point = point.after(line)
    return keep, point


def _complete_csv_row(fields: list[str], header: list[str], ended: bool) -> int | None:
    """The row's line number if it is whole: ended by a newline, as many fields as the header, and its
    number columns readable (a kill inside a quoted field leaves fewer fields)."""
    if not ended or len(fields) != len(header) or LINE_FIELD not in header:
        return None
    row = dict(zip(header, fields, strict=True))
    try:
        for name in _RESULT_FIELDS:
            if name in row:
                float(row[name])
        return int(row[LINE_FIELD])
    except ValueError:
        return None


def _csv_point(f: IO[bytes], delimiter: str) -> tuple[int, ResumePoint]:
    state = {"offset": 0, "ended": True}

    def lines() -> Iterator[str]:
        for raw in f:
            state["offset"] += len(raw)
            state["ended"] = raw.endswith(b"\n")
            yield raw.decode("utf-8", errors="replace")

    keep, point, header = 0, ResumePoint(), None
    try:
        for fields in csv.reader(lines(), delimiter=delimiter):
            if header is None:
                header, keep = fields, state["offset"]
                continue
            line = _complete_csv_row(fields, header, bool(state["ended"]))
            if line is None:
                break
            keep, point = state["offset"], point.after(line)
    except csv.Error:
        pass  # damage after the last complete row: cut there
    return int(keep), point


def resume_point(partial: Path, fmt: str) -> tuple[int, ResumePoint]:
    """(bytes of complete rows to keep, where to resume) of a partial output file."""
    with open(partial, "rb") as f:
        return _jsonl_point(f) if fmt == "jsonl" else _csv_point(f, "\t" if fmt == "tsv" else ",")


def _lock(file: IO[str], partial: Path, output: Path) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks through fcntl; one writer is up to the user
        return
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise
        raise OutputError(
            f"{partial} is locked: another lite-rm score run is writing {output}. Wait for it to finish "
            "(the lock goes with it), or choose another --output") from None


def _cell(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False, allow_nan=False) if isinstance(value, (list, dict)) else value


class _Partial:
    """Rows appended to ``OUTPUT.partial`` (locked), renamed to ``OUTPUT`` by :meth:`commit`."""

    def __init__(self, output: Path, resume: bool, source: dict[str, Any] | None = None) -> None:
        self.output, self.fmt = output, output_format(output)
        self.partial = output.with_name(output.name + PARTIAL_SUFFIX)
        self.state = output.with_name(output.name + STATE_SUFFIX)
        output.parent.mkdir(parents=True, exist_ok=True)
        # Append mode: nothing in the file changes before the lock is held.
        self.file = open(self.partial, "a", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()
        try:
            _lock(self.file, self.partial, output)
        except BaseException:
            self.file.close()
            raise
        self.resume, keep = ResumePoint(), 0
        if resume and self.partial.stat().st_size:
            try:
                self._check_source(source)
            except BaseException:
                self.file.close()
                raise
        if resume:
            keep, self.resume = resume_point(self.partial, self.fmt)
            if self.resume.rows:
                logger.info("resuming after input line %d (%s)", self.resume.line, self.partial)
        elif self.partial.stat().st_size:
            logger.info("%s exists from an earlier run; starting over (use --resume to continue it)", self.partial)
        self.file.truncate(keep)
        if source is not None and not keep:  # a new partial: record what it is written from
            write_json_atomic(self.state, {"format": STATE_FORMAT, **source}, indent=1, sort_keys=False)
        self.rows = self.resume.rows
        self.csv: csv.DictWriter[str] | None = None
        self.header_written = keep > 0
        self.committed = False

    def _check_source(self, source: dict[str, Any] | None) -> None:
        """Refuse to resume a partial written from another input or with other reading options."""
        if source is None:
            return
        start_over = "rerun without --resume to start over (the partial is replaced)"
        try:
            state = json.loads(self.state.read_text(encoding="utf-8"))
        except FileNotFoundError:
            logger.warning("%s has no record of its input (%s is missing: an older lite-rm wrote it); resuming "
                           "without checking that it comes from the same input", self.partial, self.state.name)
            return
        except (OSError, ValueError) as err:
            raise OutputError(f"{self.state}: unreadable ({err}); {start_over}") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise OutputError(f"{self.state}: not a lite-rm score state file; {start_over}")
        change = identity_change(state.get("input"), source["input"])
        if change:
            raise OutputError(f"{self.partial} was written from another input ({change}); resuming would mix the "
                              f"rows of both: {start_over}, or resume with the input it was started on")
        before, now = state.get("options") or {}, source.get("options") or {}
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if changed:
            raise OutputError(f"{self.partial} was written with other options ({', '.join(changed)}: "
                              f"{', '.join(f'{before.get(k)!r} then, {now.get(k)!r} now' for k in changed)}); "
                              f"{start_over}, or resume with the same options")

    def write(self, rows: list[dict[str, Any]]) -> None:
        try:
            if self.fmt == "jsonl":
                self.file.write("".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows))
            else:
                if self.csv is None:
                    self.csv = csv.DictWriter(self.file, fieldnames=list(rows[0]), extrasaction="ignore",
                                              delimiter="\t" if self.fmt == "tsv" else ",")
                    if not self.header_written:
                        self.csv.writeheader()
                self.csv.writerows({k: _cell(v) for k, v in r.items()} for r in rows)
            self.file.flush()
        except OSError as err:
            why = "the disk is full: free some space" if err.errno == errno.ENOSPC else "fix the cause"
            raise OutputError(
                f"{self.partial}: cannot write the results ({err.strerror or err}). The {self.rows} rows "
                f"written before are kept there: {why}, then rerun the same command with --resume") from None
        self.rows += len(rows)

    def commit(self) -> None:
        """Rename the finished partial file to the output (still under the lock)."""
        self.file.flush()
        os.replace(self.partial, self.output)
        self.state.unlink(missing_ok=True)
        self.committed = True

    def close(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass  # a failed final flush (full disk): --resume drops the torn last row
        if not self.committed and self.rows == 0 and self.partial.exists() and self.partial.stat().st_size == 0:
            self.partial.unlink()
            self.state.unlink(missing_ok=True)


class _Stdout:
    """JSON lines on stdout (``-o -``): nothing to lock, rename or resume."""

    resume = ResumePoint()

    def write(self, rows: list[dict[str, Any]]) -> None:
        sys.stdout.write("".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows))
        sys.stdout.flush()

    def commit(self) -> None:
        pass

    def close(self) -> None:
        pass


def refuse_folder(output: str | Path) -> None:
    """Raise :class:`OutputError` when the output names a folder (``out/``, or an existing folder).

    ``Path("out/")`` is ``Path("out")``: the results would otherwise become a *file* named ``out``.
    """
    text = str(output)
    if text != STDOUT and (text.endswith(("/", os.sep)) or Path(text).is_dir()):
        raise OutputError(f"-o {text}: a folder; give a file name, e.g. {Path(text) / 'scores.jsonl'} "
                          "(a folder of outputs is --engine ray's)")


@contextmanager
def open_output(output: str | Path, *, resume: bool = False, source: dict[str, Any] | None = None,
                ) -> Iterator[_Partial | _Stdout]:
    """The writer of one run's results; ``-`` writes JSON lines to stdout.

    ``source`` (``{"input": input_identity(...), "options": {...}}``) is recorded beside a new partial
    file and checked when one is resumed.

    Raises:
        OutputError: another run holds the output's lock, the partial to resume was written from another
            input or with other options (the message says how to start over), or ``output`` is a folder.
        ValueError: ``resume`` with stdout.
    """
    if str(output) == STDOUT:
        if resume:
            raise ConfigError("--resume needs an output file (-o FILE): stdout keeps no partial results")
        out: _Partial | _Stdout = _Stdout()
    else:
        refuse_folder(output)
        out = _Partial(Path(output), resume, source)
    try:
        yield out
    finally:
        out.close()
