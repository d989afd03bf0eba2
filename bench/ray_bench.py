"""Rows/s of ``lite-rm score --engine ray`` with 1 and 2 workers against the plain single-process
``lite-rm score`` on the same real DSP rows (prompt + response, cut to ``--max-words``), 1 onnxruntime
thread per worker, on a local Ray cluster of this machine.

    .venv/bin/python bench/ray_bench.py --bundle runs/demo/bundle --queries 40 --max-words 32

Writes bench/results/ray_bench.json and prints a table. Wall time includes Ray's actor start-up
(loading the bundle once per worker); ``scoring rows/s`` counts only the time inside the shards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(REPO / "runs" / "demo" / "bundle"))
    parser.add_argument("--queries", type=int, default=40, help="DSP test queries (x4 responses = rows)")
    parser.add_argument("--max-words", type=int, default=32)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "ray_bench.json"))
    args = parser.parse_args()

    import ray

    from lite_rm.jobs.batch_scoring import score_file
    from lite_rm.jobs.distributed import score_dataset
    from lite_rm.scoring.scorer import Scorer

    records = json.loads((REPO.parent / "shared" / "data" / "dsp" / "test.json").read_text())[:args.queries]
    rows = [{"id": f"{i}-{k}", "prompt": r["query"], "response": " ".join(v.split()[:args.max_words])}
            for i, r in enumerate(records) for k, v in sorted(r["responses"].items())]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "all.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        shards = work / "shards"
        shards.mkdir()
        for j in range(args.shards):
            (shards / f"part-{j}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[j::args.shards]))

        t0 = time.perf_counter()
        report = score_file(Scorer(args.bundle, threads=1), work / "all.jsonl", work / "all.out.jsonl", progress=False)
        wall = time.perf_counter() - t0
        results.append({"engine": "lite-rm score (1 process, 1 thread)", "rows": report.rows,
                        "wall_s": round(wall, 2), "rows_per_s": round(report.rows / wall, 1),
                        "scoring_rows_per_s": round(report.rows / report.seconds, 1)})

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            for workers in (1, 2):
                done = score_dataset(args.bundle, shards, work / f"ray-{workers}", workers=workers)
                busy = sum(float(s["seconds"]) for s in done.shards)
                results.append({"engine": f"--engine ray, {workers} worker(s)", "rows": done.rows,
                                "wall_s": round(done.seconds, 2), "rows_per_s": round(done.rows / done.seconds, 1),
                                "scoring_rows_per_s": round(done.rows / busy * workers, 1)})
        finally:
            ray.shutdown()

    import onnxruntime
    out = {"command": " ".join(sys.argv), "bundle": args.bundle, "rows": len(rows), "max_words": args.max_words,
           "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), {platform.platform()}",
           "versions": {"ray": ray.__version__, "onnxruntime": onnxruntime.__version__,
                        "python": platform.python_version()},
           "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    for row in results:
        print(f"{row['engine']:<40} {row['rows_per_s']:>7} rows/s wall ({row['wall_s']} s)  "
              f"{row['scoring_rows_per_s']:>7} rows/s scoring")


if __name__ == "__main__":
    main()
