"""The input rule: how a (prompt, response) pair becomes encoder input.

One rule everywhere: training, evaluation, export checks and torch-free scoring all call
:func:`encode_pairs`, and the rule's settings are written into every checkpoint and bundle.

The encoder reads the pair as a text pair (``[CLS] prompt [SEP] response [SEP]`` for BERT). When the
pair is too long it keeps the *end* of the prompt (the latest turns, which the response answers) and
the *start* of the response. Hugging Face tokenizers truncate both texts of a pair from the same side,
so this two-sided budget is written here, on top of the ``tokenizers`` library (no torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Encoding, Tokenizer

DEFAULT_MAX_LENGTH = 256


@dataclass(frozen=True)
class InputRule:
    """How prompt and response are put together and truncated.

    Attributes:
        max_length: the most tokens the encoder reads, special tokens included.
        prompt_keep: which end of the prompt survives truncation (``"end"``: the latest turns).
        response_keep: which end of the response survives truncation (``"start"``).
        min_response_share: when both are long, the share of the budget the response is guaranteed.
    """

    max_length: int = DEFAULT_MAX_LENGTH
    prompt_keep: str = "end"
    response_keep: str = "start"
    min_response_share: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.max_length, int) or self.max_length < 8:
            raise ValueError(f"input rule max_length: expected an integer >= 8, found {self.max_length!r}")
        if self.prompt_keep not in ("end", "start"):
            raise ValueError(f"input rule prompt_keep: expected 'end' or 'start', found {self.prompt_keep!r}")
        if self.response_keep not in ("end", "start"):
            raise ValueError(
                f"input rule response_keep: expected 'end' or 'start', found {self.response_keep!r}"
            )
        if not 0.0 < self.min_response_share < 1.0:
            raise ValueError(
                f"input rule min_response_share: expected a number in (0, 1), found {self.min_response_share!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "text-pair", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputRule:
        fields = {k: v for k, v in data.items() if k != "kind"}
        if data.get("kind", "text-pair") != "text-pair":
            raise ValueError(f"input rule kind: expected 'text-pair', found {data.get('kind')!r}")
        unknown = set(fields) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"input rule: unknown keys {sorted(unknown)}")
        return cls(**fields)


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a ``tokenizer.json`` (or a folder holding one) with truncation and padding switched off.

    The rule below does its own truncation; a tokenizer.json saved with truncation enabled would
    otherwise cut texts before the rule sees them.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def _budget(n_prompt: int, n_response: int, budget: int, min_response_share: float) -> tuple[int, int]:
    """Tokens to keep of prompt and response so that both fit ``budget``."""
    if n_prompt + n_response <= budget:
        return n_prompt, n_response
    keep_response = min(n_response, max(int(budget * min_response_share), budget - n_prompt))
    keep_prompt = min(n_prompt, budget - keep_response)
    return keep_prompt, keep_response


@dataclass
class EncodedPairs:
    """Token ids of encoded pairs, unpadded (one list per pair)."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    truncated: list[bool]

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]


def encode_pairs(
    tokenizer: Tokenizer, prompts: Sequence[str], responses: Sequence[str], rule: InputRule
) -> EncodedPairs:
    """Encode (prompt, response) pairs with the input rule.

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` (see :func:`load_tokenizer`).
        prompts: the prompts (may be empty strings).
        responses: the responses, as many as prompts.
        rule: the input rule.

    Returns:
        The unpadded token ids and segment ids of every pair, and whether it was truncated.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"encode_pairs: {len(prompts)} prompts but {len(responses)} responses")
    budget = rule.max_length - tokenizer.num_special_tokens_to_add(is_pair=True)
    prompt_side = "left" if rule.prompt_keep == "end" else "right"
    response_side = "right" if rule.response_keep == "start" else "left"
    enc_p = tokenizer.encode_batch(list(prompts), add_special_tokens=False)
    enc_r = tokenizer.encode_batch(list(responses), add_special_tokens=False)
    ids: list[list[int]] = []
    types: list[list[int]] = []
    truncated: list[bool] = []
    for p, r in zip(enc_p, enc_r, strict=True):
        keep_p, keep_r = _budget(len(p.ids), len(r.ids), budget, rule.min_response_share)
        cut = keep_p < len(p.ids) or keep_r < len(r.ids)
        if keep_p < len(p.ids):
            p.truncate(keep_p, direction=prompt_side)
        if keep_r < len(r.ids):
            r.truncate(keep_r, direction=response_side)
        merged: Encoding = tokenizer.post_process(p, r, add_special_tokens=True)
        ids.append(merged.ids)
        types.append(merged.type_ids)
        truncated.append(cut)
    return EncodedPairs(ids, types, truncated)


def length_batches(lengths: Sequence[int] | np.ndarray, batch_size: int, longest_first: bool = False
                   ) -> list[np.ndarray]:
    """Indices of inputs cut into batches of similar length (the one home of "sort by length, batch").

    Padding each batch only to its longest input wastes far less compute than padding everything to
    the max length; onnxruntime and a plain PyTorch forward have no bucketing of their own.

    Args:
        lengths: tokens per input.
        batch_size: inputs per batch.
        longest_first: start with the longest batch (training: any memory error shows at once).

    Returns:
        One int64 index array per batch; together they cover every input once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, found {batch_size!r}")
    keys = -np.asarray(lengths, dtype=np.int64) if longest_first else np.asarray(lengths, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def pad_batch(
    encoded: EncodedPairs, indices: Sequence[int], pad_id: int = 0
) -> dict[str, np.ndarray]:
    """Pad the chosen pairs to the longest among them: int64 ``input_ids``, ``attention_mask``,
    ``token_type_ids`` arrays (dynamic padding: a batch is only as wide as its longest pair)."""
    width = max(len(encoded.input_ids[i]) for i in indices)
    n = len(indices)
    input_ids = np.full((n, width), pad_id, dtype=np.int64)
    attention = np.zeros((n, width), dtype=np.int64)
    type_ids = np.zeros((n, width), dtype=np.int64)
    for row, i in enumerate(indices):
        seq = encoded.input_ids[i]
        input_ids[row, : len(seq)] = seq
        attention[row, : len(seq)] = 1
        type_ids[row, : len(seq)] = encoded.token_type_ids[i]
    return {"input_ids": input_ids, "attention_mask": attention, "token_type_ids": type_ids}


def pad_id_of(tokenizer: Tokenizer) -> int:
    """The padding id of a tokenizer (BERT's ``[PAD]`` is 0)."""
    padding = tokenizer.padding
    if padding and "pad_id" in padding:
        return int(padding["pad_id"])
    for token in ("[PAD]", "<pad>"):
        tid = tokenizer.token_to_id(token)
        if tid is not None:
            return tid
    return 0
