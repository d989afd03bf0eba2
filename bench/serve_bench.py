"""Load benchmark of ``lite-rm serve`` on loopback: pairs/s and p50/p99 latency at 1, 8 and 64 concurrent
clients, against calling the Scorer in-process (one request at a time, and all pairs in one call).

Each request is one real DSP prompt with its four responses (4 pairs). A fixed number of requests per
level and a time bound per level keep the run short on a shared machine; the server listens on
127.0.0.1 only.

    .venv/bin/python bench/serve_bench.py --bundle runs/demo/bundle --requests 64

Writes bench/results/serve_bench.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from lite_rm.jobs.local_server import LocalServer, start_local_server

REPO = Path(__file__).resolve().parents[1]


def _requests(n: int, max_words: int) -> list[dict[str, Any]]:
    """``n`` requests of one DSP prompt and its four responses, each cut to ``max_words`` words."""
    records = json.loads((REPO.parent / "shared" / "data" / "dsp" / "test.json").read_text())

    def cut(text: str) -> str:
        return " ".join(text.split()[:max_words])

    return [{"prompt": cut(r["query"]), "responses": [cut(r["responses"][k]) for k in sorted(r["responses"])]}
            for r in (records * (n // len(records) + 1))[:n]]


def _start(bundle: str, threads: int) -> LocalServer:
    return start_local_server(bundle, "--threads", str(threads), "--log-level", "warning")


async def _level(url: str, bodies: list[dict[str, Any]], clients: int, time_limit: float) -> dict[str, Any]:
    latencies: list[float] = []
    queue = list(bodies)
    deadline = time.perf_counter() + time_limit

    async def client(http: httpx.AsyncClient) -> None:
        while queue and time.perf_counter() < deadline:
            body = queue.pop()
            t0 = time.perf_counter()
            r = await http.post(url + "/score", json=body)
            r.raise_for_status()
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=clients)) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    wall = time.perf_counter() - t0
    pairs = 4 * len(latencies)
    return {"clients": clients, "requests": len(latencies), "pairs": pairs, "seconds": round(wall, 3),
            "pairs_per_s": round(pairs / wall, 1), "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
            "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1)}


def _in_process(bundle: str, threads: int, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from lite_rm.scoring.scorer import Scorer

    scorer = Scorer(bundle, threads=threads)
    scorer.score(bodies[0]["prompt"], bodies[0]["responses"])  # warm up
    t0 = time.perf_counter()
    lat = []
    for body in bodies:
        t1 = time.perf_counter()
        scorer.score(body["prompt"], body["responses"])
        lat.append(time.perf_counter() - t1)
    one_by_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    scorer.score_pairs([b["prompt"] for b in bodies for _ in b["responses"]],
                       [r for b in bodies for r in b["responses"]])
    together = time.perf_counter() - t0
    pairs = 4 * len(bodies)
    return [{"mode": "Scorer.score per request", "pairs_per_s": round(pairs / one_by_one, 1),
             "p50_ms": round(1000 * float(np.percentile(lat, 50)), 1),
             "p99_ms": round(1000 * float(np.percentile(lat, 99)), 1)},
            {"mode": "Scorer.score_pairs, all in one call", "pairs_per_s": round(pairs / together, 1)}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(REPO / "runs" / "demo" / "bundle"))
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    parser.add_argument("--max-words", type=int, default=1000, help="cut every text to this many words")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads (server and in-process)")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per level at most")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "serve_bench.json"))
    args = parser.parse_args()

    bodies = _requests(args.requests, args.max_words)
    server = _start(args.bundle, args.threads)
    url = server.url
    try:
        asyncio.run(_level(url, bodies[:4], 1, 30))  # warm up
        levels = [asyncio.run(_level(url, bodies, n, args.time_limit)) for n in (1, 8, 64)]
    finally:
        server.stop(timeout=30)
    baseline = _in_process(args.bundle, args.threads, bodies)
    import onnxruntime
    import starlette
    import uvicorn

    import lite_rm

    result = {"command": " ".join(sys.argv), "bundle": args.bundle, "threads": args.threads,
              "max_words": args.max_words,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), {platform.platform()}",
              "versions": {"lite_rm": getattr(lite_rm, "__version__", "?"), "onnxruntime": onnxruntime.__version__,
                           "starlette": starlette.__version__, "uvicorn": uvicorn.__version__,
                           "python": platform.python_version()},
              "server": levels, "in_process": baseline}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for row in levels:
        print(f"{row['clients']:>3} clients: {row['pairs_per_s']:>7} pairs/s  p50 {row['p50_ms']} ms  "
              f"p99 {row['p99_ms']} ms  ({row['requests']} requests)")
    for row in baseline:
        print(f"in-process {row['mode']}: {row['pairs_per_s']} pairs/s")


if __name__ == "__main__":
    main()
