"""Personalization benchmark: each DSP domain as a "user" who gives k comparisons, on the general bundle.

For every domain and k in 5, 10, 25, 50, 100, 400 and all (1,536) of its training comparisons (seeds
0-2, one for "all"), ``lite_rm.scoring.personalization.fit_head`` fits a head on the frozen embeddings of the
``make demo`` general model's bundle (``runs/demo/general-bundle``, made by the default
``lite-rm export --int8``), and the head is scored on the domain's test pairs (544) and on the general
test sets (helpful, harmless, WebGPT). Beside it: (a) the general model untouched (its own score), (b)
the study's full custom fine-tune from the general model on k pairs (bench/study/results/full,
``general-hhw-plain-<domain>-n<k>``; max length 128, its own general model: see bench/PERSONALIZE.md).

Each fit runs on one core (BLAS limited to one thread) and is timed; the texts are encoded once
(embeddings cached under runs/, never in git), the encoding and the head's cost per scored pair are
timed too. Writes bench/personalize_results.json and the chart bench/plots/personalize.png.

    .venv/bin/python bench/personalize_bench.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
DOMAINS = ("academy", "business", "entertainment", "literature")
GENERAL = ("helpful", "harmless", "webgpt")
SIZES = (5, 10, 25, 50, 100, 400)
STUDY = REPO / "bench" / "study" / "results" / "full"
LITE_RM = str(Path(sys.executable).parent / "lite-rm")


def machine() -> dict[str, Any]:
    import onnxruntime
    import sklearn

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "scikit_learn": sklearn.__version__,
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                     text=True).stdout.strip()}


def ensure_bundle(run: Path) -> Path:
    """The general model's bundle, exported with the default ``--int8`` when absent."""
    bundle = run / "general-bundle"
    if not (bundle / "manifest.json").exists():
        if not (run / "general" / "config.json").exists():
            sys.exit(f"{run}/general is missing: run `make demo` first")
        subprocess.run([LITE_RM, "export", str(run / "general"), "--output", str(bundle), "--int8"], check=True)
    return bundle


def load_sets() -> dict[str, list[Any]]:
    """Preference pairs: each domain's train and test split, and the general test sets."""
    from lite_rm.data import load_preferences

    sets = {}
    for domain in DOMAINS:
        for split in ("train", "test"):
            sets[f"{domain}-{split}"] = load_preferences(DATA / "dsp" / f"{split}.json", domain=domain).pairs
    for name in GENERAL:
        sets[name] = load_preferences(DATA / "general" / f"{name}.test.json").pairs
    return sets


def embed_all(bundle: Path, sets: dict[str, list[Any]], cache: Path) -> tuple[dict[tuple[str, str], int], np.ndarray,
                                                                               np.ndarray, dict[str, float]]:
    """Each distinct (prompt, response) text's embedding and default score (cached), and the timing."""
    from lite_rm.scoring.encoding import encode_pairs
    from lite_rm.scoring.scorer import Scorer

    texts = list(dict.fromkeys((p.prompt, r) for pairs in sets.values() for p in pairs for r in (p.chosen, p.rejected)))
    index = {t: i for i, t in enumerate(texts)}
    scorer = Scorer(bundle, threads=2)
    digest = scorer.manifest.files[scorer.manifest.model_file].sha256
    if cache.exists():
        saved = np.load(cache)
        if str(saved["model"]) == digest and len(saved["scores"]) == len(texts):
            return index, saved["embedding"], saved["scores"], json.loads(str(saved["timing"]))
    encoded = encode_pairs(scorer._tokenizer, [t[0] for t in texts], [t[1] for t in texts], scorer.input_rule)
    start = time.perf_counter()
    scores, embedding = scorer._run_encoded(encoded, ("logits", "embedding"))
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    head = scorer.get_head("default")
    for _ in range(10):
        head.scores(embedding)
    head_s = (time.perf_counter() - start) / 10
    timing = {"texts": len(texts), "encode_s": encode_s, "encode_texts_per_s": len(texts) / encode_s,
              "head_us_per_text": 1e6 * head_s / len(texts), "threads": 2}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, embedding=embedding, scores=scores, model=digest, timing=json.dumps(timing))
    return index, embedding, scores, timing


def accuracy(pairs: list[Any], index: dict[tuple[str, str], int], values: np.ndarray) -> float:
    from lite_rm.scoring.evaluation import pairwise_accuracy

    chosen = np.array([values[index[(p.prompt, p.chosen)]] for p in pairs])
    rejected = np.array([values[index[(p.prompt, p.rejected)]] for p in pairs])
    return float(pairwise_accuracy(chosen, rejected))


def diffs_of(pairs: list[Any], index: dict[tuple[str, str], int], embedding: np.ndarray) -> np.ndarray:
    return np.stack([embedding[index[(p.prompt, p.chosen)]] - embedding[index[(p.prompt, p.rejected)]]
                     for p in pairs])


def study_curve(domain: str) -> dict[str, dict[str, float]]:
    """The study's full custom fine-tunes from its general model: domain accuracy (and general, for all)."""
    out = {}
    for size in (*SIZES, "all"):
        runs = [json.loads(p.read_text()) for p in sorted(STUDY.glob(f"general-hhw-plain-{domain}-n{size}-s*.json"))]
        if runs:
            accs = [r["accuracy"][f"dsp-{domain}"] for r in runs]
            general = [r["general_avg"] for r in runs if r.get("general_avg") is not None]
            out[str(size)] = {"accuracy": float(np.mean(accs)), "seeds": len(accs),
                              "general_avg": float(np.mean(general)) if general else None}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(REPO / "runs" / "demo"), help="the make demo run folder")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--report", action="store_true", help="only redraw the tables and chart from the JSON")
    args = parser.parse_args()
    if args.report:
        saved = json.loads((REPO / "bench" / "personalize_results.json").read_text())
        report(saved, REPO / "bench" / "personalize_results.md")
        chart(saved, REPO / "bench" / "plots" / "personalize.png")
        return
    from threadpoolctl import threadpool_limits

    from lite_rm.scoring.personalization import fit_head
    from lite_rm.scoring.scorer import Scorer

    bundle = ensure_bundle(Path(args.run))
    sets = load_sets()
    index, embedding, scores, timing = embed_all(bundle, sets, Path(args.run) / "personalize-embeddings.npz")
    prior = Scorer(bundle, threads=1).get_head("default")
    untouched = {name: accuracy(sets[name], index, scores) for name in GENERAL}
    untouched.update({d: accuracy(sets[f"{d}-test"], index, scores) for d in DOMAINS})
    general_untouched = float(np.mean([untouched[n] for n in GENERAL]))
    rows = []
    for domain in DOMAINS:
        train = sets[f"{domain}-train"]
        for size in (*SIZES, len(train)):
            for seed in range(1 if size == len(train) else args.seeds):
                picked = [train[i] for i in np.random.default_rng(seed).permutation(len(train))[:size]]
                diffs = diffs_of(picked, index, embedding)
                cpu = time.process_time()  # the CPU time of one thread: its time on a core of its own
                with threadpool_limits(1):
                    head, fit = fit_head(diffs, prior, domain, groups=[p.prompt for p in picked], seed=seed)
                cpu = time.process_time() - cpu
                values = embedding @ head.weight + head.bias
                general = {n: accuracy(sets[n], index, values) for n in GENERAL}
                rows.append({"domain": domain, "k": size, "all": size == len(train), "seed": seed,
                             "domain_accuracy": accuracy(sets[f"{domain}-test"], index, values),
                             "general_avg": float(np.mean(list(general.values()))), "general": general,
                             "cv_accuracy": fit.cv_accuracy, "C": fit.C, "prior_weight": fit.prior_weight,
                             "fit_s": fit.fit_s, "fit_cpu_s": cpu})
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "general"}), flush=True)
    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(),
              "representation": representation(sets, index, embedding, prior,
                                               Scorer(bundle).manifest.embedding.parts),
              "bundle": str(bundle.relative_to(REPO)) if bundle.is_relative_to(REPO) else str(bundle),
              "bundle_precision": Scorer(bundle).manifest.precision, "encoding": timing,
              "untouched": {**untouched, "general_avg": general_untouched},
              "study_full_finetune": {d: study_curve(d) for d in DOMAINS}, "rows": rows}
    out = REPO / "bench" / "personalize_results.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out.relative_to(REPO)}")
    report(result, REPO / "bench" / "personalize_results.md")
    chart(result, REPO / "bench" / "plots" / "personalize.png")


def report(result: dict[str, Any], path: Path) -> None:
    """Write :func:`report_text` to ``path``."""
    path.write_text(report_text(result))
    print(f"wrote {path.relative_to(REPO)}")


def report_text(result: dict[str, Any]) -> str:
    """The tables of bench/PERSONALIZE.md, from the results (mean over seeds)."""
    ks: list[Any] = [*SIZES, "all"]

    def mean(domain: str, k: Any, key: str) -> float:
        rows = [r for r in result["rows"] if r["domain"] == domain and (r["all"] if k == "all" else r["k"] == k)]
        return float(np.mean([r[key] for r in rows]))

    lines = [f"`{result['command']}` on {result['machine']['cpu']}, {result['machine']['cores']} cores, load average "
             f"{result['machine']['load_average'][0]:.1f}, commit {result['machine']['commit']}; bundle "
             f"{result['bundle']} ({result['bundle_precision']}).", "",
             "Domain accuracy (test pairs) and general accuracy (helpful/harmless/WebGPT average) of the "
             "personalized head, mean of the seeds; the study's full fine-tune on the same k (max length 128, its "
             "own general model).",
             "", "| domain | row | untouched | " + " | ".join(f"k={k}" for k in ks) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in ks) + " |"]
    for d in DOMAINS:
        study = result["study_full_finetune"][d]
        lines.append(f"| {d} | personalized head | {result['untouched'][d]:.3f} | "
                     + " | ".join(f"{mean(d, k, 'domain_accuracy'):.3f}" for k in ks) + " |")
        lines.append(f"| {d} | full fine-tune (study) | | "
                     + " | ".join(f"{study[str(k)]['accuracy']:.3f}" if str(k) in study else "–" for k in ks) + " |")
        lines.append(f"| {d} | general accuracy | {result['untouched']['general_avg']:.3f} | "
                     + " | ".join(f"{mean(d, k, 'general_avg'):.3f}" for k in ks) + " |")
    lines += ["", "Seconds per fit, CPU time of the one thread it runs on (BLAS limited to one thread; the time it "
              "takes on a core of its own), and in brackets the wall time on this shared machine:", "",
              "| k | " + " | ".join(DOMAINS) + " |", "| --- | " + " | ".join("---" for _ in DOMAINS) + " |"]
    lines += [f"| {k} | " + " | ".join(f"{mean(d, k, 'fit_cpu_s'):.2f} ({mean(d, k, 'fit_s'):.2f})" for d in DOMAINS)
              + " |" for k in ks]
    enc = result["encoding"]
    lines += ["", f"Encoding: {enc['texts']} texts in {enc['encode_s']:.0f} s "
              f"({enc['encode_texts_per_s']:.1f} texts/s, {enc['threads']} threads, embedding and score in one "
              "pass); a head adds "
              f"{enc['head_us_per_text']:.2f} µs per text.", "",
              "Which part of the embedding, all comparisons of each domain (domain test accuracy):", "",
              "| part | " + " | ".join(DOMAINS) + " |", "| --- | " + " | ".join("---" for _ in DOMAINS) + " |"]
    lines += [f"| {name} | " + " | ".join(f"{acc[d]:.3f}" for d in DOMAINS) + " |"
              for name, acc in result.get("representation", {}).items()]
    return "\n".join(lines) + "\n"


def representation(sets: dict[str, list[Any]], index: dict[tuple[str, str], int], embedding: np.ndarray,
                   prior: Any, parts: list[str]) -> dict[str, dict[str, float]]:
    """Which part of the embedding a head needs: all comparisons of each domain, fit on the score layer's
    input alone, the mean of the hidden states alone, and both (the shipped embedding)."""
    from dataclasses import replace

    from threadpoolctl import threadpool_limits

    from lite_rm.scoring.personalization import fit_head

    half = embedding.shape[1] // 2 if len(parts) == 2 else embedding.shape[1]
    views = {"score-layer input": slice(0, half), "hidden-state mean": slice(half, None), "both": slice(None)}
    out: dict[str, dict[str, float]] = {}
    for name, cut in views.items():
        if len(parts) < 2 and name != "both":
            continue
        part_prior = replace(prior, weight=prior.weight[cut])
        out[name] = {}
        for domain in DOMAINS:
            train = sets[f"{domain}-train"]
            with threadpool_limits(1):
                head, _ = fit_head(diffs_of(train, index, embedding[:, cut]), part_prior, domain,
                                   groups=[p.prompt for p in train])
            out[name][domain] = accuracy(sets[f"{domain}-test"], index, embedding[:, cut] @ head.weight)
        print(name, out[name], flush=True)
    return out


def chart(result: dict[str, Any], path: Path) -> None:
    """Domain accuracy and general accuracy against k, per domain: personalized, untouched, fine-tuned."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(DOMAINS), figsize=(4 * len(DOMAINS), 6.5), sharex=True)
    for col, domain in enumerate(DOMAINS):
        rows = [r for r in result["rows"] if r["domain"] == domain]
        ks = sorted({r["k"] for r in rows})
        for row_i, key in enumerate(("domain_accuracy", "general_avg")):
            ax = axes[row_i][col]
            mean = [np.mean([r[key] for r in rows if r["k"] == k]) for k in ks]
            sd = [np.std([r[key] for r in rows if r["k"] == k]) for k in ks]
            ax.errorbar(ks, mean, yerr=sd, marker="o", label="personalized head (frozen backbone)")
            base = result["untouched"][domain if key == "domain_accuracy" else "general_avg"]
            ax.axhline(base, color="gray", linestyle="--", label="general model untouched")
            if key == "domain_accuracy":
                study = result["study_full_finetune"][domain]
                pts = [(int(k) if k != "all" else max(ks), v["accuracy"]) for k, v in study.items()]
                ax.plot(*zip(*sorted(pts), strict=True), marker="s", color="C3",
                        label="full fine-tune (study, max length 128)")
            ax.set_xscale("log")
            ax.set_title(f"{domain}: {'domain' if row_i == 0 else 'general'} accuracy", fontsize=10)
            ax.set_xlabel("comparisons (k)" if row_i else "")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Personalization on the general bundle ({result['bundle_precision']}); "
                 f"{result['machine']['cpu']}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
