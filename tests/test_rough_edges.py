"""The rough edges a new user met (issue 28): each a clear message or the expected behaviour."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_training_support import write_pairs

from lite_rm.cli import main
from lite_rm.scoring.bundle import BundleError
from lite_rm.scoring.scorer import Scorer

ROWS = [{"prompt": f"question {i}?", "response": f"answer {i}"} for i in range(5)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    from lite_rm.exporting import export_bundle

    tmp = tmp_path_factory.mktemp("edges")
    out = tmp / "bundle"
    export_bundle(tiny_checkpoint, out, validation=write_pairs(tmp / "valid.jsonl", 16))
    return out


@pytest.fixture
def rows(tmp_path: Path) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_serve_without_the_serve_extra_prints_the_install_hint(bundle: Path) -> None:
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('starlette', 'uvicorn'):\n"
        "            raise ImportError('blocked: not in a core install: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from lite_rm.cli import main\n"
        f"main(['serve', {str(bundle)!r}])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert 'pip install "lite-rm[serve]"' in result.stderr


@pytest.mark.parametrize("make", [False, True], ids=["trailing-slash", "existing-folder"])
def test_score_into_a_folder_is_refused_clearly(bundle: Path, rows: Path, tmp_path: Path, run_cli, make: bool  # type: ignore[no-untyped-def]
                                                ) -> None:
    folder = tmp_path / "out"
    if make:
        folder.mkdir()
    target = str(folder) + ("" if make else "/")
    result = run_cli("score", str(bundle), "-i", str(rows), "-o", target, "--no-progress")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "a folder; give a file name, e.g." in result.stderr and "scores.jsonl" in result.stderr
    assert not folder.is_file() and not list(tmp_path.glob("out.*"))


def test_score_to_stdout_says_stdout(bundle: Path, rows: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("score", str(bundle), "-i", str(rows), "-o", "-", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(ROWS)
    assert "-> <stdout>" in result.stderr and "<stdin>" not in result.stderr


def test_a_checkpoint_where_a_bundle_is_expected(tiny_checkpoint: Path, rows: Path, tmp_path: Path, run_cli,  # type: ignore[no-untyped-def]
                                                 ) -> None:
    with pytest.raises(BundleError, match="this is a training checkpoint, not a bundle: export it with `lite-rm export"):
        Scorer(tiny_checkpoint)
    result = run_cli("score", str(tiny_checkpoint), "-i", str(rows), "-o", str(tmp_path / "s.jsonl"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"`lite-rm export {tiny_checkpoint} --output BUNDLE`" in result.stderr


@pytest.mark.parametrize("verb", ["export", "distill", "train"])
def test_a_bundle_where_a_checkpoint_is_expected(bundle: Path, tmp_path: Path, run_cli, verb: str) -> None:  # type: ignore[no-untyped-def]
    args = {"export": ["export", str(bundle), "--output", str(tmp_path / "b2")],
            "distill": ["distill", str(bundle), "-o", str(tmp_path / "student")],
            "train": ["train", "--model", str(bundle), "-o", str(tmp_path / "run"), "--stages", "general"]}[verb]
    result = run_cli(*args)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "this is an exported bundle (ONNX), not a training checkpoint" in result.stderr
    assert not (tmp_path / "run").exists()


def test_train_with_an_uncached_hub_id_leaves_no_run_behind(tmp_path: Path, run_cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    result = run_cli("train", "--model", "nobody/no-such-model", "-o", str(run), "--stages", "general")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "not in the local Hugging Face cache" in result.stderr
    assert not run.exists()


def test_data_check_accepts_the_rows_score_takes(rows: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["data", "check", str(rows)])
    assert result.exit_code == 0, result.output
    assert "[rows to score: prompt+response]" in result.output and "5 rows to score" in result.output
    ab = tmp_path / "ab.jsonl"
    ab.write_text(json.dumps({"prompt": "p", "a": "x", "b": "y"}) + "\n")
    report = json.loads(runner.invoke(main, ["data", "check", str(ab), "--json"]).output)["sources"][0]
    assert report["format"] == "rows" and report["fields"] == "prompt+a+b" and report["rows"] == 1
    neither = tmp_path / "neither.jsonl"
    neither.write_text(json.dumps({"question": "p"}) + "\n")
    result = runner.invoke(main, ["data", "check", str(neither)])
    assert result.exit_code == 1 and "neither.jsonl line 1" in result.output


def test_eval_json_has_the_general_average(bundle: Path, tmp_path: Path) -> None:
    data = write_pairs(tmp_path / "p.jsonl", 8)
    sets = [f"{name}={data}" for name in ("helpful", "harmless", "webgpt")]
    result = CliRunner().invoke(main, ["eval", str(bundle), *sum((["--data", s] for s in sets), []), "--json",
                                       "--threads", "1", "--name", "tiny"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    accs = [payload["results"]["tiny"][name]["acc"] for name in ("helpful", "harmless", "webgpt")]
    assert payload["general_avg"]["tiny"] == pytest.approx(sum(accs) / 3)
    only_one = json.loads(CliRunner().invoke(main, ["eval", str(bundle), "--data", sets[0], "--json",
                                                    "--threads", "1"]).output)
    assert only_one["general_avg"] == {"bundle": None}
