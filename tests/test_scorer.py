"""The torch-free Scorer: results match PyTorch, order and batching don't matter, errors are clear."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from lite_rm.scoring.bundle import BundleError
from lite_rm.scoring.scorer import Scorer

PROMPTS = ["How do I boil an egg?", "Write a haiku about rain.", "", "What is 2 + 2?"]
RESPONSES = ["Put it in boiling water for eight minutes.", "Rain on the roof / soft drums in the night / sleep",
             "Hello there.", "4"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    from lite_rm.exporting import export_bundle

    tmp = tmp_path_factory.mktemp("scorer")
    valid = tmp / "valid.jsonl"
    valid.write_text("".join(json.dumps({"prompt": p, "chosen": r, "rejected": r[::-1] + " no"}) + "\n"
                             for p, r in zip(PROMPTS * 4, RESPONSES * 4, strict=True)))
    out = tmp / "bundle"
    export_bundle(tiny_checkpoint, out, validation=valid)
    return out


@pytest.fixture(scope="module")
def scorer(bundle: Path) -> Scorer:
    return Scorer(bundle, threads=1)


def test_import_and_scoring_never_load_torch(bundle: Path) -> None:
    code = (
        "import sys, lite_rm\n"
        "from lite_rm import Scorer\n"
        f"s = Scorer({str(bundle)!r})\n"
        "print(s.score('p', ['a', 'b']).tolist(), s.compare(['p'], ['a'], ['b']).probabilities)\n"
        "heavy = [m for m in ('torch', 'transformers', 'sklearn', 'optimum') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_matches_pytorch(scorer: Scorer, tiny_checkpoint: Path, bundle: Path) -> None:
    from lite_rm.exporting import torch_scores

    long_prompt = "context " * 400  # longer than max_length: the input rule truncates it
    prompts, responses = PROMPTS + [long_prompt], RESPONSES + ["short answer"]
    ref = torch_scores(tiny_checkpoint, bundle / "tokenizer.json", prompts, responses, scorer.input_rule)
    np.testing.assert_allclose(scorer.score_pairs(prompts, responses), ref, atol=1e-4)


def test_batching_order_and_dedupe_do_not_change_scores(bundle: Path, scorer: Scorer) -> None:
    prompts, responses = PROMPTS * 3, RESPONSES[::-1] * 3
    together = scorer.score_pairs(prompts, responses)
    one_by_one = np.array([scorer.score(p, [r])[0] for p, r in zip(prompts, responses, strict=True)])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    small = Scorer(bundle, threads=1, batch_size=1, dedupe=False).score_pairs(prompts, responses)
    np.testing.assert_allclose(together, small, atol=1e-5)
    np.testing.assert_allclose(scorer.score(PROMPTS[0], RESPONSES), scorer.score_pairs([PROMPTS[0]] * 4, RESPONSES))


def test_never_changes_caller_data(scorer: Scorer) -> None:
    prompts, responses = list(PROMPTS), list(RESPONSES)
    scorer.score_pairs(prompts, responses)
    scorer.compare(prompts, responses, responses[::-1])
    assert prompts == PROMPTS and responses == RESPONSES
    assert scorer.score_pairs(tuple(PROMPTS), tuple(RESPONSES)).shape == (4,)


def test_thread_safe(scorer: Scorer) -> None:
    jobs = [(PROMPTS[i:] + PROMPTS[:i], RESPONSES) for i in range(4)] * 4
    serial = [scorer.score_pairs(p, r) for p, r in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda job: scorer.score_pairs(*job), jobs))
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_compare(scorer: Scorer) -> None:
    p_ab, p_ba = scorer.compare([PROMPTS[0]] * 2, RESPONSES[:2], RESPONSES[1::-1]).probabilities
    assert 0.0 < p_ab < 1.0 and p_ab + p_ba == pytest.approx(1.0)
    s = scorer.score(PROMPTS[0], RESPONSES[:2]).astype(np.float64)
    scale = scorer.manifest.calibration.scale
    assert p_ab == pytest.approx(1 / (1 + np.exp(-scale * (s[0] - s[1]))), abs=1e-6)
    batch = scorer.compare(PROMPTS, RESPONSES, RESPONSES[::-1])
    assert batch.probabilities.shape == (4,) and batch.probabilities[0] == pytest.approx(
        scorer.compare(PROMPTS[:1], RESPONSES[:1], RESPONSES[3:]).probabilities[0])
    np.testing.assert_allclose(batch.score_a, scorer.score_pairs(PROMPTS, RESPONSES), atol=1e-6)
    np.testing.assert_allclose(batch.score_b, scorer.score_pairs(PROMPTS, RESPONSES[::-1]), atol=1e-6)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda s: s.score(1, ["x"]), TypeError, "prompt: expected a string or a list of"),
        (lambda s: s.score("p", "one string"), TypeError, "responses: expected a list of strings"),
        (lambda s: s.score("p", ["ok", None]), TypeError, r"responses\[1\]: expected a string"),
        (lambda s: s.score("p", []), ValueError, "empty"),
        (lambda s: s.score_pairs([], []), ValueError, "empty input"),
        (lambda s: s.score_pairs(["a"], ["b", "c"]), ValueError, "1 prompts but 2 responses"),
        (lambda s: s.compare(["p"], ["a"], [3]), TypeError, r"b\[0\]: expected a string"),
        (lambda s: s.compare(["p"], ["a"], []), ValueError, "1 prompts, 1 a, 0 b"),
    ],
)
def test_argument_errors(scorer: Scorer, call, error, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        call(scorer)


def _broken_copy(bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    return copy


def test_bundle_errors(bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not found; create one with: lite-rm export"):
        Scorer(tmp_path / "missing")

    b = _broken_copy(bundle, tmp_path)
    (b / "model.onnx").unlink()
    with pytest.raises(BundleError, match="model.onnx is missing"):
        Scorer(b)
    shutil.rmtree(b)

    b = _broken_copy(bundle, tmp_path)
    data = (b / "model.onnx").read_bytes()
    (b / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="truncated or corrupted"):
        Scorer(b)
    # Same size, garbage content: the size check passes, onnxruntime refuses it.
    (b / "model.onnx").write_bytes(b"\x07garbage" * (len(data) // 8) + b"\0" * (len(data) % 8))
    with pytest.raises(BundleError, match="onnxruntime cannot load it"):
        Scorer(b)
    with pytest.raises(BundleError, match="SHA-256"):
        Scorer(b, verify=True)
    shutil.rmtree(b)

    b = _broken_copy(bundle, tmp_path)
    manifest = json.loads((b / "manifest.json").read_text())
    (b / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(BundleError, match="format version 99 is not supported"):
        Scorer(b)
    (b / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Scorer(b)
    (b / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest.json is missing"):
        Scorer(b)
    shutil.rmtree(b)

    b = _broken_copy(bundle, tmp_path)
    (b / "tokenizer.json").write_text("{}")
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["files"]["tokenizer.json"]["bytes"] = 2
    (b / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="not a valid tokenizer file"):
        Scorer(b)


def test_constructor_argument_errors(bundle: Path) -> None:
    with pytest.raises(ValueError, match="threads"):
        Scorer(bundle, threads=-1)
    with pytest.raises(ValueError, match="batch_size"):
        Scorer(bundle, batch_size=0)
    with pytest.raises(ValueError, match="streams"):
        Scorer(bundle, streams=0)


def test_threads_follow_the_one_rule(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lite_rm import threads

    monkeypatch.setattr(threads, "free_cores", lambda sample_seconds=0.2: 1)
    monkeypatch.setattr(threads, "usable_cores", lambda: 3)
    assert Scorer(bundle, threads=0).streams == 1  # 0: as many as are free now
    assert Scorer(bundle).streams == 3  # not given: every usable core
    assert Scorer(bundle, threads=2).streams == 2


def test_streams_and_batch_size_do_not_change_scores(bundle: Path) -> None:
    """Concurrent calls (the default: one per thread, one text each) give the scores of one serial stream."""
    prompts, responses = PROMPTS * 5, RESPONSES[1:] * 5 + RESPONSES[:1] * 5
    default = Scorer(bundle, threads=2, dedupe=False)
    assert default.streams == 2 and default.batch_size == 1
    serial = Scorer(bundle, threads=2, streams=1, batch_size=32, dedupe=False).score_pairs(prompts, responses)
    np.testing.assert_allclose(default.score_pairs(prompts, responses), serial, atol=1e-5)
    np.testing.assert_allclose(Scorer(bundle, threads=3, streams=3, batch_size=4).score_pairs(prompts, responses),
                               serial, atol=1e-5)
    assert Scorer(bundle).streams >= 1  # threads=None: one stream per usable core


def test_chat_messages_render_as_in_training(scorer: Scorer, tmp_path: Path) -> None:
    """A conversation scores exactly as its rendering by the training loader (one function for both)."""
    from lite_rm.data import load_preferences

    messages = [{"role": "user", "content": "How do I boil an egg?"}]
    reply = [{"role": "assistant", "content": RESPONSES[0]}]
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"prompt": messages, "chosen": reply, "rejected": "x"}) + "\n")
    pair = load_preferences(path)[0]
    expected = scorer.score(pair.prompt, [pair.chosen])
    np.testing.assert_array_equal(scorer.score(messages, [reply]), expected)
    assert scorer.compare([messages], [reply], ["x"]).probabilities[0] == pytest.approx(
        scorer.compare([pair.prompt], [pair.chosen], ["x"]).probabilities[0])
    with pytest.raises(ValueError, match=r"field 'prompt'\[0\]: expected a message"):
        scorer.score([{"content": "no role"}], ["r"])  # a DataError (ValueError) naming the argument


def test_lone_surrogate_is_a_clear_error(scorer: Scorer) -> None:
    with pytest.raises(ValueError, match=r"responses\[1\]: a lone surrogate '\\ud800'"):
        scorer.score("p", ["fine", "bad \ud800"])


def test_rank(scorer: Scorer) -> None:
    scores = scorer.score(PROMPTS[0], RESPONSES)
    ranking = scorer.rank(PROMPTS[0], RESPONSES)
    assert ranking.indices == sorted(range(4), key=lambda i: -scores[i])
    assert ranking.scores == sorted(ranking.scores, reverse=True) and len(ranking) == 4
    assert ranking.scores[0] == pytest.approx(float(scores.max()))
    top = scorer.rank(PROMPTS[0], RESPONSES, top_k=2)
    assert top.indices == ranking.indices[:2] and len(top.scores) == 2
    tie = scorer.rank("p", ["same", "same", "same"])
    assert tie.indices == [0, 1, 2]  # equal scores keep the order given
    with pytest.raises(ValueError, match="top_k"):
        scorer.rank("p", ["a"], top_k=0)


def test_openvino_backend_scores_like_onnxruntime(bundle: Path, tmp_path: Path) -> None:
    """The optional OpenVINO engine runs the same graph: bf16 rounding (on CPUs with native bf16) only."""
    from click.testing import CliRunner

    from lite_rm.cli import main

    prompts = [f"question {i}?" for i in range(12)]
    responses = [f"answer {i} " * (i % 4 + 1) for i in range(12)]
    ort_scores = Scorer(bundle).score_pairs(prompts, responses)
    ov = Scorer(bundle, backend="openvino", threads=1)
    assert ov.backend == "openvino"
    np.testing.assert_allclose(ov.score_pairs(prompts, responses), ort_scores, atol=0.05)
    with pytest.raises(ValueError, match="expected one of onnxruntime, openvino"):
        Scorer(bundle, backend="tvm")
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in zip(prompts, responses, strict=True)))
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["score", str(bundle), "-i", str(rows), "-o", str(out), "--backend", "openvino"])
    assert result.exit_code == 0, result.output
    scored = [json.loads(line)["score"] for line in out.read_text().splitlines()]
    np.testing.assert_allclose(scored, ort_scores, atol=0.05)


# -- the APIs users know (issue 28): CrossEncoder.predict and rank(return_documents=True) ------------------


def test_predict_takes_crossencoder_pairs(scorer: Scorer) -> None:
    pairs = list(zip(PROMPTS, RESPONSES, strict=True))
    scores = scorer.predict(pairs)
    assert isinstance(scores, np.ndarray) and scores.shape == (4,)
    np.testing.assert_array_equal(scores, scorer.score_pairs(PROMPTS, RESPONSES))
    np.testing.assert_array_equal(scorer.predict([list(p) for p in pairs]), scores)  # 2-item lists too
    assert scorer.predict([]).shape == (0,)
    np.testing.assert_array_equal(scorer.predict(zip(PROMPTS, RESPONSES, strict=True)), scores)
    np.testing.assert_array_equal(scorer.predict(np.array(pairs, dtype=object)), scores)
    messages = [{"role": "user", "content": PROMPTS[0]}]
    assert scorer.predict([(messages, RESPONSES[0])]).shape == (1,)


@pytest.mark.parametrize("pairs, error, match", [
    ("prompt", TypeError, "pairs: expected a list of"),
    ({"p": "r"}, TypeError, "pairs: expected a list of .*found dict"),
    (("p", "r"), TypeError, r"one \(prompt, response\) pair, expected a list"),
    ([("p", "r"), ("p",)], TypeError, r"pairs\[1\]: expected a \(prompt, response\) pair, found 1 items"),
    ([("p", "r"), "pr"], TypeError, r"pairs\[1\]: expected a \(prompt, response\) pair, found str"),
    ([("p", "r"), ("p", 3)], TypeError, r"pairs\[1\]\[1\] \(response\): expected a string"),
    ([("p", "bad \ud800")], ValueError, r"pairs\[0\]\[1\] \(response\): a lone surrogate"),
])
def test_predict_errors_name_the_item(scorer: Scorer, pairs, error, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        scorer.predict(pairs)


def test_rank_return_documents(scorer: Scorer) -> None:
    ranking = scorer.rank(PROMPTS[0], RESPONSES)
    records = scorer.rank(PROMPTS[0], RESPONSES, return_documents=True)
    assert [r["corpus_id"] for r in records] == ranking.indices
    assert [r["score"] for r in records] == ranking.scores
    assert [r["text"] for r in records] == [RESPONSES[i] for i in ranking.indices]
    assert len(scorer.rank(PROMPTS[0], RESPONSES, top_k=1, return_documents=True)) == 1
