"""Bundles by name (issue 28): ``Scorer.from_pretrained("org/name")`` and ``lite-rm score org/name`` through
huggingface_hub's cache, laid out here as the Hub lays it out (blobs + symlinked snapshots + refs/main).
No test touches the network: HF_HUB_OFFLINE=1 or local_files_only."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_training_support import write_pairs

from lite_rm.scoring.bundle import BundleError
from lite_rm.scoring.hub import is_hub_id, resolve_bundle
from lite_rm.scoring.scorer import Scorer

REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    from lite_rm.exporting import export_bundle

    tmp = tmp_path_factory.mktemp("hub")
    export_bundle(tiny_checkpoint, tmp / "bundle", validation=write_pairs(tmp / "valid.jsonl", 16))
    return tmp / "bundle"


def _fake_cache(cache: Path, repo_id: str, bundle: Path) -> Path:
    """``cache/models--ORG--NAME``: every file a blob, the snapshot of ``REV`` symlinks to them, refs/main."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / REV
    for file in sorted(p for p in bundle.rglob("*") if p.is_file()):
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(bundle)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REV)
    return snapshot


def _env(cache: Path) -> dict[str, str]:
    repo_root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join([repo_root, os.environ.get("PYTHONPATH", "")])}


def test_hub_ids_and_paths() -> None:
    assert is_hub_id("org/name") and is_hub_id("my-org/rm.v2_small")
    assert not any(is_hub_id(x) for x in ("bundle", "bundle/", "./org/name", "/abs/x", "a/b/c", "../x", "org/.."))


def test_from_pretrained_opens_a_cached_repo_offline(bundle: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    snapshot = _fake_cache(cache, "acme/tiny-rm", bundle)
    scorer = Scorer.from_pretrained("acme/tiny-rm", cache_dir=cache, local_files_only=True, threads=1)
    assert scorer.manifest.folder == snapshot
    local = Scorer.from_pretrained(bundle, threads=1)  # a path is opened as Scorer(path)
    np.testing.assert_array_equal(scorer.score("p", ["a", "b"]), local.score("p", ["a", "b"]))
    # the same checks as a local bundle: a corrupted (truncated) file is refused
    model = snapshot / scorer.manifest.model_file
    blob = model.resolve()
    blob.write_bytes(blob.read_bytes()[:100])
    with pytest.raises(BundleError, match="size|corrupted"):
        Scorer.from_pretrained("acme/tiny-rm", cache_dir=cache, local_files_only=True)


def test_from_pretrained_errors(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"'acme/missing': no local folder of that name, and not in the Hugging "
                                          r"Face cache .* download it once online"):
        resolve_bundle("acme/missing", cache_dir=tmp_path / "empty", local_files_only=True)
    with pytest.raises(BundleError, match="bundle folder .*not-here not found; create one with: lite-rm export"):
        Scorer.from_pretrained(str(tmp_path / "not-here"))


def test_symlinks_may_not_leave_the_models_cache_folder(bundle: Path, tmp_path: Path) -> None:
    snapshot = _fake_cache(tmp_path / "cache", "acme/tiny-rm", bundle)
    outside = tmp_path / "elsewhere.json"
    shutil.copyfile(bundle / "tokenizer.json", outside)
    (snapshot / "tokenizer.json").unlink()
    (snapshot / "tokenizer.json").symlink_to(outside)
    with pytest.raises(BundleError, match="points outside the bundle folder"):
        Scorer(snapshot)


def test_env_cache_and_offline_mode_in_a_fresh_process(bundle: Path, tmp_path: Path) -> None:
    """HF_HUB_CACHE and HF_HUB_OFFLINE=1 as a user sets them: read by huggingface_hub at import."""
    cache = tmp_path / "cache"
    _fake_cache(cache, "acme/tiny-rm", bundle)
    code = ("import sys; from lite_rm import Scorer\n"
            "s = Scorer.from_pretrained('acme/tiny-rm', threads=1)\n"
            "print(s.manifest.folder)\n"
            "assert 'torch' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(cache), timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"snapshots/{REV}")


def test_score_cli_resolves_a_hub_id(bundle: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _fake_cache(cache, "acme/tiny-rm", bundle)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"prompt": f"q{i}", "response": f"r{i}"}) + "\n" for i in range(3)))
    cli = "import sys; from lite_rm.cli import main; sys.argv[0] = 'lite-rm'; main()"

    def score(name: str, out: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", cli, "score", name, "-i", str(rows), "-o", str(out),
                               "--no-progress", "--threads", "1"], capture_output=True, text=True, env=_env(cache),
                              timeout=120, cwd=tmp_path)

    assert score("acme/tiny-rm", tmp_path / "hub.jsonl").returncode == 0
    assert score(str(bundle), tmp_path / "local.jsonl").returncode == 0
    assert (tmp_path / "hub.jsonl").read_text() == (tmp_path / "local.jsonl").read_text()
    missing = score("acme/not-cached", tmp_path / "x.jsonl")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "'acme/not-cached': no local folder of that name, and not in the Hugging Face cache" in missing.stderr


def _lite_rm(args: list[str], cache: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lite-rm ARGS`` in a fresh process with the fake cache, offline."""
    cli = "import sys; from lite_rm.cli import main; sys.argv[0] = 'lite-rm'; main()"
    return subprocess.run([sys.executable, "-c", cli, *args], capture_output=True, text=True, env=_env(cache),
                          timeout=120, cwd=cwd)


def test_eval_cli_resolves_a_hub_id(bundle: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _fake_cache(cache, "acme/tiny-rm", bundle)
    pairs = write_pairs(tmp_path / "pairs.jsonl", 8)
    args = ["--data", f"mine={pairs}", "--json", "--threads", "1"]
    hub, local = (_lite_rm(["eval", name, *args], cache, tmp_path) for name in ("acme/tiny-rm", str(bundle)))
    assert hub.returncode == 0 and local.returncode == 0, hub.stderr + local.stderr
    hub_result, local_result = json.loads(hub.stdout), json.loads(local.stdout)
    assert hub_result["model"] == "acme/tiny-rm" and hub_result["kind"] == "bundle"
    assert hub_result["results"]["tiny-rm"] == local_result["results"][bundle.name]
    missing = _lite_rm(["eval", "acme/not-cached", *args], cache, tmp_path)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "'acme/not-cached': no local folder of that name, and not in the Hugging Face cache" in missing.stderr


def test_personalize_cli_resolves_a_hub_id_into_a_profile(bundle: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    snapshot = _fake_cache(cache, "acme/tiny-rm", bundle)
    comparisons = write_pairs(tmp_path / "mine.jsonl", 12)
    args = ["personalize", "acme/tiny-rm", "-c", str(comparisons), "-n", "alice", "--threads", "1"]
    into_cache = _lite_rm(args, cache, tmp_path)  # the shared cache is never written to
    assert into_cache.returncode == 2 and "--profile FILE" in into_cache.stderr
    assert not (snapshot / "heads" / "alice.json").exists()
    profile = tmp_path / "alice.json"
    result = _lite_rm([*args, "--profile", str(profile), "--json"], cache, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["comparisons"] == 12 and profile.is_file()
    assert sorted(p.name for p in (snapshot / "heads").iterdir()) == ["default.json"]
