"""``lite-rm data check``: validate and summarize preference files. Torch-free."""

from __future__ import annotations

import json
import logging
from typing import Any

import click

from lite_rm.cli import fail
from lite_rm.cli.options import data_source_options, json_option, parse_columns
from lite_rm.jobs.data_check import FileCheck, RowsCheck

logger = logging.getLogger(__name__)


@click.group()
def data() -> None:
    """Preference data: validate and summarize files.

    \b
    Examples:
      lite-rm data check my-prefs.jsonl
      lite-rm data check train.jsonl test.jsonl --fail-on-leaks
    """


@data.command("check", short_help="Validate and summarize preference files.")
@click.argument("sources", nargs=-1, required=True)
@data_source_options
@click.option("--domain", default=None, help="DSP target domain (default: every domain).")
@click.option("--tokenizer", "tokenizer_path", type=click.Path(exists=True, dir_okay=True), default=None,
              help="tokenizer.json (or a folder with one) for length statistics; default: the MiniLM one.")
@click.option("--max-length", type=int, default=256, show_default=True,
              help="Max tokens per (prompt, response) input, as in training and scoring.")
@click.option("--fail-on-leaks", is_flag=True, help="Exit with status 1 when sources share prompts.")
@json_option
def check(
    sources: tuple[str, ...], data_format: str | None, split: str | None, columns: tuple[str, ...],
    skip_invalid: bool, domain: str | None, tokenizer_path: str | None, max_length: int,
    fail_on_leaks: bool, as_json: bool,
) -> None:
    """Validate and summarize preference SOURCES (files, saved datasets or dataset names).

    Reports the format, pairs, ties and invalid records dropped, token lengths (how much the max length
    truncates) and leaks: prompts shared between the sources given together (train and test).

    \b
    Examples:
      lite-rm data check my-prefs.jsonl
      lite-rm data check train.jsonl test.jsonl --fail-on-leaks
      lite-rm data check answers.csv --column prompt=question --max-length 512
    """
    from lite_rm.data import DataError
    from lite_rm.jobs.data_check import check_source, find_leaks
    from lite_rm.scoring.encoding import InputRule, load_tokenizer

    try:
        rule = InputRule(max_length=max_length)
    except ValueError as err:
        fail(f"--max-length: {err}")
    tokenizer = None
    try:
        if tokenizer_path is None:
            from lite_rm.training.encoders import default_encoder_path

            tokenizer_path = str(default_encoder_path())
        tokenizer = load_tokenizer(tokenizer_path)
    except Exception as err:  # noqa: BLE001 - a missing file or a tokenizers parse error: stats are optional
        logger.warning("no token statistics: %s (pass --tokenizer PATH/tokenizer.json)", err)
    mapping = parse_columns(columns)
    checks: list[FileCheck | RowsCheck] = []
    for source in sources:
        try:
            checks.append(check_source(
                source, format=data_format, domain=domain, skip_invalid=skip_invalid, columns=mapping,
                split=split, tokenizer=tokenizer, rule=rule,
            ))
        except DataError as err:
            if err.reason != "unknown format" or data_format is not None:
                raise
            checks.append(_check_score_rows(source, mapping, split, skip_invalid, tokenizer, rule, err))
    leaks = find_leaks(checks)
    if as_json:
        out = {"sources": [c.to_dict() for c in checks],
               "leaks": [{"a": a, "b": b, "shared_prompts": n, "example": ex} for a, b, n, ex in leaks]}
        click.echo(json.dumps(out, indent=2))
    else:
        for c in checks:
            _print_check(c)
        if len(checks) > 1:
            if leaks:
                for a, b, n, example in leaks:
                    click.echo(f"LEAK: {n} prompts appear in both {a} and {b} (e.g. {example!r})")
            else:
                click.echo(f"leaks: none ({len(checks)} sources share no prompt)")
    if leaks and fail_on_leaks:
        fail(f"{sum(n for _, _, n, _ in leaks)} prompts are shared between sources (see above)")


def _check_score_rows(source: str, columns: dict[str, str], split: str | None, skip_invalid: bool, tokenizer: Any,
                      rule: Any, err: Exception) -> RowsCheck:
    """``source`` as rows ``lite-rm score`` takes (prompt+response, prompt+a+b); ``err`` (no preference
    format found) is raised again when they are not that either."""
    from lite_rm.jobs.batch_scoring import check_rows
    from lite_rm.jobs.data_check import rows_check

    report, texts = check_rows(source, columns=columns, split=split, skip_invalid=skip_invalid)
    if not texts:
        raise err
    fields = "prompt+response" if len(texts[0]) == 2 else "prompt+a+b"
    return rows_check(report.input, fields, report.records, report.skips, texts, tokenizer, rule)


def _print_check(c: FileCheck | RowsCheck) -> None:
    click.echo(f"{c.source}  [{c.format}]")
    if isinstance(c, RowsCheck):
        click.echo("  " + c.summary())
        for message in c.skips.first_errors:
            click.echo(f"    skipped: {message}")
    else:
        for key, rep in c.reports.items():
            label = f"  {key}: " if key else "  "
            click.echo(label + rep.summary())
            for message in rep.first_errors:
                click.echo(f"    skipped: {message}")
    if c.lengths:
        s = c.lengths
        click.echo(
            f"  tokens: prompt median {s.prompt['median']:.0f} / p95 {s.prompt['p95']:.0f} / max {s.prompt['max']}; "
            f"response median {s.response['median']:.0f} / p95 {s.response['p95']:.0f} / max {s.response['max']}"
        )
        click.echo(
            f"  inputs over max length {s.max_length}: {100 * s.truncated_share:.1f}% "
            f"(pair median {s.pair['median']:.0f}, p95 {s.pair['p95']:.0f} tokens; truncation keeps "
            "the end of the prompt and the start of the response)"
        )
