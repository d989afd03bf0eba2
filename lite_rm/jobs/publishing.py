"""Sharing a bundle on the Hugging Face Hub (``lite-rm push BUNDLE ORG/NAME``), with a generated model card.

The bundle is checked first (every file against its SHA-256, as ``Scorer(bundle, verify=True)`` does), and
its folder is never changed: the manifest, the files it names and the card (:mod:`lite_rm.jobs.model_card`)
are staged in a scratch folder, which is uploaded. Nothing else in the bundle folder travels (no stray logs
or data). The card is a file the manifest does not list, which is fine: a reader checks only the files it
loads, so the repository opens with ``Scorer.from_pretrained("ORG/NAME", verify=True)``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from lite_rm.errors import LiteRMError
from lite_rm.extras import MissingExtraError
from lite_rm.jobs.model_card import CARD_FILE, NON_COMMERCIAL, UNSET_LICENSE, card_license, default_license, model_card
from lite_rm.scoring.bundle import MANIFEST_FILE, Manifest, read_manifest
from lite_rm.scoring.hub import is_hub_id

logger = logging.getLogger(__name__)


class PushError(LiteRMError, RuntimeError):
    """A bundle could not be uploaded: a bad repository name, or the Hub refused or could not be reached."""


@dataclass(frozen=True)
class PushResult:
    """What :func:`push_bundle` uploaded (or, for a dry run, would upload).

    Attributes:
        repo_id: the repository, ``org/name``.
        files: the files of the upload, as named in the repository.
        card: the model card (``README.md``) text.
        url: the commit's address on the Hub (``None`` for a dry run).
        license_id: the licence on the card (``other``: not set; a dry run only).
        license_from: where it came from: ``given``, ``training data`` or ``not set``.
    """

    repo_id: str
    files: list[str] = field(default_factory=list)
    card: str = ""
    url: str | None = None
    license_id: str = UNSET_LICENSE
    license_from: str = "not set"


def bundle_files(manifest: Manifest) -> list[str]:
    """The files that make up the bundle: its manifest and every file the manifest names."""
    names = {MANIFEST_FILE, manifest.model_file, manifest.tokenizer_file, *manifest.heads.values(), *manifest.files}
    return sorted(names)


def _hub() -> ModuleType:
    try:
        import huggingface_hub
    except ImportError as err:  # a core dependency, missing only from a broken or hand-made environment
        raise MissingExtraError(
            f"'huggingface_hub' is needed to push to the Hub and is not installed ({err}). Install it with: "
            'pip install "huggingface_hub>=0.23" (or reinstall lite-rm, which depends on it)') from err
    return huggingface_hub


def _stage(bundle: Path, names: list[str], folder: Path, card: str) -> None:
    """``folder``: the bundle's files (hard links where the file system allows, else copies) and the card."""
    for name in names:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(bundle / name, target)
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(bundle / name, target)
    (folder / CARD_FILE).write_text(card, encoding="utf-8")


def _hub_error(repo_id: str, err: Exception) -> PushError:
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status in (401, 403):
        return PushError(f"{repo_id}: the Hub refused the upload (HTTP {status}): log in with a token that may "
                         "write to this namespace (huggingface-cli login, or HF_TOKEN), or pass --token")
    return PushError(f"{repo_id}: upload to the Hugging Face Hub failed ({type(err).__name__}: {err})")


def push_bundle(bundle: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                token: str | None = None, license_id: str | None = None, commit_message: str | None = None,
                dry_run: bool = False) -> PushResult:
    """Upload a bundle to the Hub repository ``repo_id`` (created if missing) with a model card.

    Args:
        bundle: the bundle folder (made by ``lite-rm export``).
        repo_id: the repository, ``org/name``.
        private: create the repository private (an existing repository keeps its visibility).
        revision: a branch to push to (created from ``main`` if missing; default ``main``).
        token: a Hub token with write access (default: huggingface_hub's login or ``HF_TOKEN``).
        license_id: the licence of the card's metadata (a Hub licence id). ``None``: ``cc-by-nc-4.0`` when the
            training data recorded in the manifest includes DSP data or DSP's general sets (their licence);
            otherwise the owner must choose: a dry run writes ``other`` and a card asking the owner to set
            it, an upload stops with a PushError.
        commit_message: the commit's message (default: says which bundle was pushed).
        dry_run: check the bundle and write the card, but contact nobody and upload nothing.

    Returns:
        The repository, the files uploaded, the card and the commit's address.

    Raises:
        PushError: ``repo_id`` is not ``org/name``, no licence was given where the recorded training data sets
            none (an upload), or the Hub refused or could not be reached.
        BundleError: ``bundle`` is not a complete, uncorrupted bundle (the message says how to make one).
        MissingExtraError: huggingface_hub is not installed.
    """
    if not is_hub_id(repo_id):
        raise PushError(f"{repo_id!r}: expected a Hugging Face Hub repository id ORG/NAME (letters, digits, '-', "
                        "'_', '.'), e.g. my-org/academy-rm")
    folder = Path(bundle).expanduser()
    manifest = read_manifest(folder, verify=True)
    names = bundle_files(manifest)
    if CARD_FILE in names:
        raise PushError(f"{folder}: the manifest lists a {CARD_FILE} of its own, where the model card would go; "
                        "export the bundle again")
    derived = default_license(manifest)
    chosen = card_license(manifest, license_id)
    origin = "given" if license_id else "training data" if derived else "not set"
    if license_id and derived == NON_COMMERCIAL and license_id != derived:
        logger.warning("licence %s given, but the training data recorded in %s includes CC BY-NC 4.0 data (DSP); "
                       "check that the licence allows that", license_id, folder)
    if origin == "not set" and not dry_run:
        # a public model without a licence its owner chose is not uploaded: nothing tells users what they may do
        raise PushError(f"{folder}: choose the model's licence, e.g. --license apache-2.0 (a Hugging Face Hub "
                        "licence id): lite-rm knows no licence for the training data recorded in the manifest "
                        "(only DSP's data sets one, cc-by-nc-4.0); --dry-run shows the card")
    card = model_card(manifest, repo_id, license_id=license_id)
    files = sorted([*names, CARD_FILE])
    if dry_run:
        return PushResult(repo_id, files, card, license_id=chosen, license_from=origin)
    hub = _hub()
    api = hub.HfApi(token=token)
    message = commit_message or f"Upload lite-rm bundle {folder.resolve().name}"
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="lite-rm-push-") as tmp:
            _stage(folder, names, Path(tmp), card)
            info: Any = api.upload_folder(repo_id=repo_id, folder_path=tmp, revision=revision,
                                          commit_message=message, repo_type="model")
    except (hub.errors.HfHubHTTPError, hub.errors.HFValidationError, OSError) as err:  # HTTP errors are OSErrors
        raise _hub_error(repo_id, err) from None
    url = getattr(info, "commit_url", None) or f"https://huggingface.co/{repo_id}"
    logger.info("pushed %d files to %s", len(files), url)
    return PushResult(repo_id, files, card, str(url), license_id=chosen, license_from=origin)
