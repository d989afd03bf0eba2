"""Export: bundle contents, parity check and its override, int8 graph, presets, calibration, atomicity."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from lite_rm.exporting.calibration import expected_calibration_error, fit_temperature
from lite_rm.exporting.quantization import QuantPreset, available_presets, detect_preset, load_preset
from lite_rm.scoring.bundle import FORMAT_VERSION, read_manifest


def _validation_file(tmp: Path, data_dir: Path, n: int = 40) -> Path:
    """A small generic-format preference file of real DSP pairs (so the check sees real text)."""
    from lite_rm.data import load_preferences

    pairs = load_preferences(data_dir / "dsp" / "test.json", domain="academy").pairs[:n]
    path = tmp / "valid.jsonl"
    path.write_text("".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n"
                            for p in pairs))
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, data_dir: Path) -> dict[str, Path]:
    from lite_rm.exporting import export_bundle

    tmp = tmp_path_factory.mktemp("export")
    valid = _validation_file(tmp, data_dir)
    fp32 = tmp / "fp32"
    export_bundle(tiny_checkpoint, fp32, validation=valid)
    # A random tiny model has near-zero margins: int8 flips many orders, so the override is needed.
    int8 = tmp / "int8"
    export_bundle(tiny_checkpoint, int8, int8=True, preset="avx512_vnni", validation=valid, accept_parity_loss=True)
    return {"fp32": fp32, "int8": int8, "valid": valid, "tmp": tmp}


def test_fp32_bundle_contents_and_parity(exported: dict[str, Path], tiny_checkpoint: Path) -> None:
    from lite_rm.files import folder_digest

    folder = exported["fp32"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "heads", "manifest.json", "model.onnx", "special_tokens_map.json", "tokenizer.json",
        "tokenizer_config.json", "vocab.txt"]
    manifest = read_manifest(folder, verify=True).data
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["precision"] == "fp32" and manifest["quantization"] is None
    assert manifest["max_length"] == 128 and manifest["input_rule"]["max_length"] == 128
    assert manifest["max_positions"] == 512
    assert sorted(manifest["files"]) == sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                                               if p.is_file() and p.name != "manifest.json")
    assert manifest["heads"] == {"default": "heads/default.json"} and manifest["embedding"]["dim"] == 64
    assert manifest["source"]["sha256"] == folder_digest(tiny_checkpoint)
    parity = manifest["parity"]
    assert parity["passed"] and not parity["overridden"]
    assert parity["validation"]["pairs"] == 40
    assert parity["fp32"]["max_abs_diff"] <= 1e-4
    cal = manifest["calibration"]
    assert cal["scale"] > 0 and {"ece_before", "ece_after", "temperature"} <= set(cal)


def test_int8_graph_is_quantized_and_override_is_marked(exported: dict[str, Path]) -> None:
    import onnx

    manifest = read_manifest(exported["int8"]).data
    assert manifest["precision"] == "int8" and manifest["quantization"]["name"] == "avx512_vnni"
    assert manifest["parity"]["overridden"] is True or manifest["parity"]["passed"] is True
    assert {"order_agreement", "accuracy", "accuracy_loss"} <= set(manifest["parity"]["int8"])
    ops = [n.op_type for n in onnx.load(str(exported["int8"] / "model.onnx")).graph.node]
    assert ops.count("MatMulInteger") + ops.count("DynamicQuantizeMatMul") >= 4  # 2 layers x (out, ffn1, ffn2)
    assert ops.count("QAttention") == 2
    # The pooler and classifier head stay fp32 (onnxruntime would otherwise rewrite them to quantized MatMuls).
    nodes = onnx.load(str(exported["int8"] / "model.onnx")).graph.node
    assert not [n.name for n in nodes if n.op_type == "MatMulInteger" and ("classifier" in n.name or "pooler" in n.name)]
    assert (exported["int8"] / "model.onnx").stat().st_size < (exported["fp32"] / "model.onnx").stat().st_size / 2


def test_dynamic_int8_scores_do_not_depend_on_the_other_texts(exported: dict[str, Path], data_dir: Path) -> None:
    """Dynamic int8 shares one activation scale per model call: the Scorer's default (one text per call)
    gives every text the score it gets alone, where a batch of 32 moves it with its neighbours."""
    from lite_rm.data import load_preferences
    from lite_rm.scoring.scorer import Scorer

    pairs = load_preferences(data_dir / "dsp" / "test.json", domain="academy").pairs[:24]
    prompts, responses = [p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs]
    alone = np.array([Scorer(exported["int8"], threads=1).score_pairs(prompts[i:i + 1], responses[i:i + 1])[0]
                      for i in range(0, len(prompts), 6)])
    default = Scorer(exported["int8"], threads=2, dedupe=False).score_pairs(prompts, responses)[::6]
    np.testing.assert_array_equal(default, alone)
    batched = Scorer(exported["int8"], threads=2, streams=1, batch_size=32, dedupe=False).score_pairs(
        prompts, responses)[::6]
    assert not np.array_equal(batched, alone)  # the effect the default avoids


def test_default_blockwise_int8_keeps_orders(exported: dict[str, Path], tiny_checkpoint: Path) -> None:
    import onnx

    from lite_rm.exporting import export_bundle

    out = exported["tmp"] / "blockwise"
    # A preset chain: the first preset that passes is kept, every attempt is recorded.
    manifest = export_bundle(tiny_checkpoint, out, int8=True, validation=exported["valid"],
                             preset="avx512_vnni,blockwise")
    attempts = manifest.parity.get("int8_attempts") or [manifest.parity["int8"]]
    assert manifest.quantization["name"] == attempts[-1]["preset"] and manifest.parity["passed"]
    assert all(not a["passed"] for a in attempts[:-1])
    manifest = export_bundle(tiny_checkpoint, out, int8=True, validation=exported["valid"], preset="blockwise",
                             overwrite=True)  # replaces the bundle written just above
    assert manifest.quantization["name"] == "blockwise" and manifest.parity["passed"]
    assert manifest.parity["int8"]["order_agreement"] >= 0.99
    nodes = onnx.load(str(out / "model.onnx")).graph.node
    ops = [n.op_type for n in nodes]
    assert ops.count("MatMulNBits") == 12  # 2 layers x (q, k, v, attention out, ffn up, ffn down)
    assert "Attention" not in ops and "QAttention" not in ops
    assert [n.name for n in nodes if n.op_type == "Gemm" and "classifier" in n.name]  # head stays fp32
    # Word and position embeddings: int8 rows, one scale per row.
    assert len([n for n in nodes if n.name.endswith("_dequant")]) == 2
    assert (out / "model.onnx").stat().st_size < (exported["fp32"] / "model.onnx").stat().st_size / 3


def test_failed_parity_writes_nothing(exported: dict[str, Path], tiny_checkpoint: Path) -> None:
    from lite_rm.exporting import ParityError, export_bundle

    out = exported["tmp"] / "strict"
    with pytest.raises(ParityError, match="accept-parity-loss"):
        # fp32 can never be off by less than 0: an impossible tolerance forces the failure quickly.
        export_bundle(tiny_checkpoint, out, validation=exported["valid"], fp32_tolerance=-1.0)
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".strict")]


def test_exclude_last_layers_keeps_them_fp32(tiny_checkpoint: Path, tmp_path: Path) -> None:
    import onnx

    from lite_rm.exporting.onnx import onnx_export, optimize
    from lite_rm.exporting.quantization import nodes_to_exclude, quantize

    model = optimize(onnx_export(tiny_checkpoint, tmp_path), 2)
    preset = load_preset("avx512_vnni").with_overrides(exclude_last_layers=1)
    excluded = nodes_to_exclude(model, preset)
    assert "Attention_1" in excluded and any("/layer.1/" in n for n in excluded)
    assert not any("/layer.0/" in n for n in excluded)
    ops = [n.op_type for n in onnx.load(str(quantize(model, tmp_path / "q", preset))).graph.node]
    assert ops.count("QAttention") == 1 and ops.count("Attention") == 1


def test_presets() -> None:
    assert {"avx512_vnni", "avx2", "arm64", "blockwise", "blockwise_w8"} <= set(available_presets())
    assert load_preset("blockwise").method == "blockwise"
    assert load_preset("blockwise_w8").accuracy_level == 0
    from lite_rm.exporting import ExportOptions

    default_chain = [p.name for p in ExportOptions(int8=True).resolved_presets()]
    assert default_chain == [detect_preset(), "blockwise", "blockwise_w8"]  # "auto" resolved for this CPU
    with pytest.raises(ValueError, match="block_size"):
        QuantPreset(name="bad", method="blockwise", block_size=100)
    assert detect_preset() in available_presets()
    avx2 = load_preset("avx2")
    assert avx2.per_channel and avx2.reduce_range and "MatMul" in avx2.operators
    with pytest.raises(ValueError, match="choose one of: auto, arm64"):
        load_preset("nope")
    with pytest.raises(ValueError, match="optimum_config"):
        QuantPreset(name="bad", optimum_config="sse")


def test_preset_from_toml_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('optimum_config = "avx2"\nper_channel = false\nexclude_last_layers = 2\n')
    preset = load_preset(str(path))
    assert preset.name == "mine" and not preset.per_channel and preset.exclude_last_layers == 2
    path.write_text("per_channel = [")
    with pytest.raises(ValueError, match="invalid TOML"):
        load_preset(str(path))


def test_calibration_recovers_temperature() -> None:
    rng = np.random.default_rng(0)
    diff = rng.normal(0, 2.0, 4000)
    # Observed preferences follow sigmoid(0.5 * diff): the raw scores are overconfident by 2x.
    chosen_first = rng.random(4000) < 1 / (1 + np.exp(-0.5 * diff))
    chosen = np.where(chosen_first, diff, -diff)
    fit = fit_temperature(chosen, np.zeros_like(chosen))
    assert fit.scale == pytest.approx(0.5, abs=0.05)
    assert fit.temperature == pytest.approx(2.0, rel=0.1)
    assert fit.ece_after < fit.ece_before


def test_ece() -> None:
    assert expected_calibration_error(np.array([0.9, 0.9]), np.array([1, 1])) == pytest.approx(0.1)
    assert expected_calibration_error(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.0)


def test_export_cli(tiny_checkpoint: Path, exported: dict[str, Path]) -> None:
    from lite_rm.cli import main

    runner = CliRunner()
    out = exported["tmp"] / "cli"
    result = runner.invoke(main, ["export", str(tiny_checkpoint), "-o", str(out), "--validation",
                                  str(exported["valid"])])
    assert result.exit_code == 0, result.output
    assert "fp32 ONNX vs PyTorch" in result.output and (out / "manifest.json").exists()
    missing = runner.invoke(main, ["export", str(exported["tmp"] / "nope"), "-o", str(out), "--overwrite"])
    assert missing.exit_code == 1 and "config.json is missing" in missing.output
    bad = runner.invoke(main, ["export", str(tiny_checkpoint), "-o", str(out), "--int8", "--preset", "zz",
                               "--validation", str(exported["valid"]), "--overwrite"])
    assert bad.exit_code == 1 and "unknown preset 'zz'" in bad.output


def test_calibration_is_bounded_and_flags_no_signal() -> None:
    from lite_rm.exporting.calibration import SCALE_MAX, SCALE_MIN

    rng = np.random.default_rng(1)
    chance = fit_temperature(rng.normal(0, 1, 400), rng.normal(0, 1, 400))  # a model at chance level
    assert chance.degenerate and chance.reason.startswith("no signal")
    assert 0.05 <= chance.temperature <= 100 and SCALE_MIN <= chance.scale <= SCALE_MAX
    worse = fit_temperature(np.zeros(200), np.linspace(0.1, 3, 200))  # every pair inverted
    assert worse.scale == SCALE_MIN and worse.degenerate
    separable = fit_temperature(np.linspace(0.01, 0.05, 200), np.zeros(200))  # no finite optimum
    assert separable.scale == SCALE_MAX and separable.degenerate and "bound" in separable.reason
    assert separable.to_dict()["degenerate"] is True


def test_degenerate_calibration_is_recorded_and_warned(exported: dict[str, Path]) -> None:
    # The tiny random model orders the validation pairs at chance level.
    cal = read_manifest(exported["fp32"]).data["calibration"]
    assert cal["degenerate"] is True and cal["reason"].startswith("no signal")
    assert 0.05 <= cal["temperature"] <= 100


def _with_split(tmp: Path, checkpoint: Path, data_dir: Path) -> tuple[Path, dict[str, Any]]:
    """A copy of the tiny checkpoint whose lite_rm.json records a held-out split of two small real sets."""
    from lite_rm.data import load_preferences
    from lite_rm.scoring.encoding import InputRule
    from lite_rm.training.checkpoint import HeldOutSet, ValidationSplit, write_meta

    sets = {}
    for name, source, domain in (("academy", "dsp/test.json", "academy"), ("helpful", "general/helpful.test.json",
                                                                           None)):
        pairs = load_preferences(data_dir / source, domain=domain).pairs[:300]
        path = tmp / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n"
                                for p in pairs))
        sets[name] = path
    folder = tmp / "with-split"
    shutil.copytree(checkpoint, folder)
    split = ValidationSplit(seed=3, sets=(HeldOutSet("helpful", str(sets["helpful"]), 0.2),
                                          HeldOutSet("academy", str(sets["academy"]), 0.3, "academy")))
    write_meta(folder, InputRule(max_length=128), validation_split=split.to_dict())
    return folder, {"split": split, "files": sets}


def test_validation_pairs_are_exactly_the_held_out_split(tmp_path: Path, tiny_checkpoint: Path,
                                                         data_dir: Path) -> None:
    from lite_rm.data import load_preferences, split_by_prompt
    from lite_rm.exporting import ExportOptions, validation_pairs

    folder, info = _with_split(tmp_path, tiny_checkpoint, data_dir)
    got = validation_pairs(folder, ExportOptions(validation_pairs=10_000))
    assert got.held_out is True and "held-out split" in got.source
    train, held = [], []
    for s in info["split"].sets:
        t, v = split_by_prompt(load_preferences(s.source).pairs, s.valid_fraction, 3)
        train += t
        held.append(v)
    assert got.pairs == held[1] + held[0]  # the domain set first, then the general one
    assert not {p.prompt for p in got.pairs} & {p.prompt for p in train}  # never a training prompt
    sampled = validation_pairs(folder, ExportOptions(validation_pairs=10, seed=5)).pairs
    assert len(sampled) == 10 and set(map(id, sampled)) and all(p in got.pairs for p in sampled)


def test_a_checkpoint_without_a_split_warns_that_pairs_may_overlap(tiny_checkpoint: Path, data_dir: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    from lite_rm.exporting import ExportOptions, validation_pairs

    got = validation_pairs(tiny_checkpoint, ExportOptions(data_dir=data_dir, validation_pairs=20))
    assert got.held_out is False and len(got.pairs) == 20 and got.to_dict()["held_out"] is False
    assert "records no validation split" in caplog.text and "overlap the training pairs" in caplog.text


def test_export_cli_json_held_out_split_and_stale_cleanup(tmp_path: Path, tiny_checkpoint: Path, data_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from lite_rm.cli import main

    folder, _ = _with_split(tmp_path, tiny_checkpoint, data_dir)
    out = tmp_path / "bundle"
    stale = tmp_path / f".bundle.tmp-{2 ** 30 + 3}-0badf00d"  # left by a killed export
    stale.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "systmp"))
    (tmp_path / "systmp" / f"lite-rm-export-{2 ** 30 + 3}-abc").mkdir(parents=True)
    result = CliRunner().invoke(main, ["export", str(folder), "-o", str(out), "--json", "--threads", "0",
                                       "--validation-pairs", "30"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["bundle"] == str(out) and summary["precision"] == "fp32"
    assert summary["parity"]["validation"] == {"source": summary["parity"]["validation"]["source"], "pairs": 30,
                                               "held_out": True}
    assert read_manifest(out).data["parity"]["validation"]["held_out"] is True
    assert not stale.exists() and list((tmp_path / "systmp").iterdir()) == []


def test_bundle_loads_in_optimum_and_sentence_transformers(exported: dict[str, Path]) -> None:
    import torch
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from sentence_transformers import CrossEncoder
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from lite_rm.scoring.scorer import Scorer

    folder = exported["fp32"]
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    assert tok.truncation is None and tok.padding is None  # plain tokenizers users get the raw text
    prompts, responses = ["How do I boil an egg?", "Hi"], ["Put it in boiling water.", "Hello! How can I help?"]
    ours = Scorer(folder).score_pairs(prompts, responses)
    model = ORTModelForSequenceClassification.from_pretrained(folder, local_files_only=True)
    hf_tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    logits = model(**hf_tok(prompts, responses, return_tensors="pt", padding=True)).logits
    assert logits.shape == (2, 1)
    np.testing.assert_allclose(logits[:, 0].numpy(), ours, atol=1e-5)  # short inputs: no truncation
    cross = CrossEncoder(str(folder), backend="onnx", local_files_only=True)
    scores = cross.predict(list(zip(prompts, responses, strict=True)), activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(scores, ours, atol=1e-5)


@pytest.mark.parametrize("model_type", ["bert", "evilbert"])
def test_auto_map_never_runs_code(tmp_path: Path, tiny_checkpoint: Path, exported: dict[str, Path],
                                  model_type: str) -> None:
    from lite_rm.cli import main

    folder = tmp_path / "remote"
    shutil.copytree(tiny_checkpoint, folder)
    marker = tmp_path / "code-ran"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                    "from transformers import BertConfig as EvilConfig, "
                                    "BertForSequenceClassification as EvilModel\n")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type=model_type, auto_map={"AutoConfig": "evil.EvilConfig",
                                                   "AutoModelForSequenceClassification": "evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    out = tmp_path / "bundle"
    result = CliRunner().invoke(main, ["export", str(folder), "-o", str(out), "--validation",
                                       str(exported["valid"])], input="y\ny\n")
    assert not marker.exists()
    if model_type == "bert":  # a built-in architecture: exported without the custom code, auto_map dropped
        assert result.exit_code == 0, result.output
        assert "auto_map" not in json.loads((out / "config.json").read_text())
    else:
        assert result.exit_code == 1 and "never runs code" in result.output and "Traceback" not in result.output
        assert not out.exists()


def test_parity_gate_tolerates_near_tie_flips_and_refuses_confident_ones() -> None:
    import numpy as np

    from lite_rm.exporting import ExportOptions
    from lite_rm.exporting.parity import check_parity

    rng = np.random.default_rng(0)
    n = 400
    # 10% near-ties, half of them ordered against the preference: fp32 itself cannot call them
    ties = np.where(np.arange(40) % 2 == 0, 1.0, -1.0) * rng.uniform(0.01, 0.05, 40)
    reference = np.concatenate([rng.uniform(1.0, 3.0, n - 40), ties, np.zeros(n)])
    near_tie_flips = reference.copy()
    near_tie_flips[n - 40:n - 20] *= -1  # 20 near-ties (5% of pairs) change order, 10 each way
    passed = check_parity(reference, near_tie_flips, ExportOptions(), "int8", reference_scale=1.0)
    assert passed.order_agreement == pytest.approx(0.95) and passed.confident_agreement == 1.0
    assert passed.confident_pairs == n - 40 and passed.accuracy_loss == pytest.approx(0.0) and passed.passed
    confident_flips = reference.copy()
    confident_flips[:8] = -1.0  # 2% of the confident pairs flip: a user would notice
    failed = check_parity(reference, confident_flips, ExportOptions(max_accuracy_loss=1.0), "int8", 1.0)
    assert not failed.passed and "confident" in failed.problems[0]
    strict = check_parity(reference, near_tie_flips, ExportOptions(max_order_change=0.01, max_accuracy_loss=1.0),
                          "int8", 1.0)
    assert not strict.passed and "flips the preference order of 5.0%" in strict.problems[0]


def test_export_cli_gate_flags_reach_the_check(tiny_checkpoint: Path, exported: dict[str, Path]) -> None:
    """--min-confident-agreement, --confidence-band and --max-order-change are the limits the int8 check
    holds the candidate to, and the manifest records them; the all-pairs cap is off unless given."""
    import json

    from lite_rm.cli import main

    out = exported["tmp"] / "cli-gate"
    args = ["export", str(tiny_checkpoint), "-o", str(out), "--validation", str(exported["valid"]), "--int8",
            "--preset", "blockwise"]
    result = CliRunner().invoke(main, [*args, "--min-confident-agreement", "0.95", "--confidence-band", "0.2",
                                       "--max-order-change", "0", "--accept-parity-loss", "--json"])
    assert result.exit_code == 0, result.output
    check = json.loads(result.stdout)["parity"]["int8"]
    assert (check["min_confident_agreement"], check["confidence_band"], check["max_order_change"]) == (0.95, 0.2, 0.0)
    assert "confident_agreement" in check and "confident_pairs" in check
    default = CliRunner().invoke(main, [*args, "--accept-parity-loss", "--json", "--overwrite"])
    assert default.exit_code == 0, default.output
    assert json.loads(default.stdout)["parity"]["int8"]["max_order_change"] is None
    bad = CliRunner().invoke(main, [*args, "--confidence-band", "0.5"])
    assert bad.exit_code == 2 and "--confidence-band" in bad.output
