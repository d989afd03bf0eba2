"""Model folders and head names that lite-rm refuses, saying why (issue 25): pickled weights are never
loaded (only safetensors), and a head name is matched whole (no trailing newline into a file name)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lite_rm.scoring.heads import check_head_name
from lite_rm.training.encoders import check_safetensors


@pytest.fixture()
def pickled(tmp_path: Path, tiny_checkpoint: Path) -> Path:
    folder = Path(shutil.copytree(tiny_checkpoint, tmp_path / "pickled"))
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"crafted: loading this would unpickle it")
    return folder


def test_a_pickled_model_is_refused_with_the_reason(pickled: Path, tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="pytorch_model.bin .*only safetensors are loaded"):
        check_safetensors(pickled)
    from lite_rm.training.modeling import load_reward_model

    with pytest.raises(ValueError, match="only safetensors are loaded"):
        load_reward_model(pickled, seed=0)
    valid = tmp_path / "valid.jsonl"
    valid.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": "good answer", "rejected": "bad"}) + "\n"
                             for i in range(12)))
    result = run_cli("export", str(pickled), "-o", str(tmp_path / "bundle"), "--validation", str(valid))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "only safetensors are loaded" in result.stderr and not (tmp_path / "bundle").exists()


def test_a_folder_without_weights_says_so(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="no weights file; only safetensors"):
        check_safetensors(tmp_path)


@pytest.mark.parametrize("name", ["alice\n", "alice\r\n", "\nalice", "al ice"])
def test_head_names_are_matched_whole(name: str) -> None:
    with pytest.raises(ValueError, match="head name"):
        check_head_name(name)
    assert check_head_name("alice.v2_x-1") == "alice.v2_x-1"
