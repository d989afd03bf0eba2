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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from lite_rm.errors import InputError
from lite_rm.files import write_json_atomic
from lite_rm.scoring.bundle import MAX_MAGNITUDE, BundleError, Calibration, Manifest, bounded, show_value
from lite_rm.scoring.evaluation import preference_probability
from lite_rm.scoring.runtimes import EMBEDDING_OUTPUT, SCORE_OUTPUT

HEAD_FORMAT = "lite-rm-head"
HEAD_FORMAT_VERSION = 1
HEADS_DIR = "heads"
DEFAULT_HEAD = "default"
# What a ``head`` argument may be: a head's name (or a head file's path), or a weighted mixture of heads.
HeadSpec = str | dict[str, float] | None
# A head name is a file name inside the bundle: letters, digits, '.', '_' and '-', not starting with '.'.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")  # fullmatch: "$" would let "name\n" through


def check_head_name(name: Any) -> str:
    """``name`` when it can name a head file, else a ValueError saying what a name may hold."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.endswith(".json"):
        raise InputError(f"head name: expected 1-64 letters, digits, '_', '.', '-' (not starting with '.', "
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
    write_json_atomic(path, head.to_dict(), indent=1, sort_keys=False)
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


class HeadTerm(NamedTuple):
    """One head of a plan and its coefficient (its weight times its calibration scale in a mixture)."""

    name: str
    coefficient: float
    head: LinearHead | None  # None: the default head, the graph's own ``logits``


@dataclass(frozen=True)
class HeadPlan:
    """How to score one head spec: the heads to add up, and the scale of the result's probabilities.

    Attributes:
        terms: the heads and their coefficients.
        scale: turns a difference of two scores into P(a preferred over b); 1 for a mixture, whose terms
            are already in probability units.
        source: the bundle, named in errors.
    """

    terms: tuple[HeadTerm, ...]
    scale: float
    source: str

    @property
    def outputs(self) -> list[str]:
        """The graph outputs the plan reads: ``logits`` for the default head, ``embedding`` for the others."""
        default = any(term.head is None for term in self.terms)
        others = any(term.head is not None for term in self.terms)
        return [SCORE_OUTPUT] * default + [EMBEDDING_OUTPUT] * others

    def combine(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The plan's weighted sum from the graph's ``outputs``; one head with coefficient 1 returns its own
        scores untouched (the default head: the graph's ``logits`` as they are).

        Raises:
            BundleError: a non-finite score (a corrupted graph, embedding or head file).
        """
        def part(term: HeadTerm) -> np.ndarray:
            return outputs[SCORE_OUTPUT] if term.head is None else term.head.scores(outputs[EMBEDDING_OUTPUT])

        if len(self.terms) == 1 and self.terms[0].coefficient == 1.0:
            scores = part(self.terms[0])
        else:
            scores = np.asarray(sum(t.coefficient * part(t).astype(np.float64) for t in self.terms), dtype=np.float32)
        if not np.all(np.isfinite(scores)):
            # Bounded heads and calibrations cannot get here; a corrupted graph or embedding can. A NaN
            # written as a score would be silently wrong (and is not JSON), so stop instead.
            bad = int(np.sum(~np.isfinite(scores)))
            raise BundleError(f"{self.source}: head {' + '.join(t.name for t in self.terms)} gave a "
                              f"non-finite score (NaN or infinity) for {bad} of {len(scores)} texts; the bundle or "
                              "head is corrupted: export it again or check the head file")
        return scores

    def probabilities(self, score_a: np.ndarray, score_b: np.ndarray) -> np.ndarray:
        """P(a preferred over b) from two arrays of this plan's scores, float64."""
        diff = np.asarray(score_a, dtype=np.float64) - np.asarray(score_b, dtype=np.float64)
        return preference_probability(diff, self.scale)


class HeadSet:
    """The heads one bundle can score, and the plans that mix them.

    Holds the bundle's heads (read on first use) and the head files loaded since; turns a
    :data:`HeadSpec` into a checked :class:`HeadPlan`.

    Args:
        manifest: the bundle's manifest.
        has_embedding: whether the bundle's graph has the ``embedding`` output heads read.
        default: the spec used when a call gives none (``None``: the bundle's own score).

    Attributes:
        loaded: the heads read so far (the bundle's, on first use) and the head files loaded, by name.

    Raises:
        BundleError, ValueError, TypeError: ``default`` is not a valid spec for this bundle.
    """

    def __init__(self, manifest: Manifest, has_embedding: bool, default: HeadSpec = None) -> None:
        self.manifest = manifest
        self.has_embedding = has_embedding
        self.loaded: dict[str, LinearHead] = {}
        self.default: HeadSpec = None
        self.default = self.resolve(default)  # checked now, so a bad name fails at open, not at the first call

    @property
    def names(self) -> list[str]:
        """``default``, the bundle's heads and the loaded head files, in that order (the others sorted)."""
        return [DEFAULT_HEAD, *sorted((set(self.manifest.heads) | set(self.loaded)) - {DEFAULT_HEAD})]

    def get(self, name: str) -> LinearHead:
        """The linear head ``name`` (``default``: the score's last layer in linear form).

        Raises:
            BundleError: no such head, a bundle without an embedding output, or a head of another model.
        """
        if name in self.loaded:
            return self.loaded[name]
        if name not in self.manifest.heads:
            raise BundleError(f"head {name!r}: not in {self.manifest.folder} (it has {', '.join(self.names)}); "
                              "add one with lite-rm personalize, or give the path of a head file")
        path = self.manifest.folder / self.manifest.heads[name]
        self.loaded[name] = self._checked(read_head(path), str(path))
        return self.loaded[name]

    def load(self, path: str | Path) -> str:
        """Make a head file scorable; returns its name."""
        head = self._checked(read_head(path), str(path))
        self.loaded[head.name] = head
        return head.name

    def require_embedding(self, what: str) -> None:
        """A BundleError naming ``what`` unless the bundle's graph has an ``embedding`` output."""
        if self.manifest.embedding is None or not self.has_embedding:
            raise BundleError(f"{what}: {self.manifest.folder} was exported before heads existed (its graph has no "
                              f"{EMBEDDING_OUTPUT!r} output); export the checkpoint again with this lite-rm to use "
                              "heads (its default score works as before)")

    def resolve(self, spec: HeadSpec) -> HeadSpec:
        """``spec`` with head files loaded (by their name) and names and weights checked."""
        if spec is None:
            return self.default if self.default is not None else DEFAULT_HEAD
        if isinstance(spec, (str, Path)):
            text = str(spec)
            if text.endswith(".json"):
                return self.load(text)  # a missing file is a BundleError naming it
            if text != DEFAULT_HEAD:
                self.get(text)
            return text
        if not isinstance(spec, dict) or not spec:
            raise TypeError(f"head: expected a head name, a head file or a non-empty {{name: weight}}, found {spec!r}")
        mixture: dict[str, float] = {}
        for name, weight in spec.items():
            if not bounded(weight):
                raise InputError(f"head[{name!r}]: expected a finite weight within ±{MAX_MAGNITUDE:g}, "
                                 f"found {weight!r}")
            resolved = str(self.resolve(name))
            mixture[resolved] = mixture.get(resolved, 0.0) + float(weight)
        return mixture

    def plan(self, spec: HeadSpec) -> HeadPlan:
        """The checked plan of ``spec`` (``None``: the default spec)."""
        resolved = self.resolve(spec)
        source = str(self.manifest.folder)
        if isinstance(resolved, str):
            return HeadPlan((self._term(resolved, 1.0),), self._scale(resolved), source)
        assert isinstance(resolved, dict)
        return HeadPlan(tuple(self._term(name, weight * self._scale(name)) for name, weight in resolved.items()),
                        1.0, source)

    def _term(self, name: str, coefficient: float) -> HeadTerm:
        return HeadTerm(name, coefficient, None if name == DEFAULT_HEAD else self.get(name))

    def _scale(self, name: str) -> float:
        return self.manifest.calibration.scale if name == DEFAULT_HEAD else self.get(name).calibration.scale

    def _checked(self, head: LinearHead, where: str) -> LinearHead:
        self.require_embedding(f"head {head.name!r}")
        if head.dim != self.manifest.embedding_dim:
            raise BundleError(f"{where}: head of {head.dim} dimensions, the bundle's embedding has "
                              f"{self.manifest.embedding_dim}")
        backbone = self.manifest.source.sha256 if self.manifest.source else None
        if head.backbone and backbone and head.backbone != backbone:
            raise BundleError(f"{where}: head {head.name!r} was fit on another model (backbone {head.backbone[:12]}, "
                              f"this bundle's is {backbone[:12]}); fit it again on this bundle")
        return head
