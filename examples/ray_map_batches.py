"""Score your own Ray Dataset: ``ds.map_batches(BundleScorer, ...)`` adds a score column.

    python examples/ray_map_batches.py BUNDLE generations.jsonl scored/ --prompt-column question \
        --response-column answer --concurrency 4

Any Dataset works (read_parquet from S3, a table built in memory, the output of your generation step):
each actor opens the bundle once. The bundle must be at the same path on every node (or use a Hub
repository org/name, fetched into each node's cache). Needs ``lite-rm[ray]``.
"""

from __future__ import annotations

import argparse

import ray

from lite_rm.jobs.distributed import BundleScorer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="score a Ray Dataset's prompt/response columns with a bundle")
    parser.add_argument("bundle", help="a bundle folder (the same path on every node)")
    parser.add_argument("input", help="JSON lines or Parquet (a file or folder) with prompt and response columns")
    parser.add_argument("output", help="a folder for the scored rows (JSON lines)")
    parser.add_argument("--prompt-column", default="prompt")
    parser.add_argument("--response-column", default="response")
    parser.add_argument("--concurrency", type=int, default=2, help="scoring actors")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads (CPUs) per actor")
    parser.add_argument("--address", default=None, help="a cluster to join (default: start a local one)")
    args = parser.parse_args(argv)

    ray.init(address=args.address, include_dashboard=False)
    read = ray.data.read_parquet if args.input.endswith((".parquet", ".pq")) else ray.data.read_json
    ds = read(args.input)
    scored = ds.map_batches(
        BundleScorer,
        fn_constructor_kwargs={"bundle": args.bundle, "prompt_column": args.prompt_column,
                               "response_column": args.response_column, "threads": args.threads},
        concurrency=args.concurrency, num_cpus=args.threads, batch_size=256, batch_format="pandas")
    scored.write_json(args.output)  # runs the pipeline: Ray Data is lazy until a write or take
    print(f"scored -> {args.output}")
    ray.shutdown()


if __name__ == "__main__":
    main()
