"""No verb ends in a traceback on bad input: each exits 1 (or 2 for a usage error) with one message.

Under click's CliRunner an uncaught exception does not print a traceback into ``result.output``; it is
kept in ``result.exception``, so that is what these tests check (a handled error is a ``SystemExit``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from lite_rm.cli import main


def _bad_bundle(tmp_path: Path) -> Path:
    folder = tmp_path / "bad-bundle"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"format": "lite-rm-bundle", "format_version": 1,
                                                      "input_rule": None, "files": []}), encoding="utf-8")
    return folder


def _cases(tmp_path: Path, tiny_checkpoint: Path, data_dir: Path) -> list[list[str]]:
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_bytes(b'{"prompt": "x", "chosen": "a", "rejected": 5}\n{not json\n')
    empty = tmp_path / "empty"
    empty.mkdir()
    bundle = _bad_bundle(tmp_path)
    toml = tmp_path / "bad.toml"
    toml.write_text("[custom\nlr = 1", encoding="utf-8")
    return [
        ["data", "check", str(tmp_path / "missing.json")],
        ["data", "check", str(bad_jsonl)],
        ["train", "-c", str(toml), "-o", str(tmp_path / "run")],
        ["train", "-o", str(tmp_path / "run"), "--set", "custom.lr=abc"],
        ["train", "-o", str(tmp_path / "run2"), "--model", str(tiny_checkpoint), "--stages", "custom",
         "--custom-data", str(bad_jsonl), "--eval-set", f"x={bad_jsonl}"],
        ["eval", str(empty)],
        ["eval", str(bundle), "--data", f"mine={data_dir / 'general/webgpt.test.json'}"],
        ["eval", str(tiny_checkpoint), "--data", f"mine={bad_jsonl}"],
        ["export", str(empty), "-o", str(tmp_path / "out")],
        ["export", str(tiny_checkpoint), "-o", str(tmp_path / "out"), "--int8", "--preset", "no-such-preset"],
        ["export", str(tiny_checkpoint), "-o", str(tmp_path / "out"), "--validation", str(bad_jsonl)],
        ["score", str(tmp_path / "no-bundle"), "-i", str(bad_jsonl), "-o", str(tmp_path / "s.jsonl")],
        ["score", str(bundle), "-i", str(bad_jsonl), "-o", str(tmp_path / "s.jsonl")],
        ["plot", str(empty)],
        ["plot", str(bundle)],
        ["serve", str(tmp_path / "no-bundle")],
        ["serve", str(bundle), "--host", "0.0.0.0"],
        ["personalize", str(bundle), "-c", str(bad_jsonl), "-n", "alice"],
        ["personalize", str(tmp_path / "no-bundle"), "-c", str(data_dir / "general/webgpt.test.json"), "-n", "alice"],
        ["personalize", str(bundle), "-c", str(data_dir / "general/webgpt.test.json"), "-n", "a/b"],
        ["score", str(bundle), "-i", str(bad_jsonl), "-o", str(tmp_path / "s.jsonl"), "--head", "a=x", "--head", "b=1"],
        ["distill", str(bundle), "-o", str(tmp_path / "student")],
        ["distill", str(empty), "-o", str(tmp_path / "student")],
        ["push", str(empty), "org/name", "--dry-run"],
        ["push", str(bundle), "not a repository name", "--dry-run"],
    ]


def test_bad_input_never_escapes_as_an_exception(tmp_path: Path, tiny_checkpoint: Path, data_dir: Path) -> None:
    verbs = set()
    for args in _cases(tmp_path, tiny_checkpoint, data_dir):
        result = CliRunner().invoke(main, args)
        assert result.exit_code in (1, 2), (args, result.exit_code, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
        assert "Traceback" not in result.output and result.output.strip(), args
        verbs.add(args[0])
    assert verbs == {"data", "train", "eval", "export", "distill", "score", "plot", "serve", "personalize", "push"}


@pytest.mark.parametrize("verb", ["data", "train", "eval", "export", "score", "plot", "serve", "distill",
                                  "personalize", "push"])
def test_help_of_every_verb(verb: str) -> None:
    result = CliRunner().invoke(main, [verb, "--help"])
    assert result.exit_code == 0 and result.exception is None, result.output
    examples = result.output.split("Examples:", 1)[-1]
    assert "Examples:" in result.output and f"lite-rm {verb} " in examples, result.output


def test_verbs_are_listed_in_the_order_of_the_work() -> None:
    lines = CliRunner().invoke(main, ["--help"]).output.split("Commands:", 1)[1].splitlines()
    order = ["data", "train", "eval", "export", "distill", "score", "serve", "personalize", "plot", "push"]
    assert [line.split()[0] for line in lines if line.split() and line.split()[0] in order] == order


def test_flag_tables_set_real_keys_and_show_the_dataclass_defaults() -> None:
    from lite_rm.exporting.options import EXPORT_FLAGS, ExportOptions
    from lite_rm.training.config import DISTILL_FLAGS, TRAIN_FLAGS, DistillConfig, TrainConfig

    for table, config in ((TRAIN_FLAGS, TrainConfig()), (EXPORT_FLAGS, ExportOptions()),
                          (DISTILL_FLAGS, DistillConfig())):
        assert len({flag.dest for flag in table}) == len(table)
        for flag in table:
            flag.default_of(config)  # a key the dataclass does not have raises KeyError
    shown = {flag.dest: flag.default_of(TrainConfig()) for flag in TRAIN_FLAGS}
    assert shown["output"] == "runs/lite-rm" and shown["listwise"] == "--listwise"
    assert shown["epochs"] == "general 1.0, custom 2.0" and shown["stages"] == "base,general,custom"
    help_text = CliRunner().invoke(main, ["export", "--help"]).output
    assert f"[default: {ExportOptions().validation_pairs}]" in help_text


def test_file_system_errors_are_one_line_at_the_boundary(tmp_path: Path) -> None:
    from lite_rm.cli import os_error_message

    assert os_error_message(FileNotFoundError(2, "No such file or directory", "x.json")) == \
        "x.json: No such file or directory"
    assert os_error_message(FileNotFoundError("data folder /x does not exist")) == "data folder /x does not exist"
    folder = tmp_path / "not-a-checkpoint"
    folder.mkdir()
    result = CliRunner().invoke(main, ["export", str(folder), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "config.json is missing" in result.output and "Traceback" not in result.output


def test_command_summaries_read_whole() -> None:
    for args in ([], ["data"]):
        listing = CliRunner().invoke(main, [*args, "--help"], terminal_width=80).output.split("Commands:", 1)[1]
        summaries = [line.split(None, 1)[1] for line in listing.splitlines() if line.strip()]
        assert summaries and all(not s.endswith("...") and len(s) <= 55 for s in summaries), summaries


def test_help_examples_and_shared_units_agree() -> None:
    from lite_rm.cli.eval_cmd import eval_command
    from lite_rm.cli.score_cmd import score

    examples = CliRunner().invoke(main, ["distill", "--help"]).output.split("Examples:", 1)[1]
    for line in examples.splitlines():
        named, given = re.search(r"-o \S+-l(\d+)\b", line), re.search(r"--layers (\d+)", line)
        # a folder named for its layer count holds a student of that many layers
        assert (named and named.group(1)) == (given and given.group(1)), line
    units = {next(p for p in command.params if p.name == "batch_size").help.split("[default")[0]  # type: ignore[union-attr]
             for command in (score, eval_command)}
    assert units == {"(prompt, response) texts per model call "}
