"""Named linear heads on a bundle's shared backbone. Torch-free.

A bundle exported since heads exist has a second graph output, ``embedding``: the pooled vector the
reward's last linear layer reads. A head is another linear layer on that vector, ``score = e @ weight
+ bias``, kept as a small JSON file (no pickle: an artifact never runs code when loaded) either inside
the bundle (``heads/NAME.json``, listed in the manifest with its size and hash) or beside an app as a
per-user profile. Scoring several heads costs one encoder pass: they are a numpy matmul on the embedding.

``default`` is always the bundle's own score (the graph's ``logits`` output, bit-for-bit what the
trained checkpoint scores); ``heads/default.json`` holds the same layer in linear form, the prior a
personalized head is regularized toward.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lite_rm.files import write_text_atomic
from lite_rm.scoring.bundle import MAX_MAGNITUDE, BundleError, Calibration, bounded, show_value

HEAD_FORMAT = "lite-rm-head"
HEAD_FORMAT_VERSION = 1
HEADS_DIR = "heads"
DEFAULT_HEAD = "default"
# A head name is a file name inside the bundle: letters, digits, '.', '_' and '-', not starting with '.'.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")  # fullmatch: "$" would let "name\n" through


def check_head_name(name: Any) -> str:
    """``name`` when it can name a head file, else a ValueError saying what a name may hold."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.endswith(".json"):
        raise ValueError(f"head name: expected 1-64 letters, digits, '_', '.', '-' (not starting with '.', "
                         f"no .json suffix), found {name!r}")
    return name


def head_file(name: str) -> str:
    """The bundle-relative file of head ``name`` as export writes it (later saves add a unique suffix)."""
    return f"{HEADS_DIR}/{check_head_name(name)}.json"


@dataclass(frozen=True)
class LinearHead:
    """A linear head on the embedding: ``score = embedding @ weight + bias``.

    Attributes:
        name: the head's name (``alice``, ``academy``, ``default``).
        weight: ``(dim,)`` float32.
        bias: added to every score (cancels in comparisons; kept so scores stay on the head's scale).
        calibration: turns this head's score differences into probabilities.
        backbone: the SHA-256 of the checkpoint whose embedding the head reads (``None``: unknown); a
            head is refused by a bundle of another backbone.
        provenance: how the head was made (method, comparisons, cross-validated accuracy, ...).
    """

    name: str
    weight: np.ndarray
    bias: float = 0.0
    calibration: Calibration = field(default_factory=Calibration)
    backbone: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.weight.shape[0])

    def scores(self, embedding: np.ndarray) -> np.ndarray:
        """This head's score per row of ``embedding`` ``(rows, dim)``, float32."""
        if embedding.ndim != 2 or embedding.shape[1] != self.dim:
            raise ValueError(f"head {self.name!r}: expects embeddings of {self.dim} dimensions, "
                             f"found shape {embedding.shape}")
        return (embedding @ self.weight + np.float32(self.bias)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"format": HEAD_FORMAT, "format_version": HEAD_FORMAT_VERSION, "name": self.name,
                "kind": "linear", "input": "embedding", "dim": self.dim,
                "weight": [float(v) for v in self.weight], "bias": float(self.bias),
                "calibration": self.calibration.to_dict(), "backbone": self.backbone,
                "provenance": self.provenance}

    @classmethod
    def from_dict(cls, data: Any, where: str = "head") -> LinearHead:
        """Parse and check a head object.

        Raises:
            BundleError: naming ``where``, the field, what was expected and what was found.
        """
        def bad(key: str, expected: str, found: Any) -> BundleError:
            return BundleError(f"{where}: field {key!r}: expected {expected}, found {show_value(found)}")

        if not isinstance(data, dict) or data.get("format") != HEAD_FORMAT:
            raise bad("format", repr(HEAD_FORMAT) + " (not a lite-rm head file)",
                      data.get("format") if isinstance(data, dict) else data)
        if data.get("format_version") != HEAD_FORMAT_VERSION:
            raise bad("format_version", f"{HEAD_FORMAT_VERSION} (upgrade lite-rm for newer heads)",
                      data.get("format_version"))
        if data.get("kind", "linear") != "linear" or data.get("input", "embedding") != "embedding":
            raise bad("kind", "a linear head on the embedding", (data.get("kind"), data.get("input")))
        weight = data.get("weight")
        if not isinstance(weight, list) or not weight:
            raise bad("weight", f"a non-empty list of numbers within ±{MAX_MAGNITUDE:g}", weight)
        for i, v in enumerate(weight):
            if not bounded(v):
                raise bad(f"weight[{i}]", f"a finite number within ±{MAX_MAGNITUDE:g}", v)
        if data.get("dim", len(weight)) != len(weight):
            raise bad("dim", f"the length of weight ({len(weight)})", data.get("dim"))
        bias = data.get("bias", 0.0)
        if not bounded(bias):
            raise bad("bias", f"a finite number within ±{MAX_MAGNITUDE:g}", bias)
        backbone, provenance = data.get("backbone"), data.get("provenance", {})
        if backbone is not None and not isinstance(backbone, str):
            raise bad("backbone", "a string or null", backbone)
        if not isinstance(provenance, dict):
            raise bad("provenance", "an object", provenance)
        try:
            name = check_head_name(data.get("name"))
            calibration = Calibration.from_dict(data.get("calibration"))
        except (ValueError, BundleError) as err:
            raise BundleError(f"{where}: {err}") from None
        return cls(name=name, weight=np.asarray(weight, dtype=np.float32), bias=float(bias),
                   calibration=calibration, backbone=backbone, provenance=dict(provenance))


def read_head(path: str | Path) -> LinearHead:
    """Load a head file (from a bundle's ``heads/`` or a profile kept by an app).

    Raises:
        BundleError: missing file, invalid JSON or a malformed field (the message names the file).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path}: head file not found") from None
    except (OSError, ValueError, RecursionError) as err:
        raise BundleError(f"{path}: not a valid head file ({err})") from None
    return LinearHead.from_dict(data, str(path))


def write_head(path: str | Path, head: LinearHead) -> Path:
    """Write a head file atomically (a temporary name, then a rename), checked first by the schema that
    reads it (:meth:`LinearHead.from_dict`), so that nothing unreadable (an unbounded weight) is written.

    Raises:
        BundleError: a field the reader would refuse, naming the head and the field.
    """
    path = Path(path)
    LinearHead.from_dict(head.to_dict(), f"head {head.name!r} (not written to {path})")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(head.to_dict(), indent=1) + "\n")
    return path


def save_into_bundle(folder: str | Path, head: LinearHead) -> Path:
    """Add (or replace) ``head`` in a bundle, so that an interrupted write leaves the bundle as it was.

    The head goes to a new file name first; the manifest (listing it with size and hash) is then
    replaced in one rename; only after that is a replaced head's old file removed. An exclusive lock on
    ``heads/.lock`` keeps two writers from losing each other's heads.

    Returns:
        The head file written.

    Raises:
        BundleError: not a bundle, or one without an embedding output.
    """
    from lite_rm.scoring.bundle import FileEntry, read_manifest, write_manifest

    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest.embedding is None:
        raise BundleError(f"{folder} was exported before heads existed (no embedding output); export it again")
    (folder / HEADS_DIR).mkdir(exist_ok=True)
    with _exclusive(folder / HEADS_DIR / ".lock"):
        manifest = read_manifest(folder)  # again, under the lock: another writer may have added a head
        name = f"{HEADS_DIR}/{check_head_name(head.name)}-{uuid.uuid4().hex[:8]}.json"
        write_head(folder / name, head)
        old = manifest.heads.get(head.name)
        files = {k: v for k, v in manifest.files.items() if k != old}
        files[name] = FileEntry.of(folder / name)
        updated = replace(manifest, heads={**manifest.heads, head.name: name}, files=files)
        write_manifest(folder, updated)
        if old and old != name:
            (folder / old).unlink(missing_ok=True)
    return folder / name


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (``fcntl.flock``, waiting for it); skipped where there is no fcntl."""
    with open(path, "a", encoding="utf-8") as file:
        try:
            import fcntl
        except ImportError:  # Windows: one writer at a time is up to the user
            yield
            return
        fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)
