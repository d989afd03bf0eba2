"""Stage ``custom`` with ``custom.multitask``: one backbone for several domains, one head per domain.

Each domain's lists train its own linear head; replayed general pairs train the model's own score
layer (the ``general`` head, the checkpoint's default score), and all of them train the shared
encoder. A head reads the same vector as the score layer (its input: the bundle's ``embedding``), so
the export ships one graph and a small file per domain, and scoring a file for every domain costs one
encoder pass (:mod:`lite_rm.scoring.heads`). The heads start as copies of the general model's score layer.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from lite_rm.scoring.encoding import load_tokenizer, pad_id_of
from lite_rm.training import parallel, stages, steps
from lite_rm.training.batching import PairData, add_replay, encode_preferences, plan_epochs
from lite_rm.training.checkpoint import ValidationSplit
from lite_rm.training.loop import run_loop
from lite_rm.training.modeling import load_reward_model, save_checkpoint, trainable_state
from lite_rm.training.preservation import interpolate
from lite_rm.training.stages import EvalFn, StageContext

logger = logging.getLogger(__name__)

NAME = "multitask"
# The general pairs train the general head; without custom.replay_share this share of each batch.
DEFAULT_REPLAY = 0.25


def score_layer(model: Any) -> torch.nn.Linear:
    """The linear layer that makes the model's score (BERT family: ``classifier``)."""
    layer = getattr(model, "classifier", None)
    if not isinstance(layer, torch.nn.Linear) or layer.out_features != 1:
        raise ValueError(f"custom.multitask needs a model whose score is one Linear layer named 'classifier' "
                         f"(BERT family); {type(model).__name__} has {type(layer).__name__}")
    return layer


class HeadView(torch.nn.Module):
    """The reward model scored by another head: the head reads what the score layer reads.

    The input of the score layer is caught with a forward pre-hook, so the view follows the model's own
    pooling (CLS pooler or mean) and dropout without knowing them.
    """

    def __init__(self, model: Any, head: torch.nn.Linear) -> None:
        super().__init__()
        self.model, self.head = model, head

    def forward(self, **batch: torch.Tensor) -> Any:
        caught: list[torch.Tensor] = []
        hook = score_layer(self.model).register_forward_pre_hook(lambda module, args: caught.append(args[0]))
        try:
            self.model(**batch)
        finally:
            hook.remove()
        return SimpleNamespace(logits=self.head(caught[0]))


@dataclass
class DomainData:
    train: PairData
    valid: PairData
    plan: list[tuple[list[int], list[int]]]
    steps_per_epoch: int


def load_data(ctx: StageContext, domains: list[str], tokenizer: Any) -> tuple[dict[str, DomainData], PairData, float]:
    """Every domain's encoded data and plan (with general replay), and the general pairs replayed."""
    cfg, seed = ctx.config.custom, ctx.config.seed
    share = cfg.replay_share or DEFAULT_REPLAY
    general = encode_preferences(tokenizer, ctx.rule, stages.general_pairs(ctx)[0])
    out = {}
    for i, domain in enumerate(domains):
        train, lists, valid = stages.custom_data(ctx, domain)
        data = encode_preferences(tokenizer, ctx.rule, train, lists)
        plan, per_epoch = plan_epochs(data, cfg.batch_size, cfg.epochs, seed + i)
        out[domain] = DomainData(data, encode_preferences(tokenizer, ctx.rule, valid),
                                 add_replay(plan, data, general.n_units, share, seed + i), per_epoch)
    return out, general, share


def interleave(data: dict[str, DomainData], seed: int) -> list[tuple[str, list[int], list[int]]]:
    """All domains' steps in one plan: a seeded shuffle, so every stretch of training sees every domain."""
    plan = [(domain, units, replay) for domain, d in data.items() for units, replay in d.plan]
    random.Random(seed).shuffle(plan)
    return plan


def run_multitask(ctx: StageContext, domains: list[str], start: str, out: Path,
                  evaluate: EvalFn | None = None) -> dict[str, Any]:
    """Train one backbone with a head per domain; write the checkpoint with the heads in ``lite_rm.json``.

    Over 60 lines: data, model, step, loop, interpolation and saving, in the order they happen.
    """
    from lite_rm.scoring.heads import LinearHead

    cfg = ctx.config.custom
    tokenizer = load_tokenizer(start)
    pad_id = pad_id_of(tokenizer)
    data, general, share = load_data(ctx, domains, tokenizer)
    model = load_reward_model(start, ctx.config.seed, ctx.config.dropout, ctx.config.pooling).to(ctx.device)
    layers = {d: copy.deepcopy(score_layer(model)) for d in domains}
    heads = torch.nn.ModuleDict(layers)
    views = {d: HeadView(model, layers[d]) for d in domains}
    start_state = trainable_state(model)

    def step(item: tuple[str, list[int], list[int]]) -> tuple[torch.Tensor, dict[str, float], int]:
        domain, units, replay = item
        own = data[domain]
        done = steps.reward_step(views[domain], [steps.StepSource(own.train, units, own.train.lists is not None)],
                                 pad_id, ctx.bf16)
        loss, metrics, pairs = done.loss, dict(done.metrics), done.pairs
        if replay:  # the general pairs through the model's own score layer: the general head
            kept = steps.reward_step(model, [steps.StepSource(general, replay)], pad_id, ctx.bf16)
            loss = (done.pairs * loss + kept.pairs * kept.loss) / (done.pairs + kept.pairs)
            metrics["replay_acc"], pairs = kept.metrics["acc"], pairs + kept.pairs
        return loss, metrics, pairs

    def validate() -> float:
        return float(np.mean([steps.pair_accuracy(views[d], data[d].valid, pad_id, ctx.bf16,
                                                  ctx.config.eval_batch_size) for d in domains]))

    # validate after eval_every steps of EACH domain, the cadence of a one-domain run
    optim = dataclasses.replace(cfg, eval_every=cfg.eval_every * len(domains))
    # the domain heads are named as part of the reward head, so custom.head_lr_scale applies to them too
    named = [*model.named_parameters(), *((f"classifier.{d}.{n}", p) for d in domains
                                          for n, p in layers[d].named_parameters())]
    result = run_loop(modules={"model": model, "heads": heads}, named_params=named,
                      plan=interleave(data, ctx.config.seed), step_fn=step, optim=optim,
                      steps_per_epoch=sum(d.steps_per_epoch for d in data.values()), validate=validate,
                      **stages.loop_args(ctx, f"custom-{NAME}"))
    summary = stages.summary_of(result) | {"domains": domains, "replay_share": share,
                                    "train_pairs": {d: len(v.train) for d, v in data.items()},
                                    "valid_pairs": {d: len(v.valid) for d, v in data.items()}}
    if not parallel.is_main():
        return summary
    # interpolation pulls the shared model (encoder and general head) toward the general model; the domain
    # heads keep what they learned (their start, a copy of the general head, opposes some domains)
    alpha = float(cfg.interpolate) if cfg.interpolate != "off" else 1.0
    model.load_state_dict(interpolate(start_state, trainable_state(model), alpha))
    summary["interpolation"] = {"alpha": alpha, "applies_to": "encoder and general head"}
    summary["valid_by_head"] = {d: steps.pair_accuracy(views[d], data[d].valid, pad_id, ctx.bf16,
                                                       ctx.config.eval_batch_size) for d in domains}
    metrics = evaluate(model) if evaluate else {}
    for d in domains:  # each domain's test set scored by its own head
        if evaluate and f"dsp-{d}" in metrics:
            metrics[f"dsp-{d}"] = evaluate(views[d], [f"dsp-{d}"])[f"dsp-{d}"]
    head_records = {d: LinearHead(d, layers[d].weight.detach().float().cpu().numpy()[0],
                                  float(layers[d].bias.detach().float().cpu()[0]),
                                  provenance={"method": "multitask", "train_pairs": len(data[d].train)}).to_dict()
                    for d in domains}
    save_checkpoint(model, stages.hf_tokenizer(start), out, ctx.rule, stage="custom", base_model=str(start),
                    domains=domains, multitask=True, heads=head_records, training=summary, metrics=metrics,
                    validation_split=validation_split(ctx, domains).to_dict())
    return summary


def validation_split(ctx: StageContext, domains: list[str]) -> ValidationSplit:
    """Every domain's held-out pairs (named by the domain) and the general sets'."""
    splits = [stages.custom_validation_split(ctx, d) for d in domains]
    own = [s for split in splits for s in split.sets if s.domain]
    general = [s for s in splits[0].sets if not s.domain]
    return ValidationSplit(ctx.config.seed, (*own, *general))
