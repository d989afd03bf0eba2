"""Writing a bundle folder: the graph, the tokenizer files, ``config.json`` and ``manifest.json``.

Besides lite-rm's own files the bundle carries the checkpoint's ``config.json`` (without ``auto_map``)
and the tokenizer configs, so Optimum's ``ORTModelForSequenceClassification`` and sentence-transformers'
``CrossEncoder(backend="onnx")`` load the folder as is (see export/README.md for the input-rule caveat).
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from lite_rm.exporting.onnx import CONFIG_FILE
from lite_rm.files import atomic_dir, write_json_atomic
from lite_rm.scoring.bundle import MODEL_FILE, Manifest, read_manifest, write_manifest
from lite_rm.scoring.heads import LinearHead, head_file, write_head


def stage_bundle(folder: Path, model: Path, tokenizer_dir: Path, manifest: Manifest,
                 config: dict[str, Any] | None = None, heads: list[LinearHead] | None = None) -> Path:
    """Put bundle files into ``folder`` (copies, so the scratch files stay usable) and write the manifest
    with every file's size and SHA-256.

    Args:
        folder: the folder to fill (created if needed).
        model: the ONNX graph, copied to ``model.onnx``.
        tokenizer_dir: the tokenizer files (:func:`lite_rm.exporting.onnx.bundle_tokenizer`).
        manifest: the manifest; its ``files`` are filled in here.
        config: the model config to write as ``config.json`` (omitted when ``None``).
        heads: linear heads to write into ``heads/`` and list in the manifest.

    Returns:
        ``folder``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, folder / MODEL_FILE)
    names = [MODEL_FILE]
    for path in sorted(tokenizer_dir.iterdir()):
        if path.is_file():
            shutil.copyfile(path, folder / path.name)
            names.append(path.name)
    if config is not None:
        write_json_atomic(folder / CONFIG_FILE, config)
        names.append(CONFIG_FILE)
    for head in heads or []:
        write_head(folder / head_file(head.name), head)
        names.append(head_file(head.name))
    listed = {**manifest.heads, **{head.name: head_file(head.name) for head in heads or []}}
    write_manifest(folder, replace(manifest, model_file=MODEL_FILE, heads=listed).with_files(folder, names))
    return folder


def write_bundle(output: str | Path, model: Path, tokenizer_dir: Path, manifest: Manifest,
                 config: dict[str, Any] | None = None, heads: list[LinearHead] | None = None) -> Manifest:
    """Write the bundle into ``output`` atomically (:func:`lite_rm.files.atomic_dir`): an interrupted
    write leaves an existing bundle intact and nothing half-written.

    Returns:
        The manifest as read back from the written bundle (hashes verified).
    """
    with atomic_dir(output) as folder:
        stage_bundle(folder, model, tokenizer_dir, manifest, config, heads)
        read_manifest(folder, verify=True)  # what a user will load, checked before it replaces anything
    return read_manifest(output)


def write_teacher_in_place(output: str | Path, teacher_bundle: str | Path, record: dict[str, Any]) -> Manifest:
    """Write a copy of ``teacher_bundle`` into ``output`` atomically, its manifest carrying ``record`` (a
    student's failed fidelity gate) under ``distilled_student``: the teacher ships, and says why.

    Returns:
        The manifest as read back from the written bundle (hashes verified).
    """
    teacher = read_manifest(teacher_bundle, verify=True)
    with atomic_dir(output) as folder:
        for name in teacher.files:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(teacher.folder / name, folder / name)
        write_manifest(folder, replace(teacher, distilled_student=record))
        read_manifest(folder, verify=True)
    return read_manifest(output)
