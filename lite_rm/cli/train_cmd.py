"""``lite-rm train``: the three-stage training from flags or one config file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from lite_rm.cli import fail
from lite_rm.cli.options import data_source_options, json_option, parse_columns


def _parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML literal (``0.1``, ``true``, ``["academy"]``) or else a plain string."""
    from lite_rm.files import TOMLDecodeError, parse_toml

    try:
        return parse_toml(f"v = {text}")["v"]
    except TOMLDecodeError:
        return text


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    out = {}
    for item in values:
        if "=" not in item:
            fail(f"{option}: expected NAME=VALUE, found {item!r}")
        name, value = item.split("=", 1)
        out[name.strip()] = value.strip()
    return out


# flags that set one config key as given (None: not given)
_KEYS = {
    "output": "output_dir", "model": "model", "data_dir": "data_dir", "custom_data": "custom.data",
    "data_format": "custom.data_format", "split": "custom.data_split", "listwise": "custom.listwise",
    "imitation_coef": "custom.imitation_coef", "replay_share": "custom.replay_share",
    "l2sp_coef": "custom.l2sp_coef", "freeze_layers": "custom.freeze_layers",
    "freeze_embeddings": "custom.freeze_embeddings", "interpolate": "custom.interpolate", "seed": "seed",
    "choose": "custom.choose",
    "max_length": "max_length", "bf16": "bf16", "device": "device", "processes": "processes",
    "dropout": "dropout", "threads": "threads", "multitask": "custom.multitask",
}


def _flag_overrides(flags: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """Config keys set by the command's flags (``data``: the config file, for --skip-base's stage list)."""
    out = {key: flags[name] for name, key in _KEYS.items() if flags.get(name) is not None}
    stage_list = [s.strip() for s in flags["stages"].split(",") if s.strip()] if flags.get("stages") else None
    if flags.get("skip_base"):
        stage_list = [s for s in (stage_list or data.get("stages") or ["base", "general", "custom"]) if s != "base"]
    lists = {"stages": stage_list, "custom.domains": list(flags["domains"]) or None,
             "custom.data_columns": parse_columns(flags["columns"]) or None,
             "custom.skip_invalid": flags.get("skip_invalid") or None, "report_to": list(flags["report_to"]) or None,
             "general.sets": _pairs(flags["general_sets"], "--general-set") or None,
             "eval_sets": _pairs(flags["eval_sets"], "--eval-set") or None}
    out.update({k: v for k, v in lists.items() if v is not None})
    if flags.get("proportions"):
        given = _pairs(flags["proportions"], "--proportion")
        out["general.proportions"] = {k: _parse_value(v) for k, v in given.items()}
    for stage in ("base", "general", "custom"):
        if flags.get("epochs") is not None and stage != "base":
            out[f"{stage}.epochs"] = flags["epochs"]
        if flags.get("max_steps") is not None:
            out[f"{stage}.max_steps"] = flags["max_steps"]
    return out


def _config(config_file: str | None, flags: dict[str, Any], settings: tuple[str, ...]) -> Any:
    """The run's :class:`TrainConfig`: the config file, then the flags, then ``--set KEY=VALUE``."""
    from lite_rm.training.config import TrainConfig
    from lite_rm.training.config_files import read_config_file, set_key

    data: dict[str, Any] = read_config_file(config_file) if config_file else {}
    overrides = _flag_overrides(flags, data)
    for key, value in _pairs(settings, "--set").items():
        overrides[key] = _parse_value(value)
    for key, value in overrides.items():
        if key.startswith("general.proportions.") and key.count(".") == 2:
            data.setdefault("general", {}).setdefault("proportions", {})[key.split(".")[2]] = value
        else:
            set_key(data, key, value)
    return TrainConfig.from_dict(data)


@click.command(context_settings={"show_default": True})
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False),
              help="A TOML or YAML config file (keys as in TrainConfig; flags override it).")
@click.option("-o", "--output", help="Run folder for checkpoints and results. [default: runs/lite-rm]")
@click.option("--model",
              help="Encoder to start from: 'default' (offline all-MiniLM-L6-v2), a folder or a hub id.")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Data folder (else $LITE_RM_DATA or ../shared/data).")
@click.option("--stages",
              help="Comma-separated stages to run, e.g. 'general,custom'. [default: base,general,custom]")
@click.option("--skip-base", is_flag=True, help="Run general and custom only (start from the encoder as is).")
@click.option("--domain", "domains", multiple=True, help="DSP domain to customize for (repeatable). [default: academy]")
@click.option("--multitask/--one-model-per-domain", default=None,
              help="Train ONE model for all --domain values: a head per domain on a shared encoder "
                   "(custom-multitask/). [default: one model per domain]")
@click.option("--custom-data", metavar="SOURCE",
              help="Preference data to customize on instead of DSP: a file, a datasets folder or a hub dataset "
                   "name (read with --format/--split/--column/--skip-invalid).")
@data_source_options
@click.option("--general-set", "general_sets", multiple=True, metavar="NAME=SOURCE",
              help="A general preference set: a file, a glob of shards (e.g. big='shards/*.jsonl.gz', quoted), "
                   "a datasets folder or a hub dataset name (repeatable; replaces the default "
                   "helpful/harmless/WebGPT). Large sets are streamed.")
@click.option("--proportion", "proportions", multiple=True, metavar="NAME=X",
              help="Uses per epoch of a general set's pairs (repeatable; 1 = once).")
@click.option("--eval-set", "eval_sets", multiple=True, metavar="NAME=FILE",
              help="An evaluation set (repeatable; replaces the default test files).")
@click.option("--listwise/--pairwise", default=None,
              help="Train DSP lists with a softmax, or as pairs. [default: listwise]")
@click.option("--imitation-coef", type=float, help="Weight of the MLM loss on preferred responses (custom stage).")
@click.option("--replay-share", type=float, help="Share of each custom batch that is general pairs.")
@click.option("--l2sp-coef", type=float,
              help="L2-SP: share of the distance to the general weights pulled back per step, in [0, 1).")
@click.option("--freeze-layers", type=int, help="Freeze the lowest N transformer layers in the custom stage.")
@click.option("--freeze-embeddings/--train-embeddings", default=None, help="Freeze the embeddings in the custom stage.")
@click.option("--interpolate", help="Weight interpolation: off, auto (chosen on validation) or a number in [0, 1].")
@click.option("--choose", type=click.Choice(["validated", "finetuned", "start"]),
              help="What the custom stage ships: validated = the fine-tuned model or a mix only if it beats the "
                   "start model on the custom validation pairs (paired bootstrap) and keeps general accuracy, "
                   "else the start model; finetuned = as --interpolate sets it, unchecked; start = the start "
                   "model. [default: validated]")
@click.option("--epochs", type=float, help="Epochs of every reward stage (general and custom).")
@click.option("--max-steps", type=int, help="Stop every stage after this many steps (quick runs).")
@click.option("--seed", type=int, help="Seed for data order, masking, dropout and head initialization.")
@click.option("--max-length", type=int, help="Token budget of the input rule.")
@click.option("--bf16/--no-bf16", default=None,
              help="bfloat16 autocast. [default: auto: on a GPU that supports it, on a CPU with native bf16]")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]),
              help="Where to train: auto = CUDA when available, else Apple MPS, else the CPU. [default: auto]")
@click.option("--processes", type=click.IntRange(min=1),
              help="Training processes on this machine (PyTorch DDP: one per GPU, or gloo processes on the CPU); "
                   "every step's batch is shared out, so results match one process. [default: 1]")
@click.option("--dropout", type=click.Choice(["all", "hidden", "off"]),
              help="Dropout while training: the encoder's own (all), none on attention (hidden), none (off).")
@click.option("--threads", type=click.IntRange(min=0), help="Torch threads (0: as many as free cores). [default: 0]")
@click.option("--report-to", "report_to", multiple=True, type=click.Choice(["tensorboard", "wandb"]),
              help="Also send the logged metrics to TensorBoard (RUN/tensorboard/<stage>/) or Weights & Biases "
                   "(repeatable; RUN/.metrics/<stage>.jsonl is always written).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Any config key, e.g. --set custom.lr=2e-5 --set general.proportions.webgpt=2.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in the output folder.")
@click.option("--overwrite", is_flag=True, help="Start again even if the output folder holds a run.")
@json_option
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
      lite-rm train -c my.toml --resume
    """
    from lite_rm.extras import require
    from lite_rm.training.metrics import check_reporters

    require("torch")
    config = _config(config_file, flags, settings)
    check_reporters(config.report_to)  # a missing library fails now, not after the first stage
    from lite_rm.training.pipeline import train as run_training

    try:
        results = run_training(config, resume=resume, overwrite=overwrite)
    except ValueError as err:  # the training modules' own checks: a bundle as --model, a resume on other data
        fail(err)
    out = Path(config.output_dir)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    click.echo((out / "results.md").read_text(encoding="utf-8"))
    click.echo(f"checkpoints and results in {out}/ (results.md, results.json)")
