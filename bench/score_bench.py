"""Scoring benchmark: the bundle `make demo` ships against sentence-transformers' own paths, in one run.

Like for like, in ONE process: the same distinct (prompt, response) texts of DSP test data (every
response of the first queries, so no text repeats and de-duplication cannot help either side), the
same threads (CrossEncoder's torch/onnxruntime/OpenVINO threads and the Scorer's), max length 256,
de-duplication off, every chunk of texts scored by each method in turn (load from other jobs slows
all methods alike). Rows:

- CrossEncoder fp32 (PyTorch) at its default batch 32 and at its best batch;
- CrossEncoder ``backend="onnx"`` fp32 and its ``export_dynamic_quantized_onnx_model`` int8 (the
  config for this CPU), ``backend="openvino"`` fp32 and its ``export_static_quantized_openvino_model``
  int8 (calibrated on the teacher's own training texts; needs ``optimum-intel``), each at its best batch;
- lite-rm: the teacher's int8 bundle and the default bundle (``RUN/bundle``: the distilled student when
  it passed the fidelity gate), each opened as ``Scorer(bundle, dedupe=False)`` -- its defaults.

Accuracy of each model on the DSP academy test pairs and the general test sets, with its order
agreement with the teacher (PyTorch) on all pairs and on the pairs the teacher is confident about.

    .venv/bin/python bench/score_bench.py --run runs/demo     # after `make demo`

Writes bench/results/scoring/<cpu family>.json, .md and .png (one file per CPU family: amx,
avx512_vnni, avx2; a run never overwrites another family's figures).
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench/results/scoring"
TARGETS = {"speedup_vs_crossencoder_b32": 5.0, "speedup_vs_fastest_peer": 2.0, "teacher_speedup": 3.0,
           "bundle_mb": 25.0, "cold_s": 0.5}
TEST_SETS = {"dsp-academy": ("dsp/test.json", "academy"), "helpful": ("general/helpful.test.json", None),
             "harmless": ("general/harmless.test.json", None), "webgpt": ("general/webgpt.test.json", None)}
BATCHES = (1, 4, 8, 16, 32)
Score = Callable[[list[str], list[str]], np.ndarray]


def cpu_family() -> str:
    """The CPU family results are filed under: its best int8 instructions."""
    flags = set()
    try:
        flags = set(next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split())
    except (OSError, StopIteration):
        pass
    for family in ("amx_tile", "avx512_vnni", "avx2"):
        if family in flags:
            return family.replace("_tile", "")
    return platform.machine()


def machine() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        cpu, flags = platform.processor(), []
    versions = {}
    for name in ("lite-rm", "onnxruntime", "torch", "sentence-transformers", "transformers", "openvino",
                 "optimum", "optimum-intel", "tokenizers"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "avx512_bf16")
    return {"cpu": cpu, "family": cpu_family(), "flags": [f for f in wanted if f in flags],
            "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "versions": versions}


def distinct_texts(data: Path, n: int) -> tuple[list[str], list[str]]:
    items = json.loads((data / "dsp/test.json").read_text(encoding="utf-8"))
    pairs = list(dict.fromkeys((it["query"], r) for it in items for r in it["responses"].values()))[:n]
    return [p for p, _ in pairs], [r for _, r in pairs]


class Peer:
    """A CrossEncoder on one backend, predicting raw logits at a given batch size."""

    def __init__(self, model: Any, batch_size: int = 32) -> None:
        import torch

        self.model, self.batch_size, self.identity = model, batch_size, torch.nn.Identity()

    def __call__(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        return np.asarray(self.model.predict(list(zip(prompts, responses, strict=True)), batch_size=self.batch_size,
                                             activation_fn=self.identity, show_progress_bar=False), dtype=np.float64)

    def best_batch(self, prompts: list[str], responses: list[str]) -> int:
        """The fastest of BATCHES on these texts (after one warm-up pass)."""
        times = {}
        self(prompts[:8], responses[:8])
        for b in BATCHES:
            self.batch_size = b
            t = time.perf_counter()
            self(prompts, responses)
            times[b] = time.perf_counter() - t
        self.batch_size = min(times, key=times.__getitem__)
        return self.batch_size


def peers(ckpt: Path, work: Path, args: argparse.Namespace, texts: tuple[list[str], list[str]]
          ) -> tuple[dict[str, Peer], dict[str, str]]:
    """The sentence-transformers rows (exported once into ``work``); rows that cannot be built say why."""
    import torch
    from sentence_transformers import CrossEncoder
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    torch.set_num_threads(args.threads)
    kwargs = {"max_length": args.max_length, "device": "cpu"}
    rows: dict[str, Peer] = {"CE fp32, batch 32": Peer(CrossEncoder(str(ckpt), **kwargs))}
    rows["CE fp32, best batch"] = Peer(CrossEncoder(str(ckpt), **kwargs))
    skipped: dict[str, str] = {}
    onnx_dir = work / "ce-onnx"
    if not (onnx_dir / "onnx/model.onnx").exists():
        CrossEncoder(str(ckpt), backend="onnx", **kwargs).save_pretrained(str(onnx_dir))
    config = "avx512_vnni" if cpu_family() in ("amx", "avx512_vnni") else "avx2"
    qfile = f"onnx/model_qint8_{config}.onnx"
    if not (onnx_dir / qfile).exists():
        export_dynamic_quantized_onnx_model(CrossEncoder(str(onnx_dir), backend="onnx", **kwargs), config,
                                            str(onnx_dir))
    rows["CE onnx fp32"] = Peer(CrossEncoder(str(onnx_dir), backend="onnx", **kwargs))
    rows[f"CE onnx int8 ({config})"] = Peer(CrossEncoder(str(onnx_dir), backend="onnx",
                                                        model_kwargs={"file_name": qfile}, **kwargs))
    try:
        rows.update(openvino_peers(ckpt, work, kwargs, texts))
    except ImportError as err:
        skipped["CE openvino"] = f"not installed: {err}"
    return rows, skipped


def openvino_peers(ckpt: Path, work: Path, kwargs: dict[str, Any], texts: tuple[list[str], list[str]]
                   ) -> dict[str, Peer]:
    """CrossEncoder on OpenVINO, fp32 and its static int8 export (calibrated on local texts: offline)."""
    import optimum.intel  # noqa: F401 - the ImportError that skips these rows
    from sentence_transformers import CrossEncoder
    from sentence_transformers.backend import export_static_quantized_openvino_model

    ov_dir = work / "ce-openvino"
    if not (ov_dir / "openvino/openvino_model.xml").exists():
        CrossEncoder(str(ckpt), backend="openvino", **kwargs).save_pretrained(str(ov_dir))
    qfile = "openvino/openvino_model_qint8_quantized.xml"
    if not (ov_dir / qfile).exists():
        calib = work / "calibration"  # a local dataset folder: load_dataset(folder) needs no hub
        calib.mkdir(exist_ok=True)
        rows = [{"text": f"{p} {r}"} for p, r in zip(*texts, strict=True)]
        (calib / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        export_static_quantized_openvino_model(CrossEncoder(str(ov_dir), backend="openvino", **kwargs), None,
                                               str(ov_dir), dataset_name=str(calib), dataset_config_name="default",
                                               dataset_split="train", column_name="text")
    return {"CE openvino fp32": Peer(CrossEncoder(str(ov_dir), backend="openvino", **kwargs)),
            "CE openvino int8 (static)": Peer(CrossEncoder(str(ov_dir), backend="openvino",
                                                           model_kwargs={"file_name": qfile}, **kwargs))}


def teacher_work(root: Path, ckpt: Path) -> Path:
    """The cache folder of one teacher checkpoint (its peers' exports and test scores): a new `make demo`
    is measured afresh, never against another teacher's cached exports."""
    from lite_rm.files import folder_digest

    work = root / folder_digest(ckpt)[:12]
    work.mkdir(parents=True, exist_ok=True)
    return work


def bundle_scorer(bundle: Path, threads: int) -> Score:
    from lite_rm.scoring.scorer import Scorer

    return Scorer(bundle, threads=threads, dedupe=False).score_pairs  # its defaults otherwise


def interleaved(methods: dict[str, Score], prompts: list[str], responses: list[str], chunk: int) -> dict[str, float]:
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


def test_diffs(key: str, score: Score, data: Path, work: Path) -> dict[str, np.ndarray]:
    """Chosen-minus-rejected scores on every test set (cached per row: resumable)."""
    from lite_rm.data import load_preferences

    cache = work / f"test-diffs-{key.replace(' ', '_').replace('/', '_')}.npz"
    if cache.exists():
        return dict(np.load(cache))
    out = {}
    for set_name, (rel, domain) in TEST_SETS.items():
        pairs = load_preferences(data / rel, domain=domain).pairs
        prompts = [p.prompt for p in pairs]
        both = score(prompts + prompts, [p.chosen for p in pairs] + [p.rejected for p in pairs])
        both = np.asarray(both, dtype=np.float64)
        out[set_name] = both[:len(pairs)] - both[len(pairs):]
        print(f"  accuracy {key} {set_name}", flush=True)
    np.savez(cache, **out)
    return out


def fidelity(diffs: dict[str, np.ndarray], ref: dict[str, np.ndarray], scale: float) -> dict[str, Any]:
    """Accuracy per set (ties count half) and order agreement with the teacher, overall and where it is confident."""
    d, d0 = np.concatenate(list(diffs.values())), np.concatenate(list(ref.values()))
    confident, flipped = np.abs(1 / (1 + np.exp(-scale * d0)) - 0.5) > 0.1, (d > 0) != (d0 > 0)
    accuracy = {k: float(np.mean(v > 0) + 0.5 * np.mean(v == 0)) for k, v in diffs.items()}
    return {"accuracy": accuracy, "pairs": {k: len(v) for k, v in diffs.items()},
            "agreement": float(1 - flipped.mean()), "confident_pairs": int(confident.sum()),
            "confident_agreement": float(1 - flipped[confident].mean())}


def cold_start(bundle: Path, threads: int, repeats: int = 3) -> dict[str, float]:
    """Median import + open + first score in a fresh interpreter, and its peak RSS."""
    code = ("import time; t=time.perf_counter(); from lite_rm.scoring.scorer import Scorer; "
            f"s=Scorer({str(bundle)!r}, threads={threads}); s.score('How do I boil an egg?', ['Boil it.']); "
            "cold=time.perf_counter()-t; import json, sys; "
            "hwm=next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')); "
            "print(json.dumps({'cold': cold, 'rss': hwm, 'torch': 'torch' in sys.modules}))")
    runs = [json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                      check=True).stdout.strip().splitlines()[-1]) for _ in range(repeats)]
    return {"cold_s": statistics.median(r["cold"] for r in runs), "peak_rss_mb": max(r["rss"] for r in runs) / 1024,
            "imports_torch": any(r["torch"] for r in runs)}


def batch_drift(bundle: Path, threads: int, prompts: list[str], responses: list[str]) -> float:
    """Largest |score at batch 1 - score at batch 32| on these texts (dynamic int8 quantizes per batch)."""
    from lite_rm.scoring.scorer import Scorer

    one = Scorer(bundle, threads=threads, dedupe=False).score_pairs(prompts, responses)
    many = Scorer(bundle, threads=threads, dedupe=False, batch_size=32, streams=1).score_pairs(prompts, responses)
    return float(np.max(np.abs(one - many)))


def bundle_mb(path: Path) -> float:
    files = json.loads((path / "manifest.json").read_text())["files"]
    return sum((path / name).stat().st_size for name in files) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo", help="a `make demo` run folder")
    ap.add_argument("--texts", type=int, default=600, help="distinct DSP test texts to time")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=60, help="texts per interleaved timing chunk")
    ap.add_argument("--work", default="bench/.work/score")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from lite_rm.data import resolve_data_dir

    run_dir, data = Path(args.run), resolve_data_dir(None)
    ckpt, teacher, default = run_dir / "custom-academy", run_dir / "bundle-teacher", run_dir / "bundle"
    for path in (ckpt / "config.json", teacher / "manifest.json", default / "manifest.json"):
        if not path.exists():
            sys.exit(f"{path} not found: run `make demo` first")
    work = teacher_work(Path(args.work), ckpt)
    manifests = {"teacher": json.loads((teacher / "manifest.json").read_text()),
                 "default": json.loads((default / "manifest.json").read_text())}
    prompts, responses = distinct_texts(data, args.texts)
    load_before = os.getloadavg()

    ce, skipped = peers(ckpt, work, args, (prompts[:300], responses[:300]))
    probe = (prompts[:64], responses[:64])
    best = {key: peer.best_batch(*probe) for key, peer in ce.items() if key != "CE fp32, batch 32"}
    ce["CE fp32, batch 32"].batch_size = 32
    methods: dict[str, Score] = dict(ce)
    methods["lite-rm teacher bundle"] = bundle_scorer(teacher, args.threads)
    methods["lite-rm default bundle"] = bundle_scorer(default, args.threads)
    seconds = interleaved(methods, prompts, responses, args.chunk)
    load_after = os.getloadavg()

    # accuracy: one pass per distinct model (the fp32 CE rows share the teacher's weights)
    ref = test_diffs("teacher-pytorch", ce["CE fp32, batch 32"], data, work)
    scale = manifests["teacher"]["calibration"]["scale"]
    model_of = {"CE fp32, batch 32": "teacher-pytorch", "CE fp32, best batch": "teacher-pytorch",
                "CE onnx fp32": "teacher-pytorch", "CE openvino fp32": "teacher-pytorch"}
    base = seconds["CE fp32, batch 32"]
    fastest_peer = min(seconds[k] for k in ce)
    rows: dict[str, Any] = {}
    for key, fn in methods.items():
        row: dict[str, Any] = {"texts_per_s": len(prompts) / seconds[key], "speedup": base / seconds[key],
                               "vs_fastest_peer": fastest_peer / seconds[key], "batch_size": best.get(key, 32)}
        model = {"lite-rm teacher bundle": teacher, "lite-rm default bundle": default}.get(key)
        # a bundle's cached scores are keyed by its graph, so a new `make demo` is scored again
        digest = json.loads((model / "manifest.json").read_text())["files"]["model.onnx"]["sha256"] if model else ""
        cache_key = f"{key} {digest[:12]}".strip()
        diffs = ref if model_of.get(key) == "teacher-pytorch" else test_diffs(cache_key, fn, data, work)
        row |= fidelity(diffs, ref, scale)
        if key.startswith("lite-rm"):
            folder = teacher if "teacher" in key else default
            m = manifests["teacher" if "teacher" in key else "default"]
            row |= {"batch_size": "Scorer default", "size_mb": bundle_mb(folder), **cold_start(folder, args.threads),
                    "preset": (m.get("quantization") or {}).get("name", "fp32"),
                    "layers": (m.get("source", {}).get("lite_rm_meta") or {}).get("distill", {}).get("layers", 6),
                    "fidelity": m.get("fidelity") or m.get("distilled_student", {}).get("fidelity"),
                    "score_drift_batch1_vs_32": batch_drift(folder, args.threads, prompts[:120], responses[:120])}
        rows[key] = row
    family = cpu_family()
    result = {"command": "python bench/score_bench.py " + " ".join(sys.argv[1:]), "machine": machine(),
              "run": str(run_dir), "texts": len(prompts), "threads": args.threads, "max_length": args.max_length,
              "load_average_before_after": [load_before[0], load_after[0]], "rows": rows, "skipped": skipped,
              "targets": TARGETS, "date": time.strftime("%Y-%m-%d")}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{family}.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / f"{family}.md").write_text(markdown(result))
    chart(result, OUT / f"{family}.png")
    print(markdown(result))


def markdown(r: dict[str, Any]) -> str:
    m, rows = r["machine"], r["rows"]
    v = m["versions"]
    lines = [f"# Scoring: lite-rm against sentence-transformers ({m['family']})", "",
             f"Command: `{r['command']}` ({r['date']})  ",
             f"Machine: {m['cpu']} ({', '.join(m['flags'])}), {m['cores']} cores, load average before/after "
             f"{r['load_average_before_after'][0]:.1f}/{r['load_average_before_after'][1]:.1f}  ",
             "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + "  ",
             f"Run `{r['run']}`; {r['texts']} distinct DSP test texts, {r['threads']} threads everywhere, max length "
             f"{r['max_length']}, no de-duplication; CE = sentence-transformers `CrossEncoder.predict` of the "
             "teacher checkpoint; lite-rm bundles at the Scorer's defaults.", "",
             "| method | batch | texts/s | × CE fp32 b32 | × fastest CE | " + " | ".join(TEST_SETS)
             + " | agreement with teacher, all / confident | MB | cold s |",
             "| --- | --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in TEST_SETS) + " | ---: | ---: | ---: |"]
    for key, row in rows.items():
        acc = " | ".join(f"{row['accuracy'][s]:.3f}" for s in TEST_SETS)
        size = f"{row['size_mb']:.1f}" if "size_mb" in row else ""
        cold = f"{row['cold_s']:.2f}" if "cold_s" in row else ""
        lines.append(f"| {key} | {row['batch_size']} | {row['texts_per_s']:.1f} | {row['speedup']:.2f} | "
                     f"{row['vs_fastest_peer']:.2f} | {acc} | {row['agreement']:.3f} / "
                     f"{row['confident_agreement']:.3f} | {size} | {cold} |")
    first = next(iter(rows.values()))
    lines += ["", "Test pairs per set: " + ", ".join(f"{k} {n}" for k, n in first["pairs"].items())
              + f"; confident pairs (teacher's calibrated P outside 0.4-0.6): {first['confident_pairs']}."]
    for key, row in rows.items():
        if "score_drift_batch1_vs_32" in row:
            lines.append(f"- {key}: {row['layers']} layers, preset {row['preset']}, torch imported: "
                         f"{row['imports_torch']}, peak RSS {row['peak_rss_mb']:.0f} MB, largest score change "
                         f"between batch 1 and batch 32: {row['score_drift_batch1_vs_32']:.3f}.")
    for key, why in r["skipped"].items():
        lines.append(f"- {key}: not measured ({why}).")
    return "\n".join(lines) + "\n"


def speed_accuracy_chart(r: dict[str, Any], path: Path, title: str, log: bool = True,
                         baseline: float | None = None) -> None:
    """Each row of a result at (speed-up, mean test accuracy); lite-rm's bundles as dots, peers as crosses."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.8, 4.4))
    ax = fig.add_subplot()
    for i, (key, row) in enumerate(r["rows"].items()):
        mean = float(np.mean(list(row["accuracy"].values())))
        ax.scatter(row["speedup"], mean, marker="o" if key.startswith(("lite-rm", "student", "teacher")) else "x")
        ax.annotate(key, (row["speedup"], mean), fontsize=7, xytext=(4, 4 if i % 2 else -10),
                    textcoords="offset points")
    if baseline is not None:
        ax.axvline(baseline, linestyle=":", color="grey")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("× CrossEncoder fp32 at batch 32 (same texts, same process)")
    ax.set_ylabel("mean test accuracy (4 sets)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def chart(r: dict[str, Any], path: Path) -> None:
    speed_accuracy_chart(r, path, f"speed vs accuracy, {r['machine']['family']}: {r['machine']['cpu']}",
                         baseline=r["targets"]["speedup_vs_crossencoder_b32"])


if __name__ == "__main__":
    main()
