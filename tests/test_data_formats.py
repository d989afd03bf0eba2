"""Readers and formats on small files written under tmp_path."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from lite_rm.data import DataError, load_preferences, split_by_prompt
from lite_rm.data.readers import iter_records


def write_json(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[object], gz: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    return path


DSP_ITEM = {"query": "Q", "responses": {"academy": "A", "business": "B", "entertainment": "E",
                                        "literature": "L", "normal": "N"}}


def test_dsp_pairs_and_listwise(tmp_path: Path) -> None:
    path = write_json(tmp_path / "dsp.json", [DSP_ITEM, {**DSP_ITEM, "query": "Q2"}])
    loaded = load_preferences(path, domain="academy", listwise=True)
    assert loaded.report.format == "dsp"
    assert len(loaded) == 8
    assert {p.rejected_label for p in loaded} == {"business", "entertainment", "literature", "normal"}
    assert all(p.chosen == "A" and p.domain == "academy" for p in loaded)
    assert loaded.lists is not None and len(loaded.lists) == 2
    assert loaded.lists[0].responses[loaded.lists[0].preferred] == "A"
    assert loaded[0].source.endswith("dsp.json item 1")


def test_dsp_identical_responses_dropped_and_counted(tmp_path: Path) -> None:
    item = {"query": "Q", "responses": {**DSP_ITEM["responses"], "normal": "A"}}
    loaded = load_preferences(write_json(tmp_path / "d.json", [item]), domain="academy")
    assert len(loaded) == 3 and loaded.report.identical == 1


def test_text_score_unordered_and_ties(tmp_path: Path) -> None:
    rows = [
        {"text": ["\n\nHuman: hi\n\nAssistant: bad", "\n\nHuman: hi\n\nAssistant: good"], "score": [0.0, 1.0]},
        {"text": ["## Human:\nq\n\n## Assistant:\nx", "## Human:\nq\n\n## Assistant:\ny"], "score": [1, 1]},
        {"text": ["## Human:\nq2\n\n## Assistant:\nlong", "## Human:\nq2\n\n## Assistant:\nshort"],
         "score": [2.5, -1]},
    ]
    loaded = load_preferences(write_json(tmp_path / "ts.json", rows))
    assert loaded.report.format == "text-score"
    assert loaded.report.ties == 1 and len(loaded) == 2
    assert (loaded[0].prompt, loaded[0].chosen, loaded[0].rejected) == ("Human: hi", "good", "bad")
    assert (loaded[1].prompt, loaded[1].chosen, loaded[1].rejected) == ("## Human:\nq2", "long", "short")


def test_hh_rlhf_gzip_and_shared_prompt(tmp_path: Path) -> None:
    rows = [{"chosen": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: yes",
             "rejected": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: no"}]
    loaded = load_preferences(write_jsonl(tmp_path / "hh.jsonl.gz", rows, gz=True))
    assert loaded.report.format == "hh-rlhf"
    pair = loaded[0]
    assert pair.prompt == "Human: a\n\nAssistant: b\n\nHuman: c"
    assert (pair.chosen, pair.rejected) == ("yes", "no")
    assert pair.source.endswith("hh.jsonl.gz line 1")


def test_reply_containing_a_marker_is_not_cut(tmp_path: Path) -> None:
    # The reply itself goes on with "Human:" text; the prompt is the shared history, not the last marker.
    rows = [{"chosen": "\n\nHuman: a\n\nAssistant: one  Human: more\n\nAssistant: two",
             "rejected": "\n\nHuman: a\n\nAssistant: other"}]
    pair = load_preferences(write_jsonl(tmp_path / "hh.jsonl", rows))[0]
    assert pair.prompt == "Human: a" and pair.rejected == "other"
    assert pair.chosen.startswith("one") and pair.chosen.endswith("two")


def test_generic_pairs_jsonl_csv_and_column_mapping(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"question": "q", "good": "g", "bad": "b"}])
    loaded = load_preferences(path, columns={"prompt": "question", "chosen": "good", "rejected": "bad"})
    assert (loaded[0].prompt, loaded[0].chosen, loaded[0].rejected) == ("q", "g", "b")
    with (tmp_path / "p.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["prompt", "chosen", "rejected"])
        writer.writerow(["q1", "multi\nline, answer", "b1"])
        writer.writerow(["q2", "c2", "b2"])
    loaded = load_preferences(tmp_path / "p.csv")
    assert len(loaded) == 2 and loaded[0].chosen == "multi\nline, answer"
    assert loaded[1].source.endswith("p.csv line 4")  # line numbers count the physical lines


def test_conversational_pairs_explicit_and_implicit_prompt(tmp_path: Path) -> None:
    explicit = {"prompt": [{"role": "user", "content": "What color is the sky?"}],
                "chosen": [{"role": "assistant", "content": "Blue."}],
                "rejected": [{"role": "assistant", "content": "Green."}]}
    implicit = {"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
                "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go away"}]}
    loaded = load_preferences(write_jsonl(tmp_path / "c.jsonl", [explicit, implicit]))
    assert loaded[0].prompt == "Human: What color is the sky?"
    assert (loaded[0].chosen, loaded[0].rejected) == ("Blue.", "Green.")
    assert (loaded[1].prompt, loaded[1].chosen, loaded[1].rejected) == ("Human: hi", "hello", "go away")


def test_hf_dataset_saved_to_disk(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([{"prompt": "p", "chosen": "c", "rejected": "r"}] * 3)
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "dd"))
    assert len(load_preferences(tmp_path / "dd")) == 3
    assert len(load_preferences(tmp_path / "dd", split="test")) == 1
    with pytest.raises(DataError, match="split 'nope' not found"):
        load_preferences(tmp_path / "dd", split="nope")


def test_json_file_that_is_really_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
    assert len(load_preferences(path)) == 2


def test_very_long_texts_are_accepted(tmp_path: Path) -> None:
    long = "word " * 200_000
    loaded = load_preferences(write_jsonl(tmp_path / "l.jsonl", [{"prompt": long, "chosen": long + "a", "rejected": "b"}]))
    assert len(loaded[0].chosen) > 1_000_000


def test_split_by_prompt_is_deterministic_and_disjoint() -> None:
    from lite_rm.data import PreferencePair

    pairs = [PreferencePair(f"prompt {i % 50}", "a", "b") for i in range(500)]
    train, valid = split_by_prompt(pairs, 0.2, seed=1)
    again = split_by_prompt(pairs, 0.2, seed=1)
    assert (train, valid) == again
    assert not {p.prompt for p in train} & {p.prompt for p in valid}
    assert 0.05 < len(valid) / len(pairs) < 0.4
    assert split_by_prompt(pairs, 0.2, seed=2)[1] != valid


def test_reader_picks_by_extension(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.data", [{"prompt": "p", "chosen": "a", "rejected": "b"}], gz=True)
    assert [loc for loc, _ in iter_records(path)] == [f"{path} line 1"]


def test_messages_with_chosen_and_rejected(tmp_path: Path) -> None:
    """A conversation as ``messages`` plus the two replies (text or messages): supported, not an error
    about 'Assistant:' markers."""
    rows = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}],
             "chosen": "Hello.", "rejected": "Go away."},
            {"messages": [{"role": "user", "content": "2+2?"}],
             "chosen": [{"role": "assistant", "content": "4"}], "rejected": [{"role": "assistant", "content": "5"}]}]
    loaded = load_preferences(write_jsonl(tmp_path / "m.jsonl", rows))
    assert loaded.report.format == "pairs"
    assert (loaded[0].prompt, loaded[0].chosen, loaded[0].rejected) == ("System: Be brief.\n\nHuman: Hi?", "Hello.", "Go away.")
    assert (loaded[1].prompt, loaded[1].chosen, loaded[1].rejected) == ("Human: 2+2?", "4", "5")
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"messages": "not a list", "chosen": "a", "rejected": "b"}] * 0
                      + [{"messages": [{"role": "user"}], "chosen": "a", "rejected": "b"}])
    with pytest.raises(DataError, match=r"bad\.jsonl line 1: field 'messages'\[0\]: expected a message"):
        load_preferences(bad)


def test_render_messages_is_public_and_shared() -> None:
    from lite_rm.data.formats import render_messages

    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert render_messages(messages) == "Human: q\n\nAssistant: a"
    assert render_messages("plain") == "plain"
    with pytest.raises(DataError, match="field 'prompt': expected a string or a non-empty list"):
        render_messages([])
