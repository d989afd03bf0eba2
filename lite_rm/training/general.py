"""Stage ``general`` (GRFT): the reward loss on the general sets, loaded whole or streamed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from lite_rm.data import PreferencePair, streaming
from lite_rm.scoring.encoding import load_tokenizer, pad_id_of
from lite_rm.training import parallel, steps
from lite_rm.training.batching import StreamedPlan, encode_preferences, plan_epochs
from lite_rm.training.checkpoint import ValidationSplit
from lite_rm.training.context import StageContext, StageJob, general_held_out, general_pairs
from lite_rm.training.loop import run_loop
from lite_rm.training.modeling import hf_tokenizer, load_reward_model, save_checkpoint

logger = logging.getLogger(__name__)


@dataclass
class GeneralData:
    """The general stage's batches, however they are held.

    Attributes:
        plan: unit ids per step (a list, or a :class:`StreamedPlan`).
        steps_per_epoch: steps of one full epoch.
        source: a step's units -> the data they index.
        valid: the validation pairs.
        summary: what the checkpoint records about the data.
    """

    plan: Any
    steps_per_epoch: int
    source: Callable[[list[int]], steps.StepSource]
    valid: list[PreferencePair]
    summary: dict[str, Any]


def _general_in_memory(ctx: StageContext, tokenizer: Any) -> GeneralData:
    """Every general pair loaded, encoded and planned up front."""
    cfg = ctx.config.general
    train, fractions, valid = general_pairs(ctx)
    data = encode_preferences(tokenizer, ctx.rule, train)
    unit_fractions = [fractions[u[0]] for u in data.units]
    plan, per_epoch = plan_epochs(data, cfg.batch_size, cfg.epochs, ctx.config.seed, unit_fractions)
    logger.info("general: %d train pairs, %d validation pairs, %d steps", len(train), len(valid), len(plan))
    return GeneralData(plan, per_epoch, lambda units: steps.StepSource(data, units), valid,
                       {"train_pairs": len(train), "valid_pairs": len(valid)})


def _general_streamed(ctx: StageContext, tokenizer: Any) -> GeneralData:
    """The general sets read a buffer at a time (:class:`StreamedPlan`); one parsing pass first counts
    the pairs (for the schedule), checks every record and samples the validation pairs."""
    cfg, seed = ctx.config.general, ctx.config.seed
    sources = ctx.general.sets
    found = streaming.survey(sources, cfg.valid_fraction, seed)
    names = list(sources)

    def open_set(index: int, skip: int) -> Any:
        return streaming.train_stream(sources[names[index]], cfg.valid_fraction, seed, skip)

    buffer = cfg.buffer_pairs
    plan = StreamedPlan(open_set, [s.train_pairs for s in found.sets],
                        [float(cfg.proportions.get(n, 1.0)) for n in names], tokenizer, ctx.rule,
                        cfg.batch_size, cfg.epochs, seed, buffer)
    logger.info("general: streaming %d train pairs in buffers of %d, %d of %d held-out pairs for validation, "
                "%d steps", found.train_pairs, buffer, len(found.valid), found.held_out_pairs, len(plan))

    def source(units: list[int]) -> steps.StepSource:
        if plan.data is None:  # the loop indexes the plan before each step
            raise RuntimeError("a streamed step ran before its buffer was read")
        return steps.StepSource(plan.data, units)

    return GeneralData(plan, plan.steps_per_epoch, source, found.valid,
                       {"train_pairs": found.train_pairs, "valid_pairs": len(found.valid),
                        "held_out_pairs": found.held_out_pairs, "streamed": True, "buffer_pairs": buffer})


def run_general(ctx: StageContext, job: StageJob) -> dict[str, Any]:
    """Stage ``general`` (GRFT): Bradley-Terry on the general sets, mixed by proportions, from ``job.start``.

    Large sets (a glob, 100k records or more) are streamed (:attr:`GeneralSources.streamed`); the
    default sets are loaded whole. ``job.evaluate`` runs before the checkpoint is written; its metrics
    go into it.
    """
    cfg, seed, start = ctx.config.general, ctx.config.seed, job.start
    tokenizer = load_tokenizer(start)
    pad_id = pad_id_of(tokenizer)
    general = _general_streamed(ctx, tokenizer) if ctx.general.streamed else _general_in_memory(ctx, tokenizer)
    valid_data = encode_preferences(tokenizer, ctx.rule, general.valid)
    model = load_reward_model(start, seed, ctx.config.dropout, ctx.config.pooling).to(ctx.device)

    def step(units: list[int]) -> tuple[torch.Tensor, dict[str, float], int]:
        done = steps.reward_step(model, [general.source(units)], pad_id, ctx.bf16)
        return done.loss, done.metrics, done.pairs

    validate = None
    if len(general.valid):
        def validate() -> float:
            return steps.pair_accuracy(model, valid_data, pad_id, ctx.bf16, ctx.config.eval_batch_size)

    result = run_loop(modules={"model": model}, named_params=list(model.named_parameters()), plan=general.plan,
                      step_fn=step, optim=cfg, steps_per_epoch=general.steps_per_epoch, validate=validate,
                      valid_pairs=len(general.valid), **ctx.loop_args(job.name))
    summary = result.summary() | general.summary
    if parallel.is_main():  # one process evaluates and writes; the others wait for it
        metrics = job.evaluate(model)
        split = ValidationSplit(seed, tuple(general_held_out(ctx)))
        save_checkpoint(model, hf_tokenizer(start), job.folder, ctx.rule, stage="general", base_model=str(start),
                        training=summary, metrics=metrics, validation_split=split.to_dict())
    return summary
