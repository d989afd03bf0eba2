"""Scoring benchmark: lite-rm's torch-free Scorer against the ways people score a cross-encoder today.

In ONE process, on the same real pairs (DSP test, one domain, max length 256), the same threads and
batch size:

  (a) sentence-transformers ``CrossEncoder.predict``, PyTorch fp32 (the baseline);
  (b) Optimum's default ONNX dynamic int8 export (``AutoQuantizationConfig.avx512_vnni(is_static=False,
      per_channel=False)``, what sentence-transformers' ``export_dynamic_quantized_onnx_model`` does),
      scored with ``ORTModelForSequenceClassification`` in the same length-sorted loop as (a);
  (c) the lite-rm Scorer on an fp32 bundle and on an int8 bundle (``lite-rm export [--int8]``).

The CPU is shared with other jobs, so the methods are timed interleaved: every chunk of pairs is scored
by each method in turn, and each method's time is summed over the chunks. Contention then slows all
methods alike and the ratios hold. Cold start (import + open + first score) and peak memory are taken
in fresh subprocesses.

    .venv/bin/python bench/score_bench.py --checkpoint bench/.work/bt-academy --domain academy

Writes bench/scoring_results.json and bench/scoring_results.md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"speedup": 4.0, "agreement": 0.99, "accuracy_loss_pts": 0.5, "bundle_mb": 25.0, "cold_s": 0.5}


def machine() -> dict[str, object]:
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    import onnxruntime
    import torch

    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "torch": torch.__version__, "platform": platform.platform()}


def folder_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 1e6
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


# -- preparing the models -------------------------------------------------------------------------------


def fresh_head_checkpoint(work: Path) -> Path:
    """The real MiniLM with a seeded random one-output head (used when no trained checkpoint exists)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lite_rm.checkpoint import write_meta
    from lite_rm.encoding import InputRule
    from lite_rm.models import default_encoder_path

    out = work / "fresh-head"
    if not out.exists():
        torch.manual_seed(0)  # the head is created at load time
        model = AutoModelForSequenceClassification.from_pretrained(default_encoder_path(), num_labels=1)
        model.save_pretrained(out)
        AutoTokenizer.from_pretrained(default_encoder_path()).save_pretrained(out)
        write_meta(out, InputRule(max_length=256), stage="fresh-head")
    return out


def optimum_default_int8(checkpoint: Path, work: Path) -> Path:
    """(b): Optimum's export + default dynamic int8 quantization, as sentence-transformers documents it."""
    from optimum.onnxruntime import ORTModelForSequenceClassification, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    out = work / "optimum-default-int8"
    if not (out / "model_quantized.onnx").exists():
        fp32 = work / "optimum-fp32"
        ORTModelForSequenceClassification.from_pretrained(str(checkpoint), export=True).save_pretrained(fp32)
        config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)
        ORTQuantizer.from_pretrained(fp32).quantize(quantization_config=config, save_dir=out)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
            if (checkpoint / name).exists():
                shutil.copy(checkpoint / name, out / name)
    return out


def export(checkpoint: Path, out: Path, preset: str | None, args: argparse.Namespace) -> Path:
    if out.exists() and args.reuse:
        return out
    cmd = [str(Path(sys.executable).parent / "lite-rm"), "export", str(checkpoint), "--output", str(out),
           "--threads", str(args.threads), "--validation-pairs", str(args.validation_pairs)]
    if preset:
        # The benchmark measures whatever the int8 export gives; its parity figures are in the table.
        cmd += ["--int8", "--preset", preset, "--accept-parity-loss"]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return out


# -- the methods ------------------------------------------------------------------------------------------


class CrossEncoderMethod:
    """(a) sentence-transformers CrossEncoder in PyTorch fp32."""

    def __init__(self, checkpoint: Path, args: argparse.Namespace) -> None:
        import torch
        from sentence_transformers import CrossEncoder

        torch.set_num_threads(args.threads)
        self.torch = torch
        self.model = CrossEncoder(str(checkpoint), max_length=args.max_length, device="cpu")
        self.batch_size = args.batch_size

    def __call__(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        return np.asarray(self.model.predict(list(zip(prompts, responses, strict=True)), batch_size=self.batch_size,
                                             activation_fn=self.torch.nn.Identity(), show_progress_bar=False))


class OptimumMethod:
    """(b) ORTModelForSequenceClassification with the same sort-by-length batching as CrossEncoder.predict."""

    def __init__(self, folder: Path, args: argparse.Namespace) -> None:
        import onnxruntime as ort
        import torch
        from optimum.onnxruntime import ORTModelForSequenceClassification
        from transformers import AutoTokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        self.torch = torch
        self.model = ORTModelForSequenceClassification.from_pretrained(
            str(folder), file_name="model_quantized.onnx", session_options=options)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.args = args

    def __call__(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        order = np.argsort([-(len(p) + len(r)) for p, r in zip(prompts, responses, strict=True)])
        out = np.empty(len(prompts), dtype=np.float32)
        for start in range(0, len(order), self.args.batch_size):
            idx = order[start:start + self.args.batch_size]
            feats = self.tokenizer([prompts[i] for i in idx], [responses[i] for i in idx], padding=True,
                                   truncation=True, max_length=self.args.max_length, return_tensors="pt")
            with self.torch.inference_mode():
                out[idx] = self.model(**feats).logits[:, 0].numpy()
        return out


class ScorerMethod:
    """(c) the lite-rm Scorer."""

    def __init__(self, bundle: Path, args: argparse.Namespace, dedupe: bool = True) -> None:
        from lite_rm.scorer import Scorer

        self.scorer = Scorer(bundle, threads=args.threads, batch_size=args.batch_size, dedupe=dedupe)

    def __call__(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        return self.scorer.score_pairs(prompts, responses)


COLD_SNIPPETS = {
    "a": ("import time; t=time.perf_counter(); import torch; torch.set_num_threads({threads}); "
          "from sentence_transformers import CrossEncoder; m=CrossEncoder({path!r}, max_length={max_length}, device='cpu'); "  # noqa: E501
          "m.predict([(P[0], R[0])]); cold=time.perf_counter()-t; m.predict(list(zip(P, R)), batch_size={batch_size})"),
    "b": ("import time; t=time.perf_counter(); import sys; sys.argv=['x']; "
          "import onnxruntime as ort; from optimum.onnxruntime import ORTModelForSequenceClassification; "
          "from transformers import AutoTokenizer; o=ort.SessionOptions(); o.intra_op_num_threads={threads}; "
          "m=ORTModelForSequenceClassification.from_pretrained({path!r}, file_name='model_quantized.onnx', session_options=o); "  # noqa: E501
          "tok=AutoTokenizer.from_pretrained({path!r}); m(**tok([P[0]], [R[0]], truncation=True, max_length={max_length}, return_tensors='pt')); "  # noqa: E501
          "cold=time.perf_counter()-t; "
          "[m(**tok(P[i:i+{batch_size}], R[i:i+{batch_size}], padding=True, truncation=True, max_length={max_length}, return_tensors='pt')) for i in range(0, len(P), {batch_size})]"),  # noqa: E501
    "c": ("import time; t=time.perf_counter(); from lite_rm.scorer import Scorer; "
          "s=Scorer({path!r}, threads={threads}, batch_size={batch_size}); s.score(P[0], [R[0]]); "
          "cold=time.perf_counter()-t; s.score_pairs(P, R)"),
}


def cold_start(kind: str, path: Path, prompts: list[str], responses: list[str], args: argparse.Namespace,
               repeats: int = 3) -> dict[str, float]:
    """Median cold start (import + open + first score) over fresh interpreters, and peak RSS after also
    scoring ``prompts`` (the texts are passed in a JSON file so every interpreter reads the same data)."""
    data = Path(args.work) / "cold-data.json"
    data.write_text(json.dumps({"P": prompts, "R": responses}))
    body = COLD_SNIPPETS[kind].format(path=str(path), threads=args.threads, max_length=args.max_length,
                                      batch_size=args.batch_size)
    code = (f"import json; D=json.load(open({str(data)!r})); P, R = D['P'], D['R']\n{body}\n"
            # VmHWM, not ru_maxrss: after fork, ru_maxrss starts at the parent's peak (here the benchmark's).
            "hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
            "print(json.dumps({'cold': cold, 'rss': hwm}))")
    colds, rss = [], []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        result = json.loads(out.stdout.strip().splitlines()[-1])
        colds.append(result["cold"])
        rss.append(result["rss"] / 1024)
    return {"cold_s": statistics.median(colds), "peak_rss_mb": max(rss)}


# -- main -------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="trained checkpoint (default: bench/.work/bt-academy "
                    "if present, else MiniLM with a fresh seeded head)")
    ap.add_argument("--domain", default="academy")
    ap.add_argument("--pairs", type=int, default=0, help="first N DSP test pairs (0: all of the domain)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=68, help="pairs per interleaved timing chunk")
    ap.add_argument("--preset", default="blockwise")
    ap.add_argument("--validation-pairs", type=int, default=256)
    ap.add_argument("--work", default="bench/.work/score")
    ap.add_argument("--reuse", action="store_true", help="reuse bundles already in --work")
    ap.add_argument("--output", default="bench/scoring_results")
    args = ap.parse_args()
    command = "python bench/score_bench.py " + " ".join(sys.argv[1:])
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from lite_rm.data import load_preferences
    from lite_rm.data.locations import DSP_TEST, resolve_data_dir

    ckpt = Path(args.checkpoint) if args.checkpoint else (
        REPO / "bench/.work/bt-academy" if (REPO / "bench/.work/bt-academy").exists() else fresh_head_checkpoint(work))
    pairs = load_preferences(resolve_data_dir(None) / DSP_TEST, domain=args.domain).pairs
    if args.pairs:
        pairs = pairs[: args.pairs]
    n = len(pairs)
    load_before = os.getloadavg()

    fp32_bundle = export(ckpt, work / "bundle-fp32", None, args)
    int8_bundle = export(ckpt, work / f"bundle-int8-{args.preset}", args.preset, args)
    dyn_bundle = export(ckpt, work / "bundle-int8-auto", "auto", args)
    w8_bundle = export(ckpt, work / "bundle-int8-blockwise_w8", "blockwise_w8", args)
    optimum_dir = optimum_default_int8(ckpt, work)

    methods = {
        "a": ("(a) CrossEncoder.predict, PyTorch fp32", CrossEncoderMethod(ckpt, args)),
        "b": ("(b) Optimum default dynamic int8, ORTModel", OptimumMethod(optimum_dir, args)),
        "c32": ("(c) lite-rm Scorer, fp32 bundle", ScorerMethod(fp32_bundle, args)),
        "c8": (f"(c) lite-rm Scorer, int8 bundle (preset {args.preset}: int8 compute)",
               ScorerMethod(int8_bundle, args)),
        "c8nd": ("(c) same, de-duplication off", ScorerMethod(int8_bundle, args, dedupe=False)),
        "c8dyn": ("(c) lite-rm Scorer, int8 bundle (preset auto: Optimum dynamic per-CPU)",
                  ScorerMethod(dyn_bundle, args)),
        "c8w8": ("(c) lite-rm Scorer, int8 weights only (preset blockwise_w8)", ScorerMethod(w8_bundle, args)),
    }
    for _, fn in methods.values():  # warm-up: first-call allocations and lazy initialisation
        fn([pairs[0].prompt] * 4, [pairs[0].chosen, pairs[0].rejected] * 2)
    seconds = {k: 0.0 for k in methods}
    chosen = {k: [] for k in methods}
    rejected = {k: [] for k in methods}
    for start in range(0, n, args.chunk):
        chunk = pairs[start:start + args.chunk]
        prompts = [p.prompt for p in chunk] * 2
        responses = [p.chosen for p in chunk] + [p.rejected for p in chunk]
        for key, (_, fn) in methods.items():
            t = time.perf_counter()
            s = np.asarray(fn(prompts, responses), dtype=np.float64)
            seconds[key] += time.perf_counter() - t
            chosen[key].append(s[: len(chunk)])
            rejected[key].append(s[len(chunk):])
        print(f"  {min(start + args.chunk, n)}/{n} pairs", flush=True)
    load_after = os.getloadavg()
    margin = {k: np.concatenate(chosen[k]) - np.concatenate(rejected[k]) for k in methods}

    sizes = {"a": folder_mb(ckpt / "model.safetensors"), "b": folder_mb(optimum_dir / "model_quantized.onnx")
             + folder_mb(optimum_dir / "tokenizer.json"), "c32": folder_mb(fp32_bundle),
             "c8": folder_mb(int8_bundle), "c8nd": folder_mb(int8_bundle), "c8dyn": folder_mb(dyn_bundle),
             "c8w8": folder_mb(w8_bundle)}
    cold_p = [p.prompt for p in pairs[:64]] * 2
    cold_r = [p.chosen for p in pairs[:64]] + [p.rejected for p in pairs[:64]]
    cold = {"a": cold_start("a", ckpt, cold_p, cold_r, args), "b": cold_start("b", optimum_dir, cold_p, cold_r, args),
            "c32": cold_start("c", fp32_bundle, cold_p, cold_r, args),
            "c8": cold_start("c", int8_bundle, cold_p, cold_r, args),
            "c8dyn": cold_start("c", dyn_bundle, cold_p, cold_r, args),
            "c8w8": cold_start("c", w8_bundle, cold_p, cold_r, args)}
    cold["c8nd"] = cold["c8"]

    rows = {}
    for key, (label, _) in methods.items():
        rows[key] = {
            "method": label,
            "pairs_per_s": n / seconds[key],
            "speedup_vs_a": seconds["a"] / seconds[key],
            "agreement_vs_a": float(np.mean((margin[key] > 0) == (margin["a"] > 0))),
            "agreement_vs_scorer_fp32": float(np.mean((margin[key] > 0) == (margin["c32"] > 0))),
            "accuracy": float(np.mean(margin[key] > 0)),
            "size_mb": sizes[key],
            **cold[key],
        }
    manifest8 = json.loads((int8_bundle / "manifest.json").read_text())
    manifest_dyn = json.loads((dyn_bundle / "manifest.json").read_text())
    result = {
        "command": command, "machine": machine(), "checkpoint": str(ckpt), "domain": args.domain, "pairs": n,
        "threads": args.threads, "batch_size": args.batch_size, "max_length": args.max_length,
        "load_average_before_after": [load_before, load_after],
        "int8_preset": manifest8.get("quantization"), "int8_export_parity": manifest8.get("parity"),
        "int8_auto_preset": manifest_dyn.get("quantization", {}).get("name"),
        "int8_auto_export_parity": manifest_dyn.get("parity"),
        "calibration": manifest8.get("calibration"), "rows": rows, "targets": TARGETS,
    }
    Path(args.output + ".json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    Path(args.output + ".md").write_text(md)
    print(md)


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        "# Scoring benchmark", "",
        f"Command: `{r['command']}`  ",
        f"Machine: {m['cpu']}, {m['cores']} cores (shared; load average before/after "
        f"{r['load_average_before_after'][0][0]:.1f}/{r['load_average_before_after'][1][0]:.1f}), "
        f"onnxruntime {m['onnxruntime']}, torch {m['torch']}  ",
        f"Data: DSP test, domain {r['domain']}, {r['pairs']} pairs; max length {r['max_length']}, "
        f"{r['threads']} threads, batch size {r['batch_size']}; checkpoint `{r['checkpoint']}`", "",
        "| method | pairs/s | × (a) | order agreement with (a) | with Scorer fp32 | accuracy | size MB "
        "| cold start s | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in r["rows"].values():
        lines.append(
            f"| {row['method']} | {row['pairs_per_s']:.2f} | {row['speedup_vs_a']:.2f} | {row['agreement_vs_a']:.3f} "
            f"| {row['agreement_vs_scorer_fp32']:.3f} | {row['accuracy']:.3f} | {row['size_mb']:.1f} "
            f"| {row['cold_s']:.2f} | {row['peak_rss_mb']:.0f} |")
    c8, a, c32 = r["rows"]["c8"], r["rows"]["a"], r["rows"]["c32"]
    t = r["targets"]
    lines += ["", "Targets for the int8 Scorer:", "",
              f"- speed ≥ {t['speedup']}× (a): {c8['speedup_vs_a']:.2f}× "
              f"({'met' if c8['speedup_vs_a'] >= t['speedup'] else 'not met'}; without de-duplication "
              f"{r['rows']['c8nd']['speedup_vs_a']:.2f}×)",
              f"- order agreement with fp32 ≥ {t['agreement']:.0%}: {c8['agreement_vs_scorer_fp32']:.3f} vs the fp32 "
              f"Scorer, {c8['agreement_vs_a']:.3f} vs (a)",
              f"- accuracy loss ≤ {t['accuracy_loss_pts']} pt: accuracy change "
              f"{(c8['accuracy'] - c32['accuracy']) * 100:+.1f} pt vs the fp32 Scorer, "
              f"{(c8['accuracy'] - a['accuracy']) * 100:+.1f} pt vs (a)",
              f"- bundle ≤ {t['bundle_mb']:.0f} MB: {c8['size_mb']:.1f} MB",
              f"- cold start ≤ {t['cold_s']} s: {c8['cold_s']:.2f} s", ""]
    for key, label in (("int8_export_parity", "default int8"), ("int8_auto_export_parity", "auto (dynamic) int8")):
        q = (r.get(key) or {}).get("int8")
        if q:
            lines.append(f"Export parity check of the {label} bundle on {r[key]['validation']['pairs']} validation "
                         f"pairs: order agreement {q['order_agreement']:.3f}, accuracy change "
                         f"{-q['accuracy_loss'] * 100:+.1f} pt, passed: {q['passed']}.  ")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
