"""Shared fixtures: a tiny random BERT reward model with the real MiniLM tokenizer, and data paths."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data of ../shared/data (CI has it beside the checkout)."""
    path = Path(os.environ.get("LITE_RM_DATA", SHARED_DATA))
    if not path.is_dir():
        pytest.fail(f"the real data folder {path} is missing: CI places ../shared/data beside the repo")
    return path


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    from lite_rm.training.encoders import default_encoder_path

    return default_encoder_path()


@pytest.fixture(scope="session")
def tokenizer_path(minilm_path: Path) -> Path:
    return minilm_path / "tokenizer.json"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, minilm_path: Path) -> Path:
    """A 2-layer, hidden-32 random BERT with a one-label head, saved as a lite-rm checkpoint."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from lite_rm.scoring.encoding import InputRule
    from lite_rm.training.checkpoint import write_meta

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, num_labels=1,
    )
    model = BertForSequenceClassification(config).eval()
    folder = tmp_path_factory.mktemp("tiny") / "checkpoint"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(folder)
    write_meta(folder, InputRule(max_length=128), stage="tiny-random")
    return folder


def _run_cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``lite-rm ARGS`` in a fresh Python process importing this checkout: its exit code and stderr as a user
    sees them (CliRunner hides tracebacks in ``result.exception``)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    code = "import sys; from lite_rm.cli import main; sys.argv[0] = 'lite-rm'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the CLI in a real subprocess (see :func:`_run_cli`)."""
    return _run_cli
