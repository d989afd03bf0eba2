"""What every stage reads: the run's context (:class:`StageContext`, its data sources resolved once),
the job a stage does (:class:`StageJob`), the preference pairs, and the record of the pairs held out."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from lite_rm.data import PreferencePair, load_preferences, split_by_prompt, streaming
from lite_rm.scoring.encoding import InputRule
from lite_rm.training.checkpoint import HeldOutSet, ValidationSplit
from lite_rm.training.config import TrainConfig
from lite_rm.training.run_folder import custom_file, general_files

logger = logging.getLogger(__name__)


class EvalFn(Protocol):
    """Scores a model on the run's evaluation sets (``only``: those names): metrics by set name."""

    def __call__(self, model: Any, only: list[str] | None = None) -> dict[str, Any]: ...


@dataclass(frozen=True)
class GeneralSources:
    """The general sets by name, as checkpoints record them (:func:`lite_rm.data.streaming.recorded_source`).

    Attributes:
        sets: set name -> source.
        given: named by ``general.sets`` (else the data folder's default files, which may be missing).
        mode: ``general.streaming``.
    """

    sets: dict[str, str]
    given: bool
    mode: str

    @classmethod
    def of(cls, config: TrainConfig, data_dir: Path) -> GeneralSources:
        sets = general_files(config, data_dir)
        return cls({name: streaming.recorded_source(source) for name, source in sets.items()},
                   bool(config.general.sets), config.general.streaming)

    @property
    def available(self) -> bool:
        """Whether there are general sets to read (a custom-only run on the user's own data may have no
        data folder)."""
        return self.given or all(Path(s).exists() for s in self.sets.values())

    @functools.cached_property
    def streamed(self) -> bool:
        """Whether the sets are read a buffer at a time (``general.streaming``; ``auto``: a glob, or 100k
        records or more)."""
        return streaming.wants_streaming(self.sets, self.mode)


@dataclass(frozen=True)
class StageContext:
    """What every stage needs besides its own job."""

    config: TrainConfig
    data_dir: Path
    rule: InputRule
    bf16: bool
    resume: bool
    run_dir: Path
    device: torch.device
    general: GeneralSources

    def state_dir(self, stage: str) -> Path:
        return self.run_dir / ".state" / stage

    def loop_args(self, stage: str) -> dict[str, Any]:
        """The :func:`lite_rm.training.loop.run_loop` arguments every stage passes the same way."""
        return {"state_dir": self.state_dir(stage), "resume": self.resume, "log_every": self.config.log_every,
                "save_every": self.config.save_every, "desc": stage, "report_to": self.config.report_to}


@dataclass(frozen=True)
class StageJob:
    """One stage's job: train ``folder`` from ``start``.

    Attributes:
        name: the checkpoint folder's name (``base``, ``general``, ``custom-<target>``).
        folder: the checkpoint folder to write.
        start: the starting checkpoint.
        evaluate: scores a model on the evaluation sets before its checkpoint is written.
        target: a custom target (a DSP domain, or the custom file's name); ``""`` for other stages.
        mlm_source: a folder with a trained MLM head (the base stage's) for imitation learning.
    """

    name: str
    folder: Path
    start: str
    evaluate: EvalFn
    target: str = ""
    mlm_source: str | None = None


def general_pairs(ctx: StageContext) -> tuple[list[PreferencePair], list[float], list[PreferencePair]]:
    """General training pairs (train split), their per-pair proportion, and the validation pairs.

    Streamed sets give seeded uniform samples instead (at most ``SAMPLE_MAX_PAIRS`` training and
    ``VALID_MAX_PAIRS`` validation pairs): what replay and the base stage's text need, in bounded memory.
    """
    cfg = ctx.config.general
    if ctx.general.streamed:
        found = streaming.survey(ctx.general.sets, cfg.valid_fraction, ctx.config.seed,
                                 train_max=streaming.SAMPLE_MAX_PAIRS)
        return found.train_sample, [1.0] * len(found.train_sample), found.valid
    train: list[PreferencePair] = []
    fractions: list[float] = []
    valid: list[PreferencePair] = []
    for name, source in ctx.general.sets.items():
        loaded = load_preferences(source)
        logger.info("general set %s: %s", name, loaded.report.summary())
        tr, va = split_by_prompt(loaded.pairs, cfg.valid_fraction, ctx.config.seed)
        train += tr
        valid += va
        fractions += [float(cfg.proportions.get(name, 1.0))] * len(tr)
    return train, fractions, valid


def custom_source(ctx: StageContext, target: str) -> tuple[str, str | None, dict[str, Any]]:
    """A custom target's data: (source, DSP domain or ``None``, how to read it)."""
    cfg = ctx.config.custom
    source = streaming.recorded_source(custom_file(ctx.config, ctx.data_dir))
    return (source, None, cfg.load_options()) if cfg.data else (source, target, {})


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


def general_held_out(ctx: StageContext) -> list[HeldOutSet]:
    """The general sets and the share of their prompts the general stage holds out."""
    fraction = ctx.config.general.valid_fraction
    return [HeldOutSet(name, source, fraction) for name, source in ctx.general.sets.items()]


def custom_validation_split(ctx: StageContext, target: str) -> ValidationSplit:
    """A custom checkpoint's held-out pairs: its own data's, and the general sets' (which the general
    stage held out; replay draws only from their train split). Default general files that are not
    there (a custom-only run without the data folder) are left out."""
    source, domain, options = custom_source(ctx, target)
    general = [s for s in general_held_out(ctx) if ctx.general.given or Path(s.source).exists()]
    name = target if target not in {s.name for s in general} else f"custom-{target}"
    own = HeldOutSet(name, source, ctx.config.custom.valid_fraction, domain, options)
    return ValidationSplit(ctx.config.seed, (own, *general))
