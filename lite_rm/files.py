"""Files on disk: atomic writes, scratch folders, content hashes and TOML. Torch-free (psutil for pids).

Every artifact lite-rm writes (checkpoints, bundles, results, scores) goes through :func:`atomic_dir`
or :func:`write_text_atomic`: written under a temporary name beside the target, then renamed, so an
interrupted write never leaves half a file where a complete one is expected.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lite_rm.errors import LiteRMError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: tomli is a core dependency there (pyproject.toml)
    import tomli as tomllib

logger = logging.getLogger(__name__)
TOMLDecodeError = tomllib.TOMLDecodeError
_CHUNK = 1 << 20


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a text file under a temporary name in the same folder, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: Any, indent: int | None = 2, sort_keys: bool = True) -> None:
    """Write ``data`` as a JSON file ending in a newline, atomically (:func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n")


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id runs now (psutil, a core dependency; ``os.kill(pid, 0)``
    would terminate the process on Windows)."""
    import psutil

    return bool(psutil.pid_exists(pid))


def tagged_name(prefix: str) -> str:
    """``PREFIX<pid>-<random>``: a scratch name that says which process owns it (see :func:`remove_stale`)."""
    return f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def remove_stale(parent: str | Path, prefix: str) -> list[Path]:
    """Remove scratch entries ``PREFIX<pid>-*`` in ``parent`` whose owning process is gone.

    A killed process (SIGKILL, power loss) cannot clean up after itself; the next run does. Entries of
    a live process, and names without a pid (written by older versions), are left alone.

    Returns:
        The removed paths (each also logged as a warning).
    """
    parent = Path(parent)
    removed: list[Path] = []
    try:
        entries = [p for p in parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for path in entries:
        pid = path.name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        if not path.exists():
            removed.append(path)
            logger.warning("removed %s, left by an interrupted run (process %s is gone)", path, pid)
    return removed


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder ``<system temp>/PREFIX<pid>-*``, removed on exit; leftovers of killed runs
    with the same prefix are removed first (:func:`remove_stale`)."""
    root = Path(tempfile.gettempdir())
    remove_stale(root, prefix)
    with tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-") as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def atomic_dir(final: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success it replaces ``final`` in one rename.

    An exception (or an interrupt) leaves ``final`` untouched and removes the temporary folder, so an
    interrupted save never leaves a half-written checkpoint or bundle. The temporary name carries the
    process id, so the next save to ``final`` removes what a killed process left behind.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists; choose another path or allow overwriting")
    for kind in ("tmp", "old"):
        remove_stale(final.parent, f".{final.name}.{kind}-")
    tmp = final.with_name(tagged_name(f".{final.name}.tmp-"))
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(tagged_name(f".{final.name}.old-"))
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file, read in chunks (bundles and checkpoints are tens of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def folder_digest(folder: str | Path) -> str:
    """SHA-256 over a folder's files (relative names and contents; hidden files skipped)."""
    folder = Path(folder)
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as f:
            while block := f.read(_CHUNK):
                h.update(block)
    return h.hexdigest()


def parse_toml(text: str) -> dict[str, Any]:
    """Parse TOML text (``tomllib``, or ``tomli`` on Python 3.10).

    Raises:
        TOMLDecodeError: a syntax error (a ``ValueError``).
    """
    return tomllib.loads(text)


# What marks a folder as a lite-rm artifact of each kind (an output lite-rm may replace).
ARTIFACT_MARKERS = {"bundle": "manifest.json", "checkpoint": "lite_rm.json"}


class OutputError(LiteRMError, ValueError):
    """An output path lite-rm refuses to write: it would replace something that is not its own artifact."""


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output(path: str | Path, kind: str, inputs: Iterable[str | Path | None] = (), overwrite: bool = False,
                 keep_existing: bool = False) -> Path:
    """Check, before any work, that ``path`` may receive a new artifact of ``kind`` (``bundle``, ``checkpoint``).

    An existing output is replaced only if it is a lite-rm artifact of the same kind (a folder with
    ``manifest.json`` for a bundle, ``lite_rm.json`` for a checkpoint) and only with ``overwrite`` (or kept,
    with ``keep_existing``: a resume); an empty folder is fine. The inputs are never replaced: the output
    may not be one of them, hold one, or lie inside one.

    Raises:
        OutputError: the output is the current folder, a file, a folder that is not such an artifact,
            an existing artifact without ``overwrite``, or one of the inputs.
    """
    if kind not in ARTIFACT_MARKERS:
        raise ValueError(f"unknown artifact kind {kind!r}; expected one of {sorted(ARTIFACT_MARKERS)}")
    path = Path(path)
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if path.name in ("", ".", "..") or _inside(cwd, resolved):
        raise OutputError(f"output {str(path)!r}: is the current folder or one above it; name a new folder "
                          f"for the {kind}, e.g. -o ./my-{kind}")
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if _inside(source, resolved) or _inside(resolved, source):
            where = "is" if source == resolved else ("holds" if _inside(source, resolved) else "lies inside")
            raise OutputError(f"output {path} {where} the input {given}; lite-rm never replaces or writes into "
                              "its input: choose another output folder")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise OutputError(f"output {path}: {ancestor} is a file, not a folder; choose another output path")
    if not path.exists() and not path.is_symlink():
        return path
    marker = ARTIFACT_MARKERS[kind]
    if not path.is_dir():
        raise OutputError(f"output {path} is a file; lite-rm writes a {kind} folder there and would replace it: "
                          "choose another output path")
    if not any(path.iterdir()):
        return path
    if not (path / marker).is_file():
        raise OutputError(f"output {path} is a folder that is not a lite-rm {kind} (no {marker}); lite-rm replaces "
                          f"only a {kind} it wrote: choose a new or empty folder")
    if not (overwrite or keep_existing):
        raise OutputError(f"output {path} already holds a {kind}; pass --overwrite to replace it, or choose "
                          "another output folder")
    return path


# How much of each end of an input file its identity hashes: enough to tell files apart, cheap on any size.
IDENTITY_BLOCK = 64 * 1024


def _ends_digest(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(IDENTITY_BLOCK))
        if size > IDENTITY_BLOCK:
            f.seek(max(IDENTITY_BLOCK, size - IDENTITY_BLOCK))
            h.update(f.read(IDENTITY_BLOCK))
    return h.hexdigest()


def _file_identity(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    return {"path": str(path.resolve()), "bytes": size, "sha256_ends": _ends_digest(path, size)}


def input_identity(source: str | Path) -> dict[str, Any]:
    """What a resume checks its input against: the path, size and SHA-256 of the first and last
    :data:`IDENTITY_BLOCK` bytes of a file; of each file of a folder or glob; the name alone for stdin
    (``-``) or a dataset name."""
    text = str(source)
    path = Path(text).expanduser()
    if path.is_file():
        return _file_identity(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*")
                       if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
        return {"path": str(path.resolve()), "files": [_file_identity(p) for p in files]}
    if text != "-" and any(c in text for c in "*?["):
        return {"path": text, "files": [_file_identity(Path(p)) for p in sorted(glob.glob(text, recursive=True))
                                        if Path(p).is_file()]}
    return {"path": text}


def identity_change(before: Any, now: dict[str, Any]) -> str | None:
    """``None`` when two :func:`input_identity` records agree, else what changed, in words."""
    if before == now:
        return None
    if not isinstance(before, dict) or before.get("path") != now.get("path"):
        return f"it was {before.get('path') if isinstance(before, dict) else before}, now {now.get('path')}"
    if "files" in before or "files" in now:
        old = {f.get("path"): f for f in before.get("files") or [] if isinstance(f, dict)}
        new = {f["path"]: f for f in now.get("files", [])}
        for name in sorted(set(old) | set(new), key=str):
            if old.get(name) != new.get(name):
                return _file_change(str(name), old.get(name), new.get(name))
    return _file_change(str(now["path"]), before, now)


def _file_change(path: str, before: dict[str, Any] | None, now: dict[str, Any] | None) -> str:
    if before is None:
        return f"{path} is new"
    if now is None:
        return f"{path} is gone"
    if before.get("bytes") != now.get("bytes"):
        return f"{path} was {before.get('bytes')} bytes, now {now.get('bytes')}"
    return f"{path} has changed (same size, other content)"
