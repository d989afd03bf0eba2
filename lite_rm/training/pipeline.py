"""``train(config)``: the three stages in order, evaluation after each, one results table, resume.

Output layout of a run folder::

    RUN/config.json          the configuration the run was started with
    RUN/data.json            what its data was: each source's path, size and hash of its ends
    RUN/base/                MLM checkpoint (stage base)
    RUN/general/             reward checkpoint (stage general) with its metrics in lite_rm.json
    RUN/custom-<domain>/     reward checkpoint per custom target
    RUN/results.md           stages x evaluation sets (pairwise accuracy), per-opponent DSP table
    RUN/results.json         the same, plus training summaries and general accuracy kept
    RUN/.state/<stage>/      resumable mid-stage state (removed when the stage completes)

A stage is complete when its checkpoint folder exists (folders are renamed into place only when fully
written). ``resume=True`` skips completed stages and continues an interrupted one from its last
mid-stage state; with the same seed the result equals an uninterrupted run. A resume with another
configuration or changed data is refused.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from lite_rm.data import resolve_data_dir
from lite_rm.data.locations import DSP_TEST, DSP_TRAIN, GENERAL_TEST, GENERAL_TRAIN
from lite_rm.extras import require
from lite_rm.files import identity_change, input_identity, write_text_atomic
from lite_rm.scoring.encoding import InputRule, load_tokenizer
from lite_rm.threads import resolve_threads
from lite_rm.training.checkpoint import META_FILE, read_meta
from lite_rm.training.config import TrainConfig
from lite_rm.training.encoders import refuse_bundle, resolve_model

logger = logging.getLogger(__name__)

# RUN/data.json: the identity of every preference source the run reads (path, size, hash of its ends),
# checked by a resume: a stage continued on changed data would silently train on other pairs.
DATA_FILE = "data.json"

# Keys that may differ between an interrupted run and its resumption without changing the result.
# device and processes: the state is device-independent and the effective batch does not depend on
# the number of processes (results agree within float rounding, tests/test_parallel.py).
_RESUME_FREE_KEYS = {"output_dir", "threads", "log_every", "save_every", "eval_batch_size", "report_to",
                     "device", "processes"}


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


def is_complete(folder: Path) -> bool:
    return (folder / META_FILE).is_file()


def data_sources(config: TrainConfig, data_dir: Path) -> dict[str, str]:
    """Every preference source the run reads, by role (``general.helpful``, ``custom``, ``eval.webgpt``)."""
    uses_general, uses_custom = _uses(config)
    sources: dict[str, str] = {}
    if uses_general:
        sets = config.general.sets or {name: str(data_dir / rel) for name, rel in GENERAL_TRAIN.items()}
        sources.update({f"general.{name}": source for name, source in sets.items()})
    if uses_custom:
        sources["custom"] = config.custom.data or str(data_dir / DSP_TRAIN)
    evals = config.eval_sets or {**{name: str(data_dir / rel) for name, rel in GENERAL_TEST.items()},
                                 "dsp": str(data_dir / DSP_TEST)}
    sources.update({f"eval.{name}": source for name, source in evals.items()})
    return sources


def data_identity(config: TrainConfig) -> dict[str, Any]:
    """What :data:`DATA_FILE` records: each source's identity (:func:`lite_rm.files.input_identity`)."""
    data_dir = resolve_data_dir(config.data_dir or None) if _needs_data_dir(config) else Path(".")
    return {role: input_identity(source) for role, source in data_sources(config, data_dir).items()}


def _check_data(run: Path, config: TrainConfig) -> None:
    """Refuse to resume a run whose data changed since it started (a stage would go on with other pairs)."""
    saved = run / DATA_FILE
    if not saved.is_file():
        logger.warning("%s has no record of its data (%s: written by an older lite-rm); resuming without "
                       "checking that the data is unchanged", run, DATA_FILE)
        return
    try:
        before = json.loads(saved.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{saved}: unreadable ({err}); start the run again with --overwrite") from None
    before = before if isinstance(before, dict) else {}
    now = data_identity(config)
    for role in sorted(set(before) | set(now)):
        if role not in now or role not in before:
            change = "it is no longer read" if role not in now else "it was not read before"
        else:
            change = identity_change(before[role], now[role]) or ""
        if change:
            raise ValueError(f"{run} was started on other data ({role}: {change}); resume with the data it "
                             "started on, or start the run again with --overwrite (or in another output folder)")


def _check_resumable(run: Path, config: TrainConfig, resume: bool, overwrite: bool) -> None:
    saved = run / "config.json"
    existing = [p.name for p in run.glob("*") if p.is_dir() and is_complete(p)] if run.is_dir() else []
    if resume and saved.is_file():
        before = json.loads(saved.read_text(encoding="utf-8"))
        # a run saved before the dropout key existed trained with the encoder's own dropout
        before.setdefault("dropout", "all")
        try:  # keys added since that run was saved compare at their defaults
            before = TrainConfig.from_dict(before).to_dict()
        except ValueError:
            pass  # a saved config this version cannot read: compare it as it is
        now = config.to_dict()
        changed = sorted(k for k in set(before) | set(now)
                         if k not in _RESUME_FREE_KEYS and before.get(k) != now.get(k))
        if changed:
            raise ValueError(
                f"{run} was started with a different configuration (keys {', '.join(changed)} differ); "
                "resume with the same settings, or start the run again with --overwrite (or in another output "
                "folder)"
            )
        _check_data(run, config)
        return
    if existing and not overwrite and not resume:
        raise FileExistsError(
            f"{run} already holds stage checkpoints ({', '.join(sorted(existing))}); pass --resume to continue "
            "that run, --overwrite to start it again, or choose another output folder"
        )
    if overwrite and not resume:
        for name in [*existing, ".state", ".metrics", "tensorboard", "plots"]:
            shutil.rmtree(run / name, ignore_errors=True)


def _uses(config: TrainConfig) -> tuple[bool, bool]:
    """Whether the run reads general and custom training data."""
    uses_general = "general" in config.stages or ("base" in config.stages and "general" in config.base.text_from)
    uses_custom = "custom" in config.stages or ("base" in config.stages and "custom" in config.base.text_from)
    return uses_general, uses_custom


def _needs_data_dir(config: TrainConfig) -> bool:
    """Whether any default file of the data folder is used (else every file was given explicitly)."""
    uses_general, uses_custom = _uses(config)
    return (not config.eval_sets or (uses_general and not config.general.sets)
            or (uses_custom and not config.custom.data))


def _optional_data_dir(config: TrainConfig) -> Path:
    """The data folder when there is one, though every file the run trains and evaluates on was given: the
    custom stage's validated choice still checks general accuracy on the general held-out pairs."""
    try:
        return resolve_data_dir(config.data_dir or None)
    except FileNotFoundError:
        return Path(".")


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


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Run the configured stages, evaluating after each; write ``results.md`` / ``results.json``.

    The run's one driver (over 60 lines): setup, the stage loop and the results, in the order they
    happen; each stage's work is in :mod:`lite_rm.training.stages` and :mod:`lite_rm.training.custom`.

    Args:
        config: the run's configuration.
        resume: continue an interrupted run in ``config.output_dir`` (completed stages are kept).
        overwrite: start again even if ``config.output_dir`` holds checkpoints.

    Returns:
        The ``results.json`` payload: accuracy per stage and set, training summaries, timings.

    Raises:
        FileExistsError: the output folder holds a run and neither ``resume`` nor ``overwrite``.
        ValueError: resuming with a different configuration, bad data, or a device this machine lacks.
        ParallelRunError: with ``processes`` > 1, a training process failed.
    """
    require("torch")
    from lite_rm.training import parallel
    from lite_rm.training.modeling import resolve_device

    device = resolve_device(config.device, parallel.local_rank())  # a missing GPU fails before anything runs
    if config.processes > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        _check_resumable(Path(config.output_dir), config, resume, overwrite)  # its errors here, once
        parallel.launch(config, resume, overwrite, config.processes)
        return json.loads((Path(config.output_dir) / "results.json").read_text(encoding="utf-8"))
    with parallel.session(device):
        return _train(config, resume, overwrite, device)


def _run_stage(ctx: Any, name: str, folder: Path, start: str, mlm_source: str | None, evaluate: Any) -> None:
    """Train one stage from ``start`` into ``folder`` (process 0 writes it), then drop its resumable state."""
    from lite_rm.training import parallel
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
    from lite_rm.training import parallel
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
        _check_resumable(run, config, resume, overwrite)
        run.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run / "config.json", config.to_json() + "\n")
        write_text_atomic(run / DATA_FILE, json.dumps(data_identity(config), indent=1) + "\n")
    parallel.barrier()

    data_dir = resolve_data_dir(config.data_dir or None) if _needs_data_dir(config) else _optional_data_dir(config)
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
