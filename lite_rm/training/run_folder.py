"""A run folder (layout: :mod:`lite_rm.training.pipeline`): the data a run reads, the record of it, and
whether a run may start or resume there. Torch-free."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from lite_rm.data import resolve_data_dir
from lite_rm.data.locations import DSP_TEST, DSP_TRAIN, GENERAL_TEST, GENERAL_TRAIN
from lite_rm.errors import ResumeStateError
from lite_rm.files import identity_change, input_identity
from lite_rm.training.checkpoint import META_FILE
from lite_rm.training.config import TrainConfig

logger = logging.getLogger(__name__)

# RUN/data.json: the identity of every preference source the run reads (path, size, hash of its ends),
# checked by a resume: a stage continued on changed data would silently train on other pairs.
DATA_FILE = "data.json"

# Keys that may differ between an interrupted run and its resumption without changing the result.
# device and processes: the state is device-independent and the effective batch does not depend on
# the number of processes (results agree within float rounding, tests/test_parallel.py).
_RESUME_FREE_KEYS = {"output_dir", "threads", "log_every", "save_every", "eval_batch_size", "report_to",
                     "device", "processes"}


def is_complete(folder: Path) -> bool:
    """Whether a stage's checkpoint folder is there (folders are renamed into place only when fully written)."""
    return (folder / META_FILE).is_file()


def general_files(config: TrainConfig, data_dir: Path) -> dict[str, str]:
    """The general sets by name: ``general.sets``, or the data folder's helpful/harmless/WebGPT train files."""
    return config.general.sets or {name: str(data_dir / rel) for name, rel in GENERAL_TRAIN.items()}


def custom_file(config: TrainConfig, data_dir: Path) -> str:
    """The custom stage's data: ``custom.data``, or the data folder's DSP train file."""
    return config.custom.data or str(data_dir / DSP_TRAIN)


def data_sources(config: TrainConfig, data_dir: Path) -> dict[str, str]:
    """Every preference source the run reads, by role (``general.helpful``, ``custom``, ``eval.webgpt``)."""
    uses_general, uses_custom = _uses(config)
    sources: dict[str, str] = {}
    if uses_general:
        sources.update({f"general.{name}": source for name, source in general_files(config, data_dir).items()})
    if uses_custom:
        sources["custom"] = custom_file(config, data_dir)
    evals = config.eval_sets or {**{name: str(data_dir / rel) for name, rel in GENERAL_TEST.items()},
                                 "dsp": str(data_dir / DSP_TEST)}
    sources.update({f"eval.{name}": source for name, source in evals.items()})
    return sources


def data_identity(config: TrainConfig) -> dict[str, Any]:
    """What :data:`DATA_FILE` records: each source's identity (:func:`lite_rm.files.input_identity`)."""
    data_dir = resolve_data_dir(config.data_dir or None) if _needs_data_dir(config) else Path(".")
    return {role: input_identity(source) for role, source in data_sources(config, data_dir).items()}


def data_dir_of(config: TrainConfig) -> Path:
    """The run's data folder. When every file it trains and evaluates on was given, the data folder is
    still used if there is one: the custom stage's validated choice checks general accuracy on the
    general held-out pairs."""
    if _needs_data_dir(config):
        return resolve_data_dir(config.data_dir or None)
    try:
        return resolve_data_dir(config.data_dir or None)
    except FileNotFoundError:
        return Path(".")


def check_resumable(run: Path, config: TrainConfig, resume: bool, overwrite: bool) -> None:
    """Refuse to start over a run without ``overwrite`` or to resume one with other settings or data;
    with ``overwrite``, clear what the earlier run wrote.

    Raises:
        FileExistsError: ``run`` holds stage checkpoints and neither ``resume`` nor ``overwrite``.
        ValueError: resuming with another configuration or changed data.
    """
    saved = run / "config.json"
    existing = [p.name for p in run.glob("*") if p.is_dir() and is_complete(p)] if run.is_dir() else []
    if resume and saved.is_file():
        _check_config(run, json.loads(saved.read_text(encoding="utf-8")), config)
        _check_data(run, config)
        return
    if existing and not overwrite and not resume:
        raise FileExistsError(
            f"{run} already holds stage checkpoints ({', '.join(sorted(existing))}); pass --resume to continue "
            "that run, --overwrite to start it again, or choose another output folder"
        )
    if overwrite and not resume:
        for name in [*existing, ".state", ".metrics", "tensorboard", "plots"]:
            shutil.rmtree(run / name, ignore_errors=True)


def _check_config(run: Path, before: dict[str, Any], config: TrainConfig) -> None:
    """Refuse to resume a run started with another configuration (beyond :data:`_RESUME_FREE_KEYS`)."""
    # a run saved before the dropout key existed trained with the encoder's own dropout
    before.setdefault("dropout", "all")
    try:  # keys added since that run was saved compare at their defaults
        before = TrainConfig.from_dict(before).to_dict()
    except ValueError:
        pass  # a saved config this version cannot read: compare it as it is
    now = config.to_dict()
    changed = sorted(k for k in set(before) | set(now) if k not in _RESUME_FREE_KEYS and before.get(k) != now.get(k))
    if changed:
        raise ResumeStateError(
            f"{run} was started with a different configuration (keys {', '.join(changed)} differ); "
            "resume with the same settings, or start the run again with --overwrite (or in another output "
            "folder)"
        )


def _check_data(run: Path, config: TrainConfig) -> None:
    """Refuse to resume a run whose data changed since it started (a stage would go on with other pairs)."""
    saved = run / DATA_FILE
    if not saved.is_file():
        logger.warning("%s has no record of its data (%s: written by an older lite-rm); resuming without "
                       "checking that the data is unchanged", run, DATA_FILE)
        return
    try:
        before = json.loads(saved.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ResumeStateError(f"{saved}: unreadable ({err}); start the run again with --overwrite") from None
    before = before if isinstance(before, dict) else {}
    now = data_identity(config)
    for role in sorted(set(before) | set(now)):
        if role not in now or role not in before:
            change = "it is no longer read" if role not in now else "it was not read before"
        else:
            change = identity_change(before[role], now[role]) or ""
        if change:
            raise ResumeStateError(f"{run} was started on other data ({role}: {change}); resume with the data it "
                             "started on, or start the run again with --overwrite (or in another output folder)")


def _uses(config: TrainConfig) -> tuple[bool, bool]:
    """Whether the run reads general and custom training data."""
    uses_general = "general" in config.stages or ("base" in config.stages and "general" in config.base.text_from)
    uses_custom = "custom" in config.stages or ("base" in config.stages and "custom" in config.base.text_from)
    return uses_general, uses_custom


def _needs_data_dir(config: TrainConfig) -> bool:
    """Whether any default file of the data folder is used (else every file was given explicitly)."""
    uses_general, uses_custom = _uses(config)
    return (not config.eval_sets or (uses_general and not config.general.sets)
            or (uses_custom and not config.custom.data))
