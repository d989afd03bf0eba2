"""``lite-rm train``: the three-stage training from flags or one config file.

The flags come from :data:`lite_rm.training.config.TRAIN_FLAGS`, the table beside :class:`TrainConfig`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from lite_rm.cli.options import (
    SectionedCommand,
    data_source_options_for,
    flag_options,
    flag_sections,
    flag_values,
    json_option,
    parse_columns,
    parse_literal,
    parse_pairs,
)
from lite_rm.training.config import DATA_SOURCE_KEYS, STAGES, TRAIN_FLAGS, TrainConfig


def _flag_overrides(flags: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """Config keys set by the command's flags (``data``: the config file, for --skip-base's stage list)."""
    out = flag_values(TRAIN_FLAGS, flags)
    if flags.get("skip_base"):
        out["stages"] = [s for s in (out.get("stages") or data.get("stages") or list(STAGES)) if s != "base"]
    source = {"data_format": flags.get("data_format"), "split": flags.get("split"),
              "columns": parse_columns(flags.get("columns") or ()) or None,
              "skip_invalid": flags.get("skip_invalid") or None}
    out.update({DATA_SOURCE_KEYS[name]: value for name, value in source.items() if value is not None})
    return out


def _config(config_file: str | None, flags: dict[str, Any], settings: tuple[str, ...]) -> TrainConfig:
    """The run's :class:`TrainConfig`: the config file, then the flags, then ``--set KEY=VALUE``."""
    from lite_rm.training.config_files import config_from, read_config_file

    data: dict[str, Any] = read_config_file(config_file) if config_file else {}
    overrides = _flag_overrides(flags, data)
    for key, value in parse_pairs(settings, "--set").items():
        overrides[key] = parse_literal(value)
    # Not named after the file: a bad value may come from a flag as well as from the file.
    return config_from(data, overrides)


@click.command(cls=SectionedCommand, short_help="Train a reward model: base, general, custom stages.",
               sections=flag_sections(TRAIN_FLAGS, skip_base="Run",
                                                             **dict.fromkeys(DATA_SOURCE_KEYS, "Data")))
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False),
              help="A TOML or YAML config file (keys as in TrainConfig; flags override it).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Any config key, e.g. --set custom.lr=2e-5 --set general.proportions.webgpt=2.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in the output folder.")
@click.option("--overwrite", is_flag=True, help="Start again even if the output folder holds a run.")
@json_option
@flag_options(TRAIN_FLAGS, TrainConfig())
@click.option("--skip-base", is_flag=True, help="Run general and custom only (start from the encoder as is).")
# custom.data_format/data_split/data_columns/skip_invalid (DATA_SOURCE_KEYS): the general and evaluation sets are
# read with the format detected from their first record (lite_rm.training.context, driver).
@data_source_options_for("Only for --custom-data, not --general-set or --eval-set.")
def train(config_file: str | None, settings: tuple[str, ...], resume: bool, overwrite: bool, as_json: bool,
          **flags: Any) -> None:
    """Train a reward model in three stages: base (MLM), general (GRFT), custom (CRFT).

    Each stage writes a Hugging Face checkpoint into the output folder (base/, general/,
    custom-<domain>/); after each reward stage the model is evaluated on every evaluation set, and the
    run ends with results.md and results.json (rows: stages, columns: sets).

    \b
    Examples:
      lite-rm train -o runs/demo
      lite-rm train -o runs/biz --skip-base --domain business --l2sp-coef 0.01
      lite-rm train -o runs/mine --stages general,custom --custom-data my-prefs.jsonl
      lite-rm train -c my.toml --resume
    """
    from lite_rm.extras import require
    from lite_rm.training.metrics import check_reporters

    require("torch")
    config = _config(config_file, flags, settings)
    check_reporters(config.report_to)  # a missing library fails now, not after the first stage
    from lite_rm.training.pipeline import train as run_training

    results = run_training(config, resume=resume, overwrite=overwrite)
    out = Path(config.output_dir)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    click.echo((out / "results.md").read_text(encoding="utf-8"))
    click.echo(f"checkpoints and results in {out}/ (results.md, results.json)")
