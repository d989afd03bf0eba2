"""``lite-rm score``: JSONL/CSV end to end, bad rows, skip, resume, and a torch-free run on real DSP data."""

from __future__ import annotations

import csv
import errno
import gzip
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lite_rm.cli import main
from lite_rm.scoring.scorer import Scorer

ROWS = [{"prompt": f"question {i}?", "response": f"answer number {i} " * (i % 5 + 1)} for i in range(40)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    from lite_rm.exporting import export_bundle

    tmp = tmp_path_factory.mktemp("score-cli")
    valid = tmp / "valid.jsonl"
    valid.write_text("".join(json.dumps({"prompt": r["prompt"], "chosen": r["response"], "rejected": "no"}) + "\n"
                             for r in ROWS))
    export_bundle(tiny_checkpoint, tmp / "bundle", validation=valid)
    return tmp / "bundle"


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_scores_jsonl(bundle: Path, tmp_path: Path) -> None:
    src = _jsonl(tmp_path / "in.jsonl", ROWS)
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["score", str(bundle), "-i", str(src), "-o", str(out), "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    rows = _read_jsonl(out)
    assert [r["line"] for r in rows] == list(range(1, 41))
    assert rows[3]["prompt"] == ROWS[3]["prompt"]
    expected = Scorer(bundle).score_pairs([r["prompt"] for r in ROWS], [r["response"] for r in ROWS])
    np.testing.assert_allclose([r["score"] for r in rows], expected, atol=1e-5)
    assert not (tmp_path / "out.jsonl.partial").exists()


def test_preference_csv(bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    with open(src, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "question", "a", "b"])
        w.writerows([[i, r["prompt"], r["response"], "I don't know,\nsorry"] for i, r in enumerate(ROWS[:5])])
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(main, ["score", str(bundle), "-i", str(src), "-o", str(out), "--column", "prompt=question"])
    assert result.exit_code == 0, result.output
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == ["0", "1", "2", "3", "4"]
    # Line numbers count physical lines: row 0 holds a newline inside a quoted field.
    assert [int(r["line"]) for r in rows] == [2, 4, 6, 8, 10]
    s = Scorer(bundle)
    p = s.compare([ROWS[0]["prompt"]], [ROWS[0]["response"]], ["I don't know,\nsorry"]).probabilities[0]
    assert float(rows[0]["probability"]) == pytest.approx(p, abs=1e-6)


def test_bad_row_stops_with_line_number_or_is_skipped(bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(ROWS[0]) + "\n\n" + '{"prompt": "x", "response": 5}\n' + "{broken\n" + json.dumps(ROWS[1]) + "\n")
    out = tmp_path / "out.jsonl"
    runner = CliRunner()
    result = runner.invoke(main, ["score", str(bundle), "-i", str(src), "-o", str(out)])
    assert result.exit_code == 1
    assert f"{src} line 3: field 'response': expected a string" in result.output and "found int 5" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    result = runner.invoke(main, ["score", str(bundle), "-i", str(src), "-o", str(out), "--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert "2 invalid rows skipped (1 wrong type, 1 invalid JSON)" in result.output
    assert [r["line"] for r in _read_jsonl(out)] == [1, 5]
    wrong = _jsonl(tmp_path / "wrong.jsonl", [{"text": "x"}])
    result = runner.invoke(main, ["score", str(bundle), "-i", str(wrong), "-o", str(out)])
    assert result.exit_code == 1 and "expected fields 'prompt' + 'response'" in result.output
    assert f"{wrong} line 1" in result.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = runner.invoke(main, ["score", str(bundle), "-i", str(empty), "-o", str(out)])
    assert result.exit_code == 1 and "no row to score" in result.output
    result = runner.invoke(main, ["score", str(tmp_path / "nobundle"), "-i", str(src), "-o", str(out)])
    assert result.exit_code == 1 and "not found" in result.output


def test_resume_to_stdout_is_refused(bundle: Path, tmp_path: Path) -> None:
    src = _jsonl(tmp_path / "in.jsonl", ROWS)
    result = _score(bundle, "-i", str(src), "-o", "-", "--resume")
    assert result.exit_code == 1 and "--resume needs an output file (-o FILE)" in result.output


def test_resume_does_not_rescore(bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _jsonl(tmp_path / "in.jsonl", ROWS)
    full = tmp_path / "full.jsonl"
    runner = CliRunner()
    assert runner.invoke(main, ["score", str(bundle), "-i", str(src), "-o", str(full)]).exit_code == 0
    # An interrupted run: 15 complete rows and half of the 16th in the partial file.
    lines = full.read_text().splitlines(keepends=True)
    out = tmp_path / "out.jsonl"
    (tmp_path / "out.jsonl.partial").write_text("".join(lines[:15]) + lines[15][:20])
    scored: list[int] = []
    original = Scorer.score_pairs

    def counting(self: Scorer, prompts, responses):  # type: ignore[no-untyped-def]
        scored.append(len(prompts))
        return original(self, prompts, responses)

    monkeypatch.setattr(Scorer, "score_pairs", counting)
    result = runner.invoke(main, ["score", str(bundle), "-i", str(src), "-o", str(out), "--resume"])
    assert result.exit_code == 0, result.output
    assert "resumed after line 15" in result.output
    assert sum(scored) == 25
    assert _read_jsonl(out) == _read_jsonl(full)


def test_scores_real_dsp_test_without_torch(bundle: Path, tmp_path: Path, data_dir: Path) -> None:
    """The issue's end-to-end check: the DSP test set scored by the CLI with torch made unimportable."""
    from lite_rm.data import load_preferences

    pairs = load_preferences(data_dir / "dsp" / "test.json", domain="academy").pairs
    # The DSP file itself (a preference file: scored as prompt, a=chosen, b=rejected).
    src = data_dir / "dsp" / "test.json"
    out = tmp_path / "dsp-scored.jsonl"
    blocker = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers', 'sklearn', 'optimum'):\n"
        "            raise ImportError('blocked: not in a core install: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from lite_rm.cli import main\n"
        f"main(['score', {str(bundle)!r}, '-i', {str(src)!r}, '-o', {str(out)!r}, '--domain', 'academy', "
        "'--no-progress'])\n"
    )
    result = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rows = _read_jsonl(out)
    assert len(rows) == len(pairs) > 500  # 544 minus pairs with identical responses
    assert all(0.0 <= r["probability"] <= 1.0 for r in rows)
    # "line" is the record's item number (DSP: four pairs per item), in input order.
    assert rows[0]["a"] == pairs[0].chosen and rows[-1]["line"] == 136
    assert [r["line"] for r in rows] == sorted(r["line"] for r in rows)
    assert {r["b_label"] for r in rows} == {"business", "entertainment", "literature", "normal"}
    assert "chosen preferred in" in result.stderr and "(pairwise accuracy)" in result.stderr


# -- one reader, consistent interface (issue 12) and faults (issue 14) -------------------------------------


def _score(bundle: Path, *args: str, input: bytes | None = None):  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(main, ["score", str(bundle), *args], input=input)
    assert isinstance(result.exception, (SystemExit, type(None))), result.output  # never a traceback
    assert "Traceback" not in result.output
    return result


TRL = [{"prompt": r["prompt"], "chosen": r["response"], "rejected": "no idea"} for r in ROWS[:6]]


def test_trl_and_messages_files_without_a_flag(bundle: Path, tmp_path: Path) -> None:
    src = _jsonl(tmp_path / "trl.jsonl", TRL)
    out = tmp_path / "trl-out.jsonl"
    result = _score(bundle, "-i", str(src), "-o", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    rows = _read_jsonl(out)
    expected = Scorer(bundle).compare([r["prompt"] for r in TRL], [r["chosen"] for r in TRL],
                                      [r["rejected"] for r in TRL]).probabilities
    np.testing.assert_allclose([r["probability"] for r in rows], expected, atol=1e-6)
    assert rows[0]["chosen"] == TRL[0]["chosen"] and [r["line"] for r in rows] == list(range(1, 7))
    assert "chosen preferred in" in result.output and "(pairwise accuracy)" in result.output
    # The same pairs as a conversation: messages + replies as message lists, rendered as in training.
    conv = [{"messages": [{"role": "user", "content": r["prompt"]}],
             "chosen": [{"role": "assistant", "content": r["chosen"]}], "rejected": r["rejected"]} for r in TRL]
    out2 = tmp_path / "conv-out.jsonl"
    result = _score(bundle, "-i", str(_jsonl(tmp_path / "conv.jsonl", conv)), "-o", str(out2), "--no-progress")
    assert result.exit_code == 0, result.output
    rows2 = _read_jsonl(out2)
    assert rows2[0]["prompt"] == "Human: " + TRL[0]["prompt"] and rows2[0]["chosen"] == TRL[0]["chosen"]
    assert rows2[0]["rejected"] == "no idea" and not {"a", "b"} & set(rows2[0])  # named as standard rows are
    s = Scorer(bundle)
    assert rows2[0]["probability"] == pytest.approx(
        s.compare(["Human: " + TRL[0]["prompt"]], [TRL[0]["chosen"]], ["no idea"]).probabilities[0], abs=1e-6)


def test_trl_conversational_rows_keep_chosen_and_rejected(bundle: Path, tmp_path: Path) -> None:
    user, good, bad = ({"role": role, "content": text} for role, text in
                       (("user", TRL[0]["prompt"]), ("assistant", TRL[0]["chosen"]), ("assistant", "no idea")))
    explicit = {"prompt": [user], "chosen": [good], "rejected": [bad]}
    implicit = {"chosen": [user, good], "rejected": [user, bad]}  # the prompt is the shared first message
    for name, record in (("explicit", explicit), ("implicit", implicit)):
        out = tmp_path / f"{name}-out.jsonl"
        result = _score(bundle, "-i", str(_jsonl(tmp_path / f"{name}.jsonl", [record])), "-o", str(out), "--no-progress")
        assert result.exit_code == 0, result.output
        row = _read_jsonl(out)[0]
        assert {k: row[k] for k in ("prompt", "chosen", "rejected")} == {
            "prompt": "Human: " + TRL[0]["prompt"], "chosen": TRL[0]["chosen"], "rejected": "no idea"}
        assert "a" not in row and "b" not in row and 0.0 <= row["probability"] <= 1.0


def test_a_tie_counts_half_in_the_accuracy(bundle: Path, tmp_path: Path) -> None:
    from lite_rm.jobs.batch_scoring import score_file

    ties = [{"prompt": r["prompt"], "a": r["response"], "b": r["response"]} for r in ROWS[:4]]  # equal scores
    out = tmp_path / "ties-out.jsonl"
    report = score_file(Scorer(bundle), _jsonl(tmp_path / "ties.jsonl", ties), out, progress=False)
    assert [r["probability"] for r in _read_jsonl(out)] == [0.5] * 4 and report.accuracy == 0.5
    # (prompt, a, b) rows: neither is "chosen", so the share is not called an accuracy
    assert "; a preferred in 0.500 of rows" in report.summary() and "pairwise accuracy" not in report.summary()


def test_stdin_stdout_json_threads_and_column(bundle: Path, tmp_path: Path) -> None:
    data = "".join(json.dumps({"question": r["prompt"], "response": r["response"]}) + "\n" for r in ROWS[:5])
    result = _score(bundle, "-i", "-", "-o", "-", "--column", "prompt=question", "--threads", "0", "--no-progress",
                    input=data.encode())
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    expected = Scorer(bundle).score_pairs([r["prompt"] for r in ROWS[:5]], [r["response"] for r in ROWS[:5]])
    np.testing.assert_allclose([r["score"] for r in rows], expected, atol=1e-5)
    assert not (Path.cwd() / "-").exists()
    out = tmp_path / "o.jsonl"
    src = _jsonl(tmp_path / "i.jsonl", [{"q": r["prompt"], "response": r["response"]} for r in ROWS[:5]])
    result = _score(bundle, "-i", str(src), "-o", str(out), "--column", "prompt=q", "--json", "--no-progress")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows"] == 5 and report["mode"] == "score" and report["skipped"] == {}
    assert _score(bundle, "-i", str(src), "-o", "-", "--json").exit_code == 2


def test_progress_counts_rows_of_multiline_csv_and_gzip(bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.csv.gz"
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["prompt", "a", "b"])
    writer.writerows([[r["prompt"], "line one\nline two\nline three", r["response"]] for r in ROWS[:7]])
    src.write_bytes(gzip.compress(text.getvalue().encode()))
    result = _score(bundle, "-i", str(src), "-o", str(tmp_path / "o.csv"))
    assert result.exit_code == 0, result.output
    assert "7/7" in result.stderr and "22/" not in result.stderr


def test_progress_moves_when_rows_are_scored_not_when_read(bundle: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from tqdm import tqdm

    from lite_rm.jobs.batch_scoring import score_file

    src = _jsonl(tmp_path / "in.jsonl", ROWS)
    scored: list[int] = []
    shown: list[tuple[int, int]] = []  # (bar position after an update, rows scored by then)
    original_score, original_update = Scorer.score_pairs, tqdm.update

    def counting(self: Scorer, prompts, responses):  # type: ignore[no-untyped-def]
        scored.append(len(prompts))
        return original_score(self, prompts, responses)

    def update(self: tqdm, n: float = 1) -> bool | None:  # type: ignore[type-arg]
        result = original_update(self, n)
        shown.append((int(self.n), sum(scored)))
        return result

    monkeypatch.setattr(Scorer, "score_pairs", counting)
    monkeypatch.setattr(tqdm, "update", update)
    score_file(Scorer(bundle), src, tmp_path / "out.jsonl", chunk_size=16, progress=True)
    assert shown and shown[-1][0] == len(ROWS)
    assert all(position <= done for position, done in shown)  # never ahead of the scoring


def test_bom_surrogate_and_truncated_gzip(bundle: Path, tmp_path: Path) -> None:
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfprompt,response\r\nq,r\r\n")
    assert _score(bundle, "-i", str(bom), "-o", str(tmp_path / "a.jsonl")).exit_code == 0
    assert _read_jsonl(tmp_path / "a.jsonl")[0]["prompt"] == "q"
    bad = tmp_path / "s.jsonl"
    bad.write_text(json.dumps(ROWS[0]) + "\n" + '{"prompt": "x", "response": "\\ud800"}\n' + json.dumps(ROWS[1]) + "\n")
    result = _score(bundle, "-i", str(bad), "-o", str(tmp_path / "s-out.jsonl"))
    assert result.exit_code == 1 and f"{bad} line 2: field 'response': a lone surrogate" in result.output
    result = _score(bundle, "-i", str(bad), "-o", str(tmp_path / "s-out.jsonl"), "--skip-invalid", "--resume")
    assert result.exit_code == 0 and "1 invalid rows skipped (1 invalid text)" in result.output
    assert [r["line"] for r in _read_jsonl(tmp_path / "s-out.jsonl")] == [1, 3]
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in ROWS * 50).encode())
    gz = tmp_path / "t.jsonl.gz"
    gz.write_bytes(data[: len(data) // 2])
    result = _score(bundle, "-i", str(gz), "-o", str(tmp_path / "t.jsonl"))
    assert result.exit_code == 1 and "Aborted" not in result.output
    assert re.search(rf"{re.escape(str(gz))} line \d+: the gzip stream is truncated", result.output)


def test_second_writer_is_refused(bundle: Path, tmp_path: Path) -> None:
    fcntl = pytest.importorskip("fcntl")  # POSIX only
    src = _jsonl(tmp_path / "in.jsonl", ROWS[:3])
    out = tmp_path / "out.jsonl"
    with open(tmp_path / "out.jsonl.partial", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running score holds it
        result = _score(bundle, "-i", str(src), "-o", str(out))
    assert result.exit_code == 1 and "is locked: another lite-rm score run is writing" in result.output
    assert not out.exists()
    assert _score(bundle, "-i", str(src), "-o", str(out)).exit_code == 0  # free again once it ends


def test_disk_full_keeps_partial_and_resume_finishes(bundle: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import lite_rm.jobs.batch_output as batch_output

    src = _jsonl(tmp_path / "in.jsonl", ROWS)
    full = tmp_path / "full.jsonl"
    assert _score(bundle, "-i", str(src), "-o", str(full), "--batch-size", "1").exit_code == 0

    class FullDisk:
        """A file whose second write fails as on a full disk (half of it written first)."""

        def __init__(self, file: io.TextIOWrapper) -> None:
            self.file, self.writes = file, 0

        def write(self, text: str) -> int:
            self.writes += 1
            if self.writes > 1:
                self.file.write(text[:10])
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.file.write(text)

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(self.file, name)

    monkeypatch.setattr(batch_output, "open", lambda *a, **k: FullDisk(open(*a, **k)), raising=False)  # noqa: SIM115
    out = tmp_path / "out.jsonl"
    # chunks of 256 rows: a small chunk size through the API instead
    from lite_rm.jobs.batch_scoring import score_file

    with pytest.raises(batch_output.OutputError, match=r"the disk is full.*rerun the same command with --resume"):
        score_file(Scorer(bundle), src, out, chunk_size=16, progress=False)
    assert not out.exists() and (tmp_path / "out.jsonl.partial").stat().st_size > 0
    monkeypatch.undo()
    result = _score(bundle, "-i", str(src), "-o", str(out), "--resume")
    assert result.exit_code == 0 and "resumed after line 16" in result.output
    assert out.read_bytes() == full.read_bytes()


def test_resume_csv_torn_inside_quoted_multiline_field(bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    with open(src, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "a", "b"])
        w.writerows([[r["prompt"], "first line,\nsecond \"quoted\" line", r["response"]] for r in ROWS[:12]])
    full = tmp_path / "full.csv"
    assert _score(bundle, "-i", str(src), "-o", str(full)).exit_code == 0
    data = full.read_bytes()
    cut = data.index(b"second", data.index(ROWS[8]["prompt"].encode()))  # inside row 9's quoted field
    out = tmp_path / "out.csv"
    (tmp_path / "out.csv.partial").write_bytes(data[:cut])
    result = _score(bundle, "-i", str(src), "-o", str(out), "--resume")
    assert result.exit_code == 0, result.output
    assert "resumed after line 16" in result.output  # row 8 starts on line 16 (each row spans 2 lines)
    assert out.read_bytes() == data


BAD_INPUTS = {
    "binary.jsonl": b"\x00\xff\xfe garbage\n",
    "deep.jsonl": b"[" * 5000 + b"\n",
    "long.jsonl": b'{"prompt": ' + b"1" * 5000 + b', "response": "r"}\n',
    "list.json": b'{"prompt": "p"}',
    "torn.csv": b'prompt,response\n"open quote,\n',
    "gz.jsonl.gz": b"\x1f\x8b\x08\x00garbage",
    "nulls.csv": b"prompt,response\nq\x00,r\x00\n,,,\n",
    "empty.csv": b"",
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_never_prints_a_traceback(bundle: Path, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(BAD_INPUTS[name])
    for args in (["score", str(bundle), "-i", str(path), "-o", str(tmp_path / "o.jsonl")],
                 ["score", str(bundle), "-i", str(path), "-o", str(tmp_path / "o.csv"), "--skip-invalid"],
                 ["data", "check", str(path)], ["data", "check", "--skip-invalid", str(path)]):
        result = CliRunner().invoke(main, args)
        assert isinstance(result.exception, (SystemExit, type(None))), (args, result.output, result.exception)
        assert "Traceback" not in result.output
        if result.exit_code:
            assert str(path) in result.output, result.output


def test_verify_refuses_a_tampered_bundle_on_score_and_eval(bundle: Path, tmp_path: Path) -> None:
    import shutil

    tampered = tmp_path / "tampered"
    shutil.copytree(bundle, tampered)
    model = tampered / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF  # same size: only the hash can tell
    model.write_bytes(bytes(data))
    rows = _jsonl(tmp_path / "in.jsonl", ROWS[:3])
    prefs = _jsonl(tmp_path / "prefs.jsonl", [{"prompt": r["prompt"], "chosen": r["response"], "rejected": "no"}
                                              for r in ROWS[:3]])
    for args in (["score", str(tampered), "-i", str(rows), "-o", str(tmp_path / "out.jsonl"), "--verify"],
                 ["eval", str(tampered), "--data", f"mine={prefs}", "--verify"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, (args, result.output)
        assert "SHA-256" in result.output and "Traceback" not in result.output
    ok = CliRunner().invoke(main, ["score", str(bundle), "-i", str(rows), "-o", str(tmp_path / "ok.jsonl"), "--verify"])
    assert ok.exit_code == 0, ok.output


def test_resume_refuses_another_input_and_a_partial_past_the_end(bundle: Path, tmp_path: Path,
                                                                 run_cli) -> None:  # type: ignore[no-untyped-def]
    """Issue 25: --resume with another -i mixed rows of both inputs; a partial past the input's end gave
    "scored 0 rows" and exit 0."""
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:9]) + "{broken\n"
                   + "".join(json.dumps(r) + "\n" for r in ROWS[10:]))
    out = tmp_path / "out.jsonl"
    first = run_cli("score", str(bundle), "-i", str(src), "-o", str(out), "--no-progress")
    assert first.returncode == 1 and "line 10" in first.stderr
    partial, state = tmp_path / "out.jsonl.partial", tmp_path / "out.jsonl.partial.json"
    assert len(partial.read_text().splitlines()) == 9 and json.loads(state.read_text())["input"]["bytes"] > 0
    other = _jsonl(tmp_path / "other.jsonl", ROWS[20:])
    mixed = run_cli("score", str(bundle), "-i", str(other), "-o", str(out), "--resume", "--no-progress")
    assert mixed.returncode == 1 and "Traceback" not in mixed.stderr, mixed.stderr
    assert "written from another input" in mixed.stderr and "rerun without --resume to start over" in mixed.stderr
    assert len(partial.read_text().splitlines()) == 9 and not out.exists()
    src.write_text(src.read_text().replace("{broken\n", json.dumps(ROWS[9]) + "\n"))  # "fixed": another input now
    assert "was written from another input" in run_cli(
        "score", str(bundle), "-i", str(src), "-o", str(out), "--resume", "--no-progress").stderr
    ok = run_cli("score", str(bundle), "-i", str(src), "-o", str(out), "--no-progress")  # start over
    assert ok.returncode == 0 and len(_read_jsonl(out)) == 40 and not state.exists() and not partial.exists()
    # a partial (of an older lite-rm: no state file) that ends past the input's end
    short = _jsonl(tmp_path / "short.jsonl", ROWS[:5])
    partial.write_text("".join(json.dumps({"line": i, "score": 0.5}) + "\n" for i in range(1, 31)))
    past = run_cli("score", str(bundle), "-i", str(short), "-o", str(out), "--resume", "--no-progress")
    assert past.returncode == 1 and "Traceback" not in past.stderr, past.stderr
    assert "ends at input line 30, but" in past.stderr and "line 5" in past.stderr


def test_resume_refuses_other_reading_options(bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"question": r["prompt"], "response": r["response"]}) + "\n" for r in ROWS[:5])
                   + "{broken\n")
    out = tmp_path / "out.jsonl"
    args = ["score", str(bundle), "-i", str(src), "-o", str(out), "--no-progress"]
    assert CliRunner().invoke(main, [*args, "--column", "prompt=question"]).exit_code == 1
    result = CliRunner().invoke(main, [*args, "--column", "prompt=response", "--resume"])
    assert result.exit_code == 1 and "written with other options (columns" in result.output
    result = CliRunner().invoke(main, [*args, "--column", "prompt=question", "--resume", "--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert [r["line"] for r in _read_jsonl(out)] == [1, 2, 3, 4, 5]
