"""Training benchmark: throughput against sentence-transformers' CrossEncoder, and the default pipeline's
accuracy and time on the real data. Resumable: every piece writes a small JSON file under
``bench/results/training/`` and is skipped when that file exists (delete it to measure again).

    .venv/bin/python bench/train_benchmark.py throughput      # pairs/s: lite-rm loop variants vs CrossEncoder.fit
    .venv/bin/python bench/train_benchmark.py pipeline        # lite-rm train (defaults, academy), resumable
    .venv/bin/python bench/train_benchmark.py pipeline --tag idle   # the same from scratch, in its own run
    .venv/bin/python bench/train_benchmark.py domains         # custom stage for the other three DSP domains
    .venv/bin/python bench/train_benchmark.py mix             # those custom models at interpolate = 0.5 (no training)
    .venv/bin/python bench/train_benchmark.py lr-checks       # general/custom learning-rate checks (max length 128)
    .venv/bin/python bench/train_benchmark.py report          # bench/training_results.md from the JSON files

Every piece prints the command that reproduces it and the machine (CPU model, cores, load, torch).
Checkpoints go to ``runs/bench-*`` (never committed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "training"
RUN = REPO / "runs" / "bench-default"
DOMAINS_RUN = REPO / "runs" / "bench-domains"
SLICE_PAIRS = 192  # general train pairs measured per throughput variant (12 steps of 16 pairs)


def machine() -> dict[str, Any]:
    """CPU model, cores, load, bf16 support, versions."""
    import torch
    import transformers

    model = "unknown"
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
            "avx512_bf16": " avx512_bf16" in flags, "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


def _save(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    print(f"wrote {path.relative_to(REPO)}")
    return path


def _done(name: str) -> bool:
    if (RESULTS / f"{name}.json").exists():
        print(f"{name}: already measured ({(RESULTS / f'{name}.json').relative_to(REPO)}), skipped")
        return True
    return False


def _slice(seed: int = 0) -> list[Any]:
    import numpy as np

    from lite_rm.data import load_preferences, resolve_data_dir
    from lite_rm.data.locations import GENERAL_TRAIN

    data_dir = resolve_data_dir(None)
    pairs = [p for rel in GENERAL_TRAIN.values() for p in load_preferences(data_dir / rel).pairs]
    rng = np.random.default_rng(seed)
    return [pairs[i] for i in rng.choice(len(pairs), SLICE_PAIRS, replace=False)]


# ---------------------------------------------------------------- throughput


def lite_rm_throughput(threads: int, bf16: bool, length_grouping: bool = True, compile: bool = False,
                       dropout: str = "all") -> dict[str, Any]:
    """pairs/s of the lite-rm reward step (one forward pass per batch, dynamic padding) on the slice.

    ``dropout``: the ``dropout`` config key (``all``: the encoder's own rates, as the CrossEncoder trains).

    ``compile``: the model under ``torch.compile(dynamic=True)`` (inductor, the C++ backend on CPU);
    pairs/s then includes the compilation, which a real run pays once per stage.
    """
    import numpy as np
    import torch

    from lite_rm.scoring.encoding import InputRule, load_tokenizer, pad_id_of
    from lite_rm.training import batching
    from lite_rm.training.config import OptimConfig
    from lite_rm.training.encoders import resolve_model
    from lite_rm.training.loop import run_loop
    from lite_rm.training.modeling import load_reward_model
    from lite_rm.training.steps import StepSource, reward_step

    torch.set_num_threads(threads)
    path = resolve_model(None)
    tok = load_tokenizer(path)
    data = batching.encode_preferences(tok, InputRule(max_length=256), _slice())
    if length_grouping:
        plan, per_epoch = batching.plan_epochs(data, 16, 1.0, seed=0)
    else:  # plain random batches, for the comparison
        order = np.random.default_rng(0).permutation(data.n_units).tolist()
        plan, per_epoch = [order[i:i + 16] for i in range(0, len(order), 16)], 1
    model = load_reward_model(path, seed=0, dropout=dropout)
    pad = pad_id_of(tok)
    forward = torch.compile(model, dynamic=True) if compile else model

    def step(units: list[int]) -> Any:
        done = reward_step(forward, [StepSource(data, units)], pad, bf16)
        return done.loss, done.metrics, done.pairs

    result = run_loop(modules={"model": model}, named_params=list(model.named_parameters()), plan=plan,
                      step_fn=step, optim=OptimConfig(lr=3e-5), steps_per_epoch=per_epoch,
                      state_dir=REPO / "runs" / "bench-throughput-state", resume=False, log_every=100,
                      save_every=0, desc="throughput")
    return {"pairs_per_s": round(result.pairs_per_s, 3), "pairs": SLICE_PAIRS, "steps": result.steps,
            "seconds": round(result.train_seconds, 1)}


def cross_encoder_throughput(threads: int, dropout: bool = True) -> dict[str, Any]:
    """pairs/s of sentence-transformers' CrossEncoder.fit on the same slice: max length 256, 16 pairs
    (32 texts, chosen label 1 and rejected label 0) a batch, lr 3e-5, fp32: the baseline lite-rm's loop
    is compared with. ``dropout=False``: the same without dropout, to show how much of lite-rm's lead
    its dropout default gives."""
    import torch
    from sentence_transformers import CrossEncoder, InputExample
    from torch.utils.data import DataLoader

    from lite_rm.training.encoders import resolve_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    no_dropout = {"attention_probs_dropout_prob": 0.0, "hidden_dropout_prob": 0.0}
    model = CrossEncoder(resolve_model(None), num_labels=1, max_length=256, device="cpu",
                         config_kwargs=None if dropout else no_dropout)
    examples = [InputExample(texts=[p.prompt, r], label=float(lab))
                for p in _slice() for r, lab in ((p.chosen, 1), (p.rejected, 0))]
    loader = DataLoader(examples, shuffle=True, batch_size=32)
    started = time.perf_counter()
    model.fit(train_dataloader=loader, epochs=1, warmup_steps=1, optimizer_params={"lr": 3e-5},
              show_progress_bar=False)
    seconds = time.perf_counter() - started
    return {"pairs_per_s": round(SLICE_PAIRS / seconds, 3), "pairs": SLICE_PAIRS, "seconds": round(seconds, 1)}


def throughput(args: argparse.Namespace) -> None:
    variants = {
        "lite-rm-1thread-bf16": lambda: lite_rm_throughput(1, True),
        "lite-rm-1thread-fp32": lambda: lite_rm_throughput(1, False),
        "lite-rm-2threads-bf16": lambda: lite_rm_throughput(2, True),
        "lite-rm-1thread-bf16-no-grouping": lambda: lite_rm_throughput(1, True, length_grouping=False),
        "lite-rm-1thread-bf16-compile": lambda: lite_rm_throughput(1, True, compile=True),
        "lite-rm-2threads-bf16-dropout-hidden": lambda: lite_rm_throughput(2, True, dropout="hidden"),
        "lite-rm-2threads-bf16-dropout-off": lambda: lite_rm_throughput(2, True, dropout="off"),
        "lite-rm-1thread-bf16-dropout-hidden": lambda: lite_rm_throughput(1, True, dropout="hidden"),
        "cross-encoder-1thread": lambda: cross_encoder_throughput(1),
        "cross-encoder-2threads": lambda: cross_encoder_throughput(2),
        "cross-encoder-2threads-dropout-off": lambda: cross_encoder_throughput(2, dropout=False),
    }
    for name, fn in variants.items():
        if args.only and name not in args.only:
            continue
        key = f"throughput-{name}" + (f"-{args.tag}" if args.tag else "")
        if _done(key):
            continue
        print(f"measuring {name} ...", flush=True)
        figures = fn()
        print(f"{name}: {figures}")
        _save(key, {"variant": name, "command": _command(), "machine": machine(), **figures})


# ---------------------------------------------------------------- pipeline and domains


def _command() -> str:
    return " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/train_benchmark.py", *sys.argv[1:]])


def _train(argv: list[str]) -> float:
    cmd = [str(REPO / ".venv" / "bin" / "lite-rm"), *argv]
    print("$ lite-rm " + " ".join(shlex.quote(a) for a in argv), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    return time.perf_counter() - started


def pipeline(args: argparse.Namespace) -> None:
    # A tag gives a separate run from scratch, e.g. a timing on an otherwise idle machine, beside the
    # untagged run whose general model the domains piece starts from.
    name = f"pipeline-{args.tag}" if args.tag else "pipeline"
    run = RUN.with_name(f"{RUN.name}-{args.tag}") if args.tag else RUN
    if _done(name):
        return
    argv = ["train", "-o", str(run.relative_to(REPO)), "--resume", *args.extra]
    before = machine()
    seconds = _train(argv)
    results = json.loads((run / "results.json").read_text())
    _save(name, {"command": "lite-rm " + " ".join(argv), "machine": before,
                       "wall_seconds_this_piece": round(seconds, 1), "stage_seconds": results["stage_seconds"],
                       "results": results["results"], "general_avg": results["general_avg"],
                       "general_kept": results["general_kept"], "threads": results["threads"],
                       "bf16": results["bf16"],
                       "training": {k: {kk: v.get(kk) for kk in ("steps", "pairs_per_s", "train_seconds",
                                                                  "best_valid", "stopped_early", "interpolation")}
                                    for k, v in results["training"].items()}})


def domains(args: argparse.Namespace) -> None:
    # --from TAG: continue the tagged pipeline run's general model (runs/bench-default-TAG/general)
    general = (RUN.with_name(f"{RUN.name}-{args.start}") if args.start else RUN) / "general"
    if not (general / "lite_rm.json").exists():
        sys.exit(f"run the pipeline piece first ({general} is missing)")
    for domain in args.domain or ["business", "entertainment", "literature"]:
        # a tag measures another setting (its flags after --) into custom-DOMAIN-TAG.json
        key = f"custom-{domain}" + (f"-{args.tag}" if args.tag else "")
        if _done(key):
            continue
        out = DOMAINS_RUN.with_name(f"{DOMAINS_RUN.name}-{args.tag}" if args.tag else DOMAINS_RUN.name) / domain
        argv = ["train", "-o", str(out.relative_to(REPO)), "--stages", "custom", "--model",
                str(general.relative_to(REPO)), "--domain", domain, "--resume", *args.extra]
        before = machine()
        seconds = _train(argv)
        results = json.loads((out / "results.json").read_text())
        _save(key, {"command": "lite-rm " + " ".join(argv), "machine": before, "wall_seconds": round(seconds, 1),
                    "results": results["results"], "general_avg": results["general_avg"],
                    "stage_seconds": results["stage_seconds"], "tag": args.tag, "from": args.start,
                    "training": results["training"].get(f"custom-{domain}", {})})


def mix(args: argparse.Namespace) -> None:
    """The custom models at another interpolation weight without training again.

    A saved custom model is ``a * custom + (1 - a) * general`` with the ``a`` its run chose, so the model
    at ``alpha`` is ``(alpha / a) * saved + (1 - alpha / a) * general`` (needs ``alpha <= a``). Used to
    measure the default ``interpolate = 0.5`` from the runs made when the default was ``auto``.
    """
    from lite_rm.training.checkpoint import input_rule_of, read_meta
    from lite_rm.training.modeling import hf_tokenizer, load_reward_model, save_checkpoint, trainable_state
    from lite_rm.training.preservation import interpolate

    sources = {"academy": RUN.with_name(f"{RUN.name}-idle"),
               **{d: DOMAINS_RUN / d for d in ("business", "entertainment", "literature")}}
    for domain, run in sources.items():
        key = f"mix-{args.alpha:g}-custom-{domain}"
        folder = run / f"custom-{domain}"
        if _done(key) or not (folder / "lite_rm.json").exists():
            continue
        meta = read_meta(folder)
        chosen = float((meta["training"].get("interpolation") or {}).get("alpha", 1.0))
        if args.alpha > chosen or chosen == 0:
            print(f"{domain}: its run chose alpha {chosen}; cannot reach {args.alpha}, skipped")
            continue
        general_path = Path(meta["base_model"])
        general_path = general_path if general_path.is_absolute() else REPO / general_path
        model = load_reward_model(folder, 0)
        saved = trainable_state(model)
        general = load_reward_model(general_path, 0).state_dict()
        model.load_state_dict(interpolate(general, saved, args.alpha / chosen))
        out = REPO / "runs" / f"bench-mix-{args.alpha:g}" / f"custom-{domain}"
        save_checkpoint(model, hf_tokenizer(folder), out,
                        input_rule_of(folder), stage="custom", base_model=str(general_path),
                        training={"interpolation": {"alpha": args.alpha, "from_alpha": chosen}})
        result = out.parent / f"{domain}.json"
        argv = ["eval", str(out.relative_to(REPO)), "-o", str(result.relative_to(REPO)),
                "--name", f"custom-{domain}"]
        _train(argv)
        _save(key, {"command": _command(), "machine": machine(), "source": str(folder.relative_to(REPO)),
                    "source_alpha": chosen, "alpha": args.alpha, "results": json.loads(result.read_text())})


# ---------------------------------------------------------------- learning-rate checks

# The checks behind the general stage's rate (TRAINING.md, "Learning-rate checks"): one epoch of
# helpful + harmless + WebGPT from the study's base-stage encoder at the study's max length 128, then
# academy from the 1e-4 general model. Name -> (stage, model: the study's base encoder or another
# check's run, lite-rm train flags).
LR_CHECKS: dict[str, tuple[str, str, list[str]]] = {
    "general-lr4e-5": ("general", "study-base", ["--set", "general.lr=4e-5"]),
    "general-lr4e-5-head25": ("general", "study-base", ["--set", "general.lr=4e-5",
                                                         "--set", "general.head_lr_scale=25"]),
    "general-lr1e-4": ("general", "study-base", ["--set", "general.lr=1e-4"]),
    "custom-lr1e-4": ("custom", "general-lr1e-4", ["--set", "custom.lr=1e-4", "--interpolate", "off"]),
    # whether a second general epoch at the default rate raises general accuracy
    "general-lr1e-4-2epochs": ("general", "study-base", ["--set", "general.lr=1e-4", "--set", "general.epochs=2"]),
}


def lr_checks(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    import study  # the study's base-stage encoder, built when missing (the same seed gives the same model)

    from lite_rm.data.locations import resolve_data_dir

    for name in args.only or LR_CHECKS:
        key = f"lr-check-{name}"
        if _done(key):
            continue
        stage, start, flags = LR_CHECKS[name]
        if start == "study-base":
            model = study.base_model(study.Settings(), resolve_data_dir(None).resolve())
        else:
            model = REPO / "runs" / "bench-lr" / start / "general"
            if not (model / "lite_rm.json").exists():
                sys.exit(f"{name}: run the {start} check first ({model.relative_to(REPO)} is missing)")
        out = REPO / "runs" / "bench-lr" / name
        argv = ["train", "-o", str(out.relative_to(REPO)), "--stages", stage, "--model", str(model.relative_to(REPO)),
                "--max-length", "128", "--threads", str(args.threads), "--resume",
                "--dropout", "all",  # as the committed checks ran (the training default then)
                *flags, *args.extra]
        before = machine()
        seconds = _train(argv)
        results = json.loads((out / "results.json").read_text())
        row = results["results"][stage if stage == "general" else "custom-academy"]
        _save(key, {"command": "lite-rm " + " ".join(argv), "machine": before, "wall_seconds": round(seconds, 1),
                    "accuracy": {k: round(v["acc"], 4) for k, v in row.items()},
                    "general_avg": results["general_avg"],
                    "training": {k: {kk: v.get(kk) for kk in ("steps", "best_valid", "train_seconds")}
                                 for k, v in results["training"].items()}})


# ---------------------------------------------------------------- report


def _table_rows(paths: list[Path], prefix: str, cells: Any) -> list[str]:
    """One Markdown row per result file: its name (without ``prefix``), ``cells(data)``, its command."""
    rows = []
    for path in paths:
        d = json.loads(path.read_text())
        values = [path.stem.removeprefix(prefix), *(str(c) for c in cells(d)), f"`{d['command']}`"]
        rows.append("| " + " | ".join(values) + " |")
    return rows


def report(args: argparse.Namespace) -> None:
    out = REPO / "bench" / "training_results.md"
    out.write_text(report_text())
    print(f"wrote {out.relative_to(REPO)}")


def report_text() -> str:
    """bench/training_results.md from the JSON files of bench/results/training/."""
    from lite_rm.scoring.evaluation import general_average, results_table

    lines = ["# Training benchmark results", "",
             "Produced by `bench/train_benchmark.py` (each figure's command and machine are in its JSON file under "
             "`bench/results/training/`).", ""]
    through = sorted(RESULTS.glob("throughput-*.json"))
    if through:
        lines += ["## Training throughput (pairs/s, max length 256, 16 pairs a batch, general train slice)", "",
                  "| variant | pairs/s | seconds | load avg (1 min) at start | command |",
                  "| --- | --- | --- | --- | --- |"]
        lines += _table_rows(through, "throughput-", lambda d: [f"{d['pairs_per_s']:.2f}", d["seconds"],
                                                                 d["machine"]["load_avg_1m"]])
        m = json.loads(through[0].read_text())["machine"]
        lines += ["", f"Machine: {m['cpu']}, {m['cores']} cores, avx512_bf16 {m['avx512_bf16']}, torch {m['torch']}, "
                  f"transformers {m['transformers']}.", ""]
    rows: dict[str, Any] = {}
    pipe = RESULTS / "pipeline.json"
    if pipe.exists():
        d = json.loads(pipe.read_text())
        rows.update(d["results"])
        lines += ["## Default pipeline (`lite-rm train`, three stages, academy)", "", f"Command: `{d['command']}`", "",
                  f"Stage wall times (s): {d['stage_seconds']}; threads {d['threads']}; bf16 {d['bf16']}; "
                  f"machine load at start {d['machine']['load_avg_1m']}.", "",
                  "Training summaries: " + json.dumps(d["training"]), ""]
    for path in sorted(RESULTS.glob("pipeline-*.json")):
        d = json.loads(path.read_text())
        total = sum(d["stage_seconds"].values())
        lines += [f"Run `{path.stem}`: `{d['command']}`: stage wall times (s) {d['stage_seconds']}, "
                  f"{total / 60:.1f} min in stages, {d['wall_seconds_this_piece'] / 60:.1f} min wall; threads "
                  f"{d['threads']}; machine load at start {d['machine']['load_avg_1m']}; general average "
                  f"{d['general_avg']}.", ""]
        tag = path.stem.removeprefix("pipeline-")
        rows.update({f"{k} ({tag})": v for k, v in d["results"].items()})
    tagged: dict[str, dict[str, Any]] = {}
    starts: dict[str, str] = {}  # tag -> the pipeline tag whose general model it continued ("": untagged)
    for path in sorted(RESULTS.glob("custom-*.json")):
        d = json.loads(path.read_text())
        if d.get("tag"):  # another setting: its own table below
            starts[d["tag"]] = d.get("from", "")
            tagged.setdefault(d["tag"], {}).update({k: v for k, v in d["results"].items() if k.startswith("custom-")})
        else:
            rows.update({k: v for k, v in d["results"].items() if k.startswith("custom-")})
        lines += [f"- `{d['command']}`: {d['wall_seconds']} s"]
    if rows:
        lines += ["", "## Accuracy (pairwise, test splits)", "", results_table(rows)]
        customs = {k: v for k, v in rows.items() if k.startswith("custom-")}
        own = {k: v[f"dsp-{k[len('custom-'):]}"]["acc"] for k, v in customs.items()
               if f"dsp-{k[len('custom-'):]}" in v}
        if own:
            lines += [f"Custom models on their own domain: {json.dumps({k: round(v, 3) for k, v in own.items()})}; "
                      f"average {sum(own.values()) / len(own):.3f} over {len(own)} domains.", ""]
        if "general" in rows:
            g = general_average(rows["general"])
            # a tagged run's custom model is compared with that run's general model
            refs = {k: rows.get("general" + k[len(k.split(" (")[0]):], rows["general"]) for k in customs}
            kept = {k: round(general_average(v) - general_average(refs[k]), 4) for k, v in customs.items()
                    if general_average(v) is not None}
            lines += [f"General average of the stage-2 model: {g:.3f}; general kept by each custom model "
                      "(against its own run's general model) "
                      f"(difference): {json.dumps(kept)}.", ""]
    for tag, tag_rows in tagged.items():
        own = [v[f"dsp-{k[len('custom-'):]}"]["acc"] for k, v in tag_rows.items()]
        lines += [f"## Custom models, `domains --tag {tag}`", "", results_table(tag_rows),
                  f"Own-domain average: {sum(own) / len(own):.3f} over {len(own)} domains.", ""]
        ref = f"general ({starts[tag]})" if starts.get(tag) else "general"
        if ref in rows:  # the domains piece starts from that run's general model
            g = general_average(rows[ref])
            kept = {k: round(general_average(v) - g, 4) for k, v in tag_rows.items()}
            lines += [f"General kept against the stage-2 model `{ref}` ({g:.3f}): {json.dumps(kept)}; "
                      f"average {sum(kept.values()) / len(kept):+.4f}.", ""]
    mixes = sorted(RESULTS.glob("mix-*.json"))
    if mixes:
        mixed = {}
        for path in mixes:
            d = json.loads(path.read_text())
            mixed.update({f"{k} (alpha {d['alpha']:g}, from {d['source_alpha']:g})": v
                          for k, v in d["results"]["results"].items()})
        own = [v[f"dsp-{k.split()[0][len('custom-'):]}"]["acc"] for k, v in mixed.items()]
        lines += ["## Custom models re-weighted (`bench/train_benchmark.py mix`, no training)", "",
                  results_table(mixed), f"Own-domain average: {sum(own) / len(own):.3f} over {len(own)} domains.", ""]
    checks = [p for p in (RESULTS / f"lr-check-{n}.json" for n in LR_CHECKS) if p.exists()]
    if checks:
        lines += ["## Learning-rate checks (`bench/train_benchmark.py lr-checks`, max length 128)", "",
                  "| check | helpful | harmless | WebGPT | general avg | DSP academy | seconds | command |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines += _table_rows(checks, "lr-check-", lambda d: [
            *(f"{d['accuracy'][k]:.3f}" for k in ("helpful", "harmless", "webgpt")),
            f"{next(iter(d['general_avg'].values())):.3f}", f"{d['accuracy']['dsp-academy']:.3f}", d["wall_seconds"]])
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="piece", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--only", nargs="*", help="variants to measure")
    t.add_argument("--tag", default="", help="measure again into throughput-VARIANT-TAG.json (e.g. idle)")
    p = sub.add_parser("pipeline")
    p.add_argument("--tag", default="", help="a separate run and result file: pipeline-TAG.json")
    p.add_argument("extra", nargs="*", help="extra lite-rm train flags (after --)")
    d = sub.add_parser("domains")
    d.add_argument("--domain", action="append")
    d.add_argument("--tag", default="", help="a separate run and result files: custom-DOMAIN-TAG.json")
    d.add_argument("--from", dest="start", default="",
                   help="start from the general model of pipeline --tag FROM (default: the untagged run)")
    d.add_argument("extra", nargs="*", help="extra lite-rm train flags (after --)")
    m = sub.add_parser("mix")
    m.add_argument("--alpha", type=float, default=0.5)
    lr = sub.add_parser("lr-checks")
    lr.add_argument("--only", nargs="*", choices=list(LR_CHECKS), help="checks to run")
    lr.add_argument("--threads", type=int, default=1, help="torch threads (the study's cells use 1)")
    lr.add_argument("extra", nargs="*", help="extra lite-rm train flags (after --)")
    sub.add_parser("report")
    args = parser.parse_args()
    print("command:", _command())
    print("machine:", json.dumps(machine()))
    {"throughput": throughput, "pipeline": pipeline, "domains": domains, "mix": mix,
     "lr-checks": lr_checks, "report": report}[args.piece](args)


if __name__ == "__main__":
    main()
