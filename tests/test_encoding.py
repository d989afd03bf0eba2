"""The input rule: text pairs, two-sided truncation, padding."""

from __future__ import annotations

from pathlib import Path

import pytest

from lite_rm.scoring.encoding import InputRule, encode_pairs, load_tokenizer, pad_batch


@pytest.fixture(scope="module")
def tok(tokenizer_path: Path):  # type: ignore[no-untyped-def]
    return load_tokenizer(tokenizer_path)


def test_short_pair_is_kept_whole(tok) -> None:  # type: ignore[no-untyped-def]
    enc = encode_pairs(tok, ["hello there"], ["general kenobi"], InputRule(max_length=32))
    assert tok.decode(enc.input_ids[0]) == "hello there general kenobi"
    assert enc.input_ids[0][0] == tok.token_to_id("[CLS]")
    assert enc.token_type_ids[0] == [0, 0, 0, 0] + [1] * (len(enc.input_ids[0]) - 4)
    assert enc.truncated == [False]


def test_long_pair_keeps_prompt_end_and_response_start(tok) -> None:  # type: ignore[no-untyped-def]
    prompt = " ".join(f"p{i}" for i in range(200)) + " latest question"
    response = "first words " + " ".join(f"r{i}" for i in range(200))
    enc = encode_pairs(tok, [prompt], [response], InputRule(max_length=64))
    text = tok.decode(enc.input_ids[0])
    assert len(enc.input_ids[0]) == 64 and enc.truncated == [True]
    head, tail = text.split("first words")
    assert head.strip().endswith("latest question")
    assert not head.startswith("p0 ")
    assert not tail.strip().endswith("r199")


def test_short_prompt_leaves_room_for_long_response(tok) -> None:  # type: ignore[no-untyped-def]
    enc = encode_pairs(tok, ["why?"], ["word " * 500], InputRule(max_length=100))
    assert len(enc.input_ids[0]) == 100
    assert tok.decode(enc.input_ids[0]).startswith("why? word")


def test_pad_batch_is_dynamic(tok) -> None:  # type: ignore[no-untyped-def]
    enc = encode_pairs(tok, ["a", "a b c d e"], ["x", "y"], InputRule())
    batch = pad_batch(enc, [0, 1])
    assert batch["input_ids"].shape == (2, max(enc.lengths()))
    assert batch["attention_mask"].sum() == sum(enc.lengths())
    assert str(batch["input_ids"].dtype) == "int64"


@pytest.mark.parametrize("kwargs,match", [
    ({"max_length": 4}, "max_length: expected an integer >= 8, found 4"),
    ({"prompt_keep": "middle"}, "prompt_keep: expected 'end' or 'start', found 'middle'"),
    ({"min_response_share": 1.5}, "min_response_share: expected a number in"),
])
def test_rule_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        InputRule(**kwargs)


def test_rule_round_trip() -> None:
    rule = InputRule(max_length=128)
    assert InputRule.from_dict(rule.to_dict()) == rule
    with pytest.raises(ValueError, match="unknown keys"):
        InputRule.from_dict({"max_length": 128, "colour": "red"})
