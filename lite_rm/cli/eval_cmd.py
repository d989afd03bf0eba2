"""``lite-rm eval``: pairwise accuracy of a checkpoint or an ONNX bundle, as the stages x sets table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from lite_rm.cli import fail


def _score_fn(model: Path, bf16: bool | None, threads: int, batch_size: int) -> tuple[Any, str]:
    """A scoring function for a bundle (torch-free) or a checkpoint (torch), and what it is."""
    if (model / "manifest.json").is_file() and (model / "model.onnx").is_file():
        try:
            from lite_rm.scorer import Scorer
        except ImportError:
            fail(f"{model} is an ONNX bundle, but this lite-rm cannot score bundles yet; give a checkpoint folder")
        try:
            scorer = Scorer(model, threads=threads or None, batch_size=batch_size)
        except ValueError as err:  # BundleError: missing or corrupted bundle files
            fail(f"{model}: cannot load the bundle ({err})")
        return scorer.score_pairs, "bundle"
    if not (model / "config.json").is_file():
        fail(f"{model}: expected a checkpoint folder (config.json, weights, tokenizer) or an ONNX bundle folder "
             "(manifest.json, model.onnx)")
    from lite_rm.checkpoint import input_rule_of
    from lite_rm.encoding import load_tokenizer
    from lite_rm.extras import require
    from lite_rm.training.modeling import load_reward_model, resolve_bf16, torch_score_fn

    torch = require("torch")
    if threads:
        torch.set_num_threads(threads)
    rule = input_rule_of(model)
    try:
        reward_model = load_reward_model(model, seed=0)
    except (OSError, ValueError) as err:
        fail(f"{model}: cannot load the checkpoint ({err})")
    return torch_score_fn(reward_model, load_tokenizer(model), rule, resolve_bf16("auto" if bf16 is None else bf16),
                          batch_size), "checkpoint"


@click.command("eval", context_settings={"show_default": True})
@click.argument("model", type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data", multiple=True, metavar="[NAME=]FILE",
              help="An evaluation set (repeatable). DSP files give one set per domain with per-opponent "
                   "accuracy. [default: the test files of the data folder]")
@click.option("--domain", "domains", multiple=True, help="DSP domains to evaluate (repeatable). [default: all four]")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Data folder for the default sets.")
@click.option("--name", help="Row label in the table. [default: the model folder's name]")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the results as JSON here.")
@click.option("--markdown", "md_out", type=click.Path(dir_okay=False), help="Also write the table as Markdown here.")
@click.option("--bf16/--no-bf16", default=None, help="bfloat16 autocast for checkpoints. [default: auto]")
@click.option("--threads", type=int, default=0, help="Torch threads for checkpoints (0: torch's default).")
@click.option("--batch-size", type=int, default=64, help="Texts per forward pass.")
def eval_command(model: str, data: tuple[str, ...], domains: tuple[str, ...], data_dir: str | None, name: str | None,
                 json_out: str | None, md_out: str | None, bf16: bool | None, threads: int, batch_size: int) -> None:
    """Pairwise accuracy of MODEL (a checkpoint or an ONNX bundle folder) on preference sets.

    \b
    Examples:
      lite-rm eval runs/demo/custom-academy
      lite-rm eval runs/demo/general --data helpful=../shared/data/general/helpful.test.json
    """
    from lite_rm.data import DSP_DOMAINS, DataError, resolve_data_dir
    from lite_rm.evaluation import default_eval_sets, eval_sets_from, evaluate, results_table

    bad = [d for d in domains if d not in DSP_DOMAINS]
    if bad:
        fail(f"--domain: unknown domain {bad[0]!r}; expected one of {', '.join(DSP_DOMAINS)}")
    chosen_domains = list(domains) or list(DSP_DOMAINS)
    try:
        if data:
            named: dict[str, str] = {}
            for item in data:
                label, _, path = item.rpartition("=") if "=" in item else ("", "", item)
                if not Path(path).is_file():
                    fail(f"--data: file not found: {path}")
                named[label or Path(path).name.split(".")[0]] = path
            sets = eval_sets_from(named, chosen_domains)
        else:
            sets = default_eval_sets(resolve_data_dir(data_dir), chosen_domains)
        score, kind = _score_fn(Path(model), bf16, threads, batch_size)
        results = evaluate(score, sets)
    except (DataError, FileNotFoundError) as err:
        fail(err)
        return
    rows = {name or Path(model).name: results}
    table = results_table(rows)
    click.echo(table)
    if md_out:
        Path(md_out).write_text(table, encoding="utf-8")
    if json_out:
        Path(json_out).write_text(json.dumps({"model": str(model), "kind": kind, "results": rows}, indent=2) + "\n",
                                  encoding="utf-8")
