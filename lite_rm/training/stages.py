"""The three stages: what each trains on, its step, and its checkpoint.

Each ``run_*`` function trains one stage from a starting folder and writes the stage's checkpoint;
:mod:`lite_rm.training.pipeline` chains them, evaluates, and resumes.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lite_rm.data import PreferencePair, load_preferences, split_by_prompt
from lite_rm.data.locations import DSP_TRAIN, GENERAL_TRAIN
from lite_rm.encoding import EncodedPairs, InputRule, encode_pairs, load_tokenizer, pad_batch, pad_id_of
from lite_rm.training import mlm as mlm_lib
from lite_rm.training.batching import PairData, add_replay, encode_preferences, plan_epochs
from lite_rm.training.config import TrainConfig
from lite_rm.training.loop import LoopResult, run_loop
from lite_rm.training.losses import bradley_terry_loss, listwise_softmax_loss, pair_metrics
from lite_rm.training.modeling import (
    autocast,
    load_reward_model,
    save_checkpoint,
    score_all,
    score_ids,
    to_torch,
)
from lite_rm.training.preservation import L2SP, choose_alpha, freeze, interpolate

logger = logging.getLogger(__name__)

EvalFn = Callable[[Any], dict[str, Any]]


@dataclass
class StageContext:
    """What every stage needs besides its own settings."""

    config: TrainConfig
    data_dir: Path
    rule: InputRule
    bf16: bool
    resume: bool
    run_dir: Path

    def state_dir(self, stage: str) -> Path:
        return self.run_dir / ".state" / stage


def _hf_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def _gather(tables: list[tuple[EncodedPairs, list[int]]]) -> EncodedPairs:
    """One batch's texts from one or more tables, in order (for a single forward pass)."""
    ids, types, cut = [], [], []
    for texts, rows in tables:
        for r in rows:
            ids.append(texts.input_ids[r])
            types.append(texts.token_type_ids[r])
            cut.append(texts.truncated[r])
    return EncodedPairs(ids, types, cut)


def general_pairs(ctx: StageContext) -> tuple[list[PreferencePair], list[float], list[PreferencePair]]:
    """General training pairs (train split), their per-pair proportion, and the validation pairs."""
    cfg = ctx.config.general
    sets = cfg.sets or {name: str(ctx.data_dir / rel) for name, rel in GENERAL_TRAIN.items()}
    train: list[PreferencePair] = []
    fractions: list[float] = []
    valid: list[PreferencePair] = []
    for name, path in sets.items():
        loaded = load_preferences(path)
        logger.info("general set %s: %s", name, loaded.report.summary())
        tr, va = split_by_prompt(loaded.pairs, cfg.valid_fraction, ctx.config.seed)
        train += tr
        valid += va
        fractions += [float(cfg.proportions.get(name, 1.0))] * len(tr)
    return train, fractions, valid


def custom_data(ctx: StageContext, target: str) -> tuple[list[PreferencePair], Any, list[PreferencePair]]:
    """Custom training pairs, their lists (listwise, else ``None``), and validation pairs."""
    cfg = ctx.config.custom
    if cfg.data:
        loaded = load_preferences(cfg.data, listwise=cfg.listwise)
    else:
        loaded = load_preferences(ctx.data_dir / DSP_TRAIN, domain=target, listwise=cfg.listwise)
    logger.info("custom data %s: %s", target, loaded.report.summary())
    train, valid = split_by_prompt(loaded.pairs, cfg.valid_fraction, ctx.config.seed)
    lists = None
    if cfg.listwise and loaded.lists:
        lists, _ = split_by_prompt(loaded.lists, cfg.valid_fraction, ctx.config.seed)
    elif cfg.listwise:
        logger.info("custom data %s has no multi-response items; training pairwise", target)
    return train, lists, valid


def pair_accuracy(model: Any, data: PairData, pad_id: int, bf16: bool, batch_size: int) -> float:
    """Pairwise accuracy of a model on encoded pairs (validation)."""
    if len(data) == 0:
        return float("nan")
    rewards = score_all(model, data.texts, pad_id, bf16, batch_size)
    diff = rewards[data.pairs[:, 0]] - rewards[data.pairs[:, 1]]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def _loop_args(ctx: StageContext, stage: str) -> dict[str, Any]:
    return {"state_dir": ctx.state_dir(stage), "resume": ctx.resume, "log_every": ctx.config.log_every,
            "save_every": ctx.config.save_every, "desc": stage}


def _summary(result: LoopResult) -> dict[str, Any]:
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

    model = mlm_lib.load_mlm(start, seed, ctx.config.dropout)
    masker = mlm_lib.Masker(_hf_tokenizer(start), cfg.mlm_probability)
    pad_id = pad_id_of(tokenizer)

    def step(units: list[int]) -> tuple[torch.Tensor, dict[str, float], int]:
        batch = to_torch(pad_batch(encoded, units, pad_id))
        inputs, labels = masker(batch["input_ids"])
        with autocast(ctx.bf16):
            loss = mlm_lib.masked_lm_loss(model, inputs, batch["attention_mask"], batch["token_type_ids"], labels)
        return loss, {}, len(units)

    result = run_loop(modules={"mlm": model}, named_params=list(model.named_parameters()), plan=plan,
                      step_fn=step, optim=cfg, steps_per_epoch=per_epoch, **_loop_args(ctx, "base"))
    summary = _summary(result) | {"texts": len(unique)}
    save_checkpoint(model, _hf_tokenizer(start), out, ctx.rule, stage="base", base_model=str(start),
                    training=summary)
    return summary


# ---------------------------------------------------------------- reward steps


def reward_step(
    model: Any, tables: list[tuple[PairData, list[int], bool]], pad_id: int, bf16: bool,
) -> tuple[torch.Tensor, dict[str, float], int, EncodedPairs, torch.Tensor]:
    """Rewards of a batch's texts in one forward pass, and the reward loss.

    Args:
        model: the reward model.
        tables: per data source: (data, unit ids of the step, listwise?). For pairwise units the unit
            ids are pair-group ids; for listwise, list ids.
        pad_id: the padding id.
        bf16: autocast.

    Returns:
        loss (pairs weigh equally across sources), metrics of the first source, pairs trained,
        the gathered texts, and the text rows of the first source's preferred responses.
    """
    gathered: list[tuple[EncodedPairs, list[int]]] = []
    plans = []
    offset = 0
    for data, units, listwise in tables:
        if listwise and data.lists is not None:
            rows = sorted({t for u in units for t in data.lists[u]})
        else:
            pair_ids = [p for u in units for p in data.units[u]]
            rows = sorted({int(t) for p in pair_ids for t in data.pairs[p]})
        local = {t: offset + i for i, t in enumerate(rows)}
        gathered.append((data.texts, rows))
        plans.append((data, units, listwise, local))
        offset += len(rows)
    batch_texts = _gather(gathered)
    rewards = score_ids(model, batch_texts, range(len(batch_texts)), pad_id, bf16)

    losses, weights = [], []
    metrics: dict[str, float] = {}
    preferred_rows: list[int] = []
    n_pairs = 0
    for i, (data, units, listwise, local) in enumerate(plans):
        if not units:
            continue
        if listwise:
            lists = [[local[t] for t in data.lists[u]] for u in units]  # type: ignore[index]
            width = max(len(x) for x in lists)
            idx = torch.tensor([x + [0] * (width - len(x)) for x in lists])
            mask = torch.tensor([[True] * len(x) + [False] * (width - len(x)) for x in lists])
            scores = rewards[idx]
            loss = listwise_softmax_loss(scores, mask, torch.zeros(len(lists), dtype=torch.long))
            count = int(mask.sum()) - len(lists)
            chosen = torch.cat([scores[j, :1].expand(len(x) - 1) for j, x in enumerate(lists)])
            rejected = torch.cat([scores[j, 1:len(x)] for j, x in enumerate(lists)])
            pref = [x[0] for x in lists]
        else:
            pair_ids = [p for u in units for p in data.units[u]]
            ci = torch.tensor([local[int(data.pairs[p, 0])] for p in pair_ids])
            ri = torch.tensor([local[int(data.pairs[p, 1])] for p in pair_ids])
            chosen, rejected = rewards[ci], rewards[ri]
            loss = bradley_terry_loss(chosen, rejected)
            count = len(pair_ids)
            pref = sorted(set(ci.tolist()))
        losses.append(loss)
        weights.append(count)
        n_pairs += count
        if i == 0:
            metrics = pair_metrics(chosen, rejected)
            preferred_rows = pref
        else:
            metrics["replay_acc"] = pair_metrics(chosen, rejected)["acc"]
    total = sum(weights)
    loss = torch.stack([w / total * x for w, x in zip(weights, losses, strict=True)]).sum()
    return loss, metrics, n_pairs, batch_texts, torch.tensor(preferred_rows)


# ---------------------------------------------------------------- general


def run_general(ctx: StageContext, start: str, out: Path, evaluate: EvalFn | None = None) -> dict[str, Any]:
    """Stage ``general`` (GRFT): Bradley-Terry on the general sets, mixed by proportions.

    ``evaluate`` (model -> metrics) runs before the checkpoint is written; its metrics go into it.
    """
    cfg, seed = ctx.config.general, ctx.config.seed
    tokenizer = load_tokenizer(start)
    pad_id = pad_id_of(tokenizer)
    train, fractions, valid = general_pairs(ctx)
    data = encode_preferences(tokenizer, ctx.rule, train)
    valid_data = encode_preferences(tokenizer, ctx.rule, valid)
    unit_fractions = [fractions[u[0]] for u in data.units]
    plan, per_epoch = plan_epochs(data, cfg.batch_size, cfg.epochs, seed, unit_fractions)
    logger.info("general: %d train pairs, %d validation pairs, %d steps", len(train), len(valid), len(plan))
    model = load_reward_model(start, seed, ctx.config.dropout)

    def step(units: list[int]) -> tuple[torch.Tensor, dict[str, float], int]:
        loss, metrics, n, _, _ = reward_step(model, [(data, units, False)], pad_id, ctx.bf16)
        return loss, metrics, n

    validate = None
    if len(valid):
        def validate() -> float:
            return pair_accuracy(model, valid_data, pad_id, ctx.bf16, ctx.config.eval_batch_size)

    result = run_loop(modules={"model": model}, named_params=list(model.named_parameters()), plan=plan,
                      step_fn=step, optim=cfg, steps_per_epoch=per_epoch, validate=validate,
                      **_loop_args(ctx, "general"))
    summary = _summary(result) | {"train_pairs": len(train), "valid_pairs": len(valid)}
    metrics = evaluate(model) if evaluate else {}
    save_checkpoint(model, _hf_tokenizer(start), out, ctx.rule, stage="general", base_model=str(start),
                    training=summary, metrics=metrics)
    return summary


# ---------------------------------------------------------------- custom


def check_start(model: Any, valid_data: PairData, pad_id: int, ctx: StageContext, target: str, start: str) -> float:
    """The start model's accuracy on the custom validation pairs, with a warning when it is below chance.

    Below chance the start model's preferences oppose the custom data's. The study (bench/STUDY.md)
    found that for such domains (DSP entertainment from the general model) a start from the plain
    encoder learns more from a few hundred pairs (without the general preferences); the user should
    know before spending the training time.
    """
    acc = pair_accuracy(model, valid_data, pad_id, ctx.bf16, ctx.config.eval_batch_size)
    logger.info("custom %s: the start model scores %.3f on the validation pairs", target, acc)
    if acc < 0.5:
        logger.warning(
            "custom %s: the start model (%s) scores %.3f on the validation pairs, below chance: its preferences "
            "oppose this data's. With few pairs a start from the plain encoder (--stages custom --model default) "
            "learned the domain better in the study (bench/STUDY.md), at the price of the general preferences.",
            target, start, acc)
    return acc


def run_custom(
    ctx: StageContext, target: str, start: str, out: Path, mlm_source: str | None, evaluate: EvalFn | None = None
) -> dict[str, Any]:
    """Stage ``custom`` (CRFT) for one target, with the configured preservation options.

    Args:
        ctx: the run.
        target: a DSP domain (or the custom file's name).
        start: the starting checkpoint (normally the general model).
        out: the checkpoint folder to write.
        mlm_source: a folder with a trained MLM head (the base stage) for imitation learning; else
            ``start`` (a new head).
        evaluate: model -> metrics, run before the checkpoint is written.
    """
    cfg, seed = ctx.config.custom, ctx.config.seed
    tokenizer = load_tokenizer(start)
    pad_id = pad_id_of(tokenizer)
    train, lists, valid = custom_data(ctx, target)
    data = encode_preferences(tokenizer, ctx.rule, train, lists)
    listwise = data.lists is not None
    valid_data = encode_preferences(tokenizer, ctx.rule, valid)
    plan, per_epoch = plan_epochs(data, cfg.batch_size, cfg.epochs, seed)

    # General pairs: replayed in training, or general validation for choosing alpha (a fixed alpha,
    # the default, needs neither).
    need_general = cfg.replay_share > 0 or cfg.interpolate == "auto"
    general_data = general_valid = None
    if need_general:
        g_train, _, g_valid = general_pairs(ctx)
        general_valid = encode_preferences(tokenizer, ctx.rule, g_valid)
        if cfg.replay_share > 0:
            general_data = encode_preferences(tokenizer, ctx.rule, g_train)
    # Every general pair is its own unit for replay (general prompts are not shared).
    replay_plan = add_replay(plan, data, general_data.n_units if general_data else 0, cfg.replay_share, seed)
    logger.info("custom %s: %d train pairs (%s), %d validation pairs, %d steps", target, len(train),
                f"{len(data.lists)} lists" if data.lists is not None else "pairwise", len(valid), len(plan))

    model = load_reward_model(start, seed, ctx.config.dropout)
    start_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    start_valid = check_start(model, valid_data, pad_id, ctx, target, start) if len(valid) else None
    frozen = freeze(model, cfg.freeze_embeddings, cfg.freeze_layers)
    l2sp = L2SP(model, cfg.l2sp_coef) if cfg.l2sp_coef > 0 else None
    modules: dict[str, torch.nn.Module] = {"model": model}
    named = list(model.named_parameters())
    mlm = masker = None
    if cfg.imitation_coef > 0:
        mlm = mlm_lib.share_encoder(mlm_lib.load_mlm(mlm_source or start, seed, ctx.config.dropout), model)
        masker = mlm_lib.Masker(_hf_tokenizer(start), ctx.config.base.mlm_probability)
        head = mlm_lib.mlm_head_parameters(mlm, model)
        head_ids = {id(p) for p in head}
        modules["mlm"] = mlm
        named += [(n, p) for n, p in mlm.named_parameters() if id(p) in head_ids]

    def step(item: tuple[list[int], list[int]]) -> tuple[torch.Tensor, dict[str, float], int]:
        units, replay = item
        tables = [(data, units, listwise)]
        if replay and general_data is not None:
            tables.append((general_data, replay, False))
        loss, metrics, n, texts, preferred = reward_step(model, tables, pad_id, ctx.bf16)
        if mlm is not None and masker is not None:
            batch = to_torch(pad_batch(texts, preferred.tolist(), pad_id))
            with autocast(ctx.bf16):
                imitation = mlm_lib.mlm_loss(mlm, batch, masker, response_only=True)
            loss = loss + cfg.imitation_coef * imitation
            metrics["mlm"] = float(imitation.detach())
        if l2sp is not None:
            metrics["l2sp_distance"] = l2sp.distance()
        return loss, metrics, n

    def validate() -> float:
        return pair_accuracy(model, valid_data, pad_id, ctx.bf16, ctx.config.eval_batch_size)

    result = run_loop(modules=modules, named_params=named, plan=replay_plan, step_fn=step, optim=cfg,
                      steps_per_epoch=per_epoch, validate=validate if len(valid) else None,
                      after_step=l2sp.pull if l2sp is not None else None,
                      **_loop_args(ctx, f"custom-{target}"))
    summary = _summary(result) | {"train_pairs": len(train), "valid_pairs": len(valid), "frozen": len(frozen),
                                  "listwise": listwise, "start_valid": start_valid}

    if cfg.interpolate != "off":
        custom_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        batch_size = ctx.config.eval_batch_size

        @functools.cache  # the reference (alpha 0) is also a grid point: score it once
        def accuracies(alpha: float) -> tuple[float, float]:
            model.load_state_dict(interpolate(start_state, custom_state, alpha))
            general_acc = pair_accuracy(model, general_valid, pad_id, ctx.bf16, batch_size) if general_valid else 0.0
            return pair_accuracy(model, valid_data, pad_id, ctx.bf16, batch_size), general_acc

        if cfg.interpolate == "auto":
            general_ref = accuracies(0.0)[1]
            alpha, rows = choose_alpha(accuracies, general_ref, cfg.interpolate_tolerance,
                                       general_pairs=len(general_valid) if general_valid else 0)
            summary["interpolation"] = {"alpha": alpha, "general_valid_reference": general_ref, "grid": rows}
        else:
            alpha = float(cfg.interpolate)
            summary["interpolation"] = {"alpha": alpha}
        model.load_state_dict(interpolate(start_state, custom_state, alpha))
        logger.info("custom %s: interpolation alpha %.2f", target, alpha)

    metrics = evaluate(model) if evaluate else {}
    save_checkpoint(model, _hf_tokenizer(start), out, ctx.rule, stage="custom", base_model=str(start),
                    domains=[target] if not cfg.data else [], training=summary, metrics=metrics)
    return summary
