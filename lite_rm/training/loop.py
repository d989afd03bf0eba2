"""The training loop shared by every stage.

A small plain-PyTorch loop rather than ``transformers.Trainer``: a reward step runs the chosen and
rejected texts of a length-grouped batch through one forward pass, mixes in replayed general pairs and
an MLM loss, adds the L2-SP penalty, and must resume mid-stage bit for bit; each of those would need a
Trainer subclass hook, and together they are shorter written out here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lite_rm.scoring.evaluation import accuracy_half_width
from lite_rm.training import parallel
from lite_rm.training.config import OptimConfig
from lite_rm.training.metrics import StageMetrics, report_to_of_run
from lite_rm.training.state import LoopState, has_state, load_state, save_state

logger = logging.getLogger(__name__)

# A step: plan item -> (loss to minimize, metrics to log, pairs it trained on).
StepFn = Callable[[Any], tuple[torch.Tensor, dict[str, float], int]]


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

    def summary(self) -> dict[str, Any]:
        """The training summary a checkpoint records (``lite_rm.json`` ``training``)."""
        last = self.log[-1] if self.log else {}
        return {"steps": self.steps, "pairs_per_s": round(self.pairs_per_s, 3),
                "train_seconds": round(self.train_seconds, 1), "best_valid": self.best_valid,
                "stopped_early": self.stopped_early, "last_log": last, "valid_curve": self.valid}


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


class _Window:
    """Metrics summed since the last log row, for averages and throughput."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps = 0
        self.pairs = 0
        self.start = time.perf_counter()

    def add(self, metrics: dict[str, float], pairs: int) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.steps += 1
        self.pairs += pairs

    def row(self, step: int, lr: float) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        return {"step": step, **{k: v / self.steps for k, v in self.sums.items()},
                "pairs_per_s": self.pairs / elapsed, "lr": lr}


def _snapshot(modules: dict[str, torch.nn.Module]) -> dict[str, dict[str, torch.Tensor]]:
    return {n: {k: v.detach().clone() for k, v in m.state_dict().items()} for n, m in modules.items()}


def _validated(
    loop: LoopState, result: LoopResult, metric: float, modules: dict[str, torch.nn.Module], patience: int, desc: str,
    pairs: int = 0,
) -> None:
    """Record a validation: keep the best weights, count validations without gain, stop on patience.
    ``pairs``: how many pairs the metric is an accuracy over (logged with its 95% half-width)."""
    for module in modules.values():
        module.train()
    result.valid.append({"step": loop.step, "metric": metric})
    if result.best_valid is None or metric > result.best_valid:
        result.best_valid, loop.bad_evals = metric, 0
        loop.best = _snapshot(modules)
    else:
        loop.bad_evals += 1
    noise = f" ± {accuracy_half_width(metric, pairs):.3f} at 95%, {pairs} pairs" if pairs else ""
    logger.info("%s step %d: validation %.4f%s (best %.4f)", desc, loop.step, metric, noise, result.best_valid)
    if patience and loop.bad_evals >= patience:
        logger.info("%s: no improvement in %d validations, stopping early", desc, loop.bad_evals)
        result.stopped_early = True


def _open_metrics(state_dir: Path, report_to: Sequence[str] | None, step: int) -> StageMetrics | None:
    """The stage's metrics sink, for a state folder laid out as a run's ``RUN/.state/<stage>`` (every
    pipeline stage); ``None`` elsewhere. ``report_to`` ``None``: the run's ``config.json`` names it."""
    if state_dir.parent.name != ".state":
        return None
    run = state_dir.parent.parent
    names = report_to_of_run(run) if report_to is None else report_to
    return StageMetrics.open(run, state_dir.name, names, resumed_step=step)


def _show(bar: Any, row: dict[str, float], desc: str, total: int, sink: StageMetrics | None) -> None:
    """A log row on the progress bar, in the log and in the stage's metrics file and reporters."""
    bar.set_postfix({k: f"{row[k]:.3f}" for k in ("loss", "acc", "margin") if k in row}
                    | {"pairs/s": f"{row['pairs_per_s']:.1f}"})
    logger.info("%s step %d/%d: %s", desc, row["step"], total,
                ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "step"))
    if sink is not None:
        sink.log("train", row)


@dataclass
class _Training:
    """One stage's optimizer, schedule and counters: the pieces of :func:`run_loop`, named."""

    modules: dict[str, torch.nn.Module]
    named_params: Sequence[tuple[str, torch.nn.Parameter]]
    optim: OptimConfig
    total: int
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loop: LoopState = field(default_factory=LoopState)
    result: LoopResult = field(default_factory=LoopResult)
    window: _Window = field(default_factory=_Window)

    @classmethod
    def start(cls, modules: dict[str, torch.nn.Module], named_params: Sequence[tuple[str, torch.nn.Parameter]],
              optim: OptimConfig, total: int, state_dir: Path, resume: bool, desc: str) -> _Training:
        """AdamW with the linear warm-up/decay schedule, resumed from ``state_dir`` when asked and there."""
        from transformers import get_linear_schedule_with_warmup

        optimizer = torch.optim.AdamW(
            param_groups(named_params, optim.weight_decay, optim.lr, optim.head_lr_scale), lr=optim.lr)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(optim.warmup * total), max(total, 1))
        run = cls(modules, named_params, optim, total, optimizer, scheduler)
        if resume and has_state(state_dir):
            run.loop = load_state(state_dir, modules, optimizer, scheduler)
            run.result = LoopResult(**run.loop.result)
            logger.info("%s: resumed at step %d of %d", desc, run.loop.step, total)
        for module in modules.values():
            module.train()
        return run

    def step(self, item: Any, runner: StepFn, after_step: Callable[[float], None] | None) -> None:
        """Forward, backward and optimizer step on this process's share of one plan item."""
        started = time.perf_counter()
        share, counts = parallel.shard(item, parallel.rank(), parallel.world_size())
        loss, step_metrics, n_pairs = runner(share)
        # several processes: weigh each one's loss by its share of the step's pairs (DDP averages)
        loss, n_pairs, step_loss = parallel.weigh_loss(loss, n_pairs, counts)
        loss.backward()
        if self.optim.max_grad_norm:
            torch.nn.utils.clip_grad_norm_([p for _, p in self.named_params if p.requires_grad],
                                           self.optim.max_grad_norm)
        self.optimizer.step()
        if after_step is not None:
            after_step(self.optimizer.param_groups[0]["lr"] / self.optim.lr)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.loop.step += 1
        self.loop.pairs_done += n_pairs
        self.result.train_seconds += time.perf_counter() - started
        self.window.add({"loss": step_loss, **step_metrics}, n_pairs)

    def due(self, every: int) -> bool:
        """Whether a cadence of ``every`` steps falls on this step (the last step always counts)."""
        return self.loop.step % every == 0 or self.loop.step == self.total

    def log_row(self) -> dict[str, float]:
        row = self.window.row(self.loop.step, self.scheduler.get_last_lr()[0])
        self.result.log.append(row)
        self.window = _Window()
        return row

    def finish(self) -> LoopResult:
        """The result, with the best validated weights (if any validation ran) back in the modules."""
        self.result.steps = self.loop.step
        self.result.pairs_per_s = (self.loop.pairs_done / self.result.train_seconds
                                   if self.result.train_seconds else 0.0)
        if self.loop.best is not None:
            for name, module in self.modules.items():
                module.load_state_dict(self.loop.best[name])
        return self.result


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
    report_to: Sequence[str] | None = None,
    valid_pairs: int = 0,
) -> LoopResult:
    """Train ``modules`` over ``plan`` with AdamW and a linear warm-up/decay schedule.

    The body reads as one step (:meth:`_Training.step`), then logging, validation and saving on their
    cadences.

    Args:
        modules: everything whose weights the state holds (the reward model, an MLM head).
        named_params: the parameters to optimize (frozen ones are skipped).
        plan: one item per step, given to ``step_fn``.
        step_fn: computes a step's loss.
        optim: learning rate, warm-up, clipping, validation cadence and patience.
        steps_per_epoch: for validating once per epoch when ``optim.eval_every`` is 0.
        state_dir: where the resumable mid-stage state goes (:mod:`lite_rm.training.state`).
        resume: continue from the state in ``state_dir`` when there is one.
        log_every: log every this many steps.
        save_every: save the resumable state every this many steps (0: never mid-stage).
        validate: returns a validation metric, higher is better; enables early stopping and
            best-checkpoint selection.
        after_step: called after each optimizer step with the learning rate's share of its peak
            (decoupled weight pulls such as L2-SP).
        desc: the progress bar's label.
        report_to: where the logged rows go besides ``RUN/.metrics/<stage>.jsonl``
            (:mod:`lite_rm.training.metrics`): ``tensorboard``, ``wandb``; ``None``: the run's
            ``config.json`` ``report_to``.
        valid_pairs: the pairs ``validate``'s accuracy is over (its log line shows them and a 95%
            interval); 0: not an accuracy over pairs, logged bare.

    Returns:
        The :class:`LoopResult`; the modules hold the best validated weights (or the last ones).
    """
    from tqdm.auto import tqdm

    total = len(plan) if not optim.max_steps else min(len(plan), optim.max_steps)
    run = _Training.start(modules, named_params, optim, total, state_dir, resume, desc)
    loop, result = run.loop, run.result
    eval_every = optim.eval_every or steps_per_epoch
    main = parallel.is_main()  # with several processes, process 0 logs, validates and saves
    runner = parallel.distributed_step(modules, step_fn) if parallel.active() else step_fn
    sink = _open_metrics(state_dir, report_to, loop.step) if main else None  # drops rows past loop.step
    bar = tqdm(total=total, initial=loop.step, desc=desc, disable=None if main else True, leave=False)
    try:
        while loop.step < total and not result.stopped_early:
            run.step(plan[loop.step], runner, after_step)
            bar.update(1)
            if run.due(log_every):
                row = run.log_row()
                if main:
                    _show(bar, row, desc, total, sink)
            if validate is not None and run.due(eval_every):
                _validated(loop, result, parallel.broadcast_metric(validate), modules, optim.patience, desc,
                           valid_pairs)
                if sink is not None:
                    sink.log("valid", result.valid[-1])
                run.window.start = time.perf_counter()  # validation time is not training throughput
            if main and save_every and loop.step % save_every == 0 and loop.step < total and not result.stopped_early:
                loop.result = asdict(result)
                save_state(state_dir, modules, run.optimizer, run.scheduler, loop)
    finally:
        if sink is not None:
            sink.close()
        bar.close()
    return run.finish()
