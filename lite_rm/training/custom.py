"""Stage ``custom`` (CRFT): the reward loss on customized preferences, keeping general ability.

:func:`run_custom` reads top to bottom: the data (:func:`load_custom_data`), the model and the
preservation options around it (:func:`setup_preservation`), the step (:func:`custom_step`), the
loop, then weight interpolation (:func:`interpolate_toward_start`) and the checkpoint.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lite_rm.encoding import load_tokenizer, pad_batch, pad_id_of
from lite_rm.training import mlm as mlm_lib
from lite_rm.training import parallel, steps
from lite_rm.training.batching import PairData, add_replay, encode_preferences, plan_epochs
from lite_rm.training.loop import StepFn, run_loop
from lite_rm.training.modeling import (
    autocast,
    load_reward_model,
    save_checkpoint,
    to_device,
    to_torch,
    trainable_state,
)
from lite_rm.training.preservation import L2SP, choose_alpha, freeze, interpolate
from lite_rm.training.stages import (
    EvalFn,
    StageContext,
    custom_data,
    custom_validation_split,
    general_pairs,
    hf_tokenizer,
    loop_args,
    summary_of,
)

logger = logging.getLogger(__name__)


@dataclass
class CustomData:
    """A custom target's encoded data and its step plan.

    Attributes:
        train: the custom training pairs (with lists when listwise).
        valid: the custom validation pairs.
        general_train: general train-split pairs to replay (``None`` without replay).
        general_valid: general validation pairs for ``interpolate = "auto"`` (else ``None``).
        plan: per step, (custom unit ids, replayed general pair ids).
        steps_per_epoch: steps in one pass over the custom data.
    """

    train: PairData
    valid: PairData
    general_train: PairData | None
    general_valid: PairData | None
    plan: list[tuple[list[int], list[int]]]
    steps_per_epoch: int

    @property
    def listwise(self) -> bool:
        return self.train.lists is not None


def load_custom_data(ctx: StageContext, target: str, tokenizer: Any) -> CustomData:
    """Encode the target's data, and the general pairs when replay or ``interpolate = "auto"`` needs them."""
    cfg, seed = ctx.config.custom, ctx.config.seed
    train, lists, valid = custom_data(ctx, target)
    data = encode_preferences(tokenizer, ctx.rule, train, lists)
    valid_data = encode_preferences(tokenizer, ctx.rule, valid)
    plan, per_epoch = plan_epochs(data, cfg.batch_size, cfg.epochs, seed)
    # a fixed alpha (the default) and no replay need no general pairs at all
    general_train = general_valid = None
    if cfg.replay_share > 0 or cfg.interpolate == "auto":
        g_train, _, g_valid = general_pairs(ctx)
        general_valid = encode_preferences(tokenizer, ctx.rule, g_valid)
        if cfg.replay_share > 0:
            general_train = encode_preferences(tokenizer, ctx.rule, g_train)
    # every general pair is its own unit for replay (general prompts are not shared)
    replay_plan = add_replay(plan, data, general_train.n_units if general_train else 0, cfg.replay_share, seed)
    logger.info("custom %s: %d train pairs (%s), %d validation pairs, %d steps", target, len(train),
                f"{len(data.lists)} lists" if data.lists is not None else "pairwise", len(valid), len(plan))
    return CustomData(data, valid_data, general_train, general_valid, replay_plan, per_epoch)


@dataclass
class Preservation:
    """What keeps the general ability while customizing, set up around the reward model.

    Attributes:
        frozen: names of the frozen parameters.
        l2sp: the pull toward the start weights (``None``: off).
        mlm: the imitation-learning MLM sharing the reward model's encoder (``None``: off).
        masker: masks the preferred responses for imitation learning.
        modules: everything the resumable state holds.
        named: the parameters to optimize (the reward model's, plus the MLM head's).
    """

    frozen: list[str]
    l2sp: L2SP | None
    mlm: Any | None
    masker: mlm_lib.Masker | None
    modules: dict[str, torch.nn.Module] = field(default_factory=dict)
    named: list[tuple[str, torch.nn.Parameter]] = field(default_factory=list)


def setup_preservation(ctx: StageContext, model: Any, start: str, mlm_source: str | None) -> Preservation:
    """Freezing, L2-SP and imitation learning as configured (``mlm_source``: a trained MLM head, else a new one)."""
    cfg, seed = ctx.config.custom, ctx.config.seed
    frozen = freeze(model, cfg.freeze_embeddings, cfg.freeze_layers)
    l2sp = L2SP(model, cfg.l2sp_coef) if cfg.l2sp_coef > 0 else None
    keep = Preservation(frozen, l2sp, None, None, {"model": model}, list(model.named_parameters()))
    if cfg.imitation_coef > 0:
        mlm = mlm_lib.load_mlm(mlm_source or start, seed, ctx.config.dropout)
        keep.mlm = mlm_lib.share_encoder(mlm, model).to(ctx.device)
        keep.masker = mlm_lib.Masker(hf_tokenizer(start), ctx.config.base.mlm_probability)
        head_ids = {id(p) for p in mlm_lib.mlm_head_parameters(keep.mlm, model)}
        keep.modules["mlm"] = keep.mlm
        keep.named += [(n, p) for n, p in keep.mlm.named_parameters() if id(p) in head_ids]
    return keep


def imitation_loss(ctx: StageContext, mlm: Any, masker: mlm_lib.Masker, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The masked-LM loss on a CPU batch of preferred responses (response tokens only), computed on the
    stage's device (0 when nothing got masked). Masks are drawn on the CPU: torch's CPU RNG, resumable."""
    inputs, labels = masker(batch["input_ids"], batch.get("token_type_ids"), response_only=True)
    if not (labels != -100).any():
        return torch.zeros((), requires_grad=True, device=ctx.device)
    on = to_device(batch | {"input_ids": inputs, "labels": labels}, ctx.device)
    with autocast(ctx.bf16, ctx.device.type):
        return mlm_lib.masked_lm_loss(mlm, on["input_ids"], on["attention_mask"], on.get("token_type_ids"),
                                      on["labels"])


def custom_step(ctx: StageContext, model: Any, data: CustomData, keep: Preservation, pad_id: int) -> StepFn:
    """The custom stage's step: the reward loss (custom units plus replayed general pairs), plus the
    imitation loss on the preferred responses."""
    coef = ctx.config.custom.imitation_coef

    def step(item: tuple[list[int], list[int]]) -> tuple[torch.Tensor, dict[str, float], int]:
        units, replay = item
        sources = [steps.StepSource(data.train, units, listwise=data.listwise)]
        if replay and data.general_train is not None:
            sources.append(steps.StepSource(data.general_train, replay))
        done = steps.reward_step(model, sources, pad_id, ctx.bf16)
        loss, metrics = done.loss, done.metrics
        if keep.mlm is not None and keep.masker is not None:
            batch = to_torch(pad_batch(done.texts, done.preferred_rows, pad_id))
            imitation = imitation_loss(ctx, keep.mlm, keep.masker, batch)
            loss = loss + coef * imitation
            metrics["mlm"] = float(imitation.detach())
        if keep.l2sp is not None:
            metrics["l2sp_distance"] = keep.l2sp.distance()
        return loss, metrics, done.pairs

    return step


def check_start(model: Any, valid_data: PairData, pad_id: int, ctx: StageContext, target: str, start: str) -> float:
    """The start model's accuracy on the custom validation pairs, with a warning when it is below chance.

    Below chance the start model's preferences oppose the custom data's. The study (bench/STUDY.md)
    found that for such domains (DSP entertainment from the general model) a start from the plain
    encoder learns more from a few hundred pairs (without the general preferences); the user should
    know before spending the training time.
    """
    acc = steps.pair_accuracy(model, valid_data, pad_id, ctx.bf16, ctx.config.eval_batch_size)
    logger.info("custom %s: the start model scores %.3f on the validation pairs", target, acc)
    if acc < 0.5:
        logger.warning(
            "custom %s: the start model (%s) scores %.3f on the validation pairs, below chance: its preferences "
            "oppose this data's. With few pairs a start from the plain encoder (--stages custom --model default) "
            "learned the domain better in the study (bench/STUDY.md), at the price of the general preferences.",
            target, start, acc)
    return acc


def interpolate_toward_start(
    ctx: StageContext, model: Any, start_state: dict[str, torch.Tensor], data: CustomData, pad_id: int
) -> dict[str, Any]:
    """Load ``alpha * custom + (1 - alpha) * start`` into ``model``, alpha fixed or chosen on validation.

    Returns:
        The ``interpolation`` record of the training summary (alpha, and the grid when chosen).
    """
    cfg, batch_size = ctx.config.custom, ctx.config.eval_batch_size
    custom_state = trainable_state(model)

    @functools.cache  # the reference (alpha 0) is also a grid point: score it once
    def accuracies(alpha: float) -> tuple[float, float]:
        model.load_state_dict(interpolate(start_state, custom_state, alpha))
        general = data.general_valid
        general_acc = steps.pair_accuracy(model, general, pad_id, ctx.bf16, batch_size) if general else 0.0
        return steps.pair_accuracy(model, data.valid, pad_id, ctx.bf16, batch_size), general_acc

    record: dict[str, Any]
    if cfg.interpolate == "auto":
        general_ref = accuracies(0.0)[1]
        general_pairs_n = len(data.general_valid) if data.general_valid else 0
        alpha, rows = choose_alpha(accuracies, general_ref, cfg.interpolate_tolerance, general_pairs=general_pairs_n)
        record = {"alpha": alpha, "general_valid_reference": general_ref, "grid": rows}
    else:
        alpha = float(cfg.interpolate)
        record = {"alpha": alpha}
    model.load_state_dict(interpolate(start_state, custom_state, alpha))
    return record


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
    cfg = ctx.config.custom
    tokenizer = load_tokenizer(start)
    pad_id = pad_id_of(tokenizer)
    data = load_custom_data(ctx, target, tokenizer)

    model = load_reward_model(start, ctx.config.seed, ctx.config.dropout, ctx.config.pooling).to(ctx.device)
    start_state = trainable_state(model)
    main = parallel.is_main()  # with several processes, only process 0 checks, interpolates and writes
    start_valid = check_start(model, data.valid, pad_id, ctx, target, start) if len(data.valid) and main else None
    keep = setup_preservation(ctx, model, start, mlm_source)

    def validate() -> float:
        return steps.pair_accuracy(model, data.valid, pad_id, ctx.bf16, ctx.config.eval_batch_size)

    result = run_loop(modules=keep.modules, named_params=keep.named, plan=data.plan,
                      step_fn=custom_step(ctx, model, data, keep, pad_id), optim=cfg,
                      steps_per_epoch=data.steps_per_epoch, validate=validate if len(data.valid) else None,
                      after_step=keep.l2sp.pull if keep.l2sp is not None else None,
                      **loop_args(ctx, f"custom-{target}"))
    summary = summary_of(result) | {"train_pairs": len(data.train), "valid_pairs": len(data.valid),
                                    "frozen": len(keep.frozen), "listwise": data.listwise,
                                    "start_valid": start_valid}
    if not main:
        return summary
    if cfg.interpolate != "off":
        summary["interpolation"] = interpolate_toward_start(ctx, model, start_state, data, pad_id)
        logger.info("custom %s: interpolation alpha %.2f", target, summary["interpolation"]["alpha"])

    metrics = evaluate(model) if evaluate else {}
    save_checkpoint(model, hf_tokenizer(start), out, ctx.rule, stage="custom", base_model=str(start),
                    domains=[target] if not cfg.data else [], training=summary, metrics=metrics,
                    validation_split=custom_validation_split(ctx, target).to_dict())
    return summary
