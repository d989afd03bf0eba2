"""The resumable mid-stage state, stored without pickle: tensors in safetensors, the rest in JSON.

A run folder is something people share and download, so resuming must never execute anything from
it: ``torch.load`` of a pickle can run any code. ``RUN/.state/<stage>/resume/`` holds
``tensors.safetensors`` (module weights, optimizer moments, best-so-far weights, the RNG state) and
``state.json`` (step counters, optimizer hyperparameters, scheduler state, the loop's log). The folder
is replaced in one rename, so an interrupt never leaves half a state. A ``state.pt`` left by an older
lite-rm is ignored, never unpickled.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lite_rm.errors import ResumeStateError
from lite_rm.files import atomic_dir

logger = logging.getLogger(__name__)

STATE_DIR = "resume"
TENSORS_FILE = "tensors.safetensors"
JSON_FILE = "state.json"
LEGACY_FILE = "state.pt"  # pickle, written by lite-rm before 0.x: never loaded
STATE_VERSION = 1


@dataclass
class LoopState:
    """Where a stage's loop is: what :func:`save_state` writes and :func:`load_state` reads back.

    Attributes:
        step: optimizer steps taken.
        pairs_done: pairs trained on so far.
        bad_evals: validations in a row without improvement.
        best: the best validated weights by module name (``None`` before the first validation).
        result: the loop's record (:class:`lite_rm.training.loop.LoopResult` as a dict).
    """

    step: int = 0
    pairs_done: int = 0
    bad_evals: int = 0
    best: dict[str, dict[str, torch.Tensor]] | None = None
    result: dict[str, Any] = field(default_factory=dict)


def _flatten(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share memory (tied embeddings) and wants contiguous ones;
    # cpu: the state is the same file whichever device trained (load_state copies onto the model's)
    return {f"{prefix}/{k}": v.detach().cpu().clone().contiguous() for k, v in tensors.items()}


def _unflatten(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    start = prefix + "/"
    return {k[len(start):]: v for k, v in tensors.items() if k.startswith(start)}


def _optimizer_parts(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer's state as tensors (per parameter, per key) and JSON (its groups, other values)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    other: dict[str, dict[str, Any]] = {}
    for index, values in sd["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{key}"] = value.detach().cpu().clone().contiguous()
            else:
                other.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "other": other}


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], saved: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in _unflatten(tensors, "optimizer").items():
        index, key = name.split("/", 1)
        state.setdefault(int(index), {})[key] = value
    for index, values in saved["other"].items():
        state.setdefault(int(index), {}).update(values)
    fresh = optimizer.state_dict()["param_groups"]
    groups = []
    for now, before in zip(fresh, saved["param_groups"], strict=True):
        # JSON turned tuples (AdamW's betas) into lists; give them back their type
        groups.append({k: tuple(v) if isinstance(now.get(k), tuple) else v for k, v in before.items()})
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_state(
    folder: Path, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer, scheduler: Any,
    loop: LoopState,
) -> None:
    """Write the resumable state into ``folder/resume/`` (replacing the previous one in one rename)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {"rng": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # dropout on a GPU draws from its RNG
        tensors["cuda_rng"] = torch.cuda.get_rng_state()
    for name, module in modules.items():
        tensors |= _flatten(f"module/{name}", module.state_dict())
    for name, weights in (loop.best or {}).items():
        tensors |= _flatten(f"best/{name}", weights)
    optim_tensors, optim_json = _optimizer_parts(optimizer)
    tensors |= optim_tensors
    payload = {"version": STATE_VERSION, "step": loop.step, "pairs_done": loop.pairs_done,
               "bad_evals": loop.bad_evals, "best_modules": sorted(loop.best or {}), "result": loop.result,
               "optimizer": optim_json, "scheduler": scheduler.state_dict()}
    with atomic_dir(folder / STATE_DIR) as tmp:
        save_file(tensors, str(tmp / TENSORS_FILE))
        (tmp / JSON_FILE).write_text(json.dumps(payload), encoding="utf-8")


def has_state(folder: Path) -> bool:
    """Whether ``folder`` holds a resumable state; warns about (and ignores) a pickled one."""
    legacy = folder / LEGACY_FILE
    if legacy.exists():
        logger.warning("%s: a pickled state from an older lite-rm; ignored (unpickling a file can run code), "
                       "the stage starts again", legacy)
    return (folder / STATE_DIR / JSON_FILE).is_file() and (folder / STATE_DIR / TENSORS_FILE).is_file()


def load_state(
    folder: Path, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer, scheduler: Any
) -> LoopState:
    """Load the state written by :func:`save_state` into the modules, optimizer, scheduler and torch's RNG.

    Raises:
        ResumeStateError: the state is unreadable or does not fit these modules.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    where = folder / STATE_DIR
    try:
        saved = json.loads((where / JSON_FILE).read_text(encoding="utf-8"))
        tensors = load_file(str(where / TENSORS_FILE))
        if saved.get("version") != STATE_VERSION:
            raise ValueError(f"version {saved.get('version')!r}, expected {STATE_VERSION}")
        for name, module in modules.items():
            module.load_state_dict(_unflatten(tensors, f"module/{name}"))
        _load_optimizer(optimizer, tensors, saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(tensors["rng"])
        if "cuda_rng" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["cuda_rng"])
        best = {name: _unflatten(tensors, f"best/{name}") for name in saved["best_modules"]} or None
        return LoopState(int(saved["step"]), int(saved["pairs_done"]), int(saved["bad_evals"]), best,
                         dict(saved["result"]))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as err:
        raise ResumeStateError(
            f"{where}: cannot resume from this state ({type(err).__name__}: {str(err)[:200]}); delete the folder "
            "to start the stage again") from None
