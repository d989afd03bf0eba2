"""Files on disk: atomic writes, scratch folders, content hashes and TOML. Torch-free (psutil for pids).

Every artifact lite-rm writes (checkpoints, bundles, results, scores) goes through :func:`atomic_dir`
or :func:`write_text_atomic`: written under a temporary name beside the target, then renamed, so an
interrupted write never leaves half a file where a complete one is expected.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
