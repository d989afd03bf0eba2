"""Training in several processes: PyTorch DDP (``torch.distributed``), started by ``torchrun``.

Nothing here communicates by hand: gradients are averaged by
:class:`torch.nn.parallel.DistributedDataParallel`, and the few other values every process must agree
on (a step's pair count, a validation metric) go through ``torch.distributed`` collectives.

How a run is shared out:

* every process draws the same batch plan from the seed and takes its share of each step's batch
  (:func:`shard`), so the effective batch is the configured one whatever the number of processes;
* each process's loss is weighted by its share of the step's pairs (:func:`weigh_loss`), so DDP's
  gradient average equals the gradient of one process on the whole batch (the reward losses are means
  over pairs; the masked-LM losses of the base stage and of imitation are means over tokens, which the
  pair weighting approximates);
* process 0 validates and broadcasts the metric (early stopping and the best weights agree), writes
  checkpoints, the resumable state, metrics and results; every process resumes from the same state
  (the output folder must be on a filesystem every machine sees).

Two ways in: ``lite-rm train --processes N`` re-runs itself under ``torchrun --standalone`` on this
machine (:mod:`lite_rm.training.launch`), and ``torchrun ... --no-python lite-rm train ...`` (several
machines) sets the environment that :func:`session` reads.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist

from lite_rm.errors import LiteRMError

logger = logging.getLogger(__name__)

# Process 0 evaluates and writes while the others wait at a barrier: allow a long evaluation.
TIMEOUT = datetime.timedelta(hours=2)


class ParallelRunError(LiteRMError, RuntimeError):
    """The training processes failed; their own messages are on stderr above this one."""


def active() -> bool:
    """Whether this process is one of several (a process group with more than one member)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's index among all (0 when alone)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """How many processes train together (1 when alone)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Whether this process writes (checkpoints, states, metrics, results) and validates."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (nothing when alone)."""
    if active():
        dist.barrier()


def local_rank() -> int:
    """This process's index on its machine (torchrun's ``LOCAL_RANK``; 0 when alone)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def local_world_size() -> int:
    """How many processes train on this machine (torchrun's ``LOCAL_WORLD_SIZE``; 1 when alone)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[None]:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1),
    with NCCL on GPUs and gloo on the CPU; nothing when the environment names no group or one is
    already joined. Leaves the group on exit."""
    wanted = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if not wanted or (dist.is_available() and dist.is_initialized()):
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=TIMEOUT)
    logger.info("process %d of %d (%s, %s)", dist.get_rank(), dist.get_world_size(), backend, device)
    try:
        yield
    finally:
        dist.destroy_process_group()


def shard(item: Any, index: int, count: int) -> tuple[Any, bool]:
    """Process ``index``'s share of a step's plan item, and whether it holds any of the step's data.

    A plan item is a list of unit ids, or a tuple of such lists (custom units, replayed general
    pairs): each list is dealt out round-robin. A process whose share of the first list is empty
    takes that list's first unit and must weigh its loss 0 (every process runs a forward and backward
    in every step, which DDP needs).
    """
    if count == 1:
        return item, True
    if isinstance(item, tuple):
        parts = [list(part)[index::count] for part in item]
        if not parts[0]:
            return tuple([list(item[0])[:1]] + [[] for _ in parts[1:]]), False
        return tuple(parts), True
    part = list(item)[index::count]
    return (part, True) if part else (list(item)[:1], False)


class StepModule(torch.nn.Module):
    """The modules a step trains, run through one ``forward(item)`` (the step function), so that DDP
    sees one forward per backward even when a step runs two models sharing an encoder."""

    def __init__(self, modules: dict[str, torch.nn.Module], step_fn: Callable[[Any], Any]):
        super().__init__()
        self.parts = torch.nn.ModuleDict(modules)
        self.step_fn = step_fn

    def forward(self, item: Any) -> Any:
        return self.step_fn(item)


def distributed_step(modules: dict[str, torch.nn.Module], step_fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``step_fn`` run through DDP over ``modules`` (which must already be on this process's device).

    ``find_unused_parameters``: a step need not touch every weight (a reward head left out of an MLM
    step, a frozen layer), and DDP must not wait for their gradients.
    """
    from torch.nn.parallel import DistributedDataParallel

    module = StepModule(modules, step_fn)
    first = next(iter(module.parameters()), None)
    device_ids = [first.device] if first is not None and first.device.type == "cuda" else None
    ddp = DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True)
    return ddp  # type: ignore[no-any-return]


def weigh_loss(loss: torch.Tensor, pairs: int, counts: bool) -> tuple[torch.Tensor, int, float]:
    """A process's loss weighted by its share of the step's pairs, the step's pairs, and the step's loss.

    DDP averages gradients over processes; with each loss scaled by ``world * pairs / total`` that
    average is the gradient of the pair-mean loss over the whole batch.

    Args:
        loss: this process's loss (a mean over its pairs).
        pairs: this process's pairs.
        counts: whether this process's share holds data (see :func:`shard`).

    Returns:
        (the loss to back-propagate, the step's pairs over all processes, the step's mean loss).
    """
    if not active():
        return loss, pairs, float(loss.detach())
    own = pairs if counts else 0
    sums = torch.tensor([float(own), float(loss.detach()) * own], dtype=torch.float64)
    dist.all_reduce(sums)
    total = max(int(sums[0].item()), 1)
    return loss * (world_size() * own / total), total, float(sums[1].item()) / total


def broadcast_metric(compute: Callable[[], float]) -> float:
    """``compute()`` on process 0, its value on every process (so all stop early together)."""
    if not active():
        return compute()
    value = torch.tensor([compute() if is_main() else 0.0], dtype=torch.float64)
    dist.broadcast(value, src=0)
    return float(value.item())
