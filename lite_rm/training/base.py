"""Stage ``base``: masked-LM training continued on the (prompt, response) texts to be judged."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from lite_rm.scoring.encoding import encode_pairs, load_tokenizer, pad_batch, pad_id_of
from lite_rm.training import mlm as mlm_lib
from lite_rm.training import parallel
from lite_rm.training.batching import PairData, plan_epochs
from lite_rm.training.context import StageContext, StageJob, custom_data, general_pairs
from lite_rm.training.loop import run_loop
from lite_rm.training.modeling import autocast, hf_tokenizer, save_checkpoint, to_device, to_torch

logger = logging.getLogger(__name__)


def texts_of(ctx: StageContext) -> list[tuple[str, str]]:
    """The distinct (prompt, response) texts of ``base.text_from``, at most ``base.max_texts`` (a seeded sample)."""
    cfg = ctx.config.base
    texts: list[tuple[str, str]] = []
    if "general" in cfg.text_from:
        train, _, _ = general_pairs(ctx)
        texts += [(p.prompt, r) for p in train for r in (p.chosen, p.rejected)]
    if "custom" in cfg.text_from:
        for target in ctx.config.custom.targets():
            train, _, _ = custom_data(ctx, target)
            texts += [(p.prompt, r) for p in train for r in (p.chosen, p.rejected)]
    unique = list(dict.fromkeys(texts))
    rng = np.random.default_rng(ctx.config.seed)
    if cfg.max_texts and len(unique) > cfg.max_texts:
        unique = [unique[i] for i in sorted(rng.choice(len(unique), cfg.max_texts, replace=False))]
    return unique


def run_base(ctx: StageContext, job: StageJob) -> dict[str, Any]:
    """Stage ``base``: masked-LM training from ``job.start``; process 0 writes ``job.folder``."""
    cfg, start = ctx.config.base, job.start
    tokenizer = load_tokenizer(start)
    unique = texts_of(ctx)
    encoded = encode_pairs(tokenizer, [t[0] for t in unique], [t[1] for t in unique], ctx.rule)
    # Each text is a unit of one "pair" (itself twice) so that the length grouping counts texts.
    pairs = np.repeat(np.arange(len(unique), dtype=np.int64)[:, None], 2, axis=1)
    data = PairData(encoded, pairs, [[i] for i in range(len(unique))])
    plan, per_epoch = plan_epochs(data, cfg.batch_size, cfg.epochs, ctx.config.seed)
    logger.info("base: MLM on %d texts, %d steps", len(unique), len(plan))

    model = mlm_lib.load_mlm(start, ctx.config.seed, ctx.config.dropout).to(ctx.device)
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
                      step_fn=step, optim=cfg, steps_per_epoch=per_epoch, **ctx.loop_args(job.name))
    summary = result.summary() | {"texts": len(unique)}
    if parallel.is_main():
        save_checkpoint(model, hf_tokenizer(start), job.folder, ctx.rule, stage="base", base_model=str(start),
                        training=summary)
    return summary
