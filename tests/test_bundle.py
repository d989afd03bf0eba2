"""The bundle manifest schema: shapes and bounds, paths confined to the folder, old manifests, fuzzing."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lite_rm.files import atomic_dir, remove_stale, scratch_dir
from lite_rm.scoring.bundle import BundleError, Manifest, read_manifest

MODEL = b"not really onnx, read_manifest does not parse it"
TOKENIZER = b'{"version": "1.0"}'


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def old_manifest() -> dict[str, Any]:
    """A manifest as lite-rm wrote format version 1 before the schema (no max_positions, no config files)."""
    return {
        "format": "lite-rm-bundle", "format_version": 1,
        "input_rule": {"kind": "text-pair", "max_length": 256, "prompt_keep": "end", "response_keep": "start",
                       "min_response_share": 0.5},
        "max_length": 256, "model_file": "model.onnx", "tokenizer_file": "tokenizer.json", "precision": "int8",
        "domains": ["academy"], "created_by": "lite-rm 0.1.0", "created_at": "2026-11-30T10:00:00+00:00",
        "source": {"checkpoint": "/x", "sha256": "0" * 64, "model_type": "bert", "lite_rm_meta": None},
        "export": {"optimum_onnx": "1.0", "onnxruntime": "1.20", "optimization_level": 2, "timings_s": {}},
        "quantization": {"name": "blockwise"},
        "parity": {"validation": {"source": "v.jsonl", "pairs": 40}, "passed": True, "overridden": False},
        "calibration": {"method": "platt-no-intercept", "scale": 0.5, "temperature": 2.0, "ece_before": 0.1,
                        "ece_after": 0.02, "ece_bins": 10, "pairs": 40},
        "files": {"model.onnx": {"bytes": len(MODEL), "sha256": _sha(MODEL)},
                  "tokenizer.json": {"bytes": len(TOKENIZER), "sha256": _sha(TOKENIZER)}},
    }


def _bundle(folder: Path, manifest: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(MODEL)
    (folder / "tokenizer.json").write_bytes(TOKENIZER)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_reads_a_version_1_manifest_of_the_previous_code(tmp_path: Path) -> None:
    m = read_manifest(_bundle(tmp_path / "b", old_manifest()), verify=True)
    assert m.precision == "int8" and m.domains == ["academy"] and m.input_rule.max_length == 256
    assert m.calibration.scale == 0.5 and m.calibration.temperature == 2.0 and not m.calibration.degenerate
    assert m.model_path == tmp_path / "b" / "model.onnx" and m.tokenizer_path == tmp_path / "b" / "tokenizer.json"
    assert m.max_positions == 512 and m.parity["passed"] and m.source.sha256 == "0" * 64
    assert m.embedding is None and m.extra == {} and m.to_dict()["export"] == old_manifest()["export"]
    again = Manifest.from_dict(m.to_dict(), m.folder)  # the writer's dict reads back the same
    assert again.input_rule == m.input_rule and again.calibration == m.calibration and again.files == m.files


@pytest.mark.parametrize(("field", "value", "message"), [
    ("files", [], "manifest files: expected an object"),
    ("calibration", [], "manifest calibration: expected an object or null, found []"),
    ("input_rule", None, "manifest input_rule: expected an object"),
    ("input_rule", {"max_length": 100000}, "input_rule.max_length: expected at most max_positions (512, the "
                                           "model's positions), found 100000"),
    ("max_length", 512, "manifest max_length: expected the same as input_rule.max_length (256)"),
    ("domains", "academy", "manifest domains: expected a list of strings"),
    ("precision", "int4", "manifest precision: expected fp32 or int8"),
    ("format_version", 2, "format_version: bundle format version 2 is not supported by this lite-rm (it reads 1)"),
    ("format_version", True, "format_version: bundle format version True is not supported"),
    ("parity", "passed", "manifest parity: expected an object or null"),
    ("files", {"model.onnx": {"bytes": -1}}, "files['model.onnx'].bytes: expected a non-negative integer"),
    ("calibration", {"scale": 0}, "calibration.scale: expected a positive number up to 10000, found 0"),
    ("calibration", {"scale": "1"}, "calibration.scale: expected a finite number"),
])
def test_malformed_shapes_name_the_field(tmp_path: Path, field: str, value: Any, message: str) -> None:
    data = old_manifest()
    data[field] = value
    with pytest.raises(BundleError) as err:
        read_manifest(_bundle(tmp_path / "b", data))
    assert message in str(err.value) and "manifest.json" in str(err.value)


def test_max_positions_bounds_the_input_rule(tmp_path: Path) -> None:
    data = old_manifest()
    data.update(max_positions=8192, max_length=4096)
    data["input_rule"]["max_length"] = 4096
    assert read_manifest(_bundle(tmp_path / "b", data)).input_rule.max_length == 4096


@pytest.mark.parametrize("name", ["../other/model.onnx", "/etc/passwd", "sub/../../model.onnx", "C:model.onnx"])
def test_manifest_paths_cannot_leave_the_bundle(tmp_path: Path, name: str) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.onnx").write_bytes(MODEL)
    for field in ("model_file", "tokenizer_file"):
        data = old_manifest()
        data[field] = name
        with pytest.raises(BundleError, match=f"manifest {field}: expected a relative file name inside the bundle"):
            read_manifest(_bundle(tmp_path / "b", data))
    data = old_manifest()
    data["files"][name] = {"bytes": 1, "sha256": None}
    with pytest.raises(BundleError, match=r"manifest files\["):
        read_manifest(_bundle(tmp_path / "b", data))


def test_a_symlink_out_of_the_bundle_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(MODEL)
    folder = _bundle(tmp_path / "b", old_manifest())
    (folder / "model.onnx").unlink()
    os.symlink(outside, folder / "model.onnx")
    with pytest.raises(BundleError, match="points outside the bundle folder"):
        read_manifest(folder)


def test_verify_hashes_exactly_the_file_that_is_loaded(tmp_path: Path) -> None:
    """The old reader hashed <folder>/<basename> while onnxruntime loaded <folder>/<model_file>."""
    data = old_manifest()
    data["model_file"] = "sub/model.onnx"
    data["files"]["sub/model.onnx"] = data["files"].pop("model.onnx")
    folder = _bundle(tmp_path / "b", data)  # a good model.onnx at the top
    (folder / "sub").mkdir()
    (folder / "sub" / "model.onnx").write_bytes(MODEL.upper())  # same size, other bytes
    assert read_manifest(folder).model_path == folder / "sub" / "model.onnx"
    with pytest.raises(BundleError, match="sub/model.onnx: SHA-256 differs"):
        read_manifest(folder, verify=True)


def _unhashed(data: dict[str, Any], case: str) -> dict[str, Any]:
    if case == "unlisted model_file":
        data["model_file"] = "other.onnx"  # a real file, not in files
    elif case == "files null":
        data["files"] = None
    elif case == "sha256 null":
        data["files"]["model.onnx"]["sha256"] = None
    else:
        del data["files"]["tokenizer.json"]
    return data


@pytest.mark.parametrize("case", ["unlisted model_file", "files null", "sha256 null", "unlisted tokenizer"])
def test_verify_requires_every_loaded_file_listed_with_its_hash(tmp_path: Path, case: str) -> None:
    folder = _bundle(tmp_path / "b", _unhashed(old_manifest(), case))
    (folder / "other.onnx").write_bytes(MODEL)
    read_manifest(folder)  # without --verify: sizes of the listed files only, as before
    expected = "has no sha256 in the manifest" if case == "sha256 null" else "is not listed in the manifest's files"
    with pytest.raises(BundleError, match=expected + ", so --verify cannot check it"):
        read_manifest(folder, verify=True)


def test_invalid_json_and_huge_numbers_are_bundle_errors(tmp_path: Path) -> None:
    folder = _bundle(tmp_path / "b", old_manifest())
    for text in ('{"format": ', '{"format_version": ' + "9" * 5000 + "}", "[" * 5000):
        (folder / "manifest.json").write_text(text)
        with pytest.raises(BundleError, match="manifest.json"):
            read_manifest(folder)


FIELDS = sorted(old_manifest()) + ["max_positions"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
NESTED = {"input_rule": ["kind", "max_length", "prompt_keep", "response_keep", "min_response_share"],
          "calibration": ["scale", "method", "degenerate", "reason", "pairs", "ece_bins", "ece_after"],
          "files": ["model.onnx", "tokenizer.json", "../x"]}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=json_values, nested=st.booleans(), key=st.integers(0, 6))
def test_fuzzed_fields_only_raise_bundle_errors_naming_the_field(field: str, value: Any, nested: bool,
                                                                 key: int) -> None:
    data = copy.deepcopy(old_manifest())
    if nested and field in NESTED:
        keys = NESTED[field]
        data[field][keys[key % len(keys)]] = value
    else:
        data[field] = value
    try:
        Manifest.from_dict(data)
    except BundleError as err:
        assert field in str(err), (field, value, str(err))


@settings(max_examples=60, deadline=None)
@given(field=st.sampled_from(FIELDS), value=json_values)
def test_fuzzed_manifest_files_only_raise_bundle_errors(field: str, value: Any) -> None:
    data = old_manifest()
    data[field] = value
    with tempfile.TemporaryDirectory() as tmp:
        folder = _bundle(Path(tmp) / "b", data)
        try:
            read_manifest(folder, verify=True)
        except BundleError as err:
            assert "manifest.json" in str(err) or str(folder) in str(err)


def test_stale_scratch_folders_of_dead_processes_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    dead, alive = 2 ** 30 + 7, os.getppid()  # no pid is that large (Linux pid_max <= 2**22)
    stale = tmp_path / f".bundle.tmp-{dead}-deadbeef"
    live = tmp_path / f".bundle.tmp-{alive}-cafecafe"
    legacy = tmp_path / ".bundle.tmp-abcdef12"  # an older version's name: no pid, left alone
    for path in (stale, live, legacy):
        path.mkdir()
        (path / "model.onnx").write_bytes(b"x" * 10)
    with atomic_dir(tmp_path / "bundle") as folder:
        (folder / "f").write_text("ok")
    assert not stale.exists() and live.exists() and legacy.exists()
    assert str(stale) in caplog.text and "interrupted run" in caplog.text
    assert (tmp_path / "bundle" / "f").read_text() == "ok"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".bundle.")) == sorted([live.name,
                                                                                                 legacy.name])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "systmp"))
    (tmp_path / "systmp").mkdir()
    (tmp_path / "systmp" / f"lite-rm-export-{dead}-x1").mkdir()
    (tmp_path / "systmp" / f"lite-rm-export-{alive}-x2").mkdir()
    with scratch_dir("lite-rm-export-") as work:
        assert work.name.startswith(f"lite-rm-export-{os.getpid()}-")
    assert sorted(p.name for p in (tmp_path / "systmp").iterdir()) == [f"lite-rm-export-{alive}-x2"]
    assert remove_stale(tmp_path / "missing", "x") == []
