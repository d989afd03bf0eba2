"""Deterministic train/validation split by a hash of the prompt: one prompt never sits in two splits."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def prompt_bucket(prompt: str, seed: int = 0) -> float:
    """A stable number in [0, 1) for a prompt (same on every machine and Python run)."""
    digest = hashlib.blake2b(f"{seed}\x00{prompt.strip()}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def in_validation(prompt: str, valid_fraction: float, seed: int = 0) -> bool:
    """Whether a prompt's items belong to the validation split (see :func:`split_by_prompt`)."""
    return prompt_bucket(prompt, seed) < valid_fraction


def split_by_prompt(
    items: Sequence[T], valid_fraction: float = 0.1, seed: int = 0
) -> tuple[list[T], list[T]]:
    """Split items that have a ``prompt`` attribute into (train, valid) by a hash of the prompt.

    Args:
        items: pairs or ranked lists.
        valid_fraction: the expected share of prompts in the validation split.
        seed: changes which prompts land in validation.
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction: expected a number in [0, 1), found {valid_fraction!r}")
    train: list[T] = []
    valid: list[T] = []
    for item in items:
        prompt = item.prompt  # type: ignore[attr-defined]
        (valid if in_validation(prompt, valid_fraction, seed) else train).append(item)
    return train, valid
