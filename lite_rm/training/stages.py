"""The stages' data and the base and general stages (the custom stage: :mod:`lite_rm.training.custom`).

Each ``run_*`` function trains one stage from a starting folder and writes the stage's checkpoint,
with the record of the pairs it held out (``validation_split``); :mod:`lite_rm.training.pipeline`
chains them, evaluates, and resumes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lite_rm.data import PreferencePair, load_preferences, split_by_prompt, streaming
from lite_rm.data.locations import DSP_TRAIN, GENERAL_TRAIN
from lite_rm.scoring.encoding import InputRule, encode_pairs, load_tokenizer, pad_batch, pad_id_of
from lite_rm.training import mlm as mlm_lib
from lite_rm.training import parallel, steps
from lite_rm.training.batching import PairData, StreamedPlan, encode_preferences, plan_epochs
from lite_rm.training.checkpoint import HeldOutSet, ValidationSplit
from lite_rm.training.config import TrainConfig
from lite_rm.training.loop import LoopResult, run_loop
from lite_rm.training.modeling import autocast, load_reward_model, save_checkpoint, to_device, to_torch

logger = logging.getLogger(__name__)

EvalFn = Callable[..., dict[str, Any]]  # (model, only: set names | None = None) -> metrics by set


@dataclass
class StageContext:
    """What every stage needs besides its own settings."""

    config: TrainConfig
    data_dir: Path
    rule: InputRule
    bf16: bool
    resume: bool
    run_dir: Path
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def state_dir(self, stage: str) -> Path:
        return self.run_dir / ".state" / stage


def hf_tokenizer(path: str | Path) -> Any:
    """The transformers tokenizer of a folder (for saving beside a checkpoint and for MLM masking)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)


# ---------------------------------------------------------------- data and held-out records


_recorded = streaming.recorded_source


def general_sources(ctx: StageContext) -> dict[str, str]:
    """The general sets by name: ``general.sets``, or the data folder's helpful/harmless/WebGPT train files."""
    sets = ctx.config.general.sets or {name: str(ctx.data_dir / rel) for name, rel in GENERAL_TRAIN.items()}
    return {name: _recorded(source) for name, source in sets.items()}


def general_available(ctx: StageContext) -> bool:
    """Whether the run has general sets to read: ``general.sets``, or the data folder's default files
    (a custom-only run on the user's own data may have no data folder)."""
    return bool(ctx.config.general.sets) or all(Path(s).exists() for s in general_sources(ctx).values())


def custom_source(ctx: StageContext, target: str) -> tuple[str, str | None, dict[str, Any]]:
    """A custom target's data: (source, DSP domain or ``None``, how to read it)."""
    cfg = ctx.config.custom
    if cfg.data:
        return _recorded(cfg.data), None, cfg.load_options()
    return _recorded(ctx.data_dir / DSP_TRAIN), target, {}


def general_held_out(ctx: StageContext) -> list[HeldOutSet]:
    """The general sets and the share of their prompts the general stage holds out."""
    fraction = ctx.config.general.valid_fraction
    return [HeldOutSet(name, source, fraction) for name, source in general_sources(ctx).items()]


def custom_validation_split(ctx: StageContext, target: str) -> ValidationSplit:
    """A custom checkpoint's held-out pairs: its own data's, and the general sets' (which the general
    stage held out; replay draws only from their train split). Default general files that are not
    there (a custom-only run without the data folder) are left out."""
    source, domain, options = custom_source(ctx, target)
    general = [s for s in general_held_out(ctx) if ctx.config.general.sets or Path(s.source).exists()]
    name = target if target not in {s.name for s in general} else f"custom-{target}"
    own = HeldOutSet(name, source, ctx.config.custom.valid_fraction, domain, options)
    return ValidationSplit(ctx.config.seed, (own, *general))


def streams_general(ctx: StageContext) -> bool:
    """Whether the general sets are streamed (:mod:`lite_rm.data.streaming`): ``general.streaming``
    (``auto``: when a set is a glob or the sets hold 100k records or more)."""
    mode = ctx.config.general.streaming
    return streaming.wants_streaming(general_sources(ctx), mode)


def general_pairs(ctx: StageContext) -> tuple[list[PreferencePair], list[float], list[PreferencePair]]:
    """General training pairs (train split), their per-pair proportion, and the validation pairs.

    Streamed sets give seeded uniform samples instead (at most ``SAMPLE_MAX_PAIRS`` training and
    ``VALID_MAX_PAIRS`` validation pairs): what replay and the base stage's text need, in bounded memory.
    """
    cfg = ctx.config.general
    if streams_general(ctx):
        found = streaming.survey(general_sources(ctx), cfg.valid_fraction, ctx.config.seed,
                                 train_max=streaming.SAMPLE_MAX_PAIRS)
        return found.train_sample, [1.0] * len(found.train_sample), found.valid
    train: list[PreferencePair] = []
    fractions: list[float] = []
    valid: list[PreferencePair] = []
    for name, source in general_sources(ctx).items():
        loaded = load_preferences(source)
        logger.info("general set %s: %s", name, loaded.report.summary())
        tr, va = split_by_prompt(loaded.pairs, cfg.valid_fraction, ctx.config.seed)
        train += tr
        valid += va
        fractions += [float(cfg.proportions.get(name, 1.0))] * len(tr)
    return train, fractions, valid


def custom_data(ctx: StageContext, target: str) -> tuple[list[PreferencePair], Any, list[PreferencePair]]:
    """Custom training pairs, their lists (listwise, else ``None``), and validation pairs."""
    cfg = ctx.config.custom
    source, domain, options = custom_source(ctx, target)
    loaded = load_preferences(source, domain=domain, listwise=cfg.listwise, **options)
    logger.info("custom data %s: %s", target, loaded.report.summary())
    train, valid = split_by_prompt(loaded.pairs, cfg.valid_fraction, ctx.config.seed)
    lists = None
    if cfg.listwise and loaded.lists:
        lists, _ = split_by_prompt(loaded.lists, cfg.valid_fraction, ctx.config.seed)
    elif cfg.listwise:
        logger.info("custom data %s has no multi-response items; training pairwise", target)
    return train, lists, valid


def loop_args(ctx: StageContext, stage: str) -> dict[str, Any]:
    """The :func:`run_loop` arguments every stage passes the same way."""
    return {"state_dir": ctx.state_dir(stage), "resume": ctx.resume, "log_every": ctx.config.log_every,
            "save_every": ctx.config.save_every, "desc": stage, "report_to": ctx.config.report_to}


def summary_of(result: LoopResult) -> dict[str, Any]:
    """The training summary a checkpoint records (``lite_rm.json`` ``training``)."""
    last = result.log[-1] if result.log else {}
    return {"steps": result.steps, "pairs_per_s": round(result.pairs_per_s, 3),
            "train_seconds": round(result.train_seconds, 1), "best_valid": result.best_valid,
            "stopped_early": result.stopped_early, "last_log": last, "valid_curve": result.valid}


# ---------------------------------------------------------------- base


def run_base(ctx: StageContext, start: str, out: Path) -> dict[str, Any]:
    """Stage ``base``: masked-LM training continued on the (prompt, response) texts to be judged."""
    cfg, seed = ctx.config.base, ctx.config.seed
    tokenizer = load_tokenizer(start)
    texts: list[tuple[str, str]] = []
    if "general" in cfg.text_from:
        train, _, _ = general_pairs(ctx)
        texts += [(p.prompt, r) for p in train for r in (p.chosen, p.rejected)]
    if "custom" in cfg.text_from:
        for target in ctx.config.custom.targets():
            train, lists, _ = custom_data(ctx, target)
            texts += [(p.prompt, r) for p in train for r in (p.chosen, p.rejected)]
    unique = list(dict.fromkeys(texts))
    rng = np.random.default_rng(seed)
    if cfg.max_texts and len(unique) > cfg.max_texts:
        unique = [unique[i] for i in sorted(rng.choice(len(unique), cfg.max_texts, replace=False))]
    encoded = encode_pairs(tokenizer, [t[0] for t in unique], [t[1] for t in unique], ctx.rule)
    # Each text is a unit of one "pair" (itself twice) so that the length grouping counts texts.
    pairs = np.repeat(np.arange(len(unique), dtype=np.int64)[:, None], 2, axis=1)
    data = PairData(encoded, pairs, [[i] for i in range(len(unique))])
    plan, per_epoch = plan_epochs(data, cfg.batch_size, cfg.epochs, seed)
    logger.info("base: MLM on %d texts, %d steps", len(unique), len(plan))

    model = mlm_lib.load_mlm(start, seed, ctx.config.dropout).to(ctx.device)
    masker = mlm_lib.Masker(hf_tokenizer(start), cfg.mlm_probability)
    pad_id = pad_id_of(tokenizer)

    def step(units: list[int]) -> tuple[torch.Tensor, dict[str, float], int]:
        batch = to_torch(pad_batch(encoded, units, pad_id))
        inputs, labels = masker(batch["input_ids"])  # on the CPU: the masks draw from torch's CPU RNG
        batch = to_device(batch | {"input_ids": inputs, "labels": labels}, ctx.device)
        with autocast(ctx.bf16, ctx.device.type):
            loss = mlm_lib.masked_lm_loss(model, batch["input_ids"], batch["attention_mask"],
                                          batch["token_type_ids"], batch["labels"])
        return loss, {}, len(units)

    result = run_loop(modules={"mlm": model}, named_params=list(model.named_parameters()), plan=plan,
                      step_fn=step, optim=cfg, steps_per_epoch=per_epoch, **loop_args(ctx, "base"))
    summary = summary_of(result) | {"texts": len(unique)}
    if parallel.is_main():
            save_checkpoint(model, hf_tokenizer(start), out, ctx.rule, stage="base", base_model=str(start),
                        training=summary)
    return summary


# ---------------------------------------------------------------- general


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
    sources = general_sources(ctx)
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


def run_general(ctx: StageContext, start: str, out: Path, evaluate: EvalFn | None = None) -> dict[str, Any]:
    """Stage ``general`` (GRFT): Bradley-Terry on the general sets, mixed by proportions.

    Large sets (a glob, 100k records or more) are streamed (:func:`streams_general`); the default sets
    are loaded whole, as before. ``evaluate`` (model -> metrics) runs before the checkpoint is written;
    its metrics go into it.
    """
    cfg, seed = ctx.config.general, ctx.config.seed
    tokenizer = load_tokenizer(start)
    pad_id = pad_id_of(tokenizer)
    general = _general_streamed(ctx, tokenizer) if streams_general(ctx) else _general_in_memory(ctx, tokenizer)
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
                      valid_pairs=len(general.valid), **loop_args(ctx, "general"))
    summary = summary_of(result) | general.summary
    if parallel.is_main():  # one process evaluates and writes; the pipeline waits for it
        metrics = evaluate(model) if evaluate else {}
        split = ValidationSplit(seed, tuple(general_held_out(ctx)))
        save_checkpoint(model, hf_tokenizer(start), out, ctx.rule, stage="general", base_model=str(start),
                        training=summary, metrics=metrics, validation_split=split.to_dict())
    return summary
