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
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from lite_rm.errors import InputError
from lite_rm.scoring.encoding import load_tokenizer, pad_id_of
from lite_rm.training import parallel, steps
from lite_rm.training.batching import PairData, add_replay, encode_preferences, plan_epochs
from lite_rm.training.checkpoint import ValidationSplit
from lite_rm.training.context import StageContext, StageJob, custom_data, custom_validation_split, general_pairs
from lite_rm.training.loop import StepFn, run_loop
from lite_rm.training.modeling import hf_tokenizer, load_reward_model, save_checkpoint, trainable_state
from lite_rm.training.preservation import interpolate

logger = logging.getLogger(__name__)

# The general pairs train the general head; without custom.replay_share this share of each batch.
DEFAULT_REPLAY = 0.25


def score_layer(model: Any) -> torch.nn.Linear:
    """The linear layer that makes the model's score (BERT family: ``classifier``)."""
    layer = getattr(model, "classifier", None)
    if not isinstance(layer, torch.nn.Linear) or layer.out_features != 1:
        raise InputError(f"custom.multitask needs a model whose score is one Linear layer named 'classifier' "
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
    general = encode_preferences(tokenizer, ctx.rule, general_pairs(ctx)[0])
    out = {}
    for i, domain in enumerate(domains):
        train, lists, valid = custom_data(ctx, domain)
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


@dataclass
class HeadModel:
    """The reward model with one linear head per domain, each scored through its :class:`HeadView`."""

    model: Any
    layers: dict[str, torch.nn.Linear]
    views: dict[str, HeadView]

    @classmethod
    def start(cls, ctx: StageContext, start: str, domains: list[str]) -> HeadModel:
        """The model of ``start``, every domain head a copy of its score layer."""
        model = load_reward_model(start, ctx.config.seed, ctx.config.dropout, ctx.config.pooling).to(ctx.device)
        layers = {d: copy.deepcopy(score_layer(model)) for d in domains}
        return cls(model, layers, {d: HeadView(model, layers[d]) for d in domains})

    def named_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """The model's, then the heads' (named as part of the reward head, so ``custom.head_lr_scale``
        applies to them too)."""
        return [*self.model.named_parameters(), *((f"classifier.{d}.{n}", p) for d, layer in self.layers.items()
                                                  for n, p in layer.named_parameters())]

    def head_records(self, data: dict[str, DomainData]) -> dict[str, Any]:
        """Each domain head as ``lite_rm.json`` records it (:class:`lite_rm.scoring.heads.LinearHead`)."""
        from lite_rm.scoring.heads import LinearHead

        return {d: LinearHead(d, layer.weight.detach().float().cpu().numpy()[0],
                              float(layer.bias.detach().float().cpu()[0]),
                              provenance={"method": "multitask", "train_pairs": len(data[d].train)}).to_dict()
                for d, layer in self.layers.items()}


def multitask_step(ctx: StageContext, heads: HeadModel, data: dict[str, DomainData], general: PairData,
                   pad_id: int) -> StepFn:
    """A step on one domain's units through its head, and its replayed general pairs through the
    model's own score layer (the general head), their losses weighted by pairs."""

    def step(item: tuple[str, list[int], list[int]]) -> tuple[torch.Tensor, dict[str, float], int]:
        domain, units, replay = item
        own = data[domain]
        done = steps.reward_step(heads.views[domain],
                                 [steps.StepSource(own.train, units, own.train.lists is not None)], pad_id, ctx.bf16)
        loss, metrics, pairs = done.loss, dict(done.metrics), done.pairs
        if replay:  # the general pairs through the model's own score layer: the general head
            kept = steps.reward_step(heads.model, [steps.StepSource(general, replay)], pad_id, ctx.bf16)
            loss = (done.pairs * loss + kept.pairs * kept.loss) / (done.pairs + kept.pairs)
            metrics["replay_acc"], pairs = kept.metrics["acc"], pairs + kept.pairs
        return loss, metrics, pairs

    return step


def run_multitask(ctx: StageContext, job: StageJob) -> dict[str, Any]:
    """Train one backbone with a head per domain of ``custom.domains`` from ``job.start``; write the
    checkpoint with the heads in ``lite_rm.json``."""
    cfg, domains, start = ctx.config.custom, list(ctx.config.custom.domains), job.start
    tokenizer = load_tokenizer(start)
    pad_id = pad_id_of(tokenizer)
    data, general, share = load_data(ctx, domains, tokenizer)
    heads = HeadModel.start(ctx, start, domains)
    start_state = trainable_state(heads.model)

    def head_accuracy(domain: str) -> float:
        return steps.pair_accuracy(heads.views[domain], data[domain].valid, pad_id, ctx.bf16,
                                   ctx.config.eval_batch_size)

    def validate() -> float:
        return float(np.mean([head_accuracy(d) for d in domains]))

    # validate after eval_every steps of EACH domain, the cadence of a one-domain run
    optim = dataclasses.replace(cfg, eval_every=cfg.eval_every * len(domains))
    result = run_loop(modules={"model": heads.model, "heads": torch.nn.ModuleDict(heads.layers)},
                      named_params=heads.named_parameters(), plan=interleave(data, ctx.config.seed),
                      step_fn=multitask_step(ctx, heads, data, general, pad_id), optim=optim,
                      steps_per_epoch=sum(d.steps_per_epoch for d in data.values()), validate=validate,
                      **ctx.loop_args(job.name))
    summary = result.summary() | {"domains": domains, "replay_share": share,
                                  "train_pairs": {d: len(v.train) for d, v in data.items()},
                                  "valid_pairs": {d: len(v.valid) for d, v in data.items()}}
    if not parallel.is_main():
        return summary
    # interpolation pulls the shared model (encoder and general head) toward the general model; the domain
    # heads keep what they learned (their start, a copy of the general head, opposes some domains)
    alpha = float(cfg.interpolate) if cfg.interpolate != "off" else 1.0
    heads.model.load_state_dict(interpolate(start_state, trainable_state(heads.model), alpha))
    summary["interpolation"] = {"alpha": alpha, "applies_to": "encoder and general head"}
    summary["valid_by_head"] = {d: head_accuracy(d) for d in domains}
    metrics = job.evaluate(heads.model)
    for d in domains:  # each domain's test set scored by its own head
        if f"dsp-{d}" in metrics:
            metrics[f"dsp-{d}"] = job.evaluate(heads.views[d], [f"dsp-{d}"])[f"dsp-{d}"]
    save_checkpoint(heads.model, hf_tokenizer(start), job.folder, ctx.rule, stage="custom", base_model=str(start),
                    domains=domains, multitask=True, heads=heads.head_records(data), training=summary,
                    metrics=metrics, validation_split=validation_split(ctx, domains).to_dict())
    return summary


def validation_split(ctx: StageContext, domains: list[str]) -> ValidationSplit:
    """Every domain's held-out pairs (named by the domain) and the general sets'."""
    splits = [custom_validation_split(ctx, d) for d in domains]
    own = [s for split in splits for s in split.sets if s.domain]
    general = [s for s in splits[0].sets if not s.domain]
    return ValidationSplit(ctx.config.seed, (*own, *general))
