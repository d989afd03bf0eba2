"""Per-step training metrics: one append-only JSONL file per stage, and optional TensorBoard / W&B writers.

Where the rows go::

    RUN/.metrics/<stage>.jsonl   the live file: one JSON row appended and flushed per logged step, while
                                 the stage trains (the checkpoint folder is only renamed into place at
                                 the stage's end, so the live file cannot be inside it)
    RUN/<stage>/metrics.jsonl    a copy placed beside the checkpoint once the stage completes (:func:`publish`)
    RUN/tensorboard/<stage>/     TensorBoard event files (``report_to = ["tensorboard"]``)

Rows are ``{"kind": "train", "step", "loss", "acc", "margin", "reward", "lr", "pairs_per_s", "time", ...}``
(whatever the stage's step logs; the base stage logs ``loss`` only) and ``{"kind": "valid", "step",
"metric", "time"}`` for each validation. A killed run keeps every row it flushed; a resumed stage first
drops the rows after the step its state was saved at, so the file never holds a step twice.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from lite_rm.errors import ConfigError, InputError
from lite_rm.extras import MissingExtraError, require
from lite_rm.files import write_text_atomic

logger = logging.getLogger(__name__)

REPORTERS = ("tensorboard", "wandb")
METRICS_DIR = ".metrics"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
# Fields that depend on the machine's speed and the clock, not on what was trained.
TIMING_FIELDS = ("pairs_per_s", "time")


def live_path(run: str | Path, stage: str) -> Path:
    """The file a stage appends its rows to while it trains: ``RUN/.metrics/<stage>.jsonl``."""
    return Path(run) / METRICS_DIR / f"{stage}.jsonl"


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a metrics file; a torn last line (a kill mid-write) is skipped with a warning.

    Raises:
        ValueError: a line other than the last is not a JSON object (the file names the line).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); not a lite-rm metrics "
                         "file, or a corrupted one") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):  # JSONDecodeError; a line nested too deeply to parse
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int) or isinstance(row["step"], bool):
            if number == len(lines):
                logger.warning("%s line %d: an incomplete row (the run was killed while writing it); skipped",
                               path, number)
                continue
            raise InputError(f"{path} line {number}: expected a JSON object with an integer 'step', "
                             f"found {line[:80]!r}")
        _check_row(row, path, number)
        rows.append(row)
    return rows


def _check_row(row: dict[str, Any], path: Path, number: int) -> None:
    """The fields a reader of the curves relies on: numbers where figures are, a known ``kind``."""
    kind = row.get("kind", "train")
    if kind not in ("train", "valid"):
        raise InputError(f"{path} line {number}: field 'kind': expected 'train' or 'valid', found {kind!r:.80}")
    for key in ("loss", "acc", "metric", "lr"):
        value = row.get(key)
        if key in row and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InputError(f"{path} line {number}: field {key!r}: expected a number, found {value!r:.80}")
    if kind == "valid" and "metric" not in row:
        raise InputError(f"{path} line {number}: a validation row without its 'metric'")


def stage_rows(run: str | Path, stage: str) -> list[dict[str, Any]]:
    """A stage's rows: from its checkpoint folder's copy, else from the live file (an unfinished stage);
    empty when neither exists (a run made before metrics files)."""
    for path in (Path(run) / stage / METRICS_FILE, live_path(run, stage)):
        if path.is_file():
            return read_rows(path)
    return []


def publish(run: str | Path, stage: str, folder: str | Path) -> Path | None:
    """Copy a stage's live metrics file into its checkpoint folder as ``metrics.jsonl``.

    Returns:
        The copy, or ``None`` when the stage logged nothing.
    """
    source = live_path(run, stage)
    if not source.is_file():
        return None
    target = Path(folder) / METRICS_FILE
    write_text_atomic(target, source.read_text(encoding="utf-8"))
    return target


def report_to_of_run(run: str | Path) -> list[str]:
    """The ``report_to`` key of a run's ``config.json`` (empty when absent or unreadable)."""
    try:
        saved = json.loads((Path(run) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    names = saved.get("report_to", []) if isinstance(saved, dict) else []
    return [n for n in names if n in REPORTERS] if isinstance(names, list) else []


def check_reporters(names: Sequence[str]) -> None:
    """Import what each reporter needs, before any training time is spent.

    Raises:
        ValueError: an unknown reporter name (the valid ones are listed).
        MissingExtraError: its library is not installed (the message says how to install it).
    """
    for name in names:
        if name == "tensorboard":
            require("tensorboard")
        elif name == "wandb":
            try:
                import wandb  # noqa: F401
            except ImportError as err:
                raise MissingExtraError(
                    f"report_to 'wandb' needs Weights & Biases, which is not installed ({err}). Install it with: "
                    'pip install "lite-rm[wandb]" (and log in with `wandb login`, or set WANDB_MODE=offline)'
                ) from err
        else:
            raise ConfigError(f"report_to: unknown reporter {name!r}; valid: {', '.join(REPORTERS)}")


class Reporter(Protocol):
    """Something that receives each metrics row (a TensorBoard or W&B writer)."""

    def log(self, row: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _scalars(row: dict[str, Any]) -> dict[str, float]:
    """``train/loss``, ``valid/metric``...: a row's numbers under its kind (``time`` is the wall time)."""
    kind = row.get("kind", "train")
    return {f"{kind}/{k}": float(v) for k, v in row.items()
            if k not in ("step", "kind", "time") and isinstance(v, (int, float)) and not isinstance(v, bool)}


class TensorBoardReporter:
    """Scalars into ``RUN/tensorboard/<stage>/`` through torch's own ``SummaryWriter``.

    A resumed stage opens the writer with ``purge_step``: TensorBoard then hides the events an
    interrupted piece logged after the resumed step, as the JSONL file drops those rows.
    """

    def __init__(self, log_dir: Path, resumed_step: int) -> None:
        require("tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=resumed_step + 1 if resumed_step else None)

    def log(self, row: dict[str, Any]) -> None:
        for tag, value in _scalars(row).items():
            self.writer.add_scalar(tag, value, row["step"], walltime=row.get("time"))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbReporter:
    """Scalars into a Weights & Biases run (project ``$WANDB_PROJECT`` or ``lite-rm``), one per stage piece."""

    def __init__(self, run: Path, stage: str) -> None:
        check_reporters(["wandb"])
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "lite-rm"), group=run.resolve().name,
                              name=stage, dir=str(run), reinit=True)

    def log(self, row: dict[str, Any]) -> None:
        self.run.log(_scalars(row), step=row["step"])

    def close(self) -> None:
        self.run.finish()


class StageMetrics:
    """A stage's metrics sink: the live JSONL file plus the configured reporters.

    Use :meth:`open` at the start of a stage's loop (after any resume), :meth:`log` per row and
    :meth:`close` at the end (also on an exception: what was logged stays on disk).
    """

    def __init__(self, path: Path, reporters: list[Reporter]) -> None:
        self.path = path
        self.reporters = reporters
        self._file = path.open("a", encoding="utf-8")

    @classmethod
    def open(cls, run: str | Path, stage: str, report_to: Sequence[str], resumed_step: int = 0) -> StageMetrics:
        """Start (or continue) ``RUN/.metrics/<stage>.jsonl``: rows after ``resumed_step`` are dropped
        (a fresh start, step 0, drops them all), then rows are appended.

        Raises:
            MissingExtraError: a reporter's library is missing.
        """
        run = Path(run)
        path = live_path(run, stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():
            kept = [r for r in read_rows(path) if r["step"] <= resumed_step]
            write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))
        reporters: list[Reporter] = []
        try:
            for name in report_to:
                if name == "tensorboard":
                    reporters.append(TensorBoardReporter(run / TENSORBOARD_DIR / stage, resumed_step))
                elif name == "wandb":
                    reporters.append(WandbReporter(run, stage))
                else:
                    raise ConfigError(f"report_to: unknown reporter {name!r}; valid: {', '.join(REPORTERS)}")
        except BaseException:
            for reporter in reporters:
                reporter.close()
            raise
        return cls(path, reporters)

    def log(self, kind: str, row: dict[str, Any]) -> None:
        """Append one row (``kind`` ``train`` or ``valid``) and flush it, then hand it to the reporters."""
        full = {"kind": kind, **row, "time": round(time.time(), 3)}
        self._file.write(json.dumps(full) + "\n")
        self._file.flush()
        for reporter in self.reporters:
            reporter.log(full)

    def close(self) -> None:
        """Close the file and the reporters."""
        self._file.close()
        for reporter in self.reporters:
            reporter.close()
