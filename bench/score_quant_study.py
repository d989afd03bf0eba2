"""Which int8 quantization keeps a reward model's pair orders? A study behind the presets' defaults.

Every variant quantizes the same exported fp32 graph of one checkpoint and is scored by the lite-rm
Scorer on the export's validation pairs (the validation split of the training data, never the test
set, since the result picks defaults). For each: order agreement with fp32, accuracy, size, speed.
Speed is timed interleaved over chunks (the CPU is shared) and reported relative to fp32.

    .venv/bin/python bench/score_quant_study.py --checkpoint bench/.work/bt-academy

Writes bench/scoring_quant_study.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HEAD = ("^/bert/pooler/", "^/classifier/")


def variants(base: str) -> dict[str, tuple[str, object]]:
    """name -> (graph: raw|optimized, preset or 'optimum-default')."""
    from lite_rm.exporting.quantization import load_preset

    p = load_preset(base)
    return {
        "optimum default (raw graph, per-tensor, head int8)": ("raw", "optimum-default"),
        "fused, per-tensor, head int8": ("opt", p.with_overrides(per_channel=False, exclude_nodes=())),
        "fused, per-tensor, head fp32": ("opt", p.with_overrides(per_channel=False)),
        "fused, per-channel, head int8": ("opt", p.with_overrides(exclude_nodes=())),
        f"fused, per-channel, head fp32 (preset {base})": ("opt", p),
        "fused, per-channel, head + last layer fp32": ("opt", p.with_overrides(exclude_last_layers=1)),
        "fused, per-channel, head fp32, embeddings fp32": ("opt", p.with_overrides(operators=("MatMul", "Attention"))),
        "fused, per-channel, avx2 preset (7-bit)": ("opt", load_preset("avx2")),
        "raw graph, per-channel, head fp32": ("raw", p.with_overrides(operators=("MatMul", "Gather"))),
        "block-wise 8-bit, block 128 (preset blockwise)": ("unfused", load_preset("blockwise")),
        "block-wise 8-bit, block 32": ("unfused", load_preset("blockwise").with_overrides(block_size=32)),
        "block-wise 8-bit weight-only, block 64 (preset blockwise_w8)": ("unfused", load_preset("blockwise_w8")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="bench/.work/bt-academy")
    ap.add_argument("--preset", default="avx512_vnni")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--validation-pairs", type=int, default=512)
    ap.add_argument("--static", action="store_true", help="also try static (QDQ) quantization")
    ap.add_argument("--work", default="bench/.work/quant-study")
    ap.add_argument("--output", default="bench/scoring_quant_study")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # imported here so that bench/report.py can render the table without the export extra
    from lite_rm.exporting import ExportOptions, validation_pairs
    from lite_rm.exporting.onnx import bundle_tokenizer, model_config, onnx_export, optimize
    from lite_rm.exporting.parity import calibration_feeds
    from lite_rm.exporting.quantization import load_preset, quantize
    from lite_rm.exporting.writer import stage_bundle
    from lite_rm.scoring.bundle import Calibration, Manifest
    from lite_rm.scoring.scorer import Scorer
    from lite_rm.training.checkpoint import input_rule_of

    ckpt, work = Path(args.checkpoint), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    validation = validation_pairs(ckpt, ExportOptions(validation_pairs=args.validation_pairs))
    pairs, source = validation.pairs, validation.source
    n = len(pairs)
    rule = input_rule_of(ckpt)
    raw = work / "raw" / "model.onnx"
    if not raw.exists():
        raw = onnx_export(ckpt, work, model_config(ckpt))
    opt = work / "optimized-fused" / "model_optimized.onnx"
    if not opt.exists():
        opt = optimize(raw, 2)
    unfused = work / "optimized-multi_head" / "model_optimized.onnx"
    if not unfused.exists():
        unfused = optimize(raw, 2, attention="multi_head")
    tok_dir = bundle_tokenizer(ckpt, work)
    tok = tok_dir / "tokenizer.json"
    manifest = Manifest(folder=Path(), input_rule=rule, calibration=Calibration())
    models = {"fp32 (fused)": opt}
    todo = variants(args.preset)
    if args.static:
        todo["fused, static QDQ per-channel, head fp32"] = ("opt", load_preset(args.preset).with_overrides(static=True))
    for i, (name, (graph, preset)) in enumerate(todo.items()):
        out = work / f"v{i}"
        src = {"raw": raw, "opt": opt, "unfused": unfused}[graph]
        if preset == "optimum-default":
            from optimum.onnxruntime import ORTQuantizer
            from optimum.onnxruntime.configuration import AutoQuantizationConfig

            if not (out / "model_quantized.onnx").exists():
                ORTQuantizer.from_pretrained(src.parent, file_name=src.name).quantize(
                    quantization_config=AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False),
                    save_dir=out)
            models[name] = out / "model_quantized.onnx"
        else:
            feeds = None
            if preset.static:  # type: ignore[union-attr]
                prompts = [p.prompt for p in pairs] * 2
                feeds = calibration_feeds(tok, prompts, [p.chosen for p in pairs] + [p.rejected for p in pairs], rule)
            try:
                models[name] = quantize(src, out, preset, feeds)  # type: ignore[arg-type]
            except Exception as err:  # a variant that cannot be built is reported, not fatal
                print(f"{name}: failed: {err}", file=sys.stderr)
    scorers = {name: Scorer(stage_bundle(work / f"b{i}", m, tok_dir, manifest), threads=args.threads,
                            batch_size=args.batch_size, dedupe=False) for i, (name, m) in enumerate(models.items())}
    seconds = {k: 0.0 for k in scorers}
    margins: dict[str, list[np.ndarray]] = {k: [] for k in scorers}
    chunk = 64
    for start in range(0, n, chunk):
        part = pairs[start:start + chunk]
        prompts = [p.prompt for p in part] * 2
        responses = [p.chosen for p in part] + [p.rejected for p in part]
        for name, s in scorers.items():
            t = time.perf_counter()
            out = s.score_pairs(prompts, responses).astype(np.float64)
            seconds[name] += time.perf_counter() - t
            margins[name].append(out[: len(part)] - out[len(part):])
        print(f"  {min(start + chunk, n)}/{n}", flush=True)
    m = {k: np.concatenate(v) for k, v in margins.items()}
    ref = m["fp32 (fused)"]
    rows = []
    for name, model in models.items():
        rows.append({
            "variant": name, "size_mb": model.stat().st_size / 1e6,
            "order_agreement_vs_fp32": float(np.mean((m[name] > 0) == (ref > 0))),
            "accuracy": float(np.mean(m[name] > 0)),
            "speed_vs_fp32": seconds["fp32 (fused)"] / seconds[name],
            "pairs_per_s": n / seconds[name],
            "mean_abs_margin_error": float(np.mean(np.abs(m[name] - ref))),
        })
    result = {"command": "python bench/score_quant_study.py " + " ".join(sys.argv[1:]), "checkpoint": str(ckpt),
              "validation": {"source": source, "pairs": n}, "threads": args.threads, "batch_size": args.batch_size,
              "fp32_mean_abs_margin": float(np.mean(np.abs(ref))), "rows": rows}
    Path(args.output + ".json").write_text(json.dumps(result, indent=2) + "\n")
    Path(args.output + ".md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict[str, Any]) -> str:
    """bench/scoring_quant_study.md: one row per quantization variant."""
    validation = result["validation"]
    lines = ["# int8 quantization study", "", f"Command: `{result['command']}`  ",
             "Machine: not recorded (the script does not write it into its JSON)  ",
             f"Checkpoint `{result['checkpoint']}`; {validation['pairs']} validation pairs ({validation['source']}); "
             f"{result['threads']} threads, batch {result['batch_size']}; "
             f"mean |fp32 margin| {result['fp32_mean_abs_margin']:.3f}", "",
             "| variant | MB | order agreement vs fp32 | accuracy | mean abs margin error | speed vs fp32 |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["rows"]:
        lines.append(f"| {r['variant']} | {r['size_mb']:.1f} | {r['order_agreement_vs_fp32']:.3f} "
                     f"| {r['accuracy']:.3f} "
                     f"| {r['mean_abs_margin_error']:.4f} | {r['speed_vs_fp32']:.2f}× |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
