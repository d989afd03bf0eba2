"""Scoring on a Ray cluster (the ``[ray]`` extra): your own Dataset, or many shard files.

:class:`BundleScorer` scores the prompt/response columns of any Ray Dataset with ``ds.map_batches``.

Files: each shard (a JSONL, JSON, CSV/TSV file, optionally gzip, or a Parquet file) is scored by
:func:`lite_rm.jobs.batch_scoring.score_file`, the engine of ``lite-rm score``, so a shard's output has the
same columns and scores as ``lite-rm score SHARD`` would write. Ray Data spreads the shards over a pool of
actors (:class:`ShardScorer`, a ``map_batches`` callable): each actor opens the bundle once and scores
one shard per call. Outputs are written as ``OUT/NAME.jsonl.partial`` and renamed when the shard is done,
so ``OUT/NAME.jsonl`` exists only complete; a rerun skips the shards already done, and a shard cut off
by a dead worker is resumed from its partial file when Ray retries it (or on the rerun).

>>> import ray
>>> ray.init()  # or ray.init(address="auto") on a cluster
>>> score_dataset("bundle/", "shards/", "scored/", workers=8)
"""

from __future__ import annotations

import glob
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lite_rm.data.readers import kind_from_name
from lite_rm.data.records import DataError
from lite_rm.errors import InputError, LiteRMError
from lite_rm.extras import require
from lite_rm.files import write_text_atomic
from lite_rm.jobs.batch_output import PARTIAL_SUFFIX
from lite_rm.jobs.batch_scoring import score_file
from lite_rm.scoring.heads import HeadSpec
from lite_rm.scoring.scorer import DEFAULT_BATCH_SIZE, Scorer
from lite_rm.threads import share_threads

logger = logging.getLogger(__name__)

PARQUET = (".parquet", ".pq")


def _is_shard(path: Path) -> bool:
    return path.is_file() and (kind_from_name(path.name) is not None or path.name.lower().endswith(PARQUET))


def list_shards(source: str | Path) -> list[Path]:
    """The shards of a dataset: the data files of a folder (not recursive), a glob's matches, or one file.

    Raises:
        FileNotFoundError: nothing matches.
        ValueError: two shards would write the same output name.
    """
    text = str(source)
    path = Path(text)
    if path.is_dir():
        shards = sorted(p for p in path.iterdir() if _is_shard(p))
    elif any(ch in text for ch in "*?["):
        shards = sorted(p for p in map(Path, glob.glob(text)) if _is_shard(p))
    else:
        shards = [path] if path.is_file() else []
    if not shards:
        raise FileNotFoundError(f"{text}: no shard found; expected a folder or glob of .jsonl/.json/.csv/.tsv "
                                "(optionally .gz) or .parquet files")
    seen: dict[str, Path] = {}
    for shard in shards:
        name = output_name(shard)
        if name in seen:
            raise InputError(f"{seen[name]} and {shard} would both write {name}; rename one of them")
        seen[name] = shard
    return shards


def output_name(shard: Path) -> str:
    """``part-00001.csv.gz`` -> ``part-00001.jsonl``: the output file of a shard."""
    name = shard.name
    lower = name.lower().removesuffix(".gz")
    for suffix in (".jsonl", ".ndjson", ".json", ".csv", ".tsv", *PARQUET):
        if lower.endswith(suffix):
            return name[:len(lower) - len(suffix)] + ".jsonl"
    return name + ".jsonl"


def _parquet_as_jsonl(shard: Path, dest: Path) -> Path:
    """A Parquet shard's rows as JSON lines (so the one reader of lite-rm reads them; row N is line N)."""
    pq = require("pyarrow.parquet", "ray")
    tmp = dest.with_name(dest.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=4096):
            fh.writelines(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in batch.to_pylist())
    os.replace(tmp, dest)
    return dest


@dataclass(frozen=True)
class ShardOptions:
    """How every shard is read and scored: the options of ``lite-rm score`` (see :func:`score_file`).

    ``threads`` is per actor: 1 by default (each actor reserves that many Ray CPUs); 0, as everywhere,
    means the free cores (:func:`~lite_rm.threads.resolve_threads`), sampled once when the pool starts
    (by :func:`score_dataset`; a :class:`ShardScorer` given 0 directly samples when it starts) and divided
    among the actors of the pool (:func:`~lite_rm.threads.share_threads`; each reserves one Ray CPU).
    The division is exact when the actors share one machine; on a cluster of several it gives
    each actor fewer threads than its machine could run, never more.
    """

    threads: int = 1
    batch_size: int = DEFAULT_BATCH_SIZE
    data_format: str | None = None
    columns: Mapping[str, str] | None = None
    domain: str | None = None
    skip_invalid: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise ValueError(f"ShardOptions.threads: expected an integer >= 0 (0: the free cores, shared by the "
                             f"actors), found {self.threads!r}")

    @property
    def num_cpus(self) -> int:
        """The Ray CPUs each actor reserves: ``threads``, or 1 for ``0`` (counted when the actor starts)."""
        return self.threads or 1


RESULT_KEYS = ("shard", "output", "rows", "skipped", "seconds", "status", "error")


class ShardError(LiteRMError, ValueError):
    """Shards that hold bad rows: each message names the shard, the line and the field (as the local engine)."""


def score_shard(scorer: Scorer, shard: Path, output_dir: Path, options: ShardOptions) -> dict[str, Any]:
    """Score one shard into ``output_dir`` unless its output exists; resumes a partial output.

    A shard without rows to score (an empty file; every row skipped with ``skip_invalid``) gets an empty
    output, so a rerun does not stop at it again. A bad row does not raise (Ray would retry the shard and
    wrap the error until its cause is lost): the result says ``failed`` and ``error`` names the shard, the
    line and the field; the rows before it are kept in the partial output for the rerun.

    Returns:
        ``{"shard", "output", "rows", "skipped", "seconds", "status", "error"}``, status ``scored``,
        ``empty``, ``failed`` or ``done before``.
    """
    output = output_dir / output_name(shard)
    result: dict[str, Any] = {"shard": str(shard), "output": str(output), "rows": 0, "skipped": 0, "seconds": 0.0,
                              "status": "done before", "error": ""}
    if output.exists():
        return result
    source = shard
    if shard.name.lower().endswith(PARQUET):
        source = _parquet_as_jsonl(shard, output_dir / f".{output.name}.input.jsonl")
    resume = output.with_name(output.name + PARTIAL_SUFFIX).exists()
    try:
        report = score_file(scorer, source, output, kind="jsonl" if source != shard else None,
                            data_format=options.data_format, columns=options.columns, domain=options.domain,
                            skip_invalid=options.skip_invalid, resume=resume,
                            chunk_size=max(256, 8 * scorer.batch_size), progress=False)
    except DataError as err:
        message = str(err).replace(str(source), str(shard))  # a Parquet shard's JSON lines: line N is row N
        if err.reason != "no rows":
            return result | {"status": "failed", "error": f"shard {shard.name}: {message}"}
        write_text_atomic(output, "")  # nothing to score in this shard: done, and said so in the report
        return result | {"status": "empty", "error": message}
    finally:
        if source != shard:
            source.unlink(missing_ok=True)
    return result | {"rows": report.rows, "skipped": report.skips.total, "seconds": round(report.seconds, 3),
                     "status": "scored"}


class ShardScorer:
    """A Ray Data ``map_batches`` callable: opens the bundle once per actor, scores one shard per row.

    >>> ds = ray.data.from_items([{"shard": str(p)} for p in list_shards("shards/")])
    >>> ds.map_batches(ShardScorer, fn_constructor_args=("bundle/", "scored/"), batch_size=1, concurrency=4)

    ``actors``: the pool's size, among which ``options.threads == 0`` divides the free cores.
    """

    def __init__(self, bundle: str, output_dir: str, options: ShardOptions | None = None, actors: int = 1) -> None:
        self.options = options or ShardOptions()
        self.output_dir = Path(output_dir)
        self.scorer = Scorer(bundle, threads=share_threads(self.options.threads, actors),
                             batch_size=self.options.batch_size)

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[Any]]:
        results = [score_shard(self.scorer, Path(str(s)), self.output_dir, self.options) for s in batch["shard"]]
        return {key: [r[key] for r in results] for key in RESULT_KEYS}


class BundleScorer:
    """A Ray Data ``map_batches`` callable that scores the (prompt, response) columns of *your* Dataset.

    Each actor opens the bundle once (in its constructor) and adds a score column to every batch, which
    may be pandas (``batch_format="pandas"``), numpy (a dict of arrays, ``"numpy"``) or pyarrow.

    >>> ds = ray.data.read_parquet("s3://bucket/generations/")
    >>> scored = ds.map_batches(BundleScorer, fn_constructor_kwargs={"bundle": "/models/rm-bundle"},
    ...                         concurrency=4, batch_size=256, batch_format="pandas")

    Args:
        bundle: the bundle folder (``lite-rm export``), readable at this path on every worker.
        prompt_column: the column of prompts (text, or chat messages).
        response_column: the column of responses.
        output_column: the column the scores go to (float32; replaced if it exists).
        threads: onnxruntime threads per actor, 1 by default (give map_batches the same ``num_cpus``); 0, as
            everywhere, the free cores (sampled when the actor starts), divided among ``actors``.
        batch_size: pairs per model call (the Scorer's; ``None``: its default).
        head: which reward, as :class:`~lite_rm.scoring.scorer.Scorer`'s ``head``.
        actors: with ``threads=0``, how many actors share a machine's free cores (map_batches'
            ``concurrency`` when they run on one machine).
    """

    def __init__(self, bundle: str | Path, prompt_column: str = "prompt", response_column: str = "response",
                 output_column: str = "score", threads: int = 1, batch_size: int | None = None,
                 head: HeadSpec = None, actors: int = 1) -> None:
        self.columns = (prompt_column, response_column)
        self.output_column = output_column
        self.scorer = Scorer(bundle, threads=share_threads(threads, actors), batch_size=batch_size, head=head)

    def _column(self, batch: Any, name: str) -> list[Any]:
        if isinstance(batch, Mapping):
            names = list(batch.keys())
        else:  # pyarrow.Table has column_names, a pandas DataFrame columns
            names = list(batch.column_names if hasattr(batch, "column_names") else batch.columns)
        if name not in names:
            raise ValueError(f"BundleScorer: no column {name!r} in the batch (its columns: "
                             f"{', '.join(map(str, names))}); name yours with prompt_column=... and "
                             "response_column=...")
        column = batch[name]
        return column.to_pylist() if hasattr(column, "to_pylist") else list(column)

    def __call__(self, batch: Any) -> Any:
        prompts, responses = (self._column(batch, name) for name in self.columns)
        if prompts:
            try:
                scores = self.scorer.score_pairs(prompts, responses)
            except (TypeError, ValueError) as err:  # "prompts[3]: ..." is the row's place in this batch
                raise ValueError(f"BundleScorer (columns {self.columns[0]!r}, {self.columns[1]!r}): {err} "
                                 "(the index is the row's within its batch)") from None
        else:
            scores = np.zeros(0, dtype=np.float32)
        if isinstance(batch, Mapping):  # batch_format="numpy": a dict of arrays
            return {**batch, self.output_column: scores}
        if hasattr(batch, "append_column"):  # pyarrow.Table
            if self.output_column in batch.column_names:
                batch = batch.drop_columns([self.output_column])
            return batch.append_column(self.output_column, require("pyarrow", "ray").array(scores))
        return batch.assign(**{self.output_column: scores})  # pandas: a new frame, the caller's is untouched


@dataclass
class DatasetReport:
    """What a :func:`score_dataset` run did; also written to ``OUT/_report.json``."""

    shards: list[dict[str, Any]]
    seconds: float
    workers: int

    @property
    def rows(self) -> int:
        return sum(int(s["rows"]) for s in self.shards)

    @property
    def skipped(self) -> int:
        return sum(int(s.get("skipped") or 0) for s in self.shards)

    def summary(self) -> str:
        scored = sum(s["status"] == "scored" for s in self.shards)
        empty = sum(s["status"] == "empty" for s in self.shards)
        rate = f", {self.rows / self.seconds:.1f} rows/s" if self.seconds > 0 and self.rows else ""
        extra = f", {empty} empty" if empty else ""
        extra += f"; {self.skipped} invalid rows skipped" if self.skipped else ""
        return (f"scored {self.rows} rows in {scored} shards ({len(self.shards) - scored - empty} done before{extra}) "
                f"with {self.workers} Ray workers in {self.seconds:.1f}s{rate}")

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "skipped": self.skipped, "seconds": round(self.seconds, 3), "workers": self.workers,
                "shards": self.shards}


def score_dataset(bundle: str | Path, inputs: str | Path, output_dir: str | Path, *, workers: int = 2,
                  options: ShardOptions | None = None, scorer_class: type[ShardScorer] = ShardScorer
                  ) -> DatasetReport:
    """Score every shard of ``inputs`` into ``output_dir`` on the Ray cluster this process is connected to
    (``ray.init`` first; a local one is started if none is).

    Args:
        bundle: the bundle folder, readable at the same path by every worker.
        inputs: a folder or glob of shards, or one file (see :func:`list_shards`).
        output_dir: where ``NAME.jsonl`` per shard and ``_report.json`` go (shared by every worker).
        workers: actors, each with its own copy of the model and ``options.threads`` CPUs (0: the free
            cores divided among the actors, see :class:`ShardOptions`).
        options: how the shards are read and scored.
        scorer_class: the ``map_batches`` callable (a subclass for tests).

    A dead actor is restarted and its shard retried by Ray Data's actor pool (its defaults:
    ``max_restarts=-1``, ``max_task_retries=-1``); the retry resumes the shard's partial output.

    Returns:
        Per-shard results; shards done by an earlier run are listed as ``done before``.

    Raises:
        ShardError: shards with a bad row (each named with its line and field; the other shards are done
            and ``_report.json`` is written): fix them, or rerun with ``skip_invalid``.
    """
    ray = require("ray", "ray")
    options = options or ShardOptions()
    shards, out = list_shards(inputs), Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    todo = [s for s in shards if not (out / output_name(s)).exists()]
    t0 = time.perf_counter()
    results = []
    if todo:
        if not ray.is_initialized():
            ray.init()
        dataset = ray.data.from_items([{"shard": str(s.resolve())} for s in todo], override_num_blocks=len(todo))
        actors = max(1, min(workers, len(todo)))
        # 0 is sampled once, here, before any actor loads: an actor sampling while its siblings start
        # would count their loading as busy cores, and each would wait for its own sample.
        shared = options if options.threads else replace(options, threads=share_threads(0, actors))
        scored = dataset.map_batches(
            scorer_class, fn_constructor_args=(str(Path(bundle).resolve()), str(out.resolve()), shared, actors),
            batch_size=1, compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=options.num_cpus)
        # Plain Python values (Ray hands back numpy scalars) for the JSON report.
        results = [{k: v.item() if hasattr(v, "item") else v for k, v in r.items()} for r in scored.take_all()]
    done = {r["shard"] for r in results}
    before = [{"shard": str(s.resolve()), "output": str((out / output_name(s)).resolve()), "rows": 0,
               "seconds": 0.0, "status": "done before"} for s in shards if str(s.resolve()) not in done]
    report = DatasetReport(sorted(results + before, key=lambda r: str(r["shard"])), time.perf_counter() - t0,
                           workers)
    write_text_atomic(out / "_report.json", json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    failed = [s for s in report.shards if s["status"] == "failed"]
    if failed:
        raise ShardError("; ".join(str(s["error"]) for s in failed) + f". {len(failed)} of {len(report.shards)} "
                         "shards failed (the others are done): fix the rows, or rerun with --skip-invalid to skip "
                         "them; a rerun scores only the shards not done")
    return report
