"""The stages by name: the checkpoint folders a config trains, in order (:func:`planned`), and the
function that trains each (:data:`STAGES`), every one called as ``fn(ctx, job)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lite_rm.training.base import run_base
from lite_rm.training.config import TrainConfig
from lite_rm.training.context import StageContext, StageJob
from lite_rm.training.custom import run_custom
from lite_rm.training.general import run_general
from lite_rm.training.multitask import run_multitask

StageFn = Callable[[StageContext, StageJob], dict[str, Any]]

STAGES: dict[str, StageFn] = {
    "base": run_base,
    "general": run_general,
    "custom": run_custom,
    "multitask": run_multitask,
}


@dataclass(frozen=True)
class PlannedStage:
    """A checkpoint folder a run trains.

    Attributes:
        name: the folder's name in the run folder (``base``, ``general``, ``custom-<target>``).
        kind: its function in :data:`STAGES`.
        target: a custom target (``""`` for the other stages).
    """

    name: str
    kind: str
    target: str = ""

    def folder(self, run: Path) -> Path:
        return run / self.name


def planned(config: TrainConfig) -> list[PlannedStage]:
    """Every checkpoint folder the config trains, in order; a multitask run trains one for all domains."""
    plan = []
    for stage in config.stages:
        if stage != "custom":
            plan.append(PlannedStage(stage, stage))
            continue
        kind = "multitask" if config.custom.multitask else "custom"
        plan += [PlannedStage(f"custom-{target}", kind, target) for target in config.custom.targets()]
    return plan
