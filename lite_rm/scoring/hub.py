"""Bundles by name: a local folder, or a Hugging Face Hub repository (``org/name``) through ``huggingface_hub``.

Torch-free. The Hub's own cache and offline mode apply (``HF_HUB_CACHE``, ``HF_HUB_OFFLINE=1``); without a
network, a repository already in the cache is used as is (``snapshot_download`` falls back to it). The
folder found is then opened with the same checks as any local bundle (:func:`lite_rm.scoring.bundle.read_manifest`).
"""

from __future__ import annotations

import re
from pathlib import Path

from lite_rm.scoring.bundle import BundleError

# org/name as the Hub spells repository ids; a bare "name" is taken for a (missing) local folder.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# A bundle needs none of a training checkpoint's weights: never download them with it.
_NOT_BUNDLE_FILES = ["*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack", "*.gguf"]


def is_hub_id(name: str | Path) -> bool:
    """Whether ``name`` reads as a Hub repository id (``org/name``) rather than a path."""
    return isinstance(name, str) and bool(_HUB_ID.match(name)) and ".." not in name


def resolve_bundle(name_or_path: str | Path, *, revision: str | None = None, local_files_only: bool = False,
                   cache_dir: str | Path | None = None, token: str | bool | None = None) -> Path:
    """The local folder of a bundle: ``name_or_path`` itself when it exists (or does not look like a hub id),
    else the snapshot of the Hub repository ``org/name`` (downloaded into the Hub cache if needed).

    Args:
        name_or_path: a bundle folder, or a Hub repository id ``org/name``.
        revision: a branch, tag or commit of the repository (default: ``main``).
        local_files_only: use the Hub cache only, never the network (``HF_HUB_OFFLINE=1`` does the same).
        cache_dir: the Hub cache (default: huggingface_hub's, ``HF_HUB_CACHE``).
        token: a Hub token for a private or gated repository (default: huggingface_hub's login/``HF_TOKEN``).

    Raises:
        BundleError: a hub id that is neither cached nor downloadable (the message says why and what to do).
    """
    path = Path(name_or_path).expanduser()
    if path.exists() or not is_hub_id(str(name_or_path)):
        return path  # a missing folder is reported by read_manifest, with how to make one
    repo_id = str(name_or_path)
    import huggingface_hub as hub  # a core dependency (tokenizers needs it too)
    from huggingface_hub import errors
    try:
        folder = hub.snapshot_download(repo_id, revision=revision, local_files_only=local_files_only,
                                       cache_dir=None if cache_dir is None else str(cache_dir), token=token,
                                       ignore_patterns=_NOT_BUNDLE_FILES)
    except errors.LocalEntryNotFoundError:
        where = cache_dir if cache_dir is not None else hub.constants.HF_HUB_CACHE
        raise BundleError(
            f"bundle {repo_id!r}: no local folder of that name, and not in the Hugging Face cache ({where}) while the "
            "Hub cannot be reached (offline: local_files_only or HF_HUB_OFFLINE=1, or no network); download it once "
            f"online (huggingface-cli download {repo_id}) or give a local bundle folder") from None
    except errors.RevisionNotFoundError:
        raise BundleError(f"bundle {repo_id!r}: no revision {revision!r} in that Hub repository") from None
    except (errors.RepositoryNotFoundError, errors.GatedRepoError) as err:
        raise BundleError(
            f"bundle {repo_id!r}: no local folder of that name, and no Hub repository you can read "
            f"({type(err).__name__}); check the name, or for a private or gated one log in (huggingface-cli login "
            "or HF_TOKEN)") from None
    except (errors.HFValidationError, OSError) as err:  # HfHubHTTPError is an OSError
        raise BundleError(f"bundle {repo_id!r}: cannot get it from the Hugging Face Hub ({err})") from None
    return Path(folder)
