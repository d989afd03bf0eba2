"""Checkpoint and bundle folders: the lite-rm metadata file and atomic folder writes. Torch-free.

A checkpoint is a Hugging Face folder (``save_pretrained`` of a sequence-classification model with one
label, plus its tokenizer) that transformers and sentence-transformers' ``CrossEncoder`` load as is,
plus ``lite_rm.json``: the input rule and what produced it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lite_rm.encoding import InputRule

META_FILE = "lite_rm.json"
META_VERSION = 1


def write_meta(folder: str | Path, input_rule: InputRule, **fields: Any) -> Path:
    """Write ``lite_rm.json`` (format version, input rule, and any extra fields) into ``folder``."""
    path = Path(folder) / META_FILE
    meta = {"format_version": META_VERSION, "input_rule": input_rule.to_dict(), **fields}
    write_text_atomic(path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def read_meta(folder: str | Path) -> dict[str, Any]:
    """Read ``lite_rm.json``; a plain Hugging Face folder without one gets the default input rule."""
    path = Path(folder) / META_FILE
    if not path.exists():
        return {"format_version": META_VERSION, "input_rule": InputRule().to_dict()}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}); the checkpoint metadata is corrupted") from None
    if not isinstance(meta, dict) or "input_rule" not in meta:
        raise ValueError(f"{path}: expected an object with 'input_rule', found {str(meta)[:80]}")
    return meta


def input_rule_of(folder: str | Path) -> InputRule:
    """The input rule written into a checkpoint (or the default one)."""
    return InputRule.from_dict(read_meta(folder)["input_rule"])


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a file under a temporary name in the same folder, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_dir(final: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success it replaces ``final`` in one rename.

    An exception (or an interrupt) leaves ``final`` untouched and removes the temporary folder, so an
    interrupted save never leaves a half-written checkpoint or bundle.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists; choose another path or allow overwriting")
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
