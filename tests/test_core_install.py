"""A real core-only install (no torch, no transformers, no optimum) in a fresh virtual environment.

The blocker-based tests elsewhere simulate a torch-free process; this one proves the packaging: the
core dependencies alone run ``lite-rm --help`` and ``lite-rm data check`` from an installed wheel.
"""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def core_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("core-venv")
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # A regular (non-editable) install, so that package data such as the presets must be packaged.
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(REPO)],
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
    proc = subprocess.run([cli, "data", "check", str(data_dir / "general/webgpt.test.json")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "91 pairs from 140 records" in proc.stdout
    assert "no token statistics" in proc.stderr  # the default tokenizer comes with the [train] extra
    bad = subprocess.run([cli, "data", "check", str(data_dir / "missing.json")], capture_output=True, text=True)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and "file not found" in bad.stderr

