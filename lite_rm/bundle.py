"""The scoring bundle: one folder with ``model.onnx``, ``tokenizer.json`` and ``manifest.json``. Torch-free.

The manifest says how to read the model (format version, input rule, max length), where it came from
(the source checkpoint's hash, domains, preset), how faithful it is (parity figures) and how to turn
score differences into calibrated preference probabilities. ``export/README.md`` documents every field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lite_rm.encoding import InputRule

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
BUNDLE_FORMAT = "lite-rm-bundle"
# Bumped when a reader of the previous version would misread a new bundle; readers refuse newer ones.
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)


class BundleError(ValueError):
    """A bundle folder is missing, incomplete, corrupted or from an unknown format version."""


@dataclass(frozen=True)
class Calibration:
    """Turns a score difference into P(a preferred over b): ``sigmoid(scale * (s_a - s_b))``.

    ``scale`` is 1/temperature, fitted by Platt scaling without intercept (so P(a>b) = 1 - P(b>a)).
    """

    scale: float = 1.0
    method: str = "none"

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Calibration:
        if not data:
            return cls()
        scale = data.get("scale", 1.0)
        if not isinstance(scale, (int, float)) or not scale > 0:
            raise BundleError(f"manifest calibration.scale: expected a positive number, found {scale!r}")
        return cls(scale=float(scale), method=str(data.get("method", "platt")))


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of a bundle (the raw dict is kept in ``data``)."""

    folder: Path
    data: dict[str, Any]
    input_rule: InputRule
    calibration: Calibration

    @property
    def model_path(self) -> Path:
        return self.folder / str(self.data.get("model_file", MODEL_FILE))

    @property
    def tokenizer_path(self) -> Path:
        return self.folder / str(self.data.get("tokenizer_file", TOKENIZER_FILE))

    @property
    def precision(self) -> str:
        return str(self.data.get("precision", "fp32"))

    @property
    def domains(self) -> list[str]:
        return list(self.data.get("domains") or [])


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks (bundles and checkpoints are tens of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    """The manifest's record of one bundle file: size and SHA-256."""
    return {"bytes": path.stat().st_size, "sha256": file_digest(path)}


def read_manifest(folder: str | Path, verify: bool = False) -> Manifest:
    """Read and check a bundle's manifest and the files it names.

    Sizes are always checked (cheap, catches truncated copies); ``verify=True`` also checks SHA-256
    (reads every byte, so it is off on the scoring path where cold start matters).

    Args:
        folder: the bundle folder.
        verify: also compare file hashes with the manifest.

    Raises:
        BundleError: missing folder or file, invalid JSON, unknown format version, size or hash mismatch.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(
            f"bundle folder {folder} not found; create one with: lite-rm export CHECKPOINT --output {folder}"
        )
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(f"{path} is missing: {folder} is not a lite-rm bundle (made by lite-rm export)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{path}: not valid JSON ({err}); the bundle is corrupted, export it again") from None
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: expected an object with format={BUNDLE_FORMAT!r}; not a lite-rm bundle")
    version = data.get("format_version")
    if version not in SUPPORTED_VERSIONS:
        raise BundleError(
            f"{path}: bundle format version {version!r} is not supported by this lite-rm (it reads "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}); upgrade lite-rm or export the bundle again"
        )
    try:
        rule = InputRule.from_dict(data["input_rule"])
    except (KeyError, TypeError, ValueError) as err:
        raise BundleError(f"{path}: invalid or missing input_rule ({err})") from None
    manifest = Manifest(folder, data, rule, Calibration.from_dict(data.get("calibration")))
    files = data.get("files") or {}
    for name in (manifest.model_path.name, manifest.tokenizer_path.name):
        fpath = folder / name
        if not fpath.is_file():
            raise BundleError(f"{fpath} is missing; the bundle is incomplete, export it again")
        entry = files.get(name)
        if entry is None:
            continue
        size = fpath.stat().st_size
        if size != entry.get("bytes", size):
            raise BundleError(
                f"{fpath}: {size} bytes, the manifest says {entry['bytes']}; the file is truncated or "
                "corrupted, copy or export the bundle again"
            )
        if verify and entry.get("sha256") and file_digest(fpath) != entry["sha256"]:
            raise BundleError(f"{fpath}: SHA-256 differs from the manifest; the file is corrupted")
    return manifest
