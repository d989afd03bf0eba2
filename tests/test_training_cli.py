"""Training configuration errors and the ``lite-rm train`` / ``lite-rm eval`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_training_support import synthetic_config, write_pairs

from lite_rm.cli import main
from lite_rm.training.config import ConfigError, TrainConfig
from lite_rm.training.config_files import load_config


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"custom": {"replay_share": 1.5}}, "custom.replay_share"),
        ({"custom": {"domains": ["cooking"]}}, "custom.domains"),
        ({"custom": {"interpolate": "sometimes"}}, "custom.interpolate"),
        ({"custom": {"l2sp_coef": -1}}, "custom.l2sp_coef"),
        ({"custom": {"freeze_layers": 1.5}}, "custom.freeze_layers"),
        ({"general": {"lr": 0}}, "general.lr"),
        ({"general": {"head_lr_scale": 0}}, "general.head_lr_scale"),
        ({"general": {"proportions": {"helpful": -1}}}, "general.proportions.helpful"),
        ({"base": {"mlm_probability": 2}}, "base.mlm_probability"),
        ({"base": {"batch_size": 0}}, "base.batch_size"),
        ({"stages": ["general", "deploy"]}, "stages"),
        ({"max_length": 4}, "max_length"),
        ({"bf16": "maybe"}, "bf16"),
        ({"dropout": "attention"}, "dropout"),
        ({"custom": {"listwise": "yes"}}, "custom.listwise"),
    ],
)
def test_bad_values_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=f"'{key}'"):
        TrainConfig.from_dict(data)


def test_unknown_key_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'general.epoch'.*epochs"):
        TrainConfig.from_dict({"general": {"epoch": 2}})
    with pytest.raises(ConfigError, match=r"unknown config key 'outdir'.*output_dir"):
        TrainConfig.from_dict({"outdir": "x"})


def test_round_trip_and_file_formats(tmp_path: Path) -> None:
    config = TrainConfig.from_dict({"seed": 3, "custom": {"domains": ["business"], "l2sp_coef": 0.1}})
    assert TrainConfig.from_dict(json.loads(config.to_json())) == config
    toml = tmp_path / "run.toml"
    toml.write_text('seed = 3\n[custom]\ndomains = ["business"]\nl2sp_coef = 0.1\n')
    yaml = tmp_path / "run.yaml"
    yaml.write_text("seed: 3\ncustom:\n  domains: [business]\n  l2sp_coef: 0.1\n")
    assert load_config(toml) == config == load_config(yaml)
    bad = tmp_path / "bad.toml"
    bad.write_text("[custom]\nreplay_share = 'lots'\n")
    with pytest.raises(ConfigError, match=r"bad.toml: config key 'custom.replay_share'"):
        load_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("custom: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def _run(args: list[str]) -> object:
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_train_cli_bad_input_exits_nonzero_with_a_clear_message(tmp_path: Path) -> None:
    result = _run(["train", "-o", str(tmp_path / "r"), "--replay-share", "2"])
    assert result.exit_code == 1 and "custom.replay_share" in result.output and "Traceback" not in result.output
    result = _run(["train", "-o", str(tmp_path / "r"), "--domain", "cooking"])
    assert result.exit_code == 1 and "custom.domains" in result.output
    result = _run(["train", "--config", str(tmp_path / "missing.toml")])
    assert result.exit_code != 0 and "missing.toml" in result.output
    result = _run(["train", "--set", "general.nope=1"])
    assert result.exit_code == 1 and "unknown config key 'general.nope'" in result.output
    result = _run(["train", "-o", str(tmp_path / "r"), "--custom-data", str(tmp_path / "none.jsonl"),
                   "--stages", "custom", "--eval-set", f"x={tmp_path / 'none.jsonl'}"])
    assert result.exit_code == 1 and "none.jsonl" in result.output and "Traceback" not in result.output


def test_train_cli_runs_from_a_config_file_with_flag_overrides(tmp_path: Path, tiny_checkpoint: Path) -> None:
    raw = synthetic_config(tmp_path, tiny_checkpoint, **{"general.max_steps": 2, "custom.max_steps": 2})
    raw.pop("base")
    config_file = tmp_path / "run.json.toml"
    lines = []
    for key, value in raw.items():
        if not isinstance(value, dict) or key in ("eval_sets",):
            lines.append(f"{key} = {json.dumps(value) if not isinstance(value, dict) else _inline(value)}")
    for section in ("general", "custom"):
        lines.append(f"[{section}]")
        lines += [f"{k} = {_inline(v) if isinstance(v, dict) else json.dumps(v)}" for k, v in raw[section].items()]
    config_file.write_text("\n".join(lines) + "\n")
    out = tmp_path / "cli-run"
    flags = ["--seed", "1", "--interpolate", "0.5", "--dropout", "hidden"]
    result = _run(["train", "-c", str(config_file), "-o", str(out), *flags])
    assert result.exit_code == 0, result.output
    assert "| general |" in result.output and (out / "custom-academy" / "lite_rm.json").exists()
    meta = json.loads((out / "custom-academy" / "lite_rm.json").read_text())
    assert meta["training"]["interpolation"]["alpha"] == 0.5
    assert json.loads((out / "config.json").read_text())["dropout"] == "hidden"
    again = _run(["train", "-c", str(config_file), "-o", str(out), *flags])
    assert again.exit_code == 1 and "--resume" in again.output
    changed = _run(["train", "-c", str(config_file), "-o", str(out), "--seed", "2", "--resume"])
    assert changed.exit_code == 1 and "seed" in changed.output
    bad = _run(["train", "-c", str(config_file), "-o", str(out), "--dropout", "sometimes"])
    assert bad.exit_code == 2 and "--dropout" in bad.output and "Traceback" not in bad.output
    resumed = _run(["train", "-c", str(config_file), "-o", str(out), *flags, "--resume"])
    assert resumed.exit_code == 0, resumed.output

    # lite-rm eval on the checkpoint gives the same numbers as training recorded
    test_file = raw["eval_sets"]["syn"]
    table = tmp_path / "t.json"
    result = _run(["eval", str(out / "general"), "--data", f"syn={test_file}", "-o", str(table), "--no-bf16"])
    assert result.exit_code == 0, result.output
    recorded = json.loads((out / "general" / "lite_rm.json").read_text())["metrics"]["syn"]["acc"]
    assert json.loads(table.read_text())["results"]["general"]["syn"]["acc"] == pytest.approx(recorded)


def _inline(table: dict) -> str:
    return "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in table.items()) + "}"


def test_eval_cli_bad_input(tmp_path: Path, tiny_checkpoint: Path) -> None:
    not_model = tmp_path / "empty"
    not_model.mkdir()
    result = _run(["eval", str(not_model), "--data", str(write_pairs(tmp_path / "p.jsonl", 4))])
    assert result.exit_code == 1 and "expected a checkpoint folder" in result.output
    result = _run(["eval", str(tiny_checkpoint), "--data", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 1 and "missing.jsonl" in result.output
    result = _run(["eval", str(tiny_checkpoint), "--domain", "cooking"])
    assert result.exit_code == 1 and "cooking" in result.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": 3, "rejected": "r"}\n')
    result = _run(["eval", str(tiny_checkpoint), "--data", str(bad)])
    assert result.exit_code == 1 and "bad.jsonl" in result.output and "Traceback" not in result.output


def test_eval_cli_scores_an_onnx_bundle_like_its_checkpoint(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from lite_rm.exporting import export_bundle

    pairs = write_pairs(tmp_path / "p.jsonl", 24)
    bundle = tmp_path / "bundle"
    export_bundle(tiny_checkpoint, bundle, validation=pairs)
    tables = {}
    for name, model in (("bundle", bundle), ("checkpoint", tiny_checkpoint)):
        out = tmp_path / f"{name}.json"
        result = _run(["eval", str(model), "--data", f"syn={pairs}", "-o", str(out), "--no-bf16"])
        assert result.exit_code == 0, result.output
        tables[name] = json.loads(out.read_text())
    assert tables["bundle"]["kind"] == "bundle"
    acc = {k: next(iter(v["results"].values()))["syn"]["acc"] for k, v in tables.items()}
    assert acc["bundle"] == pytest.approx(acc["checkpoint"], abs=0.05)


def test_train_cli_bad_data_and_state_end_without_a_traceback(tmp_path: Path, tiny_checkpoint: Path) -> None:
    good = write_pairs(tmp_path / "good.jsonl", 8)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text().splitlines()[0] + "\n" + '{"prompt": "p", "chosen": ["x"], "rejected": "r"}\n')
    base = ["train", "--model", str(tiny_checkpoint), "--stages", "general", "--max-steps", "1",
            "--eval-set", f"syn={good}", "--max-length", "64", "--no-bf16", "--threads", "1"]
    result = _run([*base, "-o", str(tmp_path / "r1"), "--general-set", f"bad={bad}"])
    assert result.exit_code == 1 and "bad.jsonl" in result.output and "line 2" in result.output
    assert "Traceback" not in result.output
    result = _run([*base, "-o", str(tmp_path / "r2"), "--general-set", f"x={tmp_path / 'absent.jsonl'}"])
    assert result.exit_code == 1 and "absent.jsonl" in result.output
    result = _run([*base, "-o", str(tmp_path / "r3"), "--set", "general.lr=lots"])
    assert result.exit_code == 1 and "general.lr" in result.output
    # a damaged resumable state: a clear message saying what to do
    state = tmp_path / "r4" / ".state" / "general" / "resume"
    state.mkdir(parents=True)
    (state / "state.json").write_text("{")
    (state / "tensors.safetensors").write_bytes(b"")
    result = _run([*base, "-o", str(tmp_path / "r4"), "--general-set", f"syn={good}", "--resume"])
    assert result.exit_code == 1 and "delete the folder" in result.output and "Traceback" not in result.output


def test_train_reads_custom_data_like_every_command(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """--custom-data takes a datasets folder or a file with other column names (--column), and the
    checkpoint records how it was read, so the held-out pairs reload the same way (export uses them)."""
    import csv

    import datasets
    from test_training_support import write_pairs

    from lite_rm.training.checkpoint import validation_split_of

    rows = [json.loads(line) for line in write_pairs(tmp_path / "p.jsonl", 40, seed=5).read_text().splitlines()]
    renamed = tmp_path / "mine.csv"
    with renamed.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["question", "good", "bad"])
        writer.writeheader()
        writer.writerows({"question": r["prompt"], "good": r["chosen"], "bad": r["rejected"]} for r in rows)
    folder = tmp_path / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(folder))
    raw = synthetic_config(tmp_path, tiny_checkpoint, stages=["custom"], **{"custom.max_steps": 2})
    config_file = tmp_path / "run.toml"
    config_file.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in raw.items() if not isinstance(v, dict))
                           + f"\neval_sets = {_inline(raw['eval_sets'])}\n")
    for source, extra in ((folder, []), (renamed, ["--column", "prompt=question", "--column", "chosen=good",
                                                   "--column", "rejected=bad"])):
        out = tmp_path / f"run-{source.name}"
        result = _run(["train", "-c", str(config_file), "-o", str(out), "--custom-data", str(source),
                       "--max-steps", "2", "--json", *extra])
        assert result.exit_code == 0, result.output
        printed = json.loads(result.stdout)  # --json: results.json on stdout, nothing else there
        assert printed == json.loads((out / "results.json").read_text())
        split = validation_split_of(next(out.glob("custom-*")))
        assert split is not None
        own = split.sets[0]
        assert own.source == str(source.resolve()) and (own.options.get("columns") or {}) == (
            {"prompt": "question", "chosen": "good", "rejected": "bad"} if extra else {})
        assert split.held_out()[own.name]  # reloads with the recorded options
    bad = _run(["train", "-c", str(config_file), "-o", str(tmp_path / "x"), "--custom-data", str(renamed)])
    assert bad.exit_code == 1 and "Traceback" not in bad.output and "column" in bad.output.lower()


def test_data_source_flags_say_they_read_custom_data_only() -> None:
    """--format/--split/--column/--skip-invalid set custom.* keys only: the general and eval sets are read with the
    detected format, and the help says so."""
    from lite_rm.cli.train_cmd import _flag_overrides, train
    from lite_rm.training.config import DATA_SOURCE_KEYS

    overrides = _flag_overrides({"data_format": "pairs", "split": "test", "columns": ("prompt=q",),
                                 "skip_invalid": True}, {})
    assert sorted(overrides) == sorted(DATA_SOURCE_KEYS.values()) and all(k.startswith("custom.") for k in overrides)
    helps = {p.name: getattr(p, "help", "") or "" for p in train.params}
    assert all("Only for --custom-data, not --general-set or --eval-set" in helps[name] for name in DATA_SOURCE_KEYS)
    assert "--custom-data only" in helps["general_set"] and "as --general-set is" in helps["eval_set"]
