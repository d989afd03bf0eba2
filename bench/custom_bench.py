"""Customizing on "your own data": a general model customized on preference files unlike DSP.

The demo's general model (``make demo``'s ``RUN/general``) is customized as a user would, ``lite-rm train
--stages custom --model START --custom-data FILE`` at the defaults (the validated choice of what ships,
``custom.choose = "validated"``), on files built only from ../shared/data:

  helpful-300, helpful-1500   general chat pairs with long multi-turn answers: a seeded sample of
                              general/helpful.train.json; the user's test pairs: general/helpful.test.json.
                              (The start model's general stage trained on 95% of helpful.train once: this is
                              a "more of the general kind" user, not new preferences.)
  webgpt-all                  long answers with references: general/webgpt.train.json (its non-tie pairs);
                              test: general/webgpt.test.json.
  short-300, short-1536       short answers: DSP's plain Alpaca ("normal") response preferred over each of
                              the four domain-styled ones, a preference no stage trained on; test: the same
                              pairs of dsp/test.json (544).
  dsp-<domain>                the study's four DSP domains (``--domain``, listwise), for "the study's domains
                              keep what they have"; test: the domain's pairs of dsp/test.json.

Resumable cells, each writing a small JSON under bench/results/custom/ (skipped when there, unless --redo
names it), with the command, the machine (CPU model and flags) and the versions:

  start                the start model's per-pair correctness on every test set (the reference)
  <case>               the custom stage at the defaults; the shipped model scored on the user's test pairs
                       and the helpful/harmless/WebGPT test sets against the start model (accuracy, 95%
                       bootstrap interval, paired-bootstrap interval of the difference); the stage's record
                       of its choice (every candidate on the validation pairs)
  <case>-finetuned     the same training with ``--choose finetuned``: what shipped before the validated
                       choice (the fixed 0.5 mix, unchecked), scored the same way

Run one cell at a time at the lowest priority (checkpoints go under --work, not git)::

    nice -n 19 .venv/bin/python bench/custom_bench.py --cells start helpful-300
    .venv/bin/python bench/custom_bench.py --report      # the table of bench/CUSTOM.md from the JSONs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "custom"
DATA = Path(os.environ.get("LITE_RM_DATA", REPO.parent / "shared" / "data"))
LITE_RM = str(Path(sys.executable).parent / "lite-rm")
GENERAL_TESTS = ("helpful", "harmless", "webgpt")
# case -> (kind, pairs of the user's file; 0: all)
CASES = {"helpful-300": ("helpful", 300), "helpful-1500": ("helpful", 1500), "webgpt-all": ("webgpt", 0),
         "short-300": ("short", 300), "short-1536": ("short", 0),
         **{f"dsp-{d}": (f"dsp-{d}", 0) for d in ("academy", "business", "entertainment", "literature")}}
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni", "avx_vnni")


def machine() -> dict[str, Any]:
    """CPU model, the flags that decide bf16/int8 speed, cores, and the library versions."""
    import torch
    import transformers

    info = {}
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set(info.get("flags", "").split())
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {"cpu": info.get("model name", platform.processor()), "cpu_flags": [f for f in CPU_FLAGS if f in flags],
            "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "lite_rm_commit": commit, "nice": os.nice(0)}


def pairs_of(path: Path) -> list[Any]:
    """A preference file's pairs; ``dsp/test.json#<domain>``: that DSP domain's pairs."""
    from lite_rm.data import load_preferences

    file, _, domain = str(path).partition("#")
    return load_preferences(file, domain=domain or None).pairs


def short_pairs(dsp_file: Path) -> list[dict[str, str]]:
    """DSP's plain Alpaca response preferred over each domain-styled response of the same query."""
    rows = []
    for item in json.loads(dsp_file.read_text(encoding="utf-8")):
        normal = item["responses"]["normal"]
        rows += [{"prompt": item["query"], "chosen": normal, "rejected": text}
                 for domain, text in item["responses"].items() if domain != "normal"]
    return rows


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_files(work: Path) -> dict[str, Path]:
    """Every test set a cell scores: the general test files, and the short-answer pairs of dsp/test.json."""
    files = {name: DATA / "general" / f"{name}.test.json" for name in GENERAL_TESTS}
    files["short"] = write_jsonl(work / "data" / "short.test.jsonl", short_pairs(DATA / "dsp" / "test.json"))
    files |= {case: Path(f"{DATA / 'dsp' / 'test.json'}#{case[4:]}") for case in CASES if case.startswith("dsp-")}
    return files


def user_file(case: str, work: Path, seed: int) -> Path:
    """The user's preference file of a case (TRL prompt/chosen/rejected JSONL), a seeded sample."""
    kind, size = CASES[case]
    if kind == "short":
        rows = short_pairs(DATA / "dsp" / "train.json")
    else:
        rows = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}
                for p in pairs_of(DATA / "general" / f"{kind}.train.json")]
    if size and size < len(rows):
        rows = random.Random(seed).sample(rows, size)
    return write_jsonl(work / "data" / f"{case}.jsonl", rows)


def correctness(model: Path, sets: dict[str, Path], threads: int) -> dict[str, list[float]]:
    """Per test set, per pair: 1 if the model prefers the preferred response, 0.5 tie, 0 otherwise."""
    import torch

    from lite_rm.scoring.encoding import load_tokenizer
    from lite_rm.scoring.evaluation import pair_correctness
    from lite_rm.training.checkpoint import input_rule_of
    from lite_rm.training.modeling import load_reward_model, resolve_bf16, torch_score_fn

    torch.set_num_threads(threads)
    score = torch_score_fn(load_reward_model(model, seed=0), load_tokenizer(model), input_rule_of(model),
                           resolve_bf16("auto"), 64)
    loaded = {name: pairs_of(path) for name, path in sets.items()}
    index: dict[tuple[str, str], int] = {}
    for pairs in loaded.values():
        for p in pairs:
            index.setdefault((p.prompt, p.chosen), len(index))
            index.setdefault((p.prompt, p.rejected), len(index))
    keys = sorted(index, key=index.__getitem__)
    rewards = np.asarray(score([k[0] for k in keys], [k[1] for k in keys]), dtype=np.float64)

    def diff(p: Any) -> float:
        return float(rewards[index[(p.prompt, p.chosen)]] - rewards[index[(p.prompt, p.rejected)]])

    return {name: pair_correctness(np.array([diff(p) for p in pairs])).tolist() for name, pairs in loaded.items()}


def compare(start: dict[str, list[float]], shipped: dict[str, list[float]], seed: int) -> dict[str, Any]:
    """Per set: pairs, both accuracies with 95% intervals, and the paired interval of shipped − start."""
    from lite_rm.scoring.evaluation import accuracy_interval, paired_accuracy_interval

    out = {}
    for name, s in start.items():
        a, b = np.asarray(s), np.asarray(shipped[name])
        out[name] = {"pairs": len(a), "start": float(a.mean()), "start_interval": accuracy_interval(a, seed=seed),
                     "shipped": float(b.mean()), "shipped_interval": accuracy_interval(b, seed=seed),
                     "difference_interval": paired_accuracy_interval(b, a, seed=seed)}
    return out


def save(name: str, data: dict[str, Any], args: argparse.Namespace) -> None:
    path = RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cell": name, "command": " ".join(sys.argv), **data, "machine": machine()},
                               indent=2) + "\n")
    print(f"wrote {path}", flush=True)


def start_cell(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    scores = correctness(Path(args.start), test_files(Path(args.work)), args.threads)
    save("start", {"model": args.start, "correct": scores, "seconds": round(time.perf_counter() - started, 1)}, args)


def case_cell(cell: str, name: str, args: argparse.Namespace) -> None:
    """Train the case's custom model (resumable), score what shipped against the start model; ``name``:
    the cell's JSON and run folder (the cell, and the seed when not 0)."""
    case, forced = cell.removesuffix("-finetuned"), cell.endswith("-finetuned")
    start_json = RESULTS / "start.json"
    if not start_json.exists():
        raise SystemExit("run the 'start' cell first")
    start = json.loads(start_json.read_text())["correct"]
    work = Path(args.work)
    kind = CASES[case][0]
    dsp = kind.startswith("dsp-")
    data = Path(f"{DATA / 'dsp' / 'train.json'}#{kind[4:]}") if dsp else user_file(case, work, args.seed)
    tests = test_files(work)
    run_dir = work / "runs" / name
    source = ["--domain", kind[4:], "--eval-set", f"dsp={DATA / 'dsp' / 'test.json'}"] if dsp else \
        ["--custom-data", str(data), "--eval-set", f"user={tests[kind]}"]
    cmd = [LITE_RM, "train", "--stages", "custom", "--model", args.start, *source, "-o", str(run_dir), "--seed",
           str(args.seed), "--resume", *(["--choose", "finetuned"] if forced else []), *args.train_args]
    print("+", " ".join(cmd), flush=True)
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(["timeout", str(args.cell_seconds), *cmd], check=True, env=env)
    train_seconds = time.perf_counter() - started
    ckpt = run_dir / f"custom-{kind[4:] if dsp else data.stem}"
    meta = json.loads((ckpt / "lite_rm.json").read_text())
    training = meta["training"]
    choice = training.get("choice", {})
    sets = {"user": tests[kind], **{n: tests[n] for n in GENERAL_TESTS}}
    start_scores = {"user": start[kind], **{n: start[n] for n in GENERAL_TESTS}}
    if choice.get("alpha") == 0.0:  # the start model shipped: its scores are the start's
        shipped = start_scores
    else:
        shipped = correctness(ckpt, sets, args.threads)
    save(name, {"case": case, "seed": args.seed, "user_file": str(data),
                "user_pairs": len(pairs_of(data)) if not dsp else None,
                "train_pairs": training.get("train_pairs"), "valid_pairs": training.get("valid_pairs"),
                "start_valid": training.get("start_valid"), "best_valid": training.get("best_valid"),
                "steps": training.get("steps"), "train_command": " ".join(cmd),
                "train_seconds": round(train_seconds, 1), "choice": choice,
                "test": compare(start_scores, shipped, args.seed)}, args)


def fmt(row: dict[str, Any], key: str) -> str:
    low, high = row[f"{key}_interval"]
    return f"{row[key]:.3f} [{low:.3f}, {high:.3f}]"


def report() -> str:
    """The markdown table of bench/CUSTOM.md from the cells' JSONs."""
    lines = ["| case | user pairs (train/valid) | start valid | shipped (alpha) | user test: start → shipped "
             "[95% of diff] | general avg: start → shipped | helpful | harmless | WebGPT |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for path in sorted(RESULTS.glob("*.json")):
        cell = json.loads(path.read_text())
        if "test" not in cell:
            continue
        t, choice = cell["test"], cell["choice"]
        user = t["user"]
        d_low, d_high = user["difference_interval"]
        start_avg = np.mean([t[n]["start"] for n in GENERAL_TESTS])
        shipped_avg = np.mean([t[n]["shipped"] for n in GENERAL_TESTS])
        general = " | ".join(f"{t[n]['start']:.3f} → {t[n]['shipped']:.3f} "
                             f"[{t[n]['difference_interval'][0]:+.3f}, {t[n]['difference_interval'][1]:+.3f}]"
                             for n in GENERAL_TESTS)
        shipped_valid = next((c for c in choice.get("candidates", []) if c["alpha"] == choice.get("alpha")), None)
        valid = f"{cell['start_valid']:.3f}" + (f" → {shipped_valid['custom_valid']:.3f}" if shipped_valid else "")
        lines.append(f"| {cell['cell']} | {cell['train_pairs']}/{cell['valid_pairs']} | {valid} | "
                     f"{choice.get('shipped')} ({choice.get('alpha', float('nan')):g}) | {user['start']:.3f} → "
                     f"{user['shipped']:.3f} [{d_low:+.3f}, {d_high:+.3f}] ({user['pairs']}) | "
                     f"{start_avg:.3f} → {shipped_avg:.3f} | {general} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    global RESULTS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="*", default=[], help="start, a case, or <case>-finetuned")
    parser.add_argument("--redo", nargs="*", default=[], help="cells to run again though their JSON exists")
    parser.add_argument("--start", default=str(REPO.parent / "main" / "runs" / "demo" / "general"),
                        help="the general model to customize (make demo's RUN/general)")
    parser.add_argument("--work", default="/tmp/lite-rm-custom-bench", help="data files and checkpoints (not git)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cell-seconds", type=int, default=900, help="a training cell's time limit (resumes)")
    parser.add_argument("--results", default=str(RESULTS), help="where the cells' JSONs go")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("train_args", nargs="*", help="after --: more lite-rm train flags")
    args = parser.parse_args()
    RESULTS = Path(args.results)
    for cell in args.cells:
        # another seed is another cell (its own JSON and run folder); seed 0 keeps the plain names
        name = f"{cell}-seed{args.seed}" if args.seed and cell != "start" else cell
        if (RESULTS / f"{name}.json").exists() and name not in args.redo:
            print(f"{name}: done ({RESULTS / name}.json)")
            continue
        if name == "start":
            start_cell(args)
        elif cell.removesuffix("-finetuned") in CASES:
            case_cell(cell, name, args)
        else:
            raise SystemExit(f"unknown cell {cell!r}: start, {', '.join(CASES)}, or <case>-finetuned")
    if args.report:
        print(report())


if __name__ == "__main__":
    main()
