"""The run in this process (one of several when ``torchrun`` started it): the set-up, the stages in
order, evaluation after each, and the results table. :func:`lite_rm.training.pipeline.train` is the
public entry."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from lite_rm.files import write_text_atomic
from lite_rm.scoring.encoding import InputRule, load_tokenizer
from lite_rm.threads import resolve_threads
from lite_rm.training import parallel
from lite_rm.training.checkpoint import read_meta
from lite_rm.training.config import TrainConfig
from lite_rm.training.encoders import refuse_bundle, resolve_model
from lite_rm.training.modeling import resolve_device
from lite_rm.training.run_folder import DATA_FILE, check_resumable, data_dir_of, data_identity, is_complete

logger = logging.getLogger(__name__)


def train_here(config: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """:func:`lite_rm.training.pipeline.train` in this process, joining the process group that the
    environment describes (``torchrun``), if any."""
    device = resolve_device(config.device, parallel.local_rank())  # a missing GPU fails before anything runs
    with parallel.session(device):
        return _train(config, resume, overwrite, device)


def stage_folders(config: TrainConfig) -> dict[str, Path]:
    """The checkpoint folder of every stage the config runs, in order."""
    run = Path(config.output_dir)
    folders = {}
    for stage in config.stages:
        if stage == "custom":
            for target in config.custom.targets():
                folders[f"custom-{target}"] = run / f"custom-{target}"
        else:
            folders[stage] = run / stage
    return folders


def _run_stage(ctx: Any, name: str, folder: Path, start: str, mlm_source: str | None, evaluate: Any) -> None:
    """Train one stage from ``start`` into ``folder`` (process 0 writes it), then drop its resumable state."""
    from lite_rm.training.custom import run_custom
    from lite_rm.training.multitask import run_multitask
    from lite_rm.training.stages import run_base, run_general

    logger.info("stage %s: from %s", name, start)
    stage = name.split("-")[0]
    if stage == "base":
        run_base(ctx, start, folder)
    elif stage == "general":
        run_general(ctx, start, folder, evaluate)
    elif ctx.config.custom.multitask:
        run_multitask(ctx, list(ctx.config.custom.domains), start, folder, evaluate)
    else:
        run_custom(ctx, name[len("custom-"):], start, folder, mlm_source, evaluate)
    parallel.barrier()  # process 0 has written the checkpoint
    if parallel.is_main():
        shutil.rmtree(ctx.state_dir(name), ignore_errors=True)


def _train(config: TrainConfig, resume: bool, overwrite: bool, device: Any) -> dict[str, Any]:
    """:func:`train` in this process (one of several when a process group is joined).

    Over 60 lines: the run's set-up, one loop over the stages (each trained by :func:`_run_stage`), then
    the results, read top to bottom.
    """
    from lite_rm.scoring.evaluation import default_eval_sets, eval_sets_from, evaluate, write_results
    from lite_rm.training.metrics import publish
    from lite_rm.training.modeling import resolve_bf16, torch_score_fn, torch_threads
    from lite_rm.training.selection import choice_table
    from lite_rm.training.stages import StageContext

    run = Path(config.output_dir)
    main = parallel.is_main()  # with several processes, process 0 checks and writes, the others wait
    # The model first: a hub id not in the cache, or a bundle, fails before RUN/config.json is written.
    current = resolve_model(config.model)
    refuse_bundle(current)
    if main:
        check_resumable(run, config, resume, overwrite)
        run.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run / "config.json", config.to_json() + "\n")
        write_text_atomic(run / DATA_FILE, json.dumps(data_identity(config), indent=1) + "\n")
    parallel.barrier()

    data_dir = data_dir_of(config)
    rule = InputRule(max_length=config.max_length)
    bf16 = resolve_bf16(config.bf16, device)
    threads = resolve_threads(config.threads)
    if config.threads == 0:  # "the free cores": processes on one machine share them
        threads = max(1, threads // parallel.local_world_size())
    ctx = StageContext(config, data_dir, rule, bf16, resume, run, device)
    sets = eval_sets_from(config.eval_sets) if config.eval_sets else default_eval_sets(data_dir)
    loaded = {s.name: s.load() for s in sets}
    logger.info("run %s: stages %s, device %s x %d processes, bf16 %s, %d threads, evaluation sets %s", run,
                config.stages, device, parallel.world_size(), bf16, threads, [s.name for s in sets])

    def evaluator(start: str) -> Any:
        def run_eval(model: Any, only: list[str] | None = None) -> dict[str, Any]:
            started = time.perf_counter()
            score = torch_score_fn(model, load_tokenizer(start), rule, bf16, config.eval_batch_size)
            metrics = evaluate(score, [s for s in sets if only is None or s.name in only], loaded)
            logger.info("evaluated in %.0fs: %s", time.perf_counter() - started,
                        ", ".join(f"{k} {v['acc']:.3f}" for k, v in metrics.items()))
            return metrics
        return run_eval

    mlm_source: str | None = None
    summaries: dict[str, Any] = {}
    rows: dict[str, Any] = {}
    timings: dict[str, float] = {}
    with torch_threads(threads):
        for name, folder in stage_folders(config).items():
            stage = name.split("-")[0]
            started = time.perf_counter()
            if resume and is_complete(folder):
                logger.info("stage %s: complete in %s, skipped", name, folder)
            else:
                _run_stage(ctx, name, folder, current, mlm_source, evaluator(current))
                timings[name] = round(time.perf_counter() - started, 1)
            meta = read_meta(folder)
            if main:
                publish(run, name, folder)  # RUN/.metrics/<name>.jsonl -> RUN/<name>/metrics.jsonl
            summaries[name] = meta.get("training", {})
            if meta.get("metrics"):
                rows[name] = meta["metrics"]
            if stage == "base":
                mlm_source = str(folder)
            if stage != "custom":
                current = str(folder)  # custom models all start from the last earlier stage

    extra = {"training": summaries, "general_kept": general_kept(rows), "stage_seconds": timings, "threads": threads,
             "bf16": bf16, "device": str(device), "processes": parallel.world_size(), "config": config.to_dict()}
    if main:
        md, js = write_results(run, rows, extra, appendix=choice_table(summaries))
        logger.info("results: %s, %s", md, js)
        shutil.rmtree(run / ".state", ignore_errors=True)
    parallel.barrier()
    return json.loads((run / "results.json").read_text(encoding="utf-8"))


def general_kept(rows: dict[str, Any]) -> dict[str, float]:
    """Per custom model, its general average minus the general model's (helpful/harmless/WebGPT)."""
    from lite_rm.scoring.evaluation import general_average

    reference = general_average(rows["general"]) if "general" in rows else None
    kept = {}
    for name, row in rows.items():
        avg = general_average(row)
        if name.startswith("custom-") and avg is not None and reference is not None:
            kept[name] = round(avg - reference, 4)
    return kept
