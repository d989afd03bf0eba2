"""Options shared by several commands, written once so that a flag means the same on every command."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from lite_rm.cli import fail
from lite_rm.data.formats import SOURCE_FORMATS
from lite_rm.flags import Flag

F = TypeVar("F", bound=Callable[..., Any])

FORMAT_CHOICES = list(SOURCE_FORMATS)


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
    """``--format``, ``--split``, ``--column``, ``--skip-invalid``: how preference data is read (the options
    of :func:`lite_rm.data.load_preferences`), the same on every command that reads it."""
    return data_source_options_for("")(func)


def data_source_options_for(scope: str) -> Callable[[F], F]:
    """:func:`data_source_options` whose help texts end with ``scope``: which of the command's data they read,
    where it reads several (``lite-rm train``: ``--custom-data`` only)."""
    end = f" {scope}" if scope else ""
    options = [
        click.option("--format", "data_format", type=click.Choice(FORMAT_CHOICES), default=None,
                     help=f"Preference format (detected from the first record when omitted).{end}"),
        click.option("--split", default=None, help=f"Split of a Hugging Face dataset (default: train).{end}"),
        click.option("--column", "columns", multiple=True, metavar="FIELD=COLUMN",
                     help=f"Map a source column to a field, e.g. --column prompt=question. Repeatable.{end}"),
        click.option("--skip-invalid", is_flag=True,
                     help=f"Skip malformed records (counted) instead of stopping.{end}"),
    ]

    def decorate(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func
    return decorate


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
         "bf16 on CPUs with native bf16).")


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


class SectionedCommand(click.Command):
    """A command whose ``--help`` lists its options in sections: ``sections`` maps a parameter's name to its
    section's title (from a flag table, :class:`lite_rm.flags.Flag`); the others are listed first, as Options."""

    def __init__(self, *args: Any, sections: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sections = sections or {}

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        listed: dict[str, list[tuple[str, str]]] = {"Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record:
                listed.setdefault(self.sections.get(param.name or "", "Options"), []).append(record)
        for title, rows in listed.items():
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def sections(groups: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """``sections`` of a :class:`SectionedCommand` from ``{title: parameter names}``."""
    return {name: title for title, names in groups.items() for name in names}


def flag_sections(table: Sequence[Flag], **more: str) -> dict[str, str]:
    """``sections`` of a :class:`SectionedCommand` for a flag table (``more``: other parameters' sections)."""
    return {flag.dest: flag.group for flag in table} | more


def flag_options(table: Sequence[Flag], defaults: Any, **fill: str) -> Callable[[F], F]:
    """Click options built from a flag table beside a config dataclass (:mod:`lite_rm.flags`).

    Every option's click default is ``None`` (not given: the config's own value stands) and its help ends
    with the default read from ``defaults`` (an instance of the dataclass); ``fill`` fills ``{name}``
    placeholders of the help texts.
    """
    def decorate(func: F) -> F:
        for flag in reversed(table):
            func = _flag_option(flag, flag.default_of(defaults), fill)(func)
        return func
    return decorate


def _flag_option(flag: Flag, default: str, fill: dict[str, str]) -> Callable[[F], F]:
    text = flag.help.format(**fill) if fill else flag.help
    kwargs: dict[str, Any] = {"default": None, "metavar": flag.metavar, "show_default": False,
                              "help": text + (f"  [default: {default}]" if default else "")}
    if flag.kind in ("list", "table", "numbers"):
        kwargs["multiple"] = True
    if flag.kind == "flag":
        kwargs["is_flag"], kwargs["flag_value"] = True, True
    kind = _click_type(flag)
    if kind is not None:
        kwargs["type"] = kind
    return click.option(*flag.decls.split(), flag.dest, **kwargs)


def _click_type(flag: Flag) -> Any:
    """The click type of a flag's value (``None``: a string, or a flag)."""
    bounded = flag.low is not None or flag.high is not None
    if flag.kind == "int" and bounded:
        low, high = (None if bound is None else int(bound) for bound in (flag.low, flag.high))
        return click.IntRange(low, high, min_open=flag.low_open, max_open=flag.high_open)
    if flag.kind == "float" and bounded:
        return click.FloatRange(flag.low, flag.high, min_open=flag.low_open, max_open=flag.high_open)
    if flag.choices:
        return click.Choice(flag.choices)
    paths = {"folder": click.Path(file_okay=False, path_type=str), "file": click.Path(path_type=str)}
    return {"int": int, "float": float, **paths}.get(flag.kind)


def flag_values(table: Sequence[Flag], params: dict[str, Any]) -> dict[str, Any]:
    """The config keys the given flags set, ``{"custom.l2sp_coef": 0.1, ...}`` (flags not given: absent)."""
    out: dict[str, Any] = {}
    for flag in table:
        value = _flag_value(flag, params.get(flag.dest))
        if value is not None:
            out.update(dict.fromkeys(flag.key_list, value))
    return out


def _flag_value(flag: Flag, raw: Any) -> Any:
    if raw is None or raw == () or (flag.kind == "flag" and not raw):
        return None
    option = flag.decls.split()[-1].split("/")[0]
    if flag.kind == "csv":
        return [item.strip() for item in raw.split(",") if item.strip()] or None
    if flag.kind == "list":
        return list(raw)
    if flag.kind == "table":
        return parse_pairs(raw, option)
    if flag.kind == "numbers":
        return {name: parse_literal(value) for name, value in parse_pairs(raw, option).items()}
    return raw


def parse_pairs(values: Sequence[str], option: str) -> dict[str, str]:
    """``("a=1", "b=x")`` -> ``{"a": "1", "b": "x"}``; an item without ``=`` stops the command."""
    out = {}
    for item in values:
        if "=" not in item:
            fail(f"{option}: expected NAME=VALUE, found {item!r}")
        name, value = item.split("=", 1)
        out[name.strip()] = value.strip()
    return out


def parse_literal(text: str) -> Any:
    """A value given on the command line: a TOML literal (``0.1``, ``true``, ``["academy"]``) or else a string."""
    from lite_rm.files import TOMLDecodeError, parse_toml

    try:
        return parse_toml(f"v = {text}")["v"]
    except TOMLDecodeError:
        return text
