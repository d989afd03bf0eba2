"""Property-based fuzzing of the one record reader (issue 14): random byte and JSON mutations of small
files in every supported format. Whatever the damage, loading and scoring either succeed or raise a
:class:`DataError` that names where (file, line or item) — never another exception."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lite_rm.data import DataError, load_preferences
from lite_rm.jobs.batch_scoring import score_file
from lite_rm.scoring.scorer import Comparison

HH = "\n\nHuman: {q}\n\nAssistant: {a}"
DSP = {"query": "Q?", "responses": {"academy": "A", "business": "B", "entertainment": "E", "literature": "L",
                                   "normal": "N"}}


def _csv_bytes(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()


# name -> (file name, bytes): one small file per format the loaders and `score` read.
SEEDS: dict[str, tuple[str, bytes]] = {
    "pairs-jsonl": ("p.jsonl", b"".join(json.dumps({"prompt": f"q{i}", "chosen": "yes", "rejected": f"no {i}"}).encode()
                                        + b"\n" for i in range(3))),
    "pairs-csv": ("p.csv", _csv_bytes([["prompt", "chosen", "rejected"], ["q", "multi\nline, yes", "no"],
                                       ["q2", "c", "r"]])),
    "score-csv": ("s.tsv", b"prompt\tresponse\nq\tr\nq2\tr2\n"),
    "text-score": ("t.json", json.dumps([{"text": [HH.format(q="hi", a="bad"), HH.format(q="hi", a="good")],
                                          "score": [0.5, 2]}] * 2).encode()),
    "dsp": ("d.json", json.dumps([DSP, {**DSP, "query": "Q2?"}]).encode()),
    "hh-gzip": ("h.jsonl.gz", gzip.compress(b"".join(
        json.dumps({"chosen": HH.format(q="x", a="y"), "rejected": HH.format(q="x", a=f"z{i}")}).encode() + b"\n"
        for i in range(3)))),
    "messages": ("m.jsonl", json.dumps({"messages": [{"role": "user", "content": "hi"}], "chosen": "a",
                                        "rejected": [{"role": "assistant", "content": "b"}]}).encode() + b"\n"),
}

_TOKENS = [b"\xef\xbb\xbf", b"\\ud800", b"\"", b"\n", b",", b"{", b"[", b"]", b"}", b"\x00", b"\xff", b"\x1f\x8b",
           b"1" * 4400, b"[" * 3000, b"9" * 400, b"NaN", b"null", b"\r\n", b"\t"]


@st.composite
def mutated_bytes(draw: st.DrawFn) -> tuple[str, bytes]:
    """A seed file with a few byte-level changes: cut, flip, insert a nasty token, delete a span."""
    name, data = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
    if name.endswith(".gz") and draw(st.booleans()):
        data = gzip.decompress(data)  # damage the content, then compress again (or not)
        recompress = True
    else:
        recompress = False
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["cut", "flip", "insert", "delete"]))
        pos = draw(st.integers(0, len(buf)))
        if op == "cut":
            del buf[pos:]
        elif op == "flip" and pos < len(buf):
            buf[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            buf[pos:pos] = draw(st.sampled_from(_TOKENS) | st.binary(max_size=8))
        else:
            del buf[pos:pos + draw(st.integers(1, 20))]
    out = bytes(buf)
    return name, gzip.compress(out) if recompress and draw(st.booleans()) else out


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


# Raw JSON text that Python's parser accepts (or nearly) but later code cannot use.
_NASTY_VALUES = ["1" * 5000, "[" * 5000, '"x\\ud800"', '["\\udfff"]', "9" * 400, "-" + "9" * 400, "NaN",
                 "1e999", '"\\ud83d\\ude00"', "[" * 5000 + "]" * 5000]
_PLACEHOLDER = "\x00nasty\x00"


@st.composite
def mutated_json(draw: st.DrawFn) -> tuple[str, bytes]:
    """A JSON seed with one field replaced by a random JSON value (types the formats do not expect) or
    by raw text the JSON parser trips on (huge numbers, deep nesting, lone surrogates)."""
    key = draw(st.sampled_from(["pairs-jsonl", "text-score", "dsp", "messages"]))
    name, data = SEEDS[key]
    records: list[Any] = json.loads(data) if name.endswith(".json") else [json.loads(x) for x in data.splitlines()]
    target = records[draw(st.integers(0, len(records) - 1))]
    field = draw(st.sampled_from(sorted(target)))
    value = _PLACEHOLDER if draw(st.booleans()) else draw(_json_values)
    if isinstance(target[field], dict) and draw(st.booleans()):
        target[field][draw(st.sampled_from(sorted(target[field])))] = value
    elif isinstance(target[field], list) and target[field] and draw(st.booleans()):
        target[field][0] = value
    else:
        target[field] = value
    text = json.dumps(records) if name.endswith(".json") else "".join(json.dumps(r) + "\n" for r in records)
    text = text.replace(json.dumps(_PLACEHOLDER), draw(st.sampled_from(_NASTY_VALUES)))
    return name, text.encode()


def _check_error(err: DataError, path: Path) -> None:
    assert err.location and err.location.startswith(str(path)), err
    assert str(err).startswith(err.location) and err.reason


def _load_both_ways(path: Path) -> None:
    for skip in (False, True):
        try:
            load_preferences(path, domain="academy", skip_invalid=skip)
        except DataError as err:
            _check_error(err, path)


class _FakeScorer:
    """Stands in for a bundle: scoring is not what is fuzzed here, reading and writing are."""

    def score_pairs(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        assert all(isinstance(t, str) and t.encode("utf-8") is not None for t in prompts + responses)
        return np.array([len(r) % 7 for r in responses], dtype=np.float32)

    def compare(self, prompts: list[str], a: list[str], b: list[str]) -> Comparison:
        score_a, score_b = self.score_pairs(prompts, a), self.score_pairs(prompts, b)
        return Comparison(1 / (1 + np.exp(-(score_a - score_b).astype(np.float64))), score_a, score_b)


def _score_both_ways(path: Path, out: Path) -> None:
    for skip in (False, True):
        try:
            score_file(_FakeScorer(), path, out, domain="academy", skip_invalid=skip, progress=False)  # type: ignore[arg-type]
        except DataError as err:
            _check_error(err, path)


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _check_case(folder: Path, case: tuple[str, bytes], output: str) -> None:
    name, data = case
    path = folder / name
    path.write_bytes(data)
    _load_both_ways(path)
    _score_both_ways(path, folder / output)


@FUZZ
@given(case=mutated_bytes())
def test_byte_mutations_end_in_data_error(tmp_path: Path, case: tuple[str, bytes]) -> None:
    _check_case(tmp_path, case, "out.jsonl")


@FUZZ
@given(case=mutated_json())
def test_json_mutations_end_in_data_error(tmp_path: Path, case: tuple[str, bytes]) -> None:
    _check_case(tmp_path, case, "out.csv")
