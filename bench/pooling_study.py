"""Pooling study: the reward head on the mean of the last hidden states against BERT's [CLS] pooler.

Same base checkpoint, data, seed and schedule; only the config key ``pooling`` differs. Pieces, each
resumable:

  cls         the ``make demo`` run (``lite-rm train -o runs/demo --resume``; trained when absent)
  mean        ``lite-rm train -o runs/pool-mean --set pooling=mean --resume`` with the cls run's config,
              starting from a copy of its base checkpoint (so the base stage is not trained again)
  seed N      (--extra-seeds) the general stage of both poolings again with seed N, same base copy:
              runs/pool-sN-cls and runs/pool-sN-mean
  validation  the final general and custom checkpoints of both runs scored on the validation pairs
              their lite_rm.json records (the pairs no stage trained on); cached under
              runs/pool-validation/

Writes bench/pooling_results.json and bench/pooling_results.md (the table of bench/POOLING.md):

    .venv/bin/python bench/pooling_study.py             # about 1 h 15 min on an idle 2-core CPU without runs/pool-*
    .venv/bin/python bench/pooling_study.py --threads 1 # leave a core free
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "runs" / "pool-validation"  # a cache beside the runs (not in git); the numbers land in the JSON
sys.path.insert(0, str(REPO / "bench"))
from score_bench import machine  # noqa: E402

LITE_RM = str(Path(sys.executable).parent / "lite-rm")
GENERAL_SETS = ("helpful", "harmless", "webgpt")
TEST_SETS = (*GENERAL_SETS, "dsp-academy", "dsp-business", "dsp-entertainment", "dsp-literature")
# the yardstick of bench/study/comparison.md: seed-to-seed sd of plain customization on academy
NOISE = {"custom_pts": 1.0, "general_kept_pts": 2.3}


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def to_toml(config: dict[str, Any]) -> str:
    """A saved run config (``RUN/config.json``) as the TOML ``lite-rm train --config`` reads: top-level
    keys first, then one table per stage."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
        return repr(v)

    tables = {"base", "general", "custom"}
    lines = [f"{k} = {value(v)}" for k, v in config.items() if k not in tables]
    for name in sorted(tables & set(config)):
        lines += ["", f"[{name}]", *(f"{k} = {value(v)}" for k, v in config[name].items())]
    return "\n".join(lines) + "\n"


def ensure_cls(run_dir: Path) -> None:
    """The ``make demo`` training run (resumed or trained when its results are absent)."""
    if not (run_dir / "results.json").is_file():
        run([LITE_RM, "train", "-o", str(run_dir), "--resume"])


def ensure_variant(cls_dir: Path, run_dir: Path, threads: int, pooling: str, seed: int | None = None) -> None:
    """A run with the cls run's config and base checkpoint, ``--set pooling=POOLING`` (and, for an
    extra seed, ``--set seed=SEED`` with the general stage only)."""
    if (run_dir / "results.json").is_file():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    config = json.loads((cls_dir / "config.json").read_text())
    config_file = run_dir.parent / "pool-config.toml"  # outside the run folders: a run writes its own
    config_file.write_text(to_toml(config))
    if "base" in config["stages"] and not (run_dir / "base").is_dir():
        shutil.copytree(cls_dir / "base", run_dir / "base")  # same MLM-adapted encoder: base is skipped
    base_config = run_dir / "base" / "config.json"
    if pooling == "mean" and base_config.is_file():
        # lite-rm versions whose stages do not pass the pooling key yet read it from the start folder
        data = json.loads(base_config.read_text())
        data["lite_rm_pooling"] = "mean"
        base_config.write_text(json.dumps(data, indent=2) + "\n")
    extra = [] if seed is None else ["--stages", "base,general", "--set", f"seed={seed}"]
    run([LITE_RM, "train", "-o", str(run_dir), "--config", str(config_file), "--set", f"pooling={pooling}",
         *extra, "--threads", str(threads), "--resume"])


def validation(folder: Path, threads: int, redo: bool) -> dict[str, Any]:
    """Pairwise accuracy of a final checkpoint on the validation pairs it records (cached)."""
    cache = CACHE / f"{folder.parent.name}-{folder.name}.json"
    if cache.is_file() and not redo:
        return json.loads(cache.read_text())
    import torch

    from lite_rm.scoring.encoding import load_tokenizer
    from lite_rm.scoring.evaluation import EvalSet, evaluate
    from lite_rm.training.checkpoint import input_rule_of, validation_split_of
    from lite_rm.training.modeling import load_reward_model, pooling_of, torch_score_fn

    torch.set_num_threads(threads)
    split = validation_split_of(folder)
    if split is None:
        raise SystemExit(f"{folder}: its lite_rm.json records no validation split")
    held = {name: pairs for name, pairs in split.held_out().items() if pairs}
    held["general"] = [p for name in GENERAL_SETS for p in held.get(name, [])]  # what the general loop validates
    model = load_reward_model(folder, seed=0)
    score = torch_score_fn(model, load_tokenizer(folder), input_rule_of(folder), bf16=False)
    metrics = evaluate(score, [EvalSet(name, "") for name in held], held)
    out = {"pooling": pooling_of(model), "accuracy": {k: v["acc"] for k, v in metrics.items()},
           "pairs": {k: v["pairs"] for k, v in metrics.items()}}
    CACHE.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(out, indent=2) + "\n")
    return out


def summary(run_dir: Path, threads: int, redo: bool) -> dict[str, Any]:
    """Per stage: the loop's validation, the final checkpoint's validation, the test accuracies."""
    results = json.loads((run_dir / "results.json").read_text())
    out: dict[str, Any] = {"run": str(run_dir.relative_to(REPO)) if run_dir.is_relative_to(REPO) else str(run_dir),
                           "pooling": results["config"].get("pooling", "cls"), "seed": results["config"]["seed"],
                           "stages": {}}
    for stage, row in results["results"].items():
        training = results["training"].get(stage, {})
        out["stages"][stage] = {
            "loop_best_valid": training.get("best_valid"), "start_valid": training.get("start_valid"),
            "steps": training.get("steps"), "stopped_early": training.get("stopped_early"),
            "train_seconds": training.get("train_seconds"),
            "final_valid": validation(run_dir / stage, threads, redo),
            "test": {s: row[s]["acc"] for s in TEST_SETS if s in row},
            "general_avg": results["general_avg"].get(stage),
            "general_kept": results.get("general_kept", {}).get(stage),
        }
    return out


def table(runs: dict[str, dict[str, Any]]) -> str:
    """The markdown table: one row per (stage, pooling), then mean minus cls in points."""
    cols = ["loop best valid", "final valid (general)", "final valid (custom)", *TEST_SETS, "general avg",
            "general kept (pt)"]
    lines = ["| stage | pooling | " + " | ".join(cols) + " |", "|" + " --- |" * (len(cols) + 2)]

    def cells(s: dict[str, Any]) -> list[float | None]:
        valid = s["final_valid"]["accuracy"]
        custom = next((v for k, v in valid.items() if k not in (*GENERAL_SETS, "general")), None)
        kept = s["general_kept"]
        return [s["loop_best_valid"], valid.get("general"), custom, *(s["test"].get(t) for t in TEST_SETS),
                s["general_avg"], kept]

    stages = sorted(next(iter(runs.values()))["stages"], key=lambda s: (s != "general", s))
    for stage in stages:
        rows = {label: cells(r["stages"][stage]) for label, r in runs.items() if stage in r["stages"]}
        for label, values in rows.items():
            shown = [("–" if v is None else f"{100 * v:+.1f}" if i == len(cols) - 1 else f"{v:.3f}")
                     for i, v in enumerate(values)]
            lines.append(f"| {stage} | {label} | " + " | ".join(shown) + " |")
        if len(rows) == 2:
            (_, a), (_, b) = rows.items()
            diff = ["–" if x is None or y is None else f"{100 * (y - x):+.1f} pt" for x, y in zip(a, b, strict=True)]
            lines.append(f"| {stage} | mean − cls | " + " | ".join(diff) + " |")
    return "\n".join(lines) + "\n"


def markdown(data: dict[str, Any]) -> str:
    """bench/pooling_results.md: the table of each seed's runs."""
    text = f"Seed {data['runs']['cls']['seed']}, general and custom stages:\n\n" + table(data["runs"])
    for seed, pair in data["extra_seeds"].items():
        text += f"\nSeed {seed}, general stage only:\n\n" + table(pair)
    return text


def page(data: dict[str, Any]) -> str:
    """bench/pooling_results.md: a header with the command and machine, then the tables of ``markdown``."""
    m = data["machine"]
    return ("# Pooling study: mean pooling against the [CLS] pooler\n\n"
            f"Command: `{data['command'].strip()}`  \n"
            f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, onnxruntime {m['onnxruntime']}, "
            f"torch {m['torch']}  \n"
            "What the figures say and how the runs differ: bench/POOLING.md.\n\n" + markdown(data))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cls-run", default=str(REPO / "runs/demo"), help="the CLS-pooled run (make demo)")
    ap.add_argument("--mean-run", default=str(REPO / "runs/pool-mean"), help="where the mean-pooled run goes")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for training and validation")
    ap.add_argument("--extra-seeds", type=int, nargs="*", default=[1],
                    help="seeds of extra general-stage-only runs of both poolings (runs/pool-s<SEED>-<pooling>)")
    ap.add_argument("--redo-validation", action="store_true", help="score the validation pairs again")
    args = ap.parse_args()
    command = "python bench/pooling_study.py " + " ".join(sys.argv[1:])
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    print(json.dumps({"command": command, "machine": machine()}, indent=2), flush=True)
    cls_dir, mean_dir = Path(args.cls_run).resolve(), Path(args.mean_run).resolve()
    ensure_cls(cls_dir)
    ensure_variant(cls_dir, mean_dir, args.threads, "mean")
    runs = {"cls": summary(cls_dir, args.threads, args.redo_validation),
            "mean": summary(mean_dir, args.threads, args.redo_validation)}
    seeds: dict[str, Any] = {}
    for seed in args.extra_seeds:  # the general stage again with another seed: its own held-out pairs
        pair = {}
        for pooling in ("cls", "mean"):
            folder = mean_dir.parent / f"pool-s{seed}-{pooling}"
            ensure_variant(cls_dir, folder, args.threads, pooling, seed)
            pair[pooling] = summary(folder, args.threads, args.redo_validation)
        seeds[str(seed)] = pair
    data = {"command": command, "machine": machine(), "noise_sd": NOISE, "runs": runs, "extra_seeds": seeds}
    text = page(data)
    (REPO / "bench" / "pooling_results.json").write_text(json.dumps(data, indent=2) + "\n")
    (REPO / "bench" / "pooling_results.md").write_text(text)
    print(text)
    print("wrote bench/pooling_results.json, bench/pooling_results.md")


if __name__ == "__main__":
    main()
