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
