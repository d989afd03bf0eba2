"""Scoring benchmark: the bundle a user gets from `make demo` + `lite-rm export --int8`, against
sentence-transformers ``CrossEncoder.predict`` (PyTorch fp32) on the same checkpoint.

Like for like, in ONE process: the same distinct (prompt, response) texts of DSP test data (every
response of the first queries, so no text repeats and de-duplication cannot help either side), the same
threads, batch size and max length; every chunk of texts is scored by each method in turn and each
method's time is summed over the chunks, so load from other jobs slows all methods alike. The Scorer's
de-duplication (a feature CrossEncoder lacks) is timed on its own row, on DSP preference pairs where
texts repeat. Fidelity is measured on the test splits (DSP academy, helpful, harmless, WebGPT) against
the fp32 bundle: accuracy, order agreement on all pairs and on the pairs the fp32 model is confident
about (calibrated P(a preferred) outside 0.4-0.6). Cold start and peak memory come from fresh
interpreters.

    .venv/bin/python bench/score_bench.py            # runs/demo/custom-academy, trained by make demo if absent

Writes bench/scoring_results.json, bench/scoring_results.md and bench/scoring_speed_accuracy.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGETS = {"speedup": 4.0, "confident_agreement": 0.99, "accuracy_change_pts": 0.5, "bundle_mb": 25.0, "cold_s": 0.5}
TEST_SETS = {"dsp-academy": ("dsp/test.json", "academy"), "helpful": ("general/helpful.test.json", None),
             "harmless": ("general/harmless.test.json", None), "webgpt": ("general/webgpt.test.json", None)}


def machine() -> dict[str, Any]:
    import onnxruntime
    import torch

    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "torch": torch.__version__, "platform": platform.platform()}


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def demo_checkpoint(path: Path) -> Path:
    """The checkpoint `make demo` trains (trained here, resumably, when absent)."""
    if not (path / "config.json").exists():
        run([str(BIN / "lite-rm"), "train", "-o", str(path.parent), "--resume"])
    return path


def bundles(ckpt: Path, work: Path, presets: list[str], reuse: bool) -> dict[str, Path]:
    """fp32, the DEFAULT `lite-rm export --int8` (no other flag), and each preset forced (written even
    when it fails the parity check, to measure it)."""
    lite_rm = str(BIN / "lite-rm")
    wanted = {"fp32": [], "default": ["--int8"],
              **{p: ["--int8", "--preset", p, "--accept-parity-loss"] for p in presets}}
    out = {}
    for name, flags in wanted.items():
        folder = work / f"bundle-{name}"
        if not (reuse and (folder / "manifest.json").exists()):
            run([lite_rm, "export", str(ckpt), "-o", str(folder), "--overwrite", *flags])  # not reused: replaced
        out[name] = folder
    return out


def distinct_texts(data: Path, n: int) -> tuple[list[str], list[str]]:
    items = json.loads((data / "dsp/test.json").read_text(encoding="utf-8"))
    pairs = list(dict.fromkeys((it["query"], r) for it in items for r in it["responses"].values()))[:n]
    return [p for p, _ in pairs], [r for _, r in pairs]


class CrossEncoderFp32:
    def __init__(self, ckpt: Path, args: argparse.Namespace) -> None:
        import torch
        from sentence_transformers import CrossEncoder

        torch.set_num_threads(args.threads)
        self.identity = torch.nn.Identity()
        self.model = CrossEncoder(str(ckpt), max_length=args.max_length, device="cpu")
        self.batch_size = args.batch_size

    def __call__(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        return np.asarray(self.model.predict(list(zip(prompts, responses, strict=True)), batch_size=self.batch_size,
                                             activation_fn=self.identity, show_progress_bar=False))


def scorer(bundle: Path, args: argparse.Namespace, dedupe: bool = False, backend: str = "onnxruntime") -> Any:
    from lite_rm.scorer import Scorer

    return Scorer(bundle, threads=args.threads, batch_size=args.batch_size, dedupe=dedupe,
                  backend=backend).score_pairs


def interleaved(methods: dict[str, Any], prompts: list[str], responses: list[str], chunk: int) -> dict[str, float]:
    """Seconds per method over the same chunks, each chunk scored by every method in turn."""
    for fn in methods.values():  # warm-up: first-call allocations
        fn(prompts[:4], responses[:4])
    seconds = dict.fromkeys(methods, 0.0)
    for start in range(0, len(prompts), chunk):
        for key, fn in methods.items():
            t = time.perf_counter()
            fn(prompts[start:start + chunk], responses[start:start + chunk])
            seconds[key] += time.perf_counter() - t
        print(f"  {min(start + chunk, len(prompts))}/{len(prompts)} texts", flush=True)
    return seconds


def test_scores(bundle: Path, data: Path, work: Path, args: argparse.Namespace, backend: str = "onnxruntime"
                ) -> dict[str, np.ndarray]:
    """Chosen-minus-rejected score differences of a bundle on every test set (cached per model file)."""
    from lite_rm.data import load_preferences
    from lite_rm.files import file_digest

    cache = work / f"test-scores-{backend}-{file_digest(bundle / 'model.onnx')[:12]}.npz"
    if cache.exists():
        return dict(np.load(cache))
    score = scorer(bundle, args, dedupe=True, backend=backend)  # the same scores, faster: fidelity is not timed
    out = {}
    for set_name, (rel, domain) in TEST_SETS.items():
        pairs = load_preferences(data / rel, domain=domain).pairs
        prompts = [p.prompt for p in pairs]
        both = score(prompts + prompts, [p.chosen for p in pairs] + [p.rejected for p in pairs]).astype(np.float64)
        out[set_name] = both[:len(pairs)] - both[len(pairs):]
    np.savez(cache, **out)
    return out


def fidelity(diffs: dict[str, np.ndarray], ref: dict[str, np.ndarray], scale: float) -> dict[str, Any]:
    """Accuracy per set and agreement with the fp32 bundle, overall and on its confident pairs."""
    d, d0 = np.concatenate(list(diffs.values())), np.concatenate(list(ref.values()))
    p0 = 1 / (1 + np.exp(-scale * d0))
    confident, flipped = np.abs(p0 - 0.5) > 0.1, (d > 0) != (d0 > 0)
    accuracy = {k: float(np.mean(v > 0) + 0.5 * np.mean(v == 0)) for k, v in diffs.items()}
    return {"accuracy": accuracy, "mean_accuracy": float(np.mean(list(accuracy.values()))),
            "agreement": float(1 - flipped.mean()), "confident_share": float(confident.mean()),
            "confident_agreement": float(1 - flipped[confident].mean()),
            "flipped_p_fp32": np.round(np.sort(p0[flipped]), 3).tolist()}


def cold_start(bundle: Path, args: argparse.Namespace, engine: str, repeats: int = 3) -> dict[str, float]:
    """Median import + open + first score in a fresh interpreter, and its peak RSS."""
    code = ("import time; t=time.perf_counter(); from lite_rm.scorer import Scorer; "
            f"s=Scorer({str(bundle)!r}, threads={args.threads}, backend={engine!r}); "
            "s.score('How do I boil an egg?', ['Boil it.']); "
            "cold=time.perf_counter()-t; import json; "
            "hwm=next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')); "
            "print(json.dumps({'cold': cold, 'rss': hwm}))")
    runs = [json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                      check=True).stdout.strip().splitlines()[-1]) for _ in range(repeats)]
    return {"cold_s": statistics.median(r["cold"] for r in runs), "peak_rss_mb": max(r["rss"] for r in runs) / 1024}


def folder_mb(path: Path) -> float:
    """The bundle's files (its manifest's list), not plots or other files a user put beside them."""
    files = json.loads((path / "manifest.json").read_text())["files"]
    return sum((path / name).stat().st_size for name in files) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="runs/demo/custom-academy")
    ap.add_argument("--presets", default="auto,blockwise,blockwise_w8", help="int8 presets measured too")
    ap.add_argument("--texts", type=int, default=680, help="distinct DSP test texts to time")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=85, help="texts per interleaved timing chunk")
    ap.add_argument("--openvino", action="store_true", help="also the fp32 bundle on the OpenVINO engine (bf16)")
    ap.add_argument("--work", default="bench/.work/score")
    ap.add_argument("--reuse", action="store_true", help="reuse bundles already in --work")
    ap.add_argument("--output", default="bench/scoring_results")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from lite_rm.data import load_preferences, resolve_data_dir

    work, data = Path(args.work), resolve_data_dir(None)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = demo_checkpoint(Path(args.checkpoint))
    folders = bundles(ckpt, work, [p for p in args.presets.split(",") if p], args.reuse)
    manifests = {k: json.loads((v / "manifest.json").read_text()) for k, v in folders.items()}
    load_before = os.getloadavg()

    prompts, responses = distinct_texts(data, args.texts)
    # row -> (bundle, engine); the OpenVINO row runs the fp32 bundle's graph in bf16
    engines = {name: (name, "onnxruntime") for name in folders}
    if args.openvino:
        engines["fp32-openvino"] = ("fp32", "openvino")
    methods: dict[str, Any] = {"crossencoder-fp32": CrossEncoderFp32(ckpt, args)}
    methods.update({row: scorer(folders[b], args, backend=e) for row, (b, e) in engines.items()})
    seconds = interleaved(methods, prompts, responses, args.chunk)

    dsp = load_preferences(data / "dsp/test.json", domain="academy").pairs  # texts repeat across pairs
    dp = [p.prompt for p in dsp] * 2
    dr = [p.chosen for p in dsp] + [p.rejected for p in dsp]
    dedupe = interleaved({"crossencoder-fp32": methods["crossencoder-fp32"],
                          "default": scorer(folders["default"], args, dedupe=True)}, dp, dr, 2 * args.chunk)

    ref = test_scores(folders["fp32"], data, work, args)
    scale = manifests["fp32"]["calibration"]["scale"]
    rows: dict[str, Any] = {}
    for key in methods:
        row: dict[str, Any] = {"texts_per_s": len(prompts) / seconds[key],
                               "speedup": seconds["crossencoder-fp32"] / seconds[key]}
        if key in engines:
            name, engine = engines[key]
            row |= fidelity(test_scores(folders[name], data, work, args, engine), ref, scale)
            row |= {"size_mb": folder_mb(folders[name]), "engine": engine,
                    "preset": (manifests[name].get("quantization") or {}).get("name", "fp32"),
                    "export_parity": manifests[name]["parity"], **cold_start(folders[name], args, engine)}
        rows[key] = row
    result = {"command": "python bench/score_bench.py " + " ".join(sys.argv[1:]), "machine": machine(),
              "checkpoint": str(ckpt), "texts": len(prompts), "threads": args.threads, "batch_size": args.batch_size,
              "max_length": args.max_length, "load_average_before_after": [load_before, os.getloadavg()],
              "rows": rows, "dedupe": {"pairs": len(dsp), "speedup": dedupe["crossencoder-fp32"] / dedupe["default"],
                                       "pairs_per_s": len(dsp) / dedupe["default"]},
              "targets": TARGETS}
    Path(args.output + ".json").write_text(json.dumps(result, indent=2) + "\n")
    Path(args.output + ".md").write_text(markdown(result))
    chart(result, Path(args.output).parent / "scoring_speed_accuracy.png")
    print(markdown(result))


def markdown(r: dict[str, Any]) -> str:
    m, rows = r["machine"], r["rows"]
    lines = ["# Scoring benchmark", "", f"Command: `{r['command']}`  ",
             f"Machine: {m['cpu']}, {m['cores']} cores (load average before/after "
             f"{r['load_average_before_after'][0][0]:.1f}/{r['load_average_before_after'][1][0]:.1f}), Python "
             f"{m['python']}, onnxruntime {m['onnxruntime']}, torch {m['torch']}  ",
             f"Checkpoint `{r['checkpoint']}`; {r['texts']} distinct DSP test texts, {r['threads']} threads, batch "
             f"{r['batch_size']}, max length {r['max_length']}, no de-duplication on either side.", "",
             "| method | preset, engine | texts/s | × CrossEncoder fp32 | mean test accuracy "
             "| accuracy change vs fp32 (pt) | order agreement, all / confident pairs | size MB | cold start s |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    base = rows.get("fp32", {}).get("mean_accuracy")
    for key, row in rows.items():
        if "mean_accuracy" in row:
            change = (row["mean_accuracy"] - base) * 100 if base is not None else float("nan")
            lines.append(f"| {key} | {row['preset']}, {row['engine']} | {row['texts_per_s']:.1f} | "
                         f"{row['speedup']:.2f} | "
                         f"{row['mean_accuracy']:.3f} | {change:+.2f} | {row['agreement']:.3f} / "
                         f"{row['confident_agreement']:.3f} | {row['size_mb']:.1f} | {row['cold_s']:.2f} |")
        else:
            lines.append(f"| {key} | — | {row['texts_per_s']:.1f} | {row['speedup']:.2f} | | | | | |")
    d = r["dedupe"]
    lines += ["", f"De-duplication (a Scorer feature CrossEncoder lacks), on its own: the default bundle scores "
              f"the {d['pairs']} DSP academy test pairs, where preferred responses repeat, {d['speedup']:.2f}× as fast "
              f"as CrossEncoder fp32 ({d['pairs_per_s']:.1f} pairs/s).", ""]
    acc = ["| method | " + " | ".join(TEST_SETS) + " |", "|---" * (len(TEST_SETS) + 1) + "|"]
    for key, row in rows.items():
        if "accuracy" in row:
            acc.append(f"| {key} | " + " | ".join(f"{row['accuracy'][s]:.3f}" for s in TEST_SETS) + " |")
    return "\n".join(lines + ["Test accuracy per set:", ""] + acc) + "\n"


def chart(r: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    for i, (key, row) in enumerate(r["rows"].items()):
        if "mean_accuracy" in row:
            ax.scatter(row["speedup"], row["mean_accuracy"])
            ax.annotate(key, (row["speedup"], row["mean_accuracy"]), fontsize=8, xytext=(4, 4 if i % 2 else -11),
                        textcoords="offset points")  # alternate above/below: equal bundles share a point
    ax.axvline(r["targets"]["speedup"], linestyle=":", color="grey")
    ax.set_xlabel("× CrossEncoder fp32 (distinct texts, same process)")
    ax.set_ylabel("mean test accuracy (4 sets)")
    ax.set_title("lite-rm bundles: speed vs accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
