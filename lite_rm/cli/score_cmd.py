"""``lite-rm score``: CPU batch scoring of a file (or stdin) with a bundle. Torch-free (core install)."""

from __future__ import annotations

import json
from typing import Any

import click

from lite_rm.cli import fail
from lite_rm.cli.options import (
    SectionedCommand,
    bundle_options,
    data_source_options,
    head_option,
    json_option,
    parse_columns,
    sections,
)


@click.command("score", cls=SectionedCommand, short_help="Score a file of rows with a bundle (no torch).",
               sections=sections({
    "Input": ("input_path", "data_format", "split", "columns", "skip_invalid", "kind", "domain"),
    "Output": ("output_path", "resume", "progress", "as_json"),
    "Model": ("threads", "verify", "backend", "head", "batch_size"),
    "Ray": ("engine", "address", "workers")}))
@click.argument("bundle", type=click.Path(path_type=str), metavar="BUNDLE|ORG/NAME")
@click.option("-i", "--input", "input_path", required=True, type=click.Path(path_type=str, allow_dash=True),
              help="Rows to score: JSONL, JSON or CSV/TSV (optionally .gz), a dataset folder or name, or - "
                   "for stdin. prompt+response rows, prompt+a+b rows, or preference records "
                   "(prompt/chosen/rejected, messages/chosen/rejected, DSP with --domain, ...).")
@click.option("-o", "--output", "output_path", required=True, type=click.Path(path_type=str, allow_dash=True),
              help="Results: JSONL, or CSV if it ends in .csv/.tsv; - for JSON lines on stdout. A file is "
                   "written as OUTPUT.partial (locked against a second run) and renamed when done.")
@data_source_options
@click.option("--input-type", "kind", type=click.Choice(["jsonl", "json", "csv", "tsv"]), default=None,
              help="The input's file type when its name does not say (default: from the content).")
@click.option("--domain", default=None, help="For DSP data: the domain whose response is preferred.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUTPUT.partial.")
@bundle_options("onnxruntime")
@head_option
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="(prompt, response) texts per model call [default: 1, the Scorer's: one text per call on "
                   "each thread].")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar of rows with rows/s.")
@json_option
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: score a folder or glob of shards (-i) into a folder (-o, one NAME.jsonl per shard) on a "
                   "Ray cluster; finished shards are skipped on a rerun. Needs lite-rm[ray].")
@click.option("--address", default=None, help="With --engine ray: the cluster to join (e.g. auto or "
                                                "ray://HOST:10001; default: start a local one).")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="With --engine ray: scoring actors, each with its own model and --threads CPUs "
                   "(0: the free cores, divided among them).")
def score(bundle: str, input_path: str, output_path: str, data_format: str | None, split: str | None,
          columns: tuple[str, ...], skip_invalid: bool, kind: str | None, domain: str | None, resume: bool,
          threads: int, head: Any, batch_size: int | None, progress: bool, as_json: bool, verify: bool,
          backend: str, engine: str, address: str | None, workers: int) -> None:
    """Score (prompt, response) rows, or give P(a preferred over b) for (prompt, a, b) rows and for
    preference records (a = chosen, b = rejected: the share where a wins is the pairwise accuracy).

    Streams both files, so memory stays flat whatever the input's size. BUNDLE is a bundle folder, or a
    Hugging Face Hub repository ORG/NAME holding one (fetched through the Hub's cache; HF_HUB_OFFLINE=1
    uses the cache only).

    \b
    Examples:
      lite-rm score bundles/academy -i rows.jsonl -o scores.jsonl
      lite-rm score bundles/academy -i prefs.jsonl -o probs.csv --head alice.json
      lite-rm score acme/tiny-rm -i - -o - < rows.jsonl
    """
    from lite_rm.data import DataError
    from lite_rm.jobs.batch_scoring import score_file
    from lite_rm.scoring.hub import resolve_bundle
    from lite_rm.scoring.scorer import DEFAULT_BATCH_SIZE, Scorer
    from lite_rm.threads import resolve_threads

    if as_json and output_path == "-":
        raise click.UsageError("--json and -o - both write to stdout; give -o FILE with --json")
    bundle = str(resolve_bundle(bundle))  # org/name: a Hugging Face Hub repository, through its cache
    mapping = parse_columns(columns)
    if engine == "ray":
        if head is not None:
            raise click.UsageError("--head is not supported with --engine ray yet; score with the local engine")
        if output_path == "-" or input_path == "-" or resume:
            raise click.UsageError("--engine ray reads a folder or glob of shards (-i) and writes a folder (-o); "
                                   "stdin/stdout and --resume do not apply (a rerun resumes by itself)")
        _score_on_ray(bundle, input_path, output_path, address, workers, as_json, verify,
                      threads=threads, batch_size=batch_size or DEFAULT_BATCH_SIZE, data_format=data_format,
                      columns=mapping,
                      domain=domain, skip_invalid=skip_invalid)
        return
    try:
        scorer = Scorer(bundle, threads=resolve_threads(threads), batch_size=batch_size, verify=verify,
                        backend=backend, head=head)
        report = score_file(
            scorer, input_path, output_path, kind=kind, data_format=data_format, columns=mapping, split=split,
            domain=domain, skip_invalid=skip_invalid, resume=resume, chunk_size=max(256, 8 * scorer.batch_size),
            progress=progress,
        )
    except DataError as err:
        hint = "" if output_path == "-" or err.reason in ("no rows", "file not found", "no domain") else (
            ". The rows before it are written: rerun with --skip-invalid --resume to skip it and go on (a fixed "
            "input is another input: rerun without --resume)")
        fail(f"{err}{hint}")
    except KeyboardInterrupt:
        fail(f"interrupted; rerun with --resume to continue from {output_path}.partial")
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(f"{report.summary()} -> {report.output}", err=True)
    for message in report.skips.first_errors:
        click.echo(f"  skipped: {message}", err=True)


def _score_on_ray(bundle: str, inputs: str, output_dir: str, address: str | None, workers: int, as_json: bool,
                  verify: bool, **options: Any) -> None:
    """``--engine ray``: every shard of ``inputs`` into ``output_dir`` (see :mod:`lite_rm.jobs.distributed`)."""
    from lite_rm.errors import LiteRMError
    from lite_rm.extras import require
    from lite_rm.jobs.distributed import ShardOptions, list_shards, score_dataset
    from lite_rm.scoring.bundle import read_manifest

    read_manifest(bundle, verify=verify)  # a bad bundle or input fails here, before Ray starts
    list_shards(inputs)
    ray = require("ray", "ray")
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        report = score_dataset(bundle, inputs, output_dir, workers=workers, options=ShardOptions(**options))
    except (LiteRMError, OSError):
        raise  # explained at the CLI boundary
    except Exception as err:  # Ray wraps a worker's error (a bad row, a full disk) in its own types
        fail(f"a shard failed: {str(err).strip().splitlines()[-1][:500]}; rerun the same command to score the "
             "shards not done (finished shards are kept)")
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(f"{report.summary()} -> {output_dir}", err=True)
