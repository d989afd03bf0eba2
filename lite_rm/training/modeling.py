"""Loading, running and saving the reward model (a one-label sequence-classification encoder)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lite_rm.checkpoint import atomic_dir, write_meta
from lite_rm.encoding import EncodedPairs, InputRule, pad_batch

logger = logging.getLogger(__name__)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), where autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_bf16(setting: Any) -> bool:
    """``auto`` -> whether the CPU has native bf16; true/false as given."""
    return cpu_has_bf16() if setting == "auto" else bool(setting)


def autocast(enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CPU (matmuls in bf16, reductions and the loss in float32)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


def load_reward_model(path: str | Path, seed: int) -> Any:
    """A one-label sequence-classification model from a checkpoint, encoder or MLM folder.

    The seed is set first: loading an encoder creates a randomly initialized head.
    """
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    torch.manual_seed(seed)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized head" warnings are expected here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1)
    finally:
        hf_logging.set_verbosity(verbosity)
    if model.config.num_labels != 1:
        raise ValueError(f"{path}: expected a reward model with one label, found {model.config.num_labels}")
    return model


def to_torch(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in batch.items()}


def score_ids(model: Any, texts: EncodedPairs, ids: Sequence[int], pad_id: int, bf16: bool) -> torch.Tensor:
    """Rewards of the given texts in one forward pass (dynamic padding), shape ``(len(ids),)``."""
    batch = to_torch(pad_batch(texts, list(ids), pad_id))
    with autocast(bf16):
        logits = model(**batch).logits
    return logits.float().squeeze(-1)


@torch.no_grad()
def score_all(
    model: Any, texts: EncodedPairs, pad_id: int, bf16: bool, batch_size: int = 64, ids: Sequence[int] | None = None
) -> np.ndarray:
    """Rewards of many texts, longest first in batches of similar length; ``(n,)`` float32."""
    was_training = model.training
    model.eval()
    ids = list(range(len(texts))) if ids is None else list(ids)
    out = np.zeros(len(ids), dtype=np.float32)
    order = sorted(range(len(ids)), key=lambda i: -len(texts.input_ids[ids[i]]))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        out[rows] = score_ids(model, texts, [ids[r] for r in rows], pad_id, bf16).numpy()
    model.train(was_training)
    return out


def trainable_state(model: Any) -> dict[str, torch.Tensor]:
    """A detached copy of the model's weights (for best-so-far snapshots and interpolation)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def save_checkpoint(
    model: Any, tokenizer: Any, folder: str | Path, rule: InputRule, **meta: Any
) -> Path:
    """Write a Hugging Face checkpoint (safetensors + tokenizer) and ``lite_rm.json``, atomically."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.model_max_length = rule.max_length
        tokenizer.save_pretrained(tmp)
        write_meta(tmp, rule, **meta)
    logger.info("saved %s", folder)
    return folder


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Use ``n`` intra-op threads inside the block (0: leave torch's default)."""
    if n <= 0:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
