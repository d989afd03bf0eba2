"""``lite-rm score``: JSONL/CSV end to end, bad rows, skip, resume, and a torch-free run on real DSP data."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lite_rm.cli import main
from lite_rm.scorer import Scorer

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
    result = CliRunner().invoke(main, ["score", str(bundle), "-i", str(src), "-o", str(out), "--prompt-field", "question"])
    assert result.exit_code == 0, result.output
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == ["0", "1", "2", "3", "4"]
    # Line numbers count physical lines: row 0 holds a newline inside a quoted field.
    assert [int(r["line"]) for r in rows] == [2, 4, 6, 8, 10]
    s = Scorer(bundle)
    p = s.preference_probability(ROWS[0]["prompt"], ROWS[0]["response"], "I don't know,\nsorry")
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
    assert "a preferred in" in result.stderr
