"""The run in this process (one of several when ``torchrun`` started it): the set-up, the stages in
order, evaluation after each, and the results table. :func:`lite_rm.training.pipeline.train` is the
public entry."""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lite_rm.files import write_json_atomic
from lite_rm.scoring.encoding import InputRule, load_tokenizer
from lite_rm.scoring.evaluation import (
    EvalSet,
    default_eval_sets,
    eval_sets_from,
    evaluate,
    general_average,
    write_results,
)
from lite_rm.threads import resolve_threads
from lite_rm.training import parallel
from lite_rm.training.checkpoint import read_meta
from lite_rm.training.config import TrainConfig
from lite_rm.training.context import EvalFn, GeneralSources, StageContext, StageJob
from lite_rm.training.encoders import refuse_bundle, resolve_model
from lite_rm.training.metrics import publish
from lite_rm.training.modeling import resolve_bf16, resolve_device, torch_score_fn, torch_threads
from lite_rm.training.run_folder import DATA_FILE, check_resumable, data_dir_of, data_identity, is_complete
from lite_rm.training.selection import choice_table
from lite_rm.training.stages import STAGES, PlannedStage, planned

logger = logging.getLogger(__name__)


def train_here(config: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """:func:`lite_rm.training.pipeline.train` in this process, joining the process group that the
    environment describes (``torchrun``), if any."""
    device = resolve_device(config.device, parallel.local_rank())  # a missing GPU fails before anything runs
    with parallel.session(device):
        return _train(config, resume, overwrite, device)


def _train(config: TrainConfig, resume: bool, overwrite: bool, device: torch.device) -> dict[str, Any]:
    """:func:`train_here` in the process group joined (if any): set-up, the stages, the results."""
    start = _open_run(config, resume, overwrite)
    data_dir = data_dir_of(config)
    ctx = StageContext(config, data_dir, InputRule(max_length=config.max_length), resolve_bf16(config.bf16, device),
                       resume, Path(config.output_dir), device, GeneralSources.of(config, data_dir))
    threads = resolve_threads(config.threads)
    if config.threads == 0:  # "the free cores": processes on one machine share them
        threads = max(1, threads // parallel.local_world_size())
    evaluation = _Evaluation.load(ctx)
    logger.info("run %s: stages %s, device %s x %d processes, bf16 %s, %d threads, evaluation sets %s",
                ctx.run_dir, config.stages, device, parallel.world_size(), ctx.bf16, threads,
                [s.name for s in evaluation.sets])
    with torch_threads(threads):
        record = _run_stages(ctx, evaluation, start)
    extra = {"training": record.summaries, "general_kept": general_kept(record.rows), "stage_seconds": record.timings,
             "threads": threads, "bf16": ctx.bf16, "device": str(device), "processes": parallel.world_size(),
             "config": config.to_dict()}
    if parallel.is_main():
        md, js = write_results(ctx.run_dir, record.rows, extra, appendix=choice_table(record.summaries))
        logger.info("results: %s, %s", md, js)
        shutil.rmtree(ctx.run_dir / ".state", ignore_errors=True)
    parallel.barrier()
    return json.loads((ctx.run_dir / "results.json").read_text(encoding="utf-8"))


def _open_run(config: TrainConfig, resume: bool, overwrite: bool) -> str:
    """Check the model and the run folder, record the config and the data (process 0); the start model."""
    run = Path(config.output_dir)
    # The model first: a hub id not in the cache, or a bundle, fails before RUN/config.json is written.
    start = resolve_model(config.model)
    refuse_bundle(start)
    if parallel.is_main():  # with several processes, process 0 checks and writes, the others wait
        check_resumable(run, config, resume, overwrite)
        run.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run / "config.json", config.to_dict())
        write_json_atomic(run / DATA_FILE, data_identity(config), indent=1, sort_keys=False)
    parallel.barrier()
    return start


@dataclass
class _Evaluation:
    """The run's evaluation sets, loaded once, and the rule to score a model on them."""

    ctx: StageContext
    sets: list[EvalSet]
    loaded: dict[str, Any]

    @classmethod
    def load(cls, ctx: StageContext) -> _Evaluation:
        config = ctx.config
        sets = eval_sets_from(config.eval_sets) if config.eval_sets else default_eval_sets(ctx.data_dir)
        return cls(ctx, sets, {s.name: s.load() for s in sets})

    def of(self, start: str) -> EvalFn:
        """Scores a model trained from ``start`` (whose tokenizer it uses) on the sets (``only``: those names)."""
        ctx = self.ctx

        def run_eval(model: Any, only: list[str] | None = None) -> dict[str, Any]:
            started = time.perf_counter()
            score = torch_score_fn(model, load_tokenizer(start), ctx.rule, ctx.bf16, ctx.config.eval_batch_size)
            metrics = evaluate(score, [s for s in self.sets if only is None or s.name in only], self.loaded)
            logger.info("evaluated in %.0fs: %s", time.perf_counter() - started,
                        ", ".join(f"{k} {v['acc']:.3f}" for k, v in metrics.items()))
            return metrics

        return run_eval


@dataclass
class _Record:
    """What the stages left: training summaries and evaluation rows by stage, seconds per stage run."""

    summaries: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _run_stages(ctx: StageContext, evaluation: _Evaluation, start: str) -> _Record:
    """Every planned stage in order (a completed one skipped on resume), each from the last earlier
    non-custom stage's checkpoint; imitation learning reads the base stage's MLM head."""
    record = _Record()
    mlm_source: str | None = None
    for stage in planned(ctx.config):
        folder = stage.folder(ctx.run_dir)
        started = time.perf_counter()
        if ctx.resume and is_complete(folder):
            logger.info("stage %s: complete in %s, skipped", stage.name, folder)
        else:
            _run_stage(ctx, stage, StageJob(stage.name, folder, start, evaluation.of(start), stage.target, mlm_source))
            record.timings[stage.name] = round(time.perf_counter() - started, 1)
        meta = read_meta(folder)
        if parallel.is_main():
            publish(ctx.run_dir, stage.name, folder)  # RUN/.metrics/<name>.jsonl -> RUN/<name>/metrics.jsonl
        record.summaries[stage.name] = meta.get("training", {})
        if meta.get("metrics"):
            record.rows[stage.name] = meta["metrics"]
        if stage.kind == "base":
            mlm_source = str(folder)
        if stage.kind in ("base", "general"):
            start = str(folder)  # custom models all start from the last earlier stage
    return record


def _run_stage(ctx: StageContext, stage: PlannedStage, job: StageJob) -> None:
    """Train one stage (process 0 writes its checkpoint), then drop its resumable state."""
    logger.info("stage %s: from %s", stage.name, job.start)
    STAGES[stage.kind](ctx, job)
    parallel.barrier()  # process 0 has written the checkpoint
    if parallel.is_main():
        shutil.rmtree(ctx.state_dir(stage.name), ignore_errors=True)


def general_kept(rows: dict[str, Any]) -> dict[str, float]:
    """Per custom model, its general average minus the general model's (helpful/harmless/WebGPT)."""
    reference = general_average(rows["general"]) if "general" in rows else None
    kept = {}
    for name, row in rows.items():
        avg = general_average(row)
        if name.startswith("custom-") and avg is not None and reference is not None:
            kept[name] = round(avg - reference, 4)
    return kept
