"""The scoring bundle: one folder with ``model.onnx``, ``tokenizer.json`` and ``manifest.json``. Torch-free.

The manifest says how to read the model (format version, input rule, max length), where it came from
(the source checkpoint's hash, domains, preset), how faithful it is (parity figures) and how to turn
score differences into calibrated preference probabilities. :class:`Manifest` is its one schema, with
typed parts (:class:`Source`, :class:`Embedding`, :class:`Calibration`, :class:`FileEntry`):
:func:`write_manifest` writes ``Manifest.to_dict()`` (the one writer of ``manifest.json``) and
:func:`read_manifest` parses with ``Manifest.from_dict``, which checks every field's type and bounds and
confines every file the manifest names to the bundle folder. ``export/README.md`` documents every field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from lite_rm.errors import LiteRMError
from lite_rm.files import file_digest, write_json_atomic
from lite_rm.scoring.encoding import InputRule

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
BUNDLE_FORMAT = "lite-rm-bundle"
# Bumped when a reader of the previous version would misread a new bundle; readers refuse newer ones.
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
# Bundles written before ``max_positions`` was recorded are BERT-family models (512 positions).
DEFAULT_MAX_POSITIONS = 512
PRECISIONS = ("fp32", "int8")
# The largest magnitude of a head weight or bias, a calibration scale or a mixture weight, checked when
# written and when read: with it a score stays far inside float32 (a huge weight or scale overflows to
# NaN, or turns every probability into 0 or 1); trained values are far below it.
MAX_MAGNITUDE = 1e4

__all__ = ["MAX_MAGNITUDE", "BundleError", "Calibration", "Embedding", "FileEntry", "Manifest", "Source", "bounded",
           "file_digest", "file_entry", "read_manifest", "show_value", "write_manifest"]


class BundleError(LiteRMError, ValueError):
    """A bundle folder is missing, incomplete, corrupted or from an unknown format version."""


def _bad(name: str, expected: str, found: Any) -> BundleError:
    return BundleError(f"manifest {name}: expected {expected}, found {show_value(found)}")


def show_value(value: Any) -> str:
    """A value for an error message: its repr, cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def bounded(value: Any) -> bool:
    """Whether ``value`` is a number (not a bool) of magnitude at most :data:`MAX_MAGNITUDE`."""
    return (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            and abs(value) <= MAX_MAGNITUDE)


def _number(data: dict[str, Any], key: str, name: str, default: float | None = None) -> float | None:
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(f"{name}.{key}", "a finite number", value)
    return float(value)


def _optional(data: dict[str, Any], key: str, kind: type, expected: str) -> Any:
    value = data.get(key)
    if value is not None and not isinstance(value, kind):
        raise _bad(key, expected, value)
    return value


@dataclass(frozen=True)
class Calibration:
    """Turns a score difference into P(a preferred over b): ``sigmoid(scale * (s_a - s_b))``.

    ``scale`` is 1/temperature, fitted by Platt scaling without intercept (so P(a>b) = 1 - P(b>a)),
    see :mod:`lite_rm.exporting.calibration`. ``degenerate`` marks a fit without signal (validation
    accuracy at chance) or one stopped at a bound; ``reason`` says which.
    """

    scale: float = 1.0
    method: str = "none"
    ece_before: float | None = None
    ece_after: float | None = None
    ece_bins: int | None = None
    pairs: int | None = None
    accuracy: float | None = None
    degenerate: bool = False
    reason: str | None = None

    @property
    def temperature(self) -> float:
        return 1.0 / self.scale if self.scale > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "scale": self.scale, "temperature": self.temperature,
                "ece_before": self.ece_before, "ece_after": self.ece_after, "ece_bins": self.ece_bins,
                "pairs": self.pairs, "accuracy": self.accuracy, "degenerate": self.degenerate,
                "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Any) -> Calibration:
        """Parse the manifest's ``calibration`` (``null`` or ``{}``: uncalibrated, scale 1)."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise _bad("calibration", "an object or null", data)
        if not data:
            return cls()
        scale = _number(data, "scale", "calibration", 1.0)
        if not scale or not 0 < scale <= MAX_MAGNITUDE:
            raise _bad("calibration.scale", f"a positive number up to {MAX_MAGNITUDE:g}", data.get("scale"))
        method, reason = data.get("method", "platt"), data.get("reason")
        if not isinstance(method, str):
            raise _bad("calibration.method", "a string", method)
        if reason is not None and not isinstance(reason, str):
            raise _bad("calibration.reason", "a string or null", reason)
        if not isinstance(data.get("degenerate", False), bool):
            raise _bad("calibration.degenerate", "true or false", data.get("degenerate"))
        ints = {}
        for key in ("ece_bins", "pairs"):
            value = data.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise _bad(f"calibration.{key}", "a non-negative integer or null", value)
            ints[key] = value
        return cls(scale=scale, method=method, reason=reason, degenerate=data.get("degenerate", False),
                   ece_before=_number(data, "ece_before", "calibration"),
                   ece_after=_number(data, "ece_after", "calibration"),
                   accuracy=_number(data, "accuracy", "calibration"), **ints)


@dataclass(frozen=True)
class FileEntry:
    """The manifest's record of one bundle file: its size (checked on every open) and SHA-256."""

    bytes: int
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, name: str, data: Any) -> FileEntry:
        if not isinstance(data, dict):
            raise _bad(f"files[{name!r}]", "an object with bytes and sha256", data)
        size, digest = data.get("bytes"), data.get("sha256")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise _bad(f"files[{name!r}].bytes", "a non-negative integer", size)
        if digest is not None and (not isinstance(digest, str) or len(digest) != 64):
            raise _bad(f"files[{name!r}].sha256", "64 hex digits or null", digest)
        return cls(size, digest)

    @classmethod
    def of(cls, path: Path) -> FileEntry:
        return cls(path.stat().st_size, file_digest(path))


def file_entry(path: Path) -> dict[str, Any]:
    """The manifest's record of one bundle file: size and SHA-256."""
    return FileEntry.of(path).to_dict()


def _relative_file(name: str, value: Any) -> str:
    """A file name inside the bundle: relative, no ``..``, POSIX separators (checked again on disk)."""
    if not isinstance(value, str) or not value:
        raise _bad(name, "a file name inside the bundle", value)
    path = PurePosixPath(value.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or ":" in value or "\x00" in value:
        raise _bad(name, "a relative file name inside the bundle (no '..', not absolute)", value)
    return value


@dataclass(frozen=True)
class Embedding:
    """The graph's ``embedding`` output: the vector the score's last linear layer reads, which heads read too.

    ``parts`` describes what the vector is made of, in order (``None`` in bundles that did not record it).
    """

    output: str
    dim: int
    parts: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "dim": self.dim, **({} if self.parts is None else {"parts": list(self.parts)})}

    @classmethod
    def from_dict(cls, raw: Any) -> Embedding | None:
        """``embedding``: ``null`` (a bundle exported before heads) or ``{"output": name, "dim": n, "parts": ...}``."""
        if raw is None:
            return None
        if not isinstance(raw, dict) or not isinstance(raw.get("output"), str):
            raise _bad("embedding", "null or an object with output and dim", raw)
        dim, parts = raw.get("dim"), raw.get("parts")
        if isinstance(dim, bool) or not isinstance(dim, int) or not 0 < dim <= 65536:
            raise _bad("embedding.dim", "an integer from 1 to 65536", dim)
        if parts is not None and (not isinstance(parts, list) or not all(isinstance(p, str) for p in parts)):
            raise _bad("embedding.parts", "a list of strings or null", parts)
        return cls(raw["output"], dim, None if parts is None else list(parts))


@dataclass(frozen=True)
class Source:
    """Where a bundle came from: the checkpoint folder, its digest (heads record it as their backbone), the
    model type and the checkpoint's ``lite_rm.json`` (``None`` for a checkpoint lite-rm did not train)."""

    checkpoint: str
    sha256: str | None = None
    model_type: str | None = None
    lite_rm_meta: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "sha256": self.sha256, "model_type": self.model_type,
                "lite_rm_meta": self.lite_rm_meta}

    @classmethod
    def from_dict(cls, raw: Any) -> Source | None:
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise _bad("source", "an object or null", raw)
        for key, kind in (("checkpoint", str), ("sha256", str), ("model_type", str), ("lite_rm_meta", dict)):
            if raw.get(key) is not None and not isinstance(raw[key], kind):
                raise _bad(f"source.{key}", f"{'an object' if kind is dict else 'a string'} or null", raw[key])
        return cls(str(raw.get("checkpoint") or ""), raw.get("sha256"), raw.get("model_type"), raw.get("lite_rm_meta"))


# Top-level records kept as the exporter wrote them (figures read by key), each an object or null: always
# written, and the records only some bundles carry, written when present.
_RECORDS = ("export", "quantization", "parity")
_OPTIONAL_RECORDS = ("fidelity", "distilled_student")
_KNOWN = {"format", "format_version", "model_file", "tokenizer_file", "precision", "input_rule", "max_length",
          "max_positions", "domains", "calibration", "files", "embedding", "heads", "source", "created_by",
          "created_at", *_RECORDS, *_OPTIONAL_RECORDS}


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of a bundle: one schema for the writer and the reader.

    ``folder`` is the bundle folder it was read from (``Path()`` before writing). The figures of the
    export (``parity``, ``quantization``, ``export``, ``fidelity``, ``distilled_student``) stay the plain
    objects the exporter recorded; ``extra`` holds any other top-level key (benchmarks record their
    settings there), written back as it was.
    """

    folder: Path
    input_rule: InputRule
    calibration: Calibration
    model_file: str = MODEL_FILE
    tokenizer_file: str = TOKENIZER_FILE
    precision: str = "fp32"
    max_positions: int = DEFAULT_MAX_POSITIONS
    domains: list[str] = field(default_factory=list)
    files: dict[str, FileEntry] = field(default_factory=dict)
    embedding: Embedding | None = None
    heads: dict[str, str] = field(default_factory=dict)
    source: Source | None = None
    created_by: str | None = None
    created_at: str | None = None
    export: dict[str, Any] | None = None
    quantization: dict[str, Any] | None = None
    parity: dict[str, Any] | None = None
    fidelity: dict[str, Any] | None = None
    distilled_student: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def embedding_dim(self) -> int | None:
        """The size of the graph's ``embedding`` output (``None``: a bundle exported before heads)."""
        return self.embedding.dim if self.embedding else None

    @property
    def data(self) -> dict[str, Any]:
        """The manifest as its JSON object (:meth:`to_dict`), for reading a figure by key."""
        return self.to_dict()

    @property
    def model_path(self) -> Path:
        return self.folder / self.model_file

    @property
    def tokenizer_path(self) -> Path:
        return self.folder / self.tokenizer_file

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``manifest.json`` (``extra`` keys kept)."""
        records = {key: getattr(self, key) for key in _RECORDS}
        records.update({key: getattr(self, key) for key in _OPTIONAL_RECORDS if getattr(self, key) is not None})
        return {
            **self.extra, "format": BUNDLE_FORMAT, "format_version": FORMAT_VERSION,
            "model_file": self.model_file, "tokenizer_file": self.tokenizer_file, "precision": self.precision,
            "input_rule": self.input_rule.to_dict(), "max_length": self.input_rule.max_length,
            "max_positions": self.max_positions, "domains": list(self.domains),
            "calibration": self.calibration.to_dict(),
            "files": {name: entry.to_dict() for name, entry in sorted(self.files.items())},
            "embedding": self.embedding.to_dict() if self.embedding else None,
            "heads": dict(sorted(self.heads.items())),
            "source": self.source.to_dict() if self.source else None,
            "created_by": self.created_by, "created_at": self.created_at, **records,
        }

    def with_files(self, folder: Path, names: list[str]) -> Manifest:
        """A copy whose ``files`` records the size and hash of ``names`` inside ``folder``."""
        return replace(self, files={name: FileEntry.of(folder / name) for name in names})

    @classmethod
    def from_dict(cls, data: Any, folder: str | Path = ".") -> Manifest:
        """Parse and check a manifest object (shapes, bounds and file names; not the files on disk).

        Raises:
            BundleError: naming the field, what was expected and what was found.
        """
        if not isinstance(data, dict):
            raise _bad("(top level)", "a JSON object", data)
        if data.get("format") != BUNDLE_FORMAT:
            raise _bad("format", repr(BUNDLE_FORMAT) + " (not a lite-rm bundle)", data.get("format"))
        version = data.get("format_version")
        if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
            raise BundleError(
                f"manifest format_version: bundle format version {show_value(version)} is not supported by this "
                f"lite-rm (it reads {', '.join(map(str, SUPPORTED_VERSIONS))}); upgrade lite-rm or export the bundle "
                "again")
        max_positions = data.get("max_positions", DEFAULT_MAX_POSITIONS)
        if isinstance(max_positions, bool) or not isinstance(max_positions, int) or max_positions < 8:
            raise _bad("max_positions", "an integer >= 8", max_positions)
        rule = _input_rule(data, max_positions)
        precision = data.get("precision", "fp32")
        if precision not in PRECISIONS:
            raise _bad("precision", " or ".join(PRECISIONS), precision)
        domains = data.get("domains")
        domains = [] if domains is None else domains
        if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
            raise _bad("domains", "a list of strings", domains)
        files = data.get("files")
        files = {} if files is None else files
        if not isinstance(files, dict):
            raise _bad("files", "an object of file name -> {bytes, sha256}", files)
        records = {key: _optional(data, key, dict, "an object or null") for key in (*_RECORDS, *_OPTIONAL_RECORDS)}
        return cls(
            folder=Path(folder), input_rule=rule, embedding=Embedding.from_dict(data.get("embedding")),
            heads=_heads(data.get("heads")), source=Source.from_dict(data.get("source")),
            created_by=_optional(data, "created_by", str, "a string or null"),
            created_at=_optional(data, "created_at", str, "a string or null"),
            extra={key: value for key, value in data.items() if key not in _KNOWN}, **records,
            calibration=Calibration.from_dict(data.get("calibration")),
            model_file=_relative_file("model_file", data.get("model_file", MODEL_FILE)),
            tokenizer_file=_relative_file("tokenizer_file", data.get("tokenizer_file", TOKENIZER_FILE)),
            precision=precision, max_positions=max_positions, domains=list(domains),
            files={_relative_file(f"files[{name!r}]", name): FileEntry.from_dict(name, entry)
                   for name, entry in files.items()},
        )


def _heads(raw: Any) -> dict[str, str]:
    """``heads``: head name -> its file inside the bundle (each also listed in ``files``)."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise _bad("heads", "an object of head name -> file", raw)
    return {str(name): _relative_file(f"heads[{name!r}]", value) for name, value in raw.items()}


def _input_rule(data: dict[str, Any], max_positions: int) -> InputRule:
    """``input_rule`` (and the legacy ``max_length`` copy), bounded by the model's positions."""
    raw = data.get("input_rule")
    if not isinstance(raw, dict):
        raise _bad("input_rule", "an object (kind, max_length, prompt_keep, ...)", raw)
    try:
        rule = InputRule.from_dict(raw)
    except (TypeError, ValueError) as err:
        raise BundleError(f"manifest input_rule: {err}") from None
    if rule.max_length > max_positions:
        raise _bad("input_rule.max_length", f"at most max_positions ({max_positions}, the model's positions)",
                   rule.max_length)
    legacy = data.get("max_length", rule.max_length)
    if legacy != rule.max_length or isinstance(legacy, bool):
        raise _bad("max_length", f"the same as input_rule.max_length ({rule.max_length})", legacy)
    return rule


def _allowed_root(folder: Path) -> Path:
    """Where a bundle's files may resolve to: the bundle folder, or for a snapshot in the Hugging Face cache
    (``models--ORG--NAME/snapshots/REV/``, whose files are symlinks to ``../../blobs/``) that model's cache folder."""
    root = folder.resolve()
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith("models--"):
        return root.parent.parent
    return root


def _inside(folder: Path, name: str, what: str) -> Path:
    """``folder / name`` when it resolves (symlinks followed) to a file inside ``folder`` (or, in the Hugging
    Face cache, inside the model's cache folder)."""
    path = folder / name
    root = _allowed_root(folder)
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise BundleError(f"{path}: manifest {what} points outside the bundle folder ({resolved}); refusing to load it")
    if not resolved.is_file():
        raise BundleError(f"{path} is missing; the bundle is incomplete, export it again")
    return path


def _check_file(path: Path, entry: FileEntry | None, verify: bool, digest: Callable[[Path], str]) -> None:
    if verify and (entry is None or not entry.sha256):
        # --verify promises that what is loaded is what was exported: a file without a recorded hash
        # (unlisted, files: null, sha256: null) cannot be checked, so it is refused, not skipped.
        listed = "is not listed in the manifest's files" if entry is None else "has no sha256 in the manifest"
        raise BundleError(f"{path}: {listed}, so --verify cannot check it; the manifest was edited or the bundle "
                          "is corrupted: export it again")
    if entry is None:
        return
    size = path.stat().st_size
    if size != entry.bytes:
        raise BundleError(f"{path}: {size} bytes, the manifest says {entry.bytes}; the file is truncated or "
                          "corrupted, copy or export the bundle again")
    if verify and entry.sha256 and digest(path) != entry.sha256:
        raise BundleError(f"{path}: SHA-256 differs from the manifest; the file is corrupted")


def read_manifest(folder: str | Path, verify: bool = False) -> Manifest:
    """Read and check a bundle's manifest and the files it names.

    Sizes are always checked (cheap, catches truncated copies); ``verify=True`` also checks SHA-256
    of exactly the files that are loaded (reads every byte, so it is off on the scoring path where
    cold start matters), each of which must then be listed in ``files`` with its hash.

    Args:
        folder: the bundle folder.
        verify: also compare file hashes with the manifest.

    Raises:
        BundleError: missing folder or file, invalid JSON, a malformed field, a path leaving the
            folder, unknown format version, size or hash mismatch.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(
            f"bundle folder {folder} not found; create one with: lite-rm export CHECKPOINT --output {folder}"
        )
    path = folder / MANIFEST_FILE
    if not path.is_file():
        if (folder / "config.json").is_file() and not any(folder.glob("*.onnx")):  # what train/distill write
            raise BundleError(f"{folder}: this is a training checkpoint, not a bundle: export it with "
                              f"`lite-rm export {folder} --output BUNDLE` and give BUNDLE")
        raise BundleError(f"{path} is missing: {folder} is not a lite-rm bundle (made by lite-rm export)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError, huge integers
        raise BundleError(f"{path}: not valid JSON ({err}); the bundle is corrupted, export it again") from None
    try:
        manifest = Manifest.from_dict(data, folder)
    except BundleError as err:
        raise BundleError(f"{path}: {err}") from None
    names = {manifest.model_file: "model_file", manifest.tokenizer_file: "tokenizer_file"}
    names.update({file: f"heads[{name!r}]" for name, file in manifest.heads.items()})
    names.update({name: f"files[{name!r}]" for name in manifest.files if name not in names})
    for name, what in names.items():
        fpath = _inside(folder, name, what)
        _check_file(fpath, manifest.files.get(name), verify, file_digest)
    return manifest


def write_manifest(folder: str | Path, manifest: Manifest) -> Path:
    """Write ``manifest`` as ``folder/manifest.json``, atomically (a reader sees the old file or the new one):
    the one writer of the file (export, a teacher copied in place, a head added)."""
    path = Path(folder) / MANIFEST_FILE
    write_json_atomic(path, manifest.to_dict())
    return path
