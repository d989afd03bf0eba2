"""Heads on the shared backbone and personalization: the default head is the bundle's score, named heads
and mixtures score as claimed, a personalized head learns a separable preference, writes are atomic,
and old bundles fail clearly."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lite_rm.cli import main
from lite_rm.scoring.bundle import MANIFEST_FILE, BundleError, read_manifest
from lite_rm.scoring.heads import LinearHead, read_head, save_into_bundle, write_head
from lite_rm.scoring.personalization import MIN_COMPARISONS, fit_head
from lite_rm.scoring.scorer import Scorer

PROMPTS = [f"Question number {i}: what should I do about topic {i % 7}?" for i in range(24)]
GOOD = [f"Here is a careful, detailed and polite answer about topic {i % 7}." for i in range(24)]
BAD = [f"lol idk {i}" for i in range(24)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    from lite_rm.exporting import export_bundle

    tmp = tmp_path_factory.mktemp("heads")
    valid = tmp / "valid.jsonl"
    valid.write_text("".join(json.dumps({"prompt": p, "chosen": g, "rejected": b}) + "\n"
                             for p, g, b in zip(PROMPTS, GOOD, BAD, strict=True)))
    out = tmp / "bundle"
    export_bundle(tiny_checkpoint, out, validation=valid)
    return out


@pytest.fixture
def fresh(bundle: Path, tmp_path: Path) -> Path:
    """A copy of the bundle a test may change."""
    return Path(shutil.copytree(bundle, tmp_path / "bundle"))


def _head(scorer: Scorer, name: str, seed: int, bias: float = 0.0) -> LinearHead:
    weight = np.random.default_rng(seed).normal(size=scorer.manifest.embedding_dim).astype(np.float32)
    return LinearHead(name, weight, bias, backbone=scorer.manifest.data["source"]["sha256"])


def test_default_head_is_the_graph_score_and_its_linear_form_matches(bundle: Path) -> None:
    scorer = Scorer(bundle, threads=1)
    plain = scorer.score_pairs(PROMPTS, GOOD)
    assert np.array_equal(scorer.score_pairs(PROMPTS, GOOD, head="default"), plain)
    linear = scorer.get_head("default").scores(scorer.embed_pairs(PROMPTS, GOOD))
    np.testing.assert_allclose(linear, plain, atol=1e-5)
    assert scorer.heads == ["default"]


def test_embedding_is_the_pooler_output_and_the_masked_mean_of_the_last_hidden_states(
        bundle: Path, tiny_checkpoint: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    from lite_rm.scoring.encoding import encode_pairs, pad_batch

    scorer = Scorer(bundle, threads=1)
    assert scorer.manifest.embedding_dim == 64 and len(scorer.manifest.embedding.parts) == 2
    model = AutoModelForSequenceClassification.from_pretrained(tiny_checkpoint).eval()
    encoded = encode_pairs(scorer._tokenizer, PROMPTS[:3], [GOOD[0], BAD[1], GOOD[2] * 3], scorer.input_rule)
    batch = {k: torch.from_numpy(v) for k, v in pad_batch(encoded, [0, 1, 2], 0).items()}
    with torch.no_grad():
        out = model.bert(**batch)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (out.last_hidden_state * mask).sum(1) / mask.sum(1)
    expected = torch.cat([out.pooler_output, mean], dim=1).numpy()
    got = scorer.embed_pairs(PROMPTS[:3], [GOOD[0], BAD[1], GOOD[2] * 3])
    np.testing.assert_allclose(got, expected, atol=1e-4)  # padding in a batch does not leak into the mean


def test_named_heads_and_mixtures_score_as_claimed(fresh: Path) -> None:
    scorer = Scorer(fresh, threads=1)
    save_into_bundle(fresh, _head(scorer, "alice", 1, bias=0.5))
    scorer = Scorer(fresh, threads=1)
    assert scorer.heads == ["alice", "default"] or scorer.heads == ["default", "alice"]
    emb = scorer.embed_pairs(PROMPTS, GOOD)
    alice = scorer.get_head("alice")
    np.testing.assert_allclose(scorer.score_pairs(PROMPTS, GOOD, head="alice"), emb @ alice.weight + 0.5, rtol=1e-5)
    assert not np.allclose(scorer.score_pairs(PROMPTS, GOOD, head="alice"), scorer.score_pairs(PROMPTS, GOOD))
    default, scale = scorer.score_pairs(PROMPTS, GOOD), scorer.manifest.calibration.scale
    mixed = scorer.score_pairs(PROMPTS, GOOD, head={"default": 0.3, "alice": 0.7})
    np.testing.assert_allclose(mixed, 0.3 * scale * default + 0.7 * (emb @ alice.weight + 0.5), rtol=1e-4, atol=1e-5)
    # the constructor's head is every call's default; probabilities use that head's calibration (scale 1)
    as_alice = Scorer(fresh, threads=1, head="alice")
    p = as_alice.compare(PROMPTS[:1], GOOD[:1], BAD[:1]).probabilities[0]
    s = as_alice.score(PROMPTS[0], [GOOD[0], BAD[0]])
    assert p == pytest.approx(1 / (1 + np.exp(-(float(s[0]) - float(s[1])))), rel=1e-5)
    with pytest.raises(BundleError, match="not in"):
        scorer.score(PROMPTS[0], GOOD[:2], head="bob")
    with pytest.raises(ValueError, match="finite weight"):
        scorer.score(PROMPTS[0], GOOD[:2], head={"alice": float("nan")})


def test_fit_head_separates_a_separable_set_and_refuses_too_few() -> None:
    rng = np.random.default_rng(0)
    true = rng.normal(size=16)
    diffs = rng.normal(size=(60, 16))
    diffs[diffs @ true < 0] *= -1  # every comparison agrees with the true direction
    prior = LinearHead("default", rng.normal(size=16).astype(np.float32))
    head, report = fit_head(diffs, prior, "u", groups=[i // 3 for i in range(60)])
    assert report.train_accuracy == 1.0 and report.cv_accuracy >= 0.8
    held_out = rng.normal(size=(200, 16))
    assert np.mean(np.sign(held_out @ head.weight) == np.sign(held_out @ true)) > 0.85
    with pytest.raises(ValueError, match=f"at least {MIN_COMPARISONS}"):
        fit_head(diffs[:3], prior, "u")


def test_few_comparisons_stay_close_to_the_default_head() -> None:
    rng = np.random.default_rng(1)
    prior = LinearHead("default", rng.normal(size=32).astype(np.float32))
    diffs = rng.normal(size=(5, 32))
    diffs[diffs @ prior.weight < 0] *= -1  # five choices that agree with the general reward
    head, report = fit_head(diffs, prior, "u")
    cosine = head.weight @ prior.weight / np.linalg.norm(head.weight) / np.linalg.norm(prior.weight)
    assert cosine > 0.95 and report.prior_weight > 0


def test_personalize_cli_then_score_with_the_head(fresh: Path, tmp_path: Path) -> None:
    comparisons = tmp_path / "mine.jsonl"
    # the user prefers the short answers the general model dislikes
    comparisons.write_text("".join(json.dumps({"prompt": p, "chosen": b, "rejected": g}) + "\n"
                                   for p, g, b in zip(PROMPTS, GOOD, BAD, strict=True)))
    runner = CliRunner()
    result = runner.invoke(main, ["personalize", str(fresh), "-c", str(comparisons), "-n", "alice", "--json",
                                  "--threads", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["comparisons"] == 24 and report["train_accuracy"] == 1.0 and report["groups"] == "prompt"
    manifest = read_manifest(fresh, verify=True)
    assert "alice" in manifest.heads
    head = read_head(fresh / manifest.heads["alice"])
    assert head.provenance["comparisons"] == 24 and head.provenance["cv_accuracy"] == report["cv_accuracy"]
    scorer = Scorer(fresh, threads=1, head="alice")
    assert np.all(scorer.score_pairs(PROMPTS, BAD) > scorer.score_pairs(PROMPTS, GOOD))
    out = tmp_path / "scores.jsonl"
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": PROMPTS[0], "response": BAD[0]}) + "\n")
    result = runner.invoke(main, ["score", str(fresh), "-i", str(rows), "-o", str(out), "--head", "alice",
                                  "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["score"] == pytest.approx(float(scorer.score_pairs(PROMPTS[:1], BAD[:1])[0]),
                                                                   rel=1e-5)
    result = runner.invoke(main, ["eval", str(fresh), "--data", f"mine={comparisons}", "--head", "alice", "--json",
                                  "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["results"]["bundle"]["mine"]["acc"] == 1.0
    # a second fit of the same name replaces the first; the old file goes
    result = runner.invoke(main, ["personalize", str(fresh), "-c", str(comparisons), "-n", "alice", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert len(list((fresh / "heads").glob("alice-*.json"))) == 1


def test_personalize_errors_are_clear(fresh: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    few = tmp_path / "few.jsonl"
    few.write_text("".join(json.dumps({"prompt": p, "chosen": g, "rejected": b}) + "\n"
                           for p, g, b in zip(PROMPTS[:3], GOOD, BAD, strict=False)))
    result = runner.invoke(main, ["personalize", str(fresh), "-c", str(few), "-n", "alice"])
    assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit)
    assert "at least 4" in result.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text(few.read_text() + '{"prompt": "p", "chosen": 3, "rejected": "x"}\n')
    result = runner.invoke(main, ["personalize", str(fresh), "-c", str(bad), "-n", "alice"])
    assert result.exit_code == 1 and "bad.jsonl" in result.output and "line 4" in result.output
    result = runner.invoke(main, ["personalize", str(fresh), "-c", str(few), "-n", "../evil"])
    assert result.exit_code == 1 and "head name" in result.output
    enough = tmp_path / "enough.jsonl"
    enough.write_text("".join(json.dumps({"prompt": p, "chosen": g, "rejected": b}) + "\n"
                              for p, g, b in zip(PROMPTS, GOOD, BAD, strict=True)))
    result = runner.invoke(main, ["personalize", str(fresh), "-c", str(enough), "-n", "default"])
    assert result.exit_code == 1 and "bundle's own score" in result.output
    with pytest.raises(BundleError, match="missing.json: head file not found"):
        Scorer(fresh, threads=1, head=str(tmp_path / "missing.json"))


def test_personalize_profile_never_imports_torch(bundle: Path, tmp_path: Path) -> None:
    profile = tmp_path / "alice.json"
    code = (
        "import sys\n"
        "from lite_rm import Scorer\n"
        f"s = Scorer({str(bundle)!r}, threads=1)\n"
        f"r = s.personalize({PROMPTS!r}, {BAD!r}, {GOOD!r}, 'alice', profile={str(profile)!r})\n"
        f"print(s.score({PROMPTS[0]!r}, ['a', 'b'], head='alice').tolist(), r.fit_s)\n"
        "heavy = [m for m in ('torch', 'transformers', 'optimum') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert read_head(profile).name == "alice"
    assert "alice" not in read_manifest(bundle).heads  # a profile leaves the bundle alone
    scorer = Scorer(bundle, threads=1)
    assert scorer.load_head(profile) == "alice" and "alice" in scorer.heads


def test_interrupted_head_write_leaves_the_bundle_as_it_was(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lite_rm.scoring.heads as heads

    scorer = Scorer(fresh, threads=1)
    save_into_bundle(fresh, _head(scorer, "alice", 1))
    before = (fresh / MANIFEST_FILE).read_text()
    old_file = read_manifest(fresh).heads["alice"]

    def crash(path: Path, data: object, **options: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(heads, "write_json_atomic", crash)
    with pytest.raises(KeyboardInterrupt):
        save_into_bundle(fresh, _head(scorer, "alice", 2))
    assert (fresh / MANIFEST_FILE).read_text() == before
    manifest = read_manifest(fresh, verify=True)
    assert manifest.heads["alice"] == old_file
    assert np.array_equal(read_head(fresh / old_file).weight, _head(scorer, "alice", 1).weight)


def test_head_of_another_model_or_size_is_refused(bundle: Path, tmp_path: Path) -> None:
    scorer = Scorer(bundle, threads=1)
    other = _head(scorer, "bob", 3)
    write_head(tmp_path / "bob.json", LinearHead("bob", other.weight, backbone="0" * 64))
    with pytest.raises(BundleError, match="another model"):
        scorer.load_head(tmp_path / "bob.json")
    write_head(tmp_path / "small.json", LinearHead("small", other.weight[:5]))
    with pytest.raises(BundleError, match="5 dimensions"):
        scorer.load_head(tmp_path / "small.json")
    (tmp_path / "junk.json").write_text('{"format": "lite-rm-head", "format_version": 1, "name": "x", "weight": "no"}')
    with pytest.raises(BundleError, match="junk.json.*weight"):
        scorer.load_head(tmp_path / "junk.json")


def test_old_bundle_without_embedding_still_scores_and_explains(fresh: Path) -> None:
    import onnx

    from lite_rm.scoring.bundle import FileEntry

    model = onnx.load(str(fresh / "model.onnx"))
    keep = [o for o in model.graph.output if o.name != "embedding"]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    onnx.save(model, str(fresh / "model.onnx"))
    data = json.loads((fresh / MANIFEST_FILE).read_text())
    for key in ("embedding", "heads"):
        data.pop(key)
    data["files"] = {k: v for k, v in data["files"].items() if not k.startswith("heads/")}
    data["files"]["model.onnx"] = FileEntry.of(fresh / "model.onnx").to_dict()
    (fresh / MANIFEST_FILE).write_text(json.dumps(data))
    shutil.rmtree(fresh / "heads")
    scorer = Scorer(fresh, threads=1)
    assert scorer.score(PROMPTS[0], GOOD[:2]).shape == (2,)
    with pytest.raises(BundleError, match="exported before heads"):
        scorer.embed_pairs(PROMPTS[:1], GOOD[:1])
    with pytest.raises(BundleError, match="exported before heads"):
        save_into_bundle(fresh, LinearHead("x", np.ones(32, dtype=np.float32)))


def test_a_mean_pooled_checkpoint_exports_with_its_pooling(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from transformers import AutoTokenizer

    from lite_rm.exporting import export_bundle
    from lite_rm.scoring.encoding import InputRule
    from lite_rm.training.modeling import load_reward_model, save_checkpoint, use_pooling

    model = use_pooling(load_reward_model(tiny_checkpoint, seed=0), "mean")
    checkpoint = save_checkpoint(model, AutoTokenizer.from_pretrained(tiny_checkpoint), tmp_path / "mean", InputRule(max_length=128))
    valid = tmp_path / "valid.jsonl"
    valid.write_text("".join(json.dumps({"prompt": p, "chosen": g, "rejected": b}) + "\n"
                             for p, g, b in zip(PROMPTS, GOOD, BAD, strict=True)))
    manifest = export_bundle(checkpoint, tmp_path / "bundle", validation=valid)  # fp32 parity vs the mean-pooled model
    assert manifest.parity["fp32"]["passed"]
    scorer = Scorer(tmp_path / "bundle", threads=1)
    assert scorer.manifest.embedding_dim == 32  # the mean is the score layer's input: one part
    np.testing.assert_allclose(scorer.get_head("default").scores(scorer.embed_pairs(PROMPTS, GOOD)),
                               scorer.score_pairs(PROMPTS, GOOD), atol=1e-5)


# -- finite scores (issue 25): heads, mixtures and calibration are bounded when written and read ----------

def _head_dict(dim: int, weight: float = 0.1, bias: float = 0.0, scale: float = 1.0) -> dict:
    return {"format": "lite-rm-head", "format_version": 1, "name": "h", "dim": dim, "weight": [weight] * dim,
            "bias": bias, "calibration": {"method": "platt", "scale": scale}}


@pytest.mark.parametrize(("field", "value", "named"), [
    ("weight", 1e308, "weight[0]"), ("weight", 2e4, "weight[0]"), ("bias", 1e308, "'bias'"),
    ("scale", 1e308, "calibration.scale"), ("scale", 1e5, "calibration.scale")])
def test_unbounded_heads_are_refused_when_read_and_written(tmp_path: Path, field: str, value: float,
                                                           named: str) -> None:
    data = _head_dict(4, **{field: value})
    path = tmp_path / "h.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match=named.replace("[", r"\[")):
        read_head(path)
    head = LinearHead("h", np.full(4, data["weight"][0], dtype=np.float64), data["bias"])
    if field != "scale":
        with pytest.raises(BundleError, match=f"head 'h'.*{named.replace('[', r'.')}"):
            write_head(tmp_path / "out.json", head)
        assert not (tmp_path / "out.json").exists()


def test_an_unbounded_manifest_calibration_is_refused(fresh: Path) -> None:
    data = json.loads((fresh / MANIFEST_FILE).read_text())
    data["calibration"]["scale"] = 1e308
    (fresh / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(BundleError, match="calibration.scale"):
        read_manifest(fresh)


def test_unbounded_mixture_weights_are_refused(bundle: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    scorer = Scorer(bundle, threads=1)
    with pytest.raises(ValueError, match="head\\['default'\\]"):
        scorer.score_pairs(PROMPTS[:2], GOOD[:2], head={"default": 1e308})
    result = run_cli("score", str(bundle), "-i", "-", "-o", "-", "--head", "default=1e308", "--head", "x=1")
    assert result.returncode == 2 and "head 'default'" in result.stderr and "Traceback" not in result.stderr


def test_a_non_finite_score_is_an_error_not_a_nan(bundle: Path) -> None:
    scorer = Scorer(bundle, threads=1)
    dim = scorer.manifest.embedding_dim
    assert dim is not None
    scorer._heads.loaded["broken"] = LinearHead("broken", np.full(dim, np.inf, dtype=np.float32))  # past every check
    with pytest.raises(BundleError, match="non-finite score"):
        scorer.score_pairs(PROMPTS[:3], GOOD[:3], head="broken")


def test_any_head_mixture_and_calibration_a_bundle_accepts_scores_finitely(bundle: Path) -> None:
    from dataclasses import replace

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from lite_rm.scoring.bundle import MAX_MAGNITUDE, Calibration

    scorer = Scorer(bundle, threads=1)
    dim = scorer.manifest.embedding_dim
    assert dim is not None
    magnitude = st.floats(-MAX_MAGNITUDE, MAX_MAGNITUDE, allow_nan=False)
    scale = st.floats(0, MAX_MAGNITUDE, exclude_min=True)
    texts = (PROMPTS[:4], GOOD[:2] + BAD[:2], BAD[:2] + GOOD[:2])

    @settings(max_examples=40, deadline=None)
    @given(weights=st.lists(magnitude, min_size=dim, max_size=dim), bias=magnitude, head_scale=scale,
           bundle_scale=scale, mix=st.tuples(magnitude, magnitude))
    def check(weights: list[float], bias: float, head_scale: float, bundle_scale: float,
              mix: tuple[float, float]) -> None:
        data = {**_head_dict(dim, scale=head_scale), "weight": weights, "bias": bias}
        scorer._heads.loaded["h"] = LinearHead.from_dict(data)  # what a bundle or profile reader accepts
        scorer._heads.manifest = replace(scorer.manifest, calibration=Calibration.from_dict({"scale": bundle_scale}))
        for head in ("h", "default", {"h": mix[0], "default": mix[1]}):
            assert np.all(np.isfinite(scorer.score_pairs(texts[0], texts[1], head=head)))
            p = scorer.compare(*texts, head=head).probabilities
            assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))

    check()


def test_personalize_counts_distinct_comparisons(fresh: Path, tmp_path: Path) -> None:
    same = tmp_path / "same.jsonl"
    same.write_text((json.dumps({"prompt": PROMPTS[0], "chosen": GOOD[0], "rejected": BAD[0]}) + "\n") * 10)
    result = CliRunner().invoke(main, ["personalize", str(fresh), "-c", str(same), "-n", "alice"])
    assert result.exit_code == 1 and "1.000" not in result.output
    assert "10 comparisons given, only 1 distinct" in result.output and "at least 4 distinct" in result.output
    rng = np.random.default_rng(2)
    prior = LinearHead("default", rng.normal(size=8).astype(np.float32))
    with pytest.raises(ValueError, match="only 3 distinct"):
        fit_head(np.repeat(rng.normal(size=(3, 8)), 4, axis=0), prior, "u")
    rows = rng.normal(size=(6, 8))
    _, report = fit_head(np.vstack([rows, rows, rows]), prior, "u")
    assert report.comparisons == 6 and report.extra["duplicates_dropped"] == 12


def test_a_head_given_twice_is_a_usage_error(bundle: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("score", str(bundle), "-i", "-", "-o", "-", "--head", "default=0.5", "--head", "default=0.5")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "head 'default' is given twice" in result.stderr


def test_a_tie_counts_half_in_the_training_accuracy() -> None:
    # Every comparison also given the other way round: the head fit is exactly zero, every comparison a tie.
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(6, 8))
    head, report = fit_head(np.vstack([rows, -rows]), LinearHead("default", rng.normal(size=8).astype(np.float32)), "u")
    assert not head.weight.any() and report.train_accuracy == 0.5


def test_personalize_at_or_below_chance_warns_and_records_it(fresh: Path, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    # Each comparison also given the other way round: no preference to learn, held-out accuracy <= 0.5.
    rng = np.random.default_rng(3)
    prior = LinearHead("default", rng.normal(size=8).astype(np.float32))
    rows = rng.normal(size=(6, 8))
    with caplog.at_level("WARNING", logger="lite_rm.scoring.personalization"):
        head, report = fit_head(np.vstack([rows, -rows]), prior, "u")
    assert report.cv_accuracy <= 0.5 and "at or below chance" in report.extra["warning"]
    assert "at or below chance" in caplog.text and head.provenance["warning"] == report.extra["warning"]
    both = tmp_path / "both.jsonl"
    both.write_text("".join(json.dumps({"prompt": p, "chosen": x, "rejected": y}) + "\n"
                            for p, g, b in zip(PROMPTS[:8], GOOD, BAD, strict=False) for x, y in ((g, b), (b, g))))
    result = CliRunner().invoke(main, ["personalize", str(fresh), "-c", str(both), "-n", "coin", "--json"])
    assert result.exit_code == 0, result.output
    assert "at or below chance" in json.loads(result.stdout)["warning"]
    saved = read_head(fresh / read_manifest(fresh).heads["coin"])
    assert "at or below chance" in saved.provenance["warning"]
