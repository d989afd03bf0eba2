"""Every kind of bad input: one clear message naming the file, line or item, field, expected and found."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from lite_rm.data import DataError, load_preferences

GOOD = {"prompt": "p", "chosen": "a", "rejected": "b"}


def jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_truncated_gzip(tmp_path: Path) -> None:
    data = gzip.compress(("".join(json.dumps(GOOD) + "\n" for _ in range(2000))).encode())
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"t\.jsonl\.gz line \d+: the gzip stream is truncated"):
        load_preferences(path)
    loaded = load_preferences(path, skip_invalid=True)
    assert 0 < len(loaded) < 2000 and loaded.report.skipped["truncated gzip"] == 1


@pytest.mark.parametrize(("name", "data", "where"), [
    ("b.jsonl", json.dumps(GOOD).encode() + b"\n" + b'{"prompt": "\xff\xfe", "chosen": "a", "rejected": "b"}\n',
     r"b\.jsonl line 2"),
    ("b.json", b'[\n{"prompt": "p", "chosen": "a", "rejected": "b"},\n{"prompt": "\xe9"}]', r"b\.json line 3"),
])
def test_non_utf8_bytes_name_their_line(tmp_path: Path, name: str, data: bytes, where: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError, match=where + ": bytes that are not UTF-8"):
        load_preferences(path)


def test_invalid_json_line_and_file(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "x.jsonl", [json.dumps(GOOD), "{not json"])
    with pytest.raises(DataError, match=r"x\.jsonl line 2: invalid JSON at column 2"):
        load_preferences(path)
    bad = tmp_path / "x.json"
    bad.write_text('[\n{"prompt": "p",\n "chosen": }\n]')
    with pytest.raises(DataError, match=r"x\.json line 3: invalid JSON"):
        load_preferences(bad)


def test_missing_field(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "m.jsonl", [json.dumps(GOOD), json.dumps({"prompt": "p", "chosen": "a"})])
    with pytest.raises(DataError, match=r"m\.jsonl line 2: field 'rejected' is missing; found fields \['chosen', 'prompt'\]"):
        load_preferences(path)


def test_mistyped_field(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "t.jsonl", [json.dumps({"prompt": "p", "chosen": 5, "rejected": "b"})])
    with pytest.raises(DataError, match=r"t\.jsonl line 1: field 'chosen': expected a string or a non-empty list .*found int 5"):
        load_preferences(path)
    ts = tmp_path / "ts.json"
    ts.write_text(json.dumps([{"text": ["\n\nHuman: a\n\nAssistant: b", "\n\nHuman: a\n\nAssistant: c"],
                               "score": [1, "high"]}]))
    with pytest.raises(DataError, match=r"ts\.json item 1: field 'score'\[1\]: expected a number, found str 'high'"):
        load_preferences(ts)


TWO_TEXTS = '"text": ["\\n\\nHuman: a\\n\\nAssistant: b", "\\n\\nHuman: a\\n\\nAssistant: c"]'


@pytest.mark.parametrize(("scores", "message"), [
    ("[NaN, 1]", r"field 'score'\[0\]: expected a finite number, found nan"),
    ("[1.0]", r"fields 'text' and 'score': expected lists of the same length, found 2 texts and 1 scores"),
])
def test_bad_scores_of_a_ranked_item(tmp_path: Path, scores: str, message: str) -> None:
    path = tmp_path / "n.json"
    path.write_text(f'[{{{TWO_TEXTS}, "score": {scores}}}]')
    with pytest.raises(DataError, match=r"n\.json item 1: " + message):
        load_preferences(path)


def test_dsp_item_without_domain(tmp_path: Path) -> None:
    items = [{"query": "q", "responses": {"academy": "a", "normal": "n"}},
             {"query": "q2", "responses": {"business": "b", "normal": "n"}}]
    path = tmp_path / "d.json"
    path.write_text(json.dumps(items))
    with pytest.raises(DataError, match=r"d\.json item 2: field 'responses': expected a response for domain 'academy', found domains \['business', 'normal'\]"):
        load_preferences(path, domain="academy")
    with pytest.raises(DataError, match="needs a target domain"):
        load_preferences(path)


def test_no_usable_pair(tmp_path: Path) -> None:
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match=r"e\.jsonl: no usable preference pair; .*found 0 records"):
        load_preferences(empty)
    ties = tmp_path / "ties.json"
    ties.write_text(json.dumps([{"text": ["\n\nHuman: a\n\nAssistant: b", "\n\nHuman: a\n\nAssistant: c"], "score": [1, 1]}] * 3))
    with pytest.raises(DataError, match=r"no usable preference pair; .*3 ties"):
        load_preferences(ties)


def test_unknown_format(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "u.jsonl", [json.dumps({"a": 1})])
    with pytest.raises(DataError, match=r"u\.jsonl line 1: cannot tell the format from the fields \['a'\]"):
        load_preferences(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_preferences(tmp_path / "nope.jsonl")


def test_skip_invalid_counts_reasons(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "s.jsonl", [
        json.dumps(GOOD), "{bad", json.dumps({"prompt": "p", "chosen": "a"}),
        json.dumps({"prompt": "p", "chosen": 1, "rejected": "b"}), json.dumps(GOOD),
        json.dumps({"prompt": "p", "chosen": "same", "rejected": "same"}),
    ])
    loaded = load_preferences(path, skip_invalid=True)
    report = loaded.report
    assert len(loaded) == 2 and report.records == 6 and report.identical == 1
    assert dict(report.skipped) == {"invalid JSON": 1, "missing field": 1, "wrong type": 1}
    assert "3 invalid records skipped" in report.summary()
    assert report.first_errors[0].endswith("s.jsonl line 2: invalid JSON at column 2: Expecting property name enclosed in double quotes")


# -- one reader, validated once (issue 14: hostile input) -------------------------------------------------


def test_utf8_bom_accepted_in_csv_and_jsonl(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts with a byte order mark; the header must not read as '\\ufeffprompt'."""
    csv_path = tmp_path / "bom.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfprompt,chosen,rejected\r\np,a,b\r\n")
    jsonl_path = tmp_path / "bom.jsonl"
    jsonl_path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n")
    for path in (csv_path, jsonl_path):
        pair = load_preferences(path)[0]
        assert (pair.prompt, pair.chosen, pair.rejected) == ("p", "a", "b")


def test_lone_surrogate_is_a_data_error_with_location(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "s.jsonl", [json.dumps(GOOD), '{"prompt": "x\\ud800y", "chosen": "a", "rejected": "b"}'])
    with pytest.raises(DataError, match=r"s\.jsonl line 2: field 'prompt': a lone surrogate '\\ud800' at character 2"):
        load_preferences(path)
    assert load_preferences(path, skip_invalid=True).report.skipped == {"invalid text": 1}
    # Paired surrogates are ordinary text (an emoji); inside a JSON list file the check applies too.
    ok = jsonl(tmp_path / "ok.jsonl", ['{"prompt": "\\ud83d\\ude00", "chosen": "a", "rejected": "b"}'])
    assert load_preferences(ok)[0].prompt == "\U0001f600"
    doc = tmp_path / "s.json"
    doc.write_text('[{"prompt": "p", "chosen": ["x", "\\udfff"], "rejected": "b"}]')
    with pytest.raises(DataError, match=r"s\.json item 1: field 'chosen\[1\]': a lone surrogate"):
        load_preferences(doc)


def test_json_parser_escapes_become_data_errors(tmp_path: Path) -> None:
    """Three escapes found by fuzzing: Python's int-digit limit, recursion limit, float overflow."""
    long_int = jsonl(tmp_path / "i.jsonl", ['{"prompt": ' + "1" * 5000 + ', "chosen": "a", "rejected": "b"}'])
    with pytest.raises(DataError, match=r"i\.jsonl line 1: invalid JSON: a number longer than"):
        load_preferences(long_int)
    deep = jsonl(tmp_path / "d.jsonl", [json.dumps(GOOD), "[" * 5000])
    with pytest.raises(DataError, match=r"d\.jsonl line 2: invalid JSON: nested deeper"):
        load_preferences(deep)
    doc = tmp_path / "d.json"
    doc.write_text("[\n" * 5000)
    with pytest.raises(DataError, match=r"d\.json: invalid JSON: nested deeper"):
        load_preferences(doc)
    doc.write_text('[{"prompt": "p",\n "chosen": ' + "9" * 5000 + "}]")
    with pytest.raises(DataError, match=r"d\.json line 2: invalid JSON: a number longer"):
        load_preferences(doc)
    ts = tmp_path / "ts.json"
    ts.write_text('[{"text": ["\\n\\nHuman: a\\n\\nAssistant: b", "\\n\\nHuman: a\\n\\nAssistant: c"], '
                  '"score": [' + "7" * 400 + ", 1]}]")
    with pytest.raises(DataError, match=r"ts\.json item 1: field 'score'\[0\]: expected a finite number"):
        load_preferences(ts)


def test_csv_bad_bytes_are_one_bad_row_and_csv_streams(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_bytes(b'prompt,chosen,rejected\np,a,b\np,"\xff\nx",b\nq,c,d\n')
    with pytest.raises(DataError, match=r"b\.csv line 3: field 'chosen': bytes that are not UTF-8 \(b'\\xff'"):
        load_preferences(path)
    loaded = load_preferences(path, skip_invalid=True)
    assert [p.source.rsplit(" ", 1)[1] for p in loaded] == ["2", "5"]  # the line each row starts on
    assert loaded.report.skipped == {"not UTF-8": 1}


def test_stdin_is_a_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    data = gzip.compress(("prompt,chosen,rejected\n" + "p,a,b\n" * 3).encode())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    loaded = load_preferences("-")
    assert len(loaded) == 3 and loaded[0].source == "<stdin> line 2"
