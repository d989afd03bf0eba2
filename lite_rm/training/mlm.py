"""Masked-LM pieces: the base stage's model and the imitation loss of the custom stage.

Both use transformers' own masking (:class:`DataCollatorForLanguageModeling`: 80% ``[MASK]``, 10%
random, 10% kept) on texts already encoded with the input rule, so the base stage trains on exactly
the (prompt, response) inputs the reward model will read.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from lite_rm.training.modeling import load_pretrained

logger = logging.getLogger(__name__)


def load_mlm(path: str | Path, seed: int, dropout: str = "all") -> Any:
    """An ``AutoModelForMaskedLM`` from a folder (an encoder without an MLM head gets a new one);
    ``dropout`` as in :func:`lite_rm.training.modeling.dropout_overrides`."""
    from transformers import AutoModelForMaskedLM

    return load_pretrained(AutoModelForMaskedLM, path, seed, dropout)


def share_encoder(mlm: Any, reward_model: Any) -> Any:
    """Make ``mlm`` run on the reward model's encoder: one encoder, an MLM head kept beside the
    reward head. The output embeddings are re-tied to the shared input embeddings.

    Returns:
        ``mlm``, now holding the reward model's encoder.
    """
    prefix = reward_model.base_model_prefix
    if getattr(mlm, "base_model_prefix", None) != prefix:
        raise ValueError(f"cannot share encoders between {type(mlm).__name__} and {type(reward_model).__name__}")
    setattr(mlm, prefix, reward_model.base_model)
    mlm.tie_weights()
    return mlm


def mlm_head_parameters(mlm: Any, reward_model: Any) -> list[torch.nn.Parameter]:
    """The MLM head's own parameters (those not in the shared encoder)."""
    shared = {id(p) for p in reward_model.parameters()}
    return [p for p in mlm.parameters() if id(p) not in shared]


class Masker:
    """Masks token ids for MLM with transformers' collator; optionally only the response segment."""

    def __init__(self, hf_tokenizer: Any, probability: float):
        from transformers import DataCollatorForLanguageModeling

        self.collator = DataCollatorForLanguageModeling(
            hf_tokenizer, mlm=True, mlm_probability=probability, return_tensors="pt"
        )
        self.special = torch.tensor(sorted(set(hf_tokenizer.all_special_ids)))

    def __call__(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None, response_only: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked inputs and labels (-100 where no loss). Uses torch's global RNG (seeded, resumable).

        Args:
            input_ids: ``(batch, width)`` token ids (padding is a special token, never masked).
            token_type_ids: segment ids; with ``response_only`` only segment-1 tokens are masked.
            response_only: mask only the response (imitation of the preferred responses).
        """
        keep = torch.isin(input_ids, self.special)
        if response_only and token_type_ids is not None:
            keep |= token_type_ids == 0
        inputs, labels = self.collator.torch_mask_tokens(input_ids.clone(), special_tokens_mask=keep)
        return inputs, labels


def _head(mlm: Any) -> torch.nn.Module | None:
    """The MLM head module (BERT ``cls``, RoBERTa ``lm_head``) when it is a single child module."""
    heads = [m for n, m in mlm.named_children() if n != mlm.base_model_prefix]
    return heads[0] if len(heads) == 1 else None


def masked_lm_loss(
    mlm: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None,
    labels: torch.Tensor,
) -> torch.Tensor:
    """Cross-entropy of the masked tokens.

    The vocabulary projection (30k outputs per token) costs more than the encoder; it is applied to
    the masked positions only (~15% of tokens), which is several times cheaper than the model's own
    forward that projects every position. Falls back to that forward for heads of another shape.
    """
    head = _head(mlm)
    if head is None:
        return mlm(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                   labels=labels).loss.float()
    kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
    hidden = mlm.base_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)[0]
    where = labels != -100
    logits = head(hidden[where])
    return torch.nn.functional.cross_entropy(logits.float(), labels[where])
