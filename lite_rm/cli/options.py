"""Options shared by several commands, written once so that a flag means the same on every command."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

FORMAT_CHOICES = ["dsp", "text-score", "hh-rlhf", "pairs", "hf"]


def parse_columns(values: tuple[str, ...]) -> dict[str, str]:
    """``("prompt=question", ...)`` -> ``{"prompt": "question"}``; a bad item is a usage error."""
    columns = {}
    for value in values:
        ours, sep, theirs = value.partition("=")
        if not sep or ours not in ("prompt", "chosen", "rejected", "response", "a", "b") or not theirs:
            raise click.BadParameter(
                f"{value!r}: expected FIELD=COLUMN with FIELD one of prompt, chosen, rejected, response, a, b "
                "(e.g. --column prompt=question)", param_hint="--column")
        columns[ours] = theirs
    return columns


def data_source_options(func: F) -> F:
    """``--format``, ``--split``, ``--column``, ``--domain``, ``--skip-invalid``: how preference data is read
    (the options of :func:`lite_rm.data.load_preferences`), the same on every command that reads it."""
    options = [
        click.option("--format", "data_format", type=click.Choice(FORMAT_CHOICES), default=None,
                     help="Preference format (detected from the first record when omitted)."),
        click.option("--split", default=None, help="Split of a Hugging Face dataset (default: train)."),
        click.option("--column", "columns", multiple=True, metavar="FIELD=COLUMN",
                     help="Map a source column to a field, e.g. --column prompt=question. Repeatable."),
        click.option("--skip-invalid", is_flag=True, help="Skip malformed records (counted) instead of stopping."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def threads_option(what: str) -> Callable[[F], F]:
    """``--threads N``: 0 (the default) means as many threads as there are free cores."""
    return click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
                        help=f"Threads for {what} (0: as many as there are free cores).")


json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print the result as JSON on stdout instead of text.")

verify_option = click.option("--verify", is_flag=True,
                             help="Check every bundle file's SHA-256 against the manifest before loading "
                                  "(reads every byte; catches a tampered or corrupted copy).")

backend_option = click.option(
    "--backend", type=click.Choice(["onnxruntime", "openvino"]), default="onnxruntime", show_default=True,
    help="Engine that runs the bundle: onnxruntime (the parity-checked scores) or openvino (extra [openvino]; "
         "bf16 on CPUs with native bf16, faster there; see bench/SCORING.md).")


def bundle_options(what: str) -> Callable[[F], F]:
    """``--threads``, ``--verify`` and ``--backend``: how a command opens and runs a bundle."""
    def decorate(func: F) -> F:
        return threads_option(what)(verify_option(backend_option(func)))
    return decorate


def head_option(func: F) -> F:
    """``--head``: which reward of a bundle to use (see :meth:`lite_rm.scoring.scorer.Scorer.score`); the command
    gets ``head``, already a Scorer ``head`` (:func:`parse_heads`)."""
    return click.option(
        "--head", "head", multiple=True, metavar="NAME|FILE|NAME=WEIGHT",
        callback=lambda ctx, param, values: parse_heads(values),
        help="Score with this head of the bundle (default: its own score), a head file (a profile from "
             "lite-rm personalize --profile), or a mixture: repeat NAME=WEIGHT, e.g. --head default=0.5 "
             "--head alice=0.5.")(func)


def parse_heads(values: tuple[str, ...]) -> str | dict[str, float] | None:
    """``--head`` values as a Scorer ``head``: none, one name or file, or ``{name: weight}``."""
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        return values[0]
    from lite_rm.scoring.bundle import MAX_MAGNITUDE, bounded

    mixture: dict[str, float] = {}
    for value in values:
        name, sep, weight = value.rpartition("=")
        try:
            number = float(weight)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise click.BadParameter(f"{value!r}: expected NAME=WEIGHT (a number) when several heads are mixed",
                                     param_hint="--head")
        if not bounded(number):
            raise click.BadParameter(f"{value!r}: the weight of head {name!r} must be a finite number within "
                                     f"±{MAX_MAGNITUDE:g}", param_hint="--head")
        if name in mixture:  # two weights for one head: which one was meant is unknown
            raise click.BadParameter(f"{value!r}: head {name!r} is given twice; give each head once with its "
                                     "weight", param_hint="--head")
        mixture[name] = number
    return mixture
