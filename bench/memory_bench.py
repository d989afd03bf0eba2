"""Memory benchmark of the general stage: peak RSS against the number of general pairs (streamed and in memory).

For each size (default 10^4, 10^5, 10^6 synthetic pairs) it writes gzip JSONL shards of 10^4 pairs under a
temporary folder (never in the repo; removed at the end), then runs in a fresh subprocess

    lite-rm train -o RUN --model TINY --stages general --general-set big='SHARDS/big-*.jsonl.gz'
        --eval-set small=SMALL.jsonl --threads 1 --set general.max_steps=20

once streamed (a glob is streamed automatically) and once in memory (``general.streaming`` forced
``off`` in the child) for sizes up to --in-memory-max (10^5: the in-memory 10^6 run would hold about
3 GB of tokenized text and take its tokenizing time on a shared core; skipped). The child records its
own peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) when it exits; the parent records wall
time and the pairs the stage counted. The model is a 2-layer hidden-32 random BERT with MiniLM's
tokenizer and max length 256: the data's memory is the same as with MiniLM, the model's constant and
the step time are smaller (MiniLM adds a constant of about 100 MB).

Writes bench/memory_results.json and prints the table of bench/MEMORY.md.

    .venv/bin/python bench/memory_bench.py
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "memory_results.json"
sys.path.insert(0, str(REPO / "bench"))
from score_bench import machine  # noqa: E402

SHARD = 10_000
WORDS = ("river table green music window paper stone cloud seven light garden answer reason friend "
         "question simple market health travel history science family season number").split()
# The child: lite-rm's CLI (the streaming mode is a --set), with its own peak RSS written at exit.
CHILD = """
import atexit, json, os, resource, sys
atexit.register(lambda: open(os.environ["BENCH_RSS"], "w").write(json.dumps(
    {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})))
from lite_rm.cli import main
sys.argv[0] = "lite-rm"
main()
"""


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def write_shards(folder: Path, pairs: int, seed: int = 0) -> str:
    """``pairs`` synthetic pairs (prompts 20-80 words, responses 10-60) in gzip JSONL shards; the glob.

    Texts are drawn from a pool of random word sequences and made distinct by the pair's number, so
    no two pairs share a text (as in HH-RLHF) and writing a million pairs takes seconds."""
    rng = random.Random(seed)
    prompts = [_text(rng, rng.randint(20, 80)) for _ in range(4096)]
    responses = [_text(rng, rng.randint(10, 60)) for _ in range(4096)]
    folder.mkdir(parents=True, exist_ok=True)
    for shard in range(0, pairs, SHARD):
        with gzip.open(folder / f"big-{shard // SHARD:04d}.jsonl.gz", "wt", encoding="utf-8", compresslevel=1) as fh:
            for i in range(shard, min(pairs, shard + SHARD)):
                fh.write(json.dumps({"prompt": f"q{i} {rng.choice(prompts)}?",
                                     "chosen": f"a{i} {rng.choice(responses)}",
                                     "rejected": f"b{i} {rng.choice(responses)}"}) + "\n")
    return str(folder / "big-*.jsonl.gz")


def tiny_model(folder: Path) -> Path:
    """A 2-layer hidden-32 random BERT reward model with MiniLM's tokenizer (as tests/conftest.py)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from lite_rm.scoring.encoding import InputRule
    from lite_rm.training.checkpoint import write_meta
    from lite_rm.training.encoders import default_encoder_path

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(default_encoder_path()).save_pretrained(folder)
    write_meta(folder, InputRule(max_length=256), stage="tiny-random")
    return folder


def run_stage(mode: str, pattern: str, model: Path, small: Path, work: Path, steps: int) -> dict[str, Any]:
    """One general stage in a fresh subprocess: peak RSS, wall seconds, what the stage counted."""
    out, rss = work / f"run-{mode}", work / f"rss-{mode}.json"
    cmd = [sys.executable, "-c", CHILD, "train", "-o", str(out), "--model", str(model), "--stages", "general",
           "--general-set", f"big={pattern}", "--eval-set", f"small={small}", "--threads", "1",
           "--set", f"general.max_steps={steps}", "--set", f"general.streaming={mode}"]
    print("+", " ".join(cmd[3:]), f"(general.streaming={mode})", flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=os.environ | {"BENCH_RSS": str(rss)},
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    summary = json.loads((out / "general" / "lite_rm.json").read_text())["training"]
    return {"mode": "streamed" if mode == "on" else "in memory", "wall_s": round(wall, 1),
            **json.loads(rss.read_text()), "train_pairs": summary["train_pairs"],
            "valid_pairs": summary["valid_pairs"], "steps": summary["steps"]}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| general pairs | loading | peak RSS (MB) | wall (s) | train pairs counted | validation pairs |",
             "|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['pairs']:,} | {r['mode']} | {r['peak_rss_mb']:.0f} | {r['wall_s']:.1f} | "
                     f"{r['train_pairs']:,} | {r['valid_pairs']:,} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="Comma-separated pair counts.")
    parser.add_argument("--in-memory-max", type=int, default=100_000, help="Largest size also run in memory.")
    parser.add_argument("--steps", type=int, default=20, help="general.max_steps of every run.")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lite-rm-memory-") as tmp:
        work = Path(tmp)
        model = tiny_model(work / "tiny")
        small = work / "small.jsonl"
        small.write_text("".join(json.dumps({"prompt": f"p{i}", "chosen": "good answer", "rejected": "bad"}) + "\n"
                                 for i in range(64)), encoding="utf-8")
        for size in (int(s) for s in args.sizes.split(",")):
            started = time.perf_counter()
            pattern = write_shards(work / f"pairs-{size}", size)
            print(f"{size} pairs written in {time.perf_counter() - started:.0f} s", flush=True)
            for mode in ("on", "off") if size <= args.in_memory_max else ("on",):
                rows.append({"pairs": size, **run_stage(mode, pattern, model, small, work / f"w-{size}", args.steps)})
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(),
              "model": "2-layer hidden-32 random BERT, MiniLM tokenizer, max length 256",
              "settings": {"threads": 1, "general.max_steps": args.steps, "shard_pairs": SHARD}, "rows": rows}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(REPO)}\n\n{table(rows)}")


if __name__ == "__main__":
    main()
