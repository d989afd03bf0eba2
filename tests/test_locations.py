"""Where the data is found: flag, then LITE_RM_DATA, then ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from lite_rm.data import locations
from lite_rm.files import atomic_dir


def test_flag_wins_over_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.setenv("LITE_RM_DATA", str(tmp_path / "b"))
    assert locations.resolve_data_dir(tmp_path / "a") == tmp_path / "a"
    assert locations.resolve_data_dir() == tmp_path / "b"


def test_missing_everywhere_says_how_to_provide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LITE_RM_DATA", raising=False)
    monkeypatch.setattr(locations, "_candidates", lambda: [tmp_path / "none"])
    with pytest.raises(FileNotFoundError, match="pass --data-dir DIR, set LITE_RM_DATA=DIR"):
        locations.resolve_data_dir()
    monkeypatch.setenv("LITE_RM_DATA", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=r"from \$LITE_RM_DATA\) does not exist"):
        locations.resolve_data_dir()


def test_shared_data_default(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.delenv("LITE_RM_DATA", raising=False)
    assert (locations.resolve_data_dir() / "dsp" / "train.json").exists()


def test_atomic_dir_leaves_nothing_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "ckpt"
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("one")
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert (final / "a.txt").read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def _fake_hub_cache(tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Hugging Face cache holding ``org/tiny`` at one snapshot, as ``huggingface-cli download`` leaves it."""
    import shutil

    from huggingface_hub import constants

    cache = tmp_path / "hub"
    repo = cache / "models--org--tiny"
    shutil.copytree(checkpoint, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return repo / "snapshots" / "0123abcd"


def test_a_hub_id_resolves_to_its_cached_snapshot(tmp_path: Path, tiny_checkpoint: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from lite_rm.scoring.encoding import load_tokenizer
    from lite_rm.training.encoders import resolve_model

    snapshot = _fake_hub_cache(tmp_path, tiny_checkpoint, monkeypatch)
    assert Path(resolve_model("org/tiny")) == snapshot
    load_tokenizer(resolve_model("org/tiny"))  # the old failure: "tokenizer file not found"
    assert resolve_model(str(tiny_checkpoint)) == str(tiny_checkpoint)
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        resolve_model("org/absent")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        resolve_model(str(tmp_path / "no" / "such" / "model"))


def test_train_from_a_cached_hub_id(tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner
    from test_training_support import synthetic_config

    from lite_rm.cli import main

    _fake_hub_cache(tmp_path, tiny_checkpoint, monkeypatch)
    raw = synthetic_config(tmp_path, tiny_checkpoint)
    out = tmp_path / "run-hub"
    args = ["train", "-o", str(out), "--model", "org/tiny", "--stages", "general", "--max-steps", "1",
            "--general-set", f"syn={raw['general']['sets']['syn']}", "--eval-set", f"syn={raw['eval_sets']['syn']}",
            "--max-length", "64", "--no-bf16", "--threads", "1"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (out / "general" / "model.safetensors").exists()
    missing = CliRunner().invoke(main, [*args[:2], str(tmp_path / "r2"), "--model", "org/absent", *args[5:]],
                                 catch_exceptions=False)
    assert missing.exit_code == 1 and "org/absent" in missing.output and "Traceback" not in missing.output
