"""A real core-only install (no torch, no transformers, no optimum) in a fresh virtual environment.

The blocker-based tests elsewhere simulate a torch-free process; this one proves the packaging: the
core dependencies alone run ``lite-rm --help`` and ``lite-rm data check`` from an installed wheel, on
the oldest supported Python (3.10, where TOML needs ``tomli``) and on the one that runs the tests.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _python310() -> str:
    """A Python 3.10 interpreter: $LITE_RM_PYTHON310, else pyenv's (this machine and CI have one)."""
    found = os.environ.get("LITE_RM_PYTHON310") or next(
        iter(sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10")))), None)
    if not found:
        pytest.fail("no Python 3.10 found: set LITE_RM_PYTHON310 to one (requires-python is >=3.10)")
    return found


@pytest.fixture(scope="session", params=["3.10", "current"])
def core_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp(f"core-venv-{request.param}")
    python = _python310() if request.param == "3.10" else sys.executable
    subprocess.run([python, "-m", "venv", str(env_dir)], check=True)
    # A regular (non-editable) install, so that package data such as the presets must be packaged.
    proc = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(REPO)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return env_dir


@pytest.mark.slow
def test_core_install_has_no_heavy_packages_and_runs_the_cli(core_env: Path, data_dir: Path) -> None:
    python = str(core_env / "bin" / "python")
    check = "import importlib.util as u; print([m for m in ('torch', 'transformers', 'optimum', 'sklearn') if u.find_spec(m)])"
    assert subprocess.run([python, "-c", check], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    cli = str(core_env / "bin" / "lite-rm")
    assert subprocess.run([cli, "--help"], capture_output=True, text=True, check=True).stdout.startswith("Usage")
    # every command's help loads on the core install (export and train only name their extra when run)
    for verb in ("data", "train", "eval", "export", "score"):
        proc = subprocess.run([cli, verb, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (verb, proc.stderr)
    proc = subprocess.run([cli, "data", "check", str(data_dir / "general/webgpt.test.json")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "91 pairs from 140 records" in proc.stdout
    assert "no token statistics" in proc.stderr  # the default tokenizer comes with the [train] extra
    bad = subprocess.run([cli, "data", "check", str(data_dir / "missing.json")], capture_output=True, text=True)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and "file not found" in bad.stderr


def test_every_subpackage_is_packaged() -> None:
    """A folder missing from pyproject's package list would be absent from a regular (non-editable) install."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "lite_rm").rglob("__init__.py")}
    assert found - listed == set()
