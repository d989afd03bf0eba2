"""Multi-task benchmark: one backbone with a head per DSP domain against one custom model per domain.

Pieces (each skipped when its output exists):

  train    ``lite-rm train -o RUN --model runs/demo/general --stages custom --domain academy --domain
           business --domain entertainment --domain literature --multitask --epochs 1 --set
           custom.head_lr_scale=30`` (resumable; bench/MULTITASK.md says why these settings)
  export   ``lite-rm export RUN/custom-multitask --output RUN/bundle --int8`` (the default chain)
  eval     each domain's test pairs scored by its own head, the general sets by the general head (and by
           each domain head), with the Scorer
  speed    "all four domains' scores of a file": the DSP test texts (666 distinct pairs) scored for the
           four domains by the multi-task bundle (one encoder pass, four heads) and by four one-domain
           models (four passes of the same bundle's own score: the same graph and preset as a one-domain
           bundle exported today, so the same speed), interleaved in one process, 2 threads, batch 32

Separate models to compare with: the demo's ``custom-academy`` (max length 256, this machine's run) and
the study's one-model-per-domain runs with the same defaults (interpolate 0.5, all pairs) at max length
128 (bench/study/results/full). Writes bench/multitask_results.json.

    .venv/bin/python bench/multitask_bench.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from personalize_bench import DATA, DOMAINS, GENERAL, LITE_RM, STUDY, machine  # noqa: E402


def ensure(run: Path) -> Path:
    """The multi-task checkpoint's bundle: train and export when absent."""
    if not (run / "custom-multitask" / "lite_rm.json").exists():
        subprocess.run([LITE_RM, "train", "-o", str(run), "--model", str(REPO / "runs/demo/general"), "--stages",
                        "custom", *[a for d in DOMAINS for a in ("--domain", d)], "--multitask", "--epochs", "1",
                        "--set", "custom.head_lr_scale=30", "--resume"], check=True)
    bundle = run / "bundle"
    if not (bundle / "manifest.json").exists():
        subprocess.run([LITE_RM, "export", str(run / "custom-multitask"), "--output", str(bundle), "--int8"],
                       check=True)
    return bundle


def accuracy(scorer: Any, pairs: list[Any], head: str) -> float:
    from lite_rm.scoring.evaluation import pairwise_accuracy

    prompts = [p.prompt for p in pairs]
    scores = scorer.score_pairs(prompts * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs], head=head)
    return float(pairwise_accuracy(scores[:len(pairs)], scores[len(pairs):]))


def evaluate(bundle: Path) -> dict[str, Any]:
    from lite_rm.data import load_preferences
    from lite_rm.scoring.scorer import Scorer

    scorer = Scorer(bundle, threads=2)
    dsp = {d: load_preferences(DATA / "dsp" / "test.json", domain=d).pairs for d in DOMAINS}
    general = {n: load_preferences(DATA / "general" / f"{n}.test.json").pairs for n in GENERAL}
    out: dict[str, Any] = {"own_head": {d: accuracy(scorer, dsp[d], d) for d in DOMAINS}}
    out["general_head"] = {n: accuracy(scorer, pairs, "default") for n, pairs in general.items()}
    out["general_head"]["general_avg"] = float(np.mean(list(out["general_head"].values())))
    out["general_head"].update({f"dsp-{d}": accuracy(scorer, dsp[d], "default") for d in DOMAINS})
    out["domain_head_general_avg"] = {d: float(np.mean([accuracy(scorer, general[n], d) for n in GENERAL]))
                                      for d in DOMAINS}
    return out


def separate_models() -> dict[str, Any]:
    """One model per domain: the study's defaults at max length 128, and the demo's academy at 256."""
    study = {}
    for d in DOMAINS:
        runs = [json.loads(p.read_text()) for p in sorted(STUDY.glob(f"general-hhw-interpolate-0.5-{d}-nall-s*.json"))]
        study[d] = {"accuracy": float(np.mean([r["accuracy"][f"dsp-{d}"] for r in runs])), "seeds": len(runs),
                    "general_avg": float(np.mean([r["general_avg"] for r in runs])),
                    "general_reference": runs[0]["general_reference"]}
    demo = json.loads((REPO / "runs/demo/results.json").read_text())["results"]
    return {"study_interpolate_0.5_all_pairs_len128": study,
            "demo_custom_academy_len256": {k: v["acc"] for k, v in demo["custom-academy"].items()},
            "demo_general_len256": {k: v["acc"] for k, v in demo["general"].items()}}


def speed(bundle: Path, rounds: int = 3) -> dict[str, Any]:
    """Seconds for the four domains' scores of the DSP test texts: one pass + 4 heads vs 4 passes."""
    from lite_rm.data import load_preferences
    from lite_rm.scoring.scorer import Scorer

    pairs = load_preferences(DATA / "dsp" / "test.json", domain="academy").pairs
    texts = list(dict.fromkeys((p.prompt, r) for p in pairs for r in (p.chosen, p.rejected)))
    prompts, responses = [t[0] for t in texts], [t[1] for t in texts]
    multi = one = Scorer(bundle, threads=2, dedupe=False)
    times: dict[str, list[float]] = {"multitask_one_pass": [], "four_models": []}
    for _ in range(rounds):  # interleaved, so both see the same load
        start = time.perf_counter()
        embedded = multi.embed_pairs(prompts, responses)
        [multi.get_head(d).scores(embedded) for d in DOMAINS]
        times["multitask_one_pass"].append(time.perf_counter() - start)
        start = time.perf_counter()
        [one.score_pairs(prompts, responses) for _ in DOMAINS]
        times["four_models"].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in times.items()}
    return {"texts": len(texts), "seconds_best_of": rounds, **best,
            "speedup": best["four_models"] / best["multitask_one_pass"], "all_seconds": times}


def main() -> None:
    run = REPO / "runs" / "multitask"
    bundle = ensure(run)
    out = REPO / "bench" / "multitask_results.json"
    if "--speed-only" in sys.argv:  # re-time, keeping the accuracy figures
        saved = json.loads(out.read_text())
        saved["speed"], saved["machine"] = speed(bundle), machine()
        out.write_text(json.dumps(saved, indent=1) + "\n")
        print(json.dumps(saved["speed"], indent=1))
        return
    single = REPO / "runs" / "demo" / "bundle"
    size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
    single_size = sum(f.stat().st_size for f in single.rglob("*") if f.is_file())
    meta = json.loads((run / "custom-multitask" / "lite_rm.json").read_text())
    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(),
              "training": {k: meta["training"].get(k) for k in ("steps", "best_valid", "valid_by_head", "replay_share",
                                                                "train_seconds", "interpolation", "stopped_early")},
              "multitask": evaluate(bundle), "separate": separate_models(),
              "bytes": {"multitask_bundle": size, "one_domain_bundle": single_size,
                        "four_domain_bundles": 4 * single_size},
              "speed": speed(bundle)}
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("multitask", "bytes", "speed")}, indent=1))
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
