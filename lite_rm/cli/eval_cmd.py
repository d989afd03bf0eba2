"""``lite-rm eval``: pairwise accuracy of a checkpoint or an ONNX bundle, as the stages x sets table."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from lite_rm.cli import fail, options

OUTPUT_SUFFIXES = (".json", ".md")
PROGRESS_CHUNK = 1024  # texts scored between progress updates (large: each call sorts its texts by length)


def _bundle_score_fn(model: Path, threads: int, batch_size: int | None, verify: bool, backend: str, head: Any = None
                     ) -> Any:
    from lite_rm.scoring.scorer import Scorer

    return Scorer(model, threads=threads, batch_size=batch_size, verify=verify, backend=backend,
                  head=head).score_pairs


def _checkpoint_score_fn(model: Path, bf16: bool | None, threads: int, batch_size: int) -> Any:
    from lite_rm.extras import MissingExtraError, require

    try:  # before any import of the training modules, which need torch
        require("torch")
        require("transformers")
    except MissingExtraError as err:
        fail(f"{model} is a PyTorch checkpoint: {err}")
    from lite_rm.scoring.encoding import load_tokenizer
    from lite_rm.training.checkpoint import input_rule_of
    from lite_rm.training.modeling import load_reward_model, resolve_bf16, torch_score_fn, torch_threads

    try:
        with torch_threads(threads):
            rule = input_rule_of(model)
            reward_model = load_reward_model(model, seed=0)
            tokenizer = load_tokenizer(model)
    except (OSError, ValueError) as err:  # transformers' own errors for a broken folder: say which folder
        fail(f"{model}: cannot load the checkpoint ({err})")
    score = torch_score_fn(reward_model, tokenizer, rule, resolve_bf16("auto" if bf16 is None else bf16), batch_size)

    def score_in_threads(prompts: Sequence[str], responses: Sequence[str]) -> Any:
        # torch's thread count is process-wide: set it only while scoring, not for the caller's process
        with torch_threads(threads):
            return score(prompts, responses)

    return score_in_threads


def _score_fn(model: Path, bf16: bool | None, threads: int, batch_size: int | None, verify: bool,
              backend: str = "onnxruntime", head: Any = None) -> tuple[Any, str]:
    """A scoring function for a bundle (torch-free) or a checkpoint (torch), and what it is."""
    if (model / "manifest.json").is_file():
        return _bundle_score_fn(model, threads, batch_size, verify, backend, head), "bundle"
    if head is not None:
        fail("--head applies to bundles (heads live in exported bundles); export the checkpoint first")
    if not (model / "config.json").is_file():
        fail(f"{model}: expected a checkpoint folder (config.json, weights, tokenizer) or an ONNX bundle folder "
             "(manifest.json, model.onnx)")
    return _checkpoint_score_fn(model, bf16, threads, batch_size or 64), "checkpoint"


def _model_folder(model: str) -> Path:
    """MODEL as a folder: a path, or the snapshot of a Hub repository ORG/NAME in the Hub's cache."""
    from lite_rm.scoring.hub import resolve_bundle

    folder = resolve_bundle(model)
    if not folder.is_dir():
        raise click.BadParameter(f"{model!r}: no such folder (nor a Hub repository ORG/NAME)", param_hint="MODEL")
    return folder


def _with_progress(score: Any) -> Any:
    """``score`` with a progress bar over the texts (on stderr, shown on a terminal only)."""
    from tqdm.auto import tqdm

    def scored(prompts: Sequence[str], responses: Sequence[str]) -> Any:
        import numpy as np

        out = []
        with tqdm(total=len(prompts), desc="scoring", unit="text", disable=None, leave=False) as bar:
            for i in range(0, len(prompts), PROGRESS_CHUNK):
                out.append(np.asarray(score(prompts[i:i + PROGRESS_CHUNK], responses[i:i + PROGRESS_CHUNK])))
                bar.update(len(out[-1]))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    return scored


def _named_sources(data: tuple[str, ...]) -> dict[str, str]:
    """``[NAME=]SOURCE`` items -> ``{name: source}`` (the name defaults to the file's or dataset's stem)."""
    named: dict[str, str] = {}
    for item in data:
        label, sep, source = item.partition("=")
        if not sep:
            label, source = "", item
        if not source:
            fail(f"--data: expected [NAME=]SOURCE, found {item!r}")
        named[label or Path(source).name.split(".")[0]] = source
    return named


def _check_outputs(outputs: tuple[str, ...]) -> None:
    for out in outputs:
        if Path(out).suffix.lower() not in OUTPUT_SUFFIXES:
            raise click.BadParameter(f"{out!r}: expected a .json or .md file", param_hint="-o/--output")


def _write_outputs(outputs: tuple[str, ...], payload: dict[str, Any], table: str) -> None:
    from lite_rm.files import write_text_atomic

    for out in outputs:
        text = json.dumps(payload, indent=2) + "\n" if Path(out).suffix.lower() == ".json" else table
        try:
            write_text_atomic(out, text)
        except OSError as err:
            fail(f"-o {out}: cannot write the results ({err.strerror or err})")


@click.command("eval", cls=options.SectionedCommand, context_settings={"show_default": True},
               short_help="Pairwise accuracy of a checkpoint or bundle.",
               sections=options.sections({
    "Data": ("data", "data_format", "split", "columns", "skip_invalid", "domains", "data_dir"),
    "Output": ("name", "outputs", "as_json"),
    "Model": ("bf16", "threads", "verify", "backend", "head", "batch_size")}))
@click.argument("model", metavar="MODEL|ORG/NAME")
@click.option("--data", "data", multiple=True, metavar="[NAME=]SOURCE",
              help="An evaluation set (repeatable): a file, a datasets folder or a Hugging Face dataset name. "
                   "DSP data gives one set per domain with per-opponent accuracy. "
                   "[default: the test files of the data folder]")
@options.data_source_options
@click.option("--domain", "domains", multiple=True, help="DSP domains to evaluate (repeatable). [default: all four]")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Data folder for the default sets.")
@click.option("--name", help="Row label in the table. [default: the model folder's name]")
@click.option("-o", "--output", "outputs", multiple=True, type=click.Path(dir_okay=False),
              help="Write the results to FILE: JSON for .json, the Markdown table for .md (repeatable; "
                   "missing folders are created).")
@options.json_option
@click.option("--bf16/--no-bf16", default=None, help="bfloat16 autocast for checkpoints. [default: auto]")
@options.bundle_options("scoring")
@options.head_option
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="(prompt, response) texts per model call [default: 64 for a checkpoint, the Scorer's 1 for a "
                   "bundle].")
def eval_command(model: str, data: tuple[str, ...], data_format: str | None, split: str | None,
                 columns: tuple[str, ...], skip_invalid: bool, domains: tuple[str, ...], data_dir: str | None,
                 name: str | None, outputs: tuple[str, ...], as_json: bool, bf16: bool | None, threads: int,
                 head: Any, batch_size: int | None, verify: bool, backend: str) -> None:
    """Pairwise accuracy of MODEL (a checkpoint or an ONNX bundle folder, or a Hugging Face Hub repository
    ORG/NAME holding a bundle, through the Hub's cache) on preference sets.

    \b
    Examples:
      lite-rm eval runs/demo/custom-academy
      lite-rm eval runs/demo/general --data helpful=../shared/data/general/helpful.test.json -o out/general.md
      lite-rm eval bundle/ --data mine=my-prefs.csv --column prompt=question --json
    """
    from lite_rm.data import DSP_DOMAINS, resolve_data_dir
    from lite_rm.scoring.evaluation import default_eval_sets, eval_sets_from, evaluate, general_average, results_table
    from lite_rm.threads import resolve_threads

    bad = [d for d in domains if d not in DSP_DOMAINS]
    if bad:
        fail(f"--domain: unknown domain {bad[0]!r}; expected one of {', '.join(DSP_DOMAINS)}")
    _check_outputs(outputs)
    load = {"format": data_format, "split": split, "columns": tuple(options.parse_columns(columns).items()),
            "skip_invalid": skip_invalid}
    chosen_domains = list(domains) or list(DSP_DOMAINS)
    folder = _model_folder(model)
    if data:
        sets = eval_sets_from(_named_sources(data), chosen_domains, **load)
    else:
        sets = default_eval_sets(resolve_data_dir(data_dir), chosen_domains)
    loaded = {s.name: s.load() for s in sets}  # bad data fails before the model is loaded
    score, kind = _score_fn(folder, bf16, resolve_threads(threads), batch_size, verify, backend, head)
    results = evaluate(_with_progress(score), sets, loaded)
    rows = {name or Path(model).name: results}
    table = results_table(rows)
    # As in a training run's results.json: the mean over helpful, harmless and webgpt (null without all three).
    payload = {"model": str(model), "kind": kind, "results": rows,
               "general_avg": {label: general_average(row) for label, row in rows.items()}}
    _write_outputs(outputs, payload, table)
    click.echo(json.dumps(payload, indent=2) if as_json else table)
