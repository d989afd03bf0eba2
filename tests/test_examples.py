"""Every script of ``examples/`` runs as a user runs it (a fresh process), on the tiny model and small data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_training_support import write_pairs

from lite_rm.scoring.scorer import Scorer

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    from lite_rm.exporting import export_bundle

    tmp = tmp_path_factory.mktemp("examples")
    export_bundle(tiny_checkpoint, tmp / "bundle", validation=write_pairs(tmp / "valid.jsonl", 16))
    return tmp / "bundle"


def _example(name: str, *args: str, cwd: Path, timeout: float = 300) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, env=env,
                            cwd=cwd, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_every_example_is_tested() -> None:
    tested = {"rank_and_personalize.py", "rl_reward.py", "ray_map_batches.py", "train_trl_file.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_rank_and_personalize(bundle: Path, tmp_path: Path) -> None:
    profile = tmp_path / "alice.json"
    out = _example("rank_and_personalize.py", str(bundle), "--profile", str(profile), cwd=tmp_path)
    assert "(general reward)" in out and "(alice's reward)" in out and "fit head 'alice' on 5 comparisons" in out
    assert json.loads(profile.read_text())["name"] == "alice"
    assert "alice" not in json.loads((bundle / "manifest.json").read_text()).get("heads", {})  # bundle untouched


def test_rl_reward_verl_and_openrlhf(bundle: Path, tmp_path: Path) -> None:
    out = _example("rl_reward.py", str(bundle), "--serve", cwd=tmp_path)
    verl = json.loads(out.split("verl compute_score:")[1].splitlines()[0])
    openrlhf = json.loads(out.split("OpenRLHF /openrlhf:")[1].splitlines()[0])
    assert len(verl) == 2 and verl == openrlhf  # the same bundle, in process and over HTTP


def test_ray_map_batches(bundle: Path, tmp_path: Path) -> None:
    rows = [{"question": f"question {i}?", "answer": f"answer {i}"} for i in range(12)]
    src = tmp_path / "generations.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "scored"
    _example("ray_map_batches.py", str(bundle), str(src), str(out), "--prompt-column", "question",
             "--response-column", "answer", "--concurrency", "1", cwd=tmp_path)
    scored = [json.loads(line) for p in sorted(out.glob("*.json*")) for line in p.read_text().splitlines()]
    by_question = {r["question"]: r["score"] for r in scored}
    expected = Scorer(bundle, threads=1).predict([(r["question"], r["answer"]) for r in rows])
    np.testing.assert_allclose([by_question[r["question"]] for r in rows], expected, atol=1e-6)


def test_train_trl_file(tiny_checkpoint: Path, tmp_path: Path) -> None:
    train_file, test_file = write_pairs(tmp_path / "train.jsonl", 32, seed=1), write_pairs(tmp_path / "test.jsonl", 8)
    out = _example("train_trl_file.py", str(train_file), str(test_file), "-o", str(tmp_path / "run"), "--model",
                   str(tiny_checkpoint), "--max-steps", "2", "--max-length", "64", cwd=tmp_path)
    assert "trained: held-out accuracy" in out and "pairwise accuracy of the bundle on 8 test pairs" in out
    assert Scorer(tmp_path / "run" / "bundle").score("p", ["r"]).shape == (1,)
