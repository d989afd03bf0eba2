"""``lite-rm push BUNDLE ORG/NAME`` (issue 28): the model card written from the manifest, and the upload, here
into a local folder laid out as the Hub's cache (HfApi patched), then opened by name offline. No network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import huggingface_hub
import numpy as np
import pytest
from click.testing import CliRunner
from test_hub import _fake_cache
from test_training_support import write_pairs

from lite_rm.cli import main
from lite_rm.extras import MissingExtraError
from lite_rm.jobs.model_card import model_card
from lite_rm.jobs.publishing import PushError, push_bundle
from lite_rm.scoring.bundle import BundleError, Manifest, read_manifest
from lite_rm.scoring.scorer import Scorer


@pytest.fixture(scope="module")
def pushable(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    """A real bundle of the tiny checkpoint (fp32, calibrated on 16 pairs)."""
    from lite_rm.exporting import export_bundle

    work = tmp_path_factory.mktemp("push")
    export_bundle(tiny_checkpoint, work / "bundle", validation=write_pairs(work / "pairs.jsonl", 16))
    return work / "bundle"


class FakeHub:
    """HfApi's create_repo / create_branch / upload_folder, recording the calls and keeping each upload."""

    def __init__(self, remote: Path) -> None:
        self.remote, self.calls = remote, []  # type: ignore[var-annotated]

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
        def create_repo(api: Any, repo_id: str, **kwargs: Any) -> str:
            self.calls.append(("create_repo", repo_id, kwargs))
            return f"https://huggingface.co/{repo_id}"

        def create_branch(api: Any, repo_id: str, **kwargs: Any) -> None:
            self.calls.append(("create_branch", repo_id, kwargs))

        def upload_folder(api: Any, *, repo_id: str, folder_path: str, **kwargs: Any) -> Any:
            self.calls.append(("upload_folder", repo_id, kwargs))
            shutil.copytree(folder_path, self.remote / repo_id, dirs_exist_ok=True)
            return huggingface_hub.CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/abc",
                                              commit_message="", commit_description="", oid="abc")

        for name, fake in (("create_repo", create_repo), ("create_branch", create_branch),
                           ("upload_folder", upload_folder)):
            monkeypatch.setattr(huggingface_hub.HfApi, name, fake)
        return self


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_push_then_open_by_name_offline(pushable: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _listing(pushable)
    hub = FakeHub(tmp_path / "remote").install(monkeypatch)
    result = push_bundle(pushable, "acme/tiny-rm", private=True, revision="v1", license_id="apache-2.0")
    assert result.url == "https://huggingface.co/acme/tiny-rm/commit/abc"
    assert [c[0] for c in hub.calls] == ["create_repo", "create_branch", "upload_folder"]
    assert hub.calls[0][2]["private"] is True and hub.calls[2][2]["revision"] == "v1"
    assert _listing(pushable) == before  # the user's bundle is left as it was
    Scorer(pushable, verify=True)

    uploaded = tmp_path / "remote" / "acme" / "tiny-rm"
    assert sorted(_listing(uploaded)) == result.files and "README.md" in result.files
    assert (uploaded / "README.md").read_text(encoding="utf-8") == result.card
    cache = tmp_path / "cache"
    _fake_cache(cache, "acme/tiny-rm", uploaded)
    by_name = Scorer.from_pretrained("acme/tiny-rm", cache_dir=cache, local_files_only=True, verify=True, threads=1)
    local = Scorer(pushable, threads=1)
    np.testing.assert_array_equal(by_name.score("p", ["a", "b"]), local.score("p", ["a", "b"]))


def test_only_the_files_the_manifest_names_travel(pushable: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(pushable, bundle)
    (bundle / "notes.txt").write_text("private")
    FakeHub(tmp_path / "remote").install(monkeypatch)
    result = push_bundle(bundle, "acme/tiny-rm", license_id="apache-2.0")
    assert "notes.txt" not in result.files
    assert not (tmp_path / "remote" / "acme" / "tiny-rm" / "notes.txt").exists()


def test_card_says_what_a_user_needs(pushable: Path) -> None:
    manifest = read_manifest(pushable)
    card = model_card(manifest, "acme/tiny-rm", license_id="cc-by-nc-4.0")
    assert card.startswith("---\nlibrary_name: lite-rm\nlicense: cc-by-nc-4.0\n")
    for text in ('Scorer.from_pretrained("acme/tiny-rm")', "lite-rm score acme/tiny-rm -i rows.jsonl",
                 "at most **128 tokens**", "keeps the end of the prompt and the start of the response",
                 "## Parity with PyTorch", "| ONNX fp32 |", "## Calibration", "## Training", "Stage: tiny-random",
                 "## Licence", "`cc-by-nc-4.0`"):
        assert text in card, text
    assert "## Fidelity" not in card  # not distilled
    assert "pip install lite-rm" not in card and "Install lite-rm as its README says" in card
    assert str(pushable.parent) not in card  # a public card names no local folder


def test_card_of_a_distilled_student(pushable: Path) -> None:
    data = json.loads((pushable / "manifest.json").read_text())
    data["fidelity"] = {"confident_agreement": 0.99, "confident_pairs": 150, "min_confident_agreement": 0.99,
                        "order_agreement": 0.8, "passed": True,
                        "sets": {"academy": {"pairs": 249, "student_accuracy": 0.74, "teacher_accuracy": 0.75}}}
    data["source"]["lite_rm_meta"]["base_model"] = "/home/someone/runs/custom-academy"
    card = model_card(Manifest.from_dict(data, pushable), "acme/student")
    assert "## Fidelity to its teacher" in card and "| academy | 249 | 0.740 | 0.750 |" in card
    assert "`custom-academy`" in card and "/home/someone" not in card


def test_errors_say_what_to_do(pushable: Path, tiny_checkpoint: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PushError, match="expected a Hugging Face Hub repository id ORG/NAME"):
        push_bundle(pushable, "no-namespace")
    with pytest.raises(BundleError, match="not found; create one with: lite-rm export"):
        push_bundle(tmp_path / "missing", "acme/x")
    with pytest.raises(BundleError, match="training checkpoint, not a bundle: export it"):
        push_bundle(tiny_checkpoint, "acme/x")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(MissingExtraError, match=r'pip install "huggingface_hub'):
        push_bundle(pushable, "acme/x", license_id="apache-2.0")


def test_a_refused_upload_says_how_to_log_in(pushable: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import requests

    def refuse(api: Any, repo_id: str, **kwargs: Any) -> None:
        response = requests.Response()
        response.status_code = 401
        raise huggingface_hub.errors.HfHubHTTPError("401 Unauthorized", response=response)

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", refuse)
    with pytest.raises(PushError, match=r"HTTP 401.*huggingface-cli login, or HF_TOKEN"):
        push_bundle(pushable, "acme/x", license_id="apache-2.0")


def test_cli_dry_run_and_errors(pushable: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["push", str(pushable), "acme/tiny-rm", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("---\nlibrary_name: lite-rm") and "would be uploaded to acme/tiny-rm" in result.stderr
    card = tmp_path / "card.md"
    result = runner.invoke(main, ["push", str(pushable), "acme/tiny-rm", "--dry-run", "--card", str(card), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["url"] is None
    assert card.read_text(encoding="utf-8").startswith("---\n")
    help_text = " ".join(runner.invoke(main, ["push", "--help"]).output.split())
    assert "Prefer the environment variable: a flag is visible to other users in the process list." in help_text
    result = runner.invoke(main, ["push", str(pushable), "bad name", "--dry-run"])
    assert result.exit_code == 1 and "Error: 'bad name': expected a Hugging Face Hub repository id" in result.output


# -- the licence follows the training data the manifest records ------------------------------------------------

DSP_RUN = (("academy", "/home/someone/data/dsp/train.json", "academy"),
           ("helpful", "/home/someone/data/general/helpful.train.json", None))


def _trained_on(pushable: Path, *sets: tuple[str, str, str | None]) -> dict[str, Any]:
    """The pushable bundle's manifest, as if its checkpoint had recorded these (name, source, domain) sets."""
    data = json.loads((pushable / "manifest.json").read_text())
    data["source"]["lite_rm_meta"]["validation_split"] = {"seed": 0, "sets": [
        {"name": name, "source": source, "valid_fraction": 0.1, "domain": domain, "options": {}}
        for name, source, domain in sets]}
    return data


def test_licence_follows_the_recorded_training_data(pushable: Path) -> None:
    from lite_rm.jobs.model_card import default_license

    def card(*sets: tuple[str, str, str | None], license_id: str | None = None) -> tuple[str | None, str]:
        manifest = Manifest.from_dict(_trained_on(pushable, *sets), pushable)
        return default_license(manifest), model_card(manifest, "acme/x", license_id=license_id)

    licence, text = card(*DSP_RUN)  # DSP, and DSP's cleaned general sets: CC BY-NC 4.0
    assert licence == "cc-by-nc-4.0" and "\nlicense: cc-by-nc-4.0\n" in text
    assert "because data it was trained on is under CC BY-NC 4.0" in text and "academy (`train.json`, DSP" in text
    assert "/home/someone" not in text
    for sets in ([DSP_RUN[1]], [("mine", "/x/dsp-like.json", "business")]):  # general sets alone; a DSP domain
        assert card(*sets)[0] == "cc-by-nc-4.0"
    for sets in ([("mine", "/x/mine.jsonl", None)], [("hh", "/x/hh-rlhf/harmless-base/test.jsonl.gz", None)], []):
        licence, text = card(*sets)  # the user's own data, or HH-RLHF upstream (MIT): the owner must choose
        assert licence is None and "\nlicense: other\n" in text and "**Licence not set.**" in text
        assert "--license ID" in text
    assert "HH-RLHF: MIT" in card(("hh", "/x/hh-rlhf/harmless-base/test.jsonl.gz", None))[1]
    assert default_license(read_manifest(pushable)) is None  # not recorded
    licence, text = card(("mine", "/x/mine.jsonl", None), license_id="apache-2.0")
    assert "\nlicense: apache-2.0\n" in text and "Licence not set" not in text and "mine (`mine.jsonl`, licence unknown)" in text


def test_upload_needs_a_licence_unless_the_data_sets_one(pushable: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    hub = FakeHub(tmp_path / "remote").install(monkeypatch)
    with pytest.raises(PushError, match=r"choose the model's licence, e.g. --license apache-2.0"):
        push_bundle(pushable, "acme/x")  # nothing recorded: nothing public without the owner's licence
    assert hub.calls == []
    dry = push_bundle(pushable, "acme/x", dry_run=True)
    assert (dry.license_id, dry.license_from) == ("other", "not set") and "**Licence not set.**" in dry.card

    bundle = tmp_path / "dsp-bundle"  # the same bundle, its checkpoint recorded as trained on DSP's data
    shutil.copytree(pushable, bundle)
    (bundle / "manifest.json").write_text(json.dumps(_trained_on(pushable, *DSP_RUN)))
    result = push_bundle(bundle, "acme/x")
    assert (result.license_id, result.license_from) == ("cc-by-nc-4.0", "training data")
    uploaded = (tmp_path / "remote" / "acme" / "x" / "README.md").read_text(encoding="utf-8")
    assert "\nlicense: cc-by-nc-4.0\n" in uploaded
    with caplog.at_level("WARNING", logger="lite_rm.jobs.publishing"):
        given = push_bundle(bundle, "acme/x", license_id="apache-2.0", dry_run=True)
    assert given.license_from == "given" and "includes CC BY-NC 4.0 data" in caplog.text

    result_cli = CliRunner().invoke(main, ["push", str(bundle), "acme/x", "--dry-run"])
    assert result_cli.exit_code == 0 and "licence: cc-by-nc-4.0 (from the training data" in result_cli.stderr
    result_cli = CliRunner().invoke(main, ["push", str(pushable), "acme/x", "--dry-run", "--json"])
    assert json.loads(result_cli.stdout)["license"] == "other"
    result_cli = CliRunner().invoke(main, ["push", str(pushable), "acme/x"])
    assert result_cli.exit_code == 1 and "Error:" in result_cli.output and "--license" in result_cli.output


def test_push_is_torch_free() -> None:
    code = ("import sys; import lite_rm.jobs.publishing, lite_rm.cli.push_cmd; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
