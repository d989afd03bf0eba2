"""The Makefile's knobs, read with ``make -n`` (commands printed, none run): ``make demo`` reads the data folder
that DATA or LITE_RM_DATA names in every step, and ``make setup TORCH_INDEX=URL`` installs torch from that index."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _dry_run(*args: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in ("LITE_RM_DATA", "DATA", "TORCH_INDEX")} | env
    result = subprocess.run(["make", "-n", "-B", "-C", str(REPO), *args], capture_output=True, text=True,
                            env=environ, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _data_paths(commands: str) -> set[str]:
    """The folders that the data check and score steps read (the parent of general/ and dsp/)."""
    words = commands.replace("\\\n", " ").split()
    return {w.rsplit("/", 2)[0] for w in words if w.endswith((".train.json", ".test.json", "dsp/test.json"))}


def test_demo_reads_the_data_folder_it_is_given() -> None:
    assert _data_paths(_dry_run("demo")) == {"../shared/data"}  # the default of this setup
    assert _data_paths(_dry_run("demo", LITE_RM_DATA="/srv/prefs")) == {"/srv/prefs"}
    commands = _dry_run("demo", "DATA=/data/x", LITE_RM_DATA="/srv/prefs")
    assert _data_paths(commands) == {"/data/x"} and "../shared/data" not in commands


def test_every_demo_step_sees_the_data_folder(tmp_path: Path) -> None:
    """make demo run for real with a stand-in lite-rm that logs the data folder each step would read."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "lite-rm"
    fake.write_text(f'#!/bin/sh\necho "$1 $LITE_RM_DATA" >> {tmp_path / "calls.log"}\n')
    fake.chmod(0o755)
    stamp = tmp_path / "stamp"  # newer than pyproject.toml: no install
    stamp.touch()
    environ = {k: v for k, v in os.environ.items() if k != "LITE_RM_DATA"}
    result = subprocess.run(["make", "-s", "-C", str(REPO), "demo", f"BIN={bin_dir}", f"STAMP={stamp}",
                             f"RUN={tmp_path / 'run'}", "DATA=/data/x"], capture_output=True, text=True,
                            env=environ, timeout=60)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert [c.split()[0] for c in calls] == ["data", "train", "export", "distill", "export", "score", "eval",
                                             "plot", "plot"]
    assert {c.split()[1] for c in calls} == {"/data/x"}


def test_torch_index_is_optional() -> None:
    torch_line = [line for line in _dry_run("setup").splitlines() if "install -q torch==" in line]
    assert len(torch_line) == 1 and "--index-url" not in torch_line[0]  # pip's own index by default
    url = "https://download.pytorch.org/whl/cpu"
    assert f"torch==2.13.0 --index-url {url}" in _dry_run("setup", f"TORCH_INDEX={url}")
