"""The training loop shared by every stage.

A small plain-PyTorch loop rather than ``transformers.Trainer``: a reward step runs the chosen and
rejected texts of a length-grouped batch through one forward pass, mixes in replayed general pairs and
an MLM loss, adds the L2-SP penalty, and must resume mid-stage bit for bit; each of those would need a
Trainer subclass hook, and together they are shorter written out here.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lite_rm.training.config import OptimConfig

logger = logging.getLogger(__name__)

# A step: plan item -> (loss to minimize, metrics to log, pairs it trained on).
StepFn = Callable[[Any], tuple[torch.Tensor, dict[str, float], int]]

STATE_FILE = "state.pt"


@dataclass
class LoopResult:
    """What a stage's loop did.

    Attributes:
        steps: optimizer steps taken.
        log: one row per logging step (step, loss, acc, margin, pairs/s).
        valid: one row per validation (step, metric).
        best_valid: the best validation metric (``None`` without validation).
        pairs_per_s: training throughput (pairs per second of training compute, validation excluded).
        train_seconds: seconds spent training (summed over resumed pieces).
        stopped_early: whether patience ran out.
    """

    steps: int = 0
    log: list[dict[str, float]] = field(default_factory=list)
    valid: list[dict[str, float]] = field(default_factory=list)
    best_valid: float | None = None
    pairs_per_s: float = 0.0
    train_seconds: float = 0.0
    stopped_early: bool = False


HEAD_PREFIXES = ("classifier.", "pooler.", "bert.pooler.")


def is_reward_head(name: str) -> bool:
    """The reward head: the pooler and the one-label classifier on top of the encoder."""
    return name.startswith(HEAD_PREFIXES) or ".pooler." in name


def param_groups(
    named: Sequence[tuple[str, torch.nn.Parameter]], weight_decay: float, lr: float, head_lr_scale: float = 1.0
) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases and LayerNorm weights (the BERT recipe); the reward head
    at ``head_lr_scale`` times the learning rate.

    Why a head scale: the head starts tiny (a new classifier at std 0.02 on MiniLM's pooler, whose
    weights have std 0.009), and Adam moves each weight by about the learning rate per step, so at an
    encoder-sized rate the reward scale barely grows in a few hundred steps and the loss stays at log 2.
    The first group is always the encoder's decayed weights at the base rate (L2-SP reads its rate).
    """
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in named:
        if not p.requires_grad:
            continue
        no_decay = name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name
        head = head_lr_scale != 1.0 and is_reward_head(name)
        groups.setdefault((head, no_decay), []).append(p)
    out = []
    for head, no_decay in ((False, False), (False, True), (True, False), (True, True)):
        params = groups.get((head, no_decay), [])
        if params or not head:  # keep the two encoder groups even when empty: group 0 is read by L2-SP
            out.append({"params": params, "weight_decay": 0.0 if no_decay else weight_decay,
                        "lr": lr * (head_lr_scale if head else 1.0)})
    return out


def _save_state(path: Path, state: dict[str, Any]) -> None:
    """torch.save under a temporary name, then rename: an interrupt never leaves half a state."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def run_loop(
    *,
    modules: dict[str, torch.nn.Module],
    named_params: Sequence[tuple[str, torch.nn.Parameter]],
    plan: Sequence[Any],
    step_fn: StepFn,
    optim: OptimConfig,
    steps_per_epoch: int,
    state_dir: Path,
    resume: bool,
    log_every: int,
    save_every: int,
    validate: Callable[[], float] | None = None,
    after_step: Callable[[float], None] | None = None,
    desc: str = "train",
) -> LoopResult:
    """Train ``modules`` over ``plan`` with AdamW and a linear warm-up/decay schedule.

    Args:
        modules: everything whose weights the state holds (the reward model, an MLM head).
        named_params: the parameters to optimize (frozen ones are skipped).
        plan: one item per step, given to ``step_fn``.
        step_fn: computes a step's loss.
        optim: learning rate, warm-up, clipping, validation cadence and patience.
        steps_per_epoch: for validating once per epoch when ``optim.eval_every`` is 0.
        state_dir: where the resumable mid-stage state goes (``state.pt``).
        resume: continue from ``state_dir/state.pt`` when it exists.
        log_every: log every this many steps.
        save_every: save the resumable state every this many steps (0: never mid-stage).
        validate: returns a validation metric, higher is better; enables early stopping and
            best-checkpoint selection.
        after_step: called after each optimizer step with the learning rate's share of its peak
            (decoupled weight pulls such as L2-SP).
        desc: the progress bar's label.

    Returns:
        The :class:`LoopResult`; the modules hold the best validated weights (or the last ones).
    """
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    total = len(plan) if not optim.max_steps else min(len(plan), optim.max_steps)
    optimizer = torch.optim.AdamW(
        param_groups(named_params, optim.weight_decay, optim.lr, optim.head_lr_scale), lr=optim.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(optim.warmup * total), max(total, 1))
    eval_every = optim.eval_every or steps_per_epoch
    result = LoopResult()
    best_state: dict[str, dict[str, torch.Tensor]] | None = None
    bad_evals = 0
    pairs_done = 0
    step = 0

    state_path = state_dir / STATE_FILE
    if resume and state_path.exists():
        state = torch.load(state_path, weights_only=False)
        for name, module in modules.items():
            module.load_state_dict(state["modules"][name])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        step, pairs_done, bad_evals = state["step"], state["pairs_done"], state["bad_evals"]
        best_state, result = state["best_state"], state["result"]
        logger.info("%s: resumed at step %d of %d", desc, step, total)

    def snapshot() -> dict[str, Any]:
        return {
            "modules": {n: m.state_dict() for n, m in modules.items()}, "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "step": step,
            "pairs_done": pairs_done, "bad_evals": bad_evals, "best_state": best_state, "result": result,
        }

    for module in modules.values():
        module.train()
    bar = tqdm(total=total, initial=step, desc=desc, disable=None, leave=False)
    window: dict[str, float] = {}
    window_steps, window_pairs, window_start = 0, 0, time.perf_counter()
    while step < total and not result.stopped_early:
        started = time.perf_counter()
        loss, metrics, n_pairs = step_fn(plan[step])
        loss.backward()
        if optim.max_grad_norm:
            torch.nn.utils.clip_grad_norm_([p for _, p in named_params if p.requires_grad], optim.max_grad_norm)
        optimizer.step()
        if after_step is not None:
            after_step(optimizer.param_groups[0]["lr"] / optim.lr)
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        pairs_done += n_pairs
        result.train_seconds += time.perf_counter() - started
        metrics = {"loss": float(loss.detach()), **metrics}
        for k, v in metrics.items():
            window[k] = window.get(k, 0.0) + v
        window_pairs += n_pairs
        window_steps += 1
        bar.update(1)

        if step % log_every == 0 or step == total:
            n = window_steps
            elapsed = max(time.perf_counter() - window_start, 1e-9)
            row = {"step": step, **{k: v / n for k, v in window.items()}, "pairs_per_s": window_pairs / elapsed,
                   "lr": scheduler.get_last_lr()[0]}
            result.log.append(row)
            bar.set_postfix({k: f"{row[k]:.3f}" for k in ("loss", "acc", "margin") if k in row}
                            | {"pairs/s": f"{row['pairs_per_s']:.1f}"})
            logger.info("%s step %d/%d: %s", desc, step, total,
                        ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "step"))
            window, window_steps, window_pairs, window_start = {}, 0, 0, time.perf_counter()

        if validate is not None and (step % eval_every == 0 or step == total):
            metric = validate()
            for module in modules.values():
                module.train()
            result.valid.append({"step": step, "metric": metric})
            if result.best_valid is None or metric > result.best_valid:
                result.best_valid, bad_evals = metric, 0
                best_state = {n: {k: v.detach().clone() for k, v in m.state_dict().items()}
                              for n, m in modules.items()}
            else:
                bad_evals += 1
            logger.info("%s step %d: validation %.4f (best %.4f)", desc, step, metric, result.best_valid)
            if optim.patience and bad_evals >= optim.patience:
                logger.info("%s: no improvement in %d validations, stopping early", desc, bad_evals)
                result.stopped_early = True
            window_start = time.perf_counter()  # validation time is not training throughput

        if save_every and step % save_every == 0 and step < total and not result.stopped_early:
            _save_state(state_path, snapshot())
    bar.close()
    result.steps = step
    result.pairs_per_s = pairs_done / result.train_seconds if result.train_seconds else 0.0
    if best_state is not None:
        for name, module in modules.items():
            module.load_state_dict(best_state[name])
    return result
