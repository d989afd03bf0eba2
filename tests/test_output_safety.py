"""Output safety: export and distill replace only their own kind of artifact, only with --overwrite, never
their input, and refuse a bad -o before any work (issue 25). Through a real subprocess: the exit code and
the absence of a traceback are the point."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lite_rm.files import OutputError, check_output

Cli = Callable[..., subprocess.CompletedProcess[str]]


def _refused(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and words in result.stderr, result.stderr


@pytest.fixture()
def user_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "mine.txt").write_text("precious")
    return folder


def test_export_refuses_what_it_would_destroy(tmp_path: Path, tiny_checkpoint: Path, user_folder: Path,
                                             run_cli: Cli) -> None:
    ckpt = str(tiny_checkpoint)
    _refused(run_cli("export", ckpt, "-o", str(user_folder)), "not a lite-rm bundle")
    assert (user_folder / "mine.txt").read_text() == "precious"
    _refused(run_cli("export", ckpt, "-o", ckpt), "is the input")
    _refused(run_cli("export", ckpt, "-o", str(tiny_checkpoint.parent)), "holds the input")
    a_file = tmp_path / "scores.jsonl"
    a_file.write_text("{}\n")
    _refused(run_cli("export", ckpt, "-o", str(a_file)), "is a file")
    assert a_file.read_text() == "{}\n" and not [p for p in tmp_path.iterdir() if p.name.startswith(".scores")]
    _refused(run_cli("export", ckpt, "-o", ".", cwd=tmp_path), "current folder")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    _refused(run_cli("export", ckpt, "-o", str(bundle)), "--overwrite")
    _refused(run_cli("export", ckpt, "-o", str(tmp_path / "b2"), "--teacher-bundle", str(tmp_path / "b2"),
                  "--if-unfaithful", "teacher"), "is the input")


def test_distill_never_replaces_its_teacher(tmp_path: Path, tiny_checkpoint: Path, user_folder: Path,
                                             run_cli: Cli) -> None:
    ckpt = str(tiny_checkpoint)
    _refused(run_cli("distill", ckpt, "-o", ckpt, "--overwrite"), "is the input")
    _refused(run_cli("distill", ckpt, "-o", ckpt, "--resume"), "is the input")
    _refused(run_cli("distill", ckpt, "-o", str(user_folder), "--overwrite"), "not a lite-rm checkpoint")
    assert (tiny_checkpoint / "config.json").is_file() and (user_folder / "mine.txt").exists()


def test_check_output_rules(tmp_path: Path) -> None:
    assert check_output(tmp_path / "new", "bundle") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", "bundle")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "lite_rm.json").write_text(json.dumps({"input_rule": {}}))
    with pytest.raises(OutputError, match="--overwrite"):
        check_output(ckpt, "checkpoint")
    check_output(ckpt, "checkpoint", overwrite=True)
    check_output(ckpt, "checkpoint", keep_existing=True)
    with pytest.raises(OutputError, match="not a lite-rm bundle"):  # a checkpoint is not a bundle
        check_output(ckpt, "bundle", overwrite=True)
    with pytest.raises(OutputError, match="lies inside the input"):
        check_output(ckpt / "bundle", "bundle", [ckpt])
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        check_output(tmp_path / "f" / "bundle", "bundle")


def test_export_overwrites_a_bundle_only_when_asked(tmp_path: Path, tiny_checkpoint: Path, data_dir: Path) -> None:
    from lite_rm.data import load_preferences
    from lite_rm.exporting import export_bundle

    valid = tmp_path / "valid.jsonl"
    pairs = load_preferences(data_dir / "dsp" / "test.json", domain="academy").pairs[:20]
    valid.write_text("".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n"
                             for p in pairs))
    out = tmp_path / "bundle"
    export_bundle(tiny_checkpoint, out, validation=valid)
    with pytest.raises(OutputError, match="--overwrite"):
        export_bundle(tiny_checkpoint, out, validation=valid)
    export_bundle(tiny_checkpoint, out, validation=valid, overwrite=True)
    assert (out / "manifest.json").is_file()
