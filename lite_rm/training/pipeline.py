"""``train(config)``: the three stages in order, evaluation after each, one results table, resume; in
this process (:mod:`lite_rm.training.driver`), or in several under ``torchrun`` (:mod:`lite_rm.training.launch`).

Output layout of a run folder::

    RUN/config.json          the configuration the run was started with
    RUN/data.json            what its data was: each source's path, size and hash of its ends
    RUN/base/                MLM checkpoint (stage base)
    RUN/general/             reward checkpoint (stage general) with its metrics in lite_rm.json
    RUN/custom-<domain>/     reward checkpoint per custom target
    RUN/results.md           stages x evaluation sets (pairwise accuracy), per-opponent DSP table
    RUN/results.json         the same, plus training summaries and general accuracy kept
    RUN/.state/<stage>/      resumable mid-stage state (removed when the stage completes)

A stage is complete when its checkpoint folder exists (folders are renamed into place only when fully
written). ``resume=True`` skips completed stages and continues an interrupted one from its last
mid-stage state; with the same seed the result equals an uninterrupted run. A resume with another
configuration or changed data is refused (:mod:`lite_rm.training.run_folder`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lite_rm.extras import require
from lite_rm.training.config import TrainConfig


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Run the configured stages, evaluating after each; write ``results.md`` / ``results.json``.

    With ``processes`` > 1 and no process group described in the environment, the run starts again in
    that many processes under ``torchrun`` and this call waits for them.

    Args:
        config: the run's configuration.
        resume: continue an interrupted run in ``config.output_dir`` (completed stages are kept).
        overwrite: start again even if ``config.output_dir`` holds checkpoints.

    Returns:
        The ``results.json`` payload: accuracy per stage and set, training summaries, timings.

    Raises:
        FileExistsError: the output folder holds a run and neither ``resume`` nor ``overwrite``.
        ValueError: resuming with a different configuration, bad data, or a device this machine lacks.
        ParallelRunError: with ``processes`` > 1, a training process failed.
    """
    require("torch")
    if config.processes > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return _launched(config, resume, overwrite)
    from lite_rm.training.driver import train_here

    return train_here(config, resume, overwrite)


def _launched(config: TrainConfig, resume: bool, overwrite: bool) -> dict[str, Any]:
    """:func:`train` in ``config.processes`` processes on this machine (:mod:`lite_rm.training.launch`)."""
    from lite_rm.training.launch import launch
    from lite_rm.training.modeling import resolve_device
    from lite_rm.training.parallel import local_rank
    from lite_rm.training.run_folder import check_resumable

    resolve_device(config.device, local_rank())  # a missing GPU fails before anything runs
    check_resumable(Path(config.output_dir), config, resume, overwrite)  # its errors here, once
    launch(config, resume, overwrite, config.processes)
    return json.loads((Path(config.output_dir) / "results.json").read_text(encoding="utf-8"))
