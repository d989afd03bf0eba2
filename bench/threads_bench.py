"""Threads and batching: one bundle scored several ways on the same cores, against CrossEncoder fp32.

Retired: it imports helpers that bench/score_bench.py no longer has (``CrossEncoderFp32``, ``bundles``,
``demo_checkpoint``), so it does not run. Its results (bench/threads_results.json and .md, measured on a
2-core AMD EPYC, committed 2026-12-02) are historical; bench/report.py still renders their table.

What it measured: one onnxruntime session with all threads against concurrent calls of one thread each
(the Scorer's ``streams``), two sessions against one, and the batch size. Every way scored the same
distinct DSP test texts in one process, interleaved chunk by chunk, de-duplication off; speed as ×
sentence-transformers ``CrossEncoder.predict`` fp32, 2 threads, batch 32. Bundles: fp32, the default
``--int8`` and the presets, exported first when absent.

    .venv/bin/python bench/threads_bench.py            # no longer runs (see above)

Wrote bench/threads_results.json and bench/threads_results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

# (label, threads per session, streams, batch size, sessions); the Scorer's default is the first
WAYS = [("Scorer default: 2 streams x 1 thread, batch 1", 2, 2, 1, 1),
        ("2 streams x 1 thread, batch 4", 2, 2, 4, 1),
        ("2 streams x 1 thread, batch 32", 2, 2, 32, 1),
        ("1 stream x 2 threads, batch 1", 2, 1, 1, 1),
        ("1 stream x 2 threads, batch 8", 2, 1, 8, 1),
        ("1 stream x 2 threads, batch 32 (the Scorer's default until 2026-12-02)", 2, 1, 32, 1),
        ("2 concurrent calls on one 2-thread session, batch 1", 4, 2, 1, 1),
        ("2 sessions x 1 thread, batch 1", 1, 1, 1, 2)]


def way(bundle: Path, threads: int, streams: int, batch: int, sessions: int) -> Any:
    """A score function: one Scorer, or ``sessions`` Scorers each scoring every other text concurrently."""
    from lite_rm.scoring.scorer import Scorer

    scorers = [Scorer(bundle, threads=threads, streams=streams, batch_size=batch, dedupe=False)
               for _ in range(sessions)]
    if sessions == 1:
        return scorers[0].score_pairs

    def score(prompts: list[str], responses: list[str]) -> np.ndarray:
        order = np.argsort([len(p) + len(r) for p, r in zip(prompts, responses, strict=True)])
        parts = [order[i::sessions] for i in range(sessions)]  # alternate by length: equal work
        with ThreadPoolExecutor(sessions) as pool:
            outs = list(pool.map(lambda s, part: s.score_pairs([prompts[j] for j in part],
                                                               [responses[j] for j in part]), scorers, parts))
        out = np.empty(len(prompts), dtype=np.float32)
        for part, scores in zip(parts, outs, strict=True):
            out[part] = scores
        return out
    return score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="runs/demo/custom-academy")
    ap.add_argument("--bundles", default="fp32,default,blockwise", help="bundles of --work to time")
    ap.add_argument("--texts", type=int, default=340)
    ap.add_argument("--chunk", type=int, default=85)
    ap.add_argument("--work", default="bench/.work/score")
    ap.add_argument("--output", default="bench/threads_results")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # imported here, so that bench/report.py renders the table from the JSON; score_bench no longer has
    # CrossEncoderFp32, bundles and demo_checkpoint, which is why this script is retired
    from score_bench import (  # type: ignore[attr-defined]
        CrossEncoderFp32,
        bundles,
        demo_checkpoint,
        distinct_texts,
        interleaved,
        machine,
    )

    from lite_rm.data import resolve_data_dir

    names = [b for b in args.bundles.split(",") if b]
    ckpt = demo_checkpoint(Path(args.checkpoint))
    folders = bundles(ckpt, Path(args.work), [n for n in names if n not in ("fp32", "default")], reuse=True)
    prompts, responses = distinct_texts(resolve_data_dir(None), args.texts)
    baseline = argparse.Namespace(threads=2, batch_size=32, max_length=256)
    methods: dict[str, Any] = {"CrossEncoder fp32, 2 threads, batch 32": CrossEncoderFp32(ckpt, baseline)}
    methods["CrossEncoder fp32, 2 threads, batch 8 (context)"] = CrossEncoderFp32(
        ckpt, argparse.Namespace(threads=2, batch_size=8, max_length=256))
    for name in names:
        preset = (json.loads((folders[name] / "manifest.json").read_text()).get("quantization") or {}).get("name")
        for label, threads, streams, batch, sessions in WAYS:
            methods[f"{name} ({preset or 'fp32'}) | {label}"] = way(folders[name], threads, streams, batch, sessions)
    load_before = os.getloadavg()
    seconds = interleaved(methods, prompts, responses, args.chunk)
    base = seconds[next(iter(methods))]
    result = {"command": "python bench/threads_bench.py " + " ".join(sys.argv[1:]), "machine": machine(),
              "checkpoint": str(ckpt), "texts": len(prompts),
              "load_average_before_after": [load_before, os.getloadavg()],
              "rows": {k: {"texts_per_s": len(prompts) / v, "speedup": base / v} for k, v in seconds.items()}}
    Path(args.output + ".json").write_text(json.dumps(result, indent=2) + "\n")
    Path(args.output + ".md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = ["# Threads and batching", "",
             "Historical results: bench/threads_bench.py is retired and no longer runs (bench/SCORING.md).", "",
             f"Command: `{r['command']}`  ",
             f"Machine: {m['cpu']}, {m['cores']} cores (load average before/after "
             f"{r['load_average_before_after'][0][0]:.1f}/{r['load_average_before_after'][1][0]:.1f}), Python "
             f"{m['python']}, onnxruntime {m['onnxruntime']}, torch {m['torch']}  ",
             f"Checkpoint `{r['checkpoint']}`; {r['texts']} distinct DSP test texts, max length 256, no "
             "de-duplication; 2 CPU threads in all for every way.", "",
             "| bundle (preset) | way | texts/s | × CrossEncoder fp32 (batch 32) |", "| --- | --- | ---: | ---: |"]
    for key, row in r["rows"].items():
        bundle, _, label = key.partition(" | ")
        lines.append(f"| {bundle if label else '—'} | {label or bundle} | {row['texts_per_s']:.1f} | "
                     f"{row['speedup']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
