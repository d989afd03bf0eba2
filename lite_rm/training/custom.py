"""Stage ``custom`` (CRFT): the reward loss on customized preferences, keeping general ability.

:func:`run_custom` reads top to bottom: the data (:func:`load_custom_data`), the model and the
preservation options around it (:func:`setup_preservation`), the step (:func:`custom_step`), the
loop, then the choice of the weights to ship among the start model, the fine-tuned model and their
interpolations (:func:`choose_shipped`, rule in :mod:`lite_rm.training.selection`) and the checkpoint.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lite_rm.scoring.encoding import load_tokenizer, pad_batch, pad_id_of
from lite_rm.scoring.evaluation import accuracy_interval
from lite_rm.training import mlm as mlm_lib
from lite_rm.training import parallel, selection, steps
from lite_rm.training.batching import PairData, add_replay, encode_preferences, plan_epochs
from lite_rm.training.context import (
    StageContext,
    StageJob,
    custom_data,
    custom_validation_split,
    general_pairs,
)
from lite_rm.training.loop import StepFn, run_loop
from lite_rm.training.modeling import (
    autocast,
    hf_tokenizer,
    load_reward_model,
    save_checkpoint,
    to_device,
    to_torch,
    trainable_state,
)
from lite_rm.training.preservation import ALPHA_GRID, L2SP, choose_alpha, freeze, interpolate

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
    # the validated choice needs the general held-out pairs too, when the run has general sets at all
    validated = cfg.choose == "validated" and ctx.general.available
    if cfg.replay_share > 0 or cfg.interpolate == "auto" or validated:
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


def check_start(model: Any, valid_data: PairData, pad_id: int, ctx: StageContext, target: str,
                start: str) -> np.ndarray:
    """The start model's per-pair correctness on the custom validation pairs (logged as an accuracy with
    its pair count and 95% interval), with a warning when it is below chance.

    Below chance the start model's preferences oppose the custom data's. For such domains a start from
    the plain encoder learned more from a few hundred pairs in the study (docs/study.md), without the
    general preferences; the user should know before spending the training time.
    """
    correct = steps.pair_correct(model, valid_data, pad_id, ctx.bf16, ctx.config.eval_batch_size)
    acc = float(np.mean(correct))
    low, high = accuracy_interval(correct, seed=ctx.config.seed)
    logger.info("custom %s: the start model scores %.3f on the validation pairs (%d pairs, 95%% interval "
                "[%.3f, %.3f])", target, acc, len(correct), low, high)
    if acc < 0.5:
        logger.warning(
            "custom %s: the start model (%s) scores %.3f on the validation pairs, below chance: its preferences "
            "oppose this data's. With few pairs a start from the plain encoder (--stages custom --model default) "
            "learned the domain better in the study (docs/study.md), at the price of the general preferences.",
            target, start, acc)
    return correct


def configured_alpha(ctx: StageContext) -> float | None:
    """The mix ``custom.interpolate`` names: a number, 1.0 for ``off``, ``None`` for ``auto`` (chosen)."""
    value = ctx.config.custom.interpolate
    return None if value == "auto" else 1.0 if value == "off" else float(value)


def choose_shipped(
    ctx: StageContext, model: Any, start_state: dict[str, torch.Tensor], data: CustomData, pad_id: int,
    start_correct: np.ndarray | None, target: str,
) -> dict[str, Any]:
    """Load the weights to ship into ``model``: ``alpha * fine-tuned + (1 - alpha) * start``, alpha as
    ``custom.choose`` decides (:mod:`lite_rm.training.selection`), and log the choice.

    Scoring a candidate costs one pass over the custom validation pairs and the general held-out pairs
    (a few hundred each); the start model's custom figures come from :func:`check_start`.

    Returns:
        The training summary's records: ``interpolation`` (alpha, and the grid when one was scored) and
        ``choice`` (:class:`selection.Choice`).
    """
    cfg, batch_size = ctx.config.custom, ctx.config.eval_batch_size
    started = time.perf_counter()
    custom_state = trainable_state(model)
    general = data.general_valid if data.general_valid is not None and len(data.general_valid) else None
    general_n = len(general) if general is not None else 0

    @functools.cache  # each alpha is scored once, whichever rule asks
    def scored(alpha: float) -> tuple[np.ndarray, float | None]:
        model.load_state_dict(interpolate(start_state, custom_state, alpha))
        own = start_correct if alpha == 0.0 and start_correct is not None else \
            steps.pair_correct(model, data.valid, pad_id, ctx.bf16, batch_size)
        general_acc = steps.pair_accuracy(model, general, pad_id, ctx.bf16, batch_size) if general else None
        return own, general_acc

    def grid_rows(alphas: list[float]) -> list[dict[str, Any]]:
        return [{"alpha": a, "custom_valid": float(np.mean(scored(a)[0])), "general_valid": scored(a)[1]}
                for a in alphas]

    preferred = configured_alpha(ctx)
    record: dict[str, Any] = {}
    if not len(data.valid):  # nothing to validate on: the configured mix (auto: the fine-tuned model)
        alpha = 0.0 if cfg.choose == "start" else preferred if preferred is not None else 1.0
        choice = selection.unchecked(cfg.choose, alpha)
    elif cfg.choose == "validated":
        grid = [0.0, 1.0] if cfg.interpolate == "off" else sorted({*ALPHA_GRID, *([preferred] if preferred else [])})
        choice = selection.choose_validated({a: scored(a) for a in grid}, cfg.interpolate_tolerance, general_n,
                                            preferred, ctx.config.seed)
        record["grid"] = grid_rows(grid)
    else:
        alpha = preferred if preferred is not None else 1.0
        if cfg.choose == "finetuned" and preferred is None:  # auto: alpha > 0 chosen on the validation splits
            def evaluate(a: float) -> tuple[float, float]:
                return float(np.mean(scored(a)[0])), scored(a)[1] or 0.0
            alpha, record["grid"] = choose_alpha(evaluate, evaluate(0.0)[1], cfg.interpolate_tolerance,
                                                 general_pairs=general_n)
            record["general_valid_reference"] = scored(0.0)[1]
        shipped = 0.0 if cfg.choose == "start" else alpha
        choice = selection.forced(cfg.choose, shipped, {a: scored(a) for a in {0.0, alpha}},
                                  cfg.interpolate_tolerance, general_n, ctx.config.seed)
    seconds = time.perf_counter() - started
    _log_choice(target, choice, seconds, warn=choice.kept_start and cfg.choose == "validated")
    model.load_state_dict(interpolate(start_state, custom_state, choice.alpha))
    return {"interpolation": {"alpha": choice.alpha, **record},
            "choice": choice.to_dict() | {"seconds": round(seconds, 1)}}


def _log_choice(target: str, choice: selection.Choice, seconds: float, warn: bool) -> None:
    """The candidates scored, the choice's record, and what shipped (a warning when ``warn``)."""
    logger.info("custom %s: %d candidates scored on the validation pairs in %.0fs", target, len(choice.candidates),
                seconds)
    for line in selection.describe(choice.to_dict()):
        logger.info("custom %s: %s", target, line)
    if warn:
        logger.warning("custom %s: %s", target, choice.reason)
    else:
        logger.info("custom %s: shipped %s (alpha %g): %s", target, choice.shipped, choice.alpha, choice.reason)


def run_custom(ctx: StageContext, job: StageJob) -> dict[str, Any]:
    """Stage ``custom`` (CRFT) for ``job.target`` (a DSP domain, or the custom file's name), from
    ``job.start`` (normally the general model), with the configured preservation options.

    Imitation learning starts from ``job.mlm_source``'s trained MLM head (the base stage's) when there
    is one, else from a new head. ``job.evaluate`` runs before the checkpoint is written.
    """
    cfg, target, start = ctx.config.custom, job.target, job.start
    tokenizer = load_tokenizer(start)
    pad_id = pad_id_of(tokenizer)
    data = load_custom_data(ctx, target, tokenizer)

    model = load_reward_model(start, ctx.config.seed, ctx.config.dropout, ctx.config.pooling).to(ctx.device)
    start_state = trainable_state(model)
    main = parallel.is_main()  # with several processes, only process 0 checks, interpolates and writes
    start_correct = check_start(model, data.valid, pad_id, ctx, target, start) if len(data.valid) and main else None
    keep = setup_preservation(ctx, model, start, job.mlm_source)

    def validate() -> float:
        return steps.pair_accuracy(model, data.valid, pad_id, ctx.bf16, ctx.config.eval_batch_size)

    result = run_loop(modules=keep.modules, named_params=keep.named, plan=data.plan,
                      step_fn=custom_step(ctx, model, data, keep, pad_id), optim=cfg,
                      steps_per_epoch=data.steps_per_epoch, validate=validate if len(data.valid) else None,
                      after_step=keep.l2sp.pull if keep.l2sp is not None else None, valid_pairs=len(data.valid),
                      **ctx.loop_args(job.name))
    start_valid = float(np.mean(start_correct)) if start_correct is not None else None
    summary = result.summary() | {"train_pairs": len(data.train), "valid_pairs": len(data.valid),
                                  "frozen": len(keep.frozen), "listwise": data.listwise, "start_valid": start_valid}
    if not main:
        return summary
    summary |= choose_shipped(ctx, model, start_state, data, pad_id, start_correct, target)

    metrics = job.evaluate(model)
    save_checkpoint(model, hf_tokenizer(start), job.folder, ctx.rule, stage="custom", base_model=str(start),
                    domains=[target] if not cfg.data else [], training=summary, metrics=metrics,
                    validation_split=custom_validation_split(ctx, target).to_dict())
    return summary
