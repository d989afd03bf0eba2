"""``lite-rm data check`` and the torch-free CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from lite_rm.cli import main


def test_check_real_files_reports_counts_lengths_and_leaks(data_dir: Path) -> None:
    result = CliRunner().invoke(main, [
        "data", "check", "--json", str(data_dir / "general/harmless.test.json"),
        str(data_dir / "hh-rlhf/harmless-base/test.jsonl.gz"), str(data_dir / "general/webgpt.test.json"),
    ])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    sets = [s["sets"]["all"] for s in out["sources"]]
    assert [s["pairs"] for s in sets] == [337, 1979, 91]
    assert sets[2]["ties"] == 49
    lengths = out["sources"][0]["lengths"]
    assert 0.0 < lengths["truncated_share"] < 0.5 and lengths["max_length"] == 256
    assert len(out["leaks"]) == 1 and out["leaks"][0]["shared_prompts"] == 337


def test_check_dsp_every_domain(data_dir: Path) -> None:
    result = CliRunner().invoke(main, ["data", "check", str(data_dir / "dsp/test.json")])
    assert result.exit_code == 0, result.output
    for domain in ("academy", "business", "entertainment", "literature"):
        assert f"{domain}: " in result.output
    assert "inputs over max length 256" in result.output


def test_check_bad_file_exits_nonzero_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "chosen": "a"}\n')
    result = CliRunner().invoke(main, ["data", "check", str(bad)])
    assert result.exit_code == 1
    assert "bad.jsonl line 2: field 'rejected' is missing" in result.output
    assert "Traceback" not in result.output
    skipped = CliRunner().invoke(main, ["data", "check", "--skip-invalid", str(bad)])
    assert skipped.exit_code == 0 and "1 invalid records skipped (1 missing field)" in skipped.output


def test_fail_on_leaks(tmp_path: Path) -> None:
    a = tmp_path / "a.jsonl"
    a.write_text('{"prompt": "same", "chosen": "a", "rejected": "b"}\n')
    result = CliRunner().invoke(main, ["data", "check", "--fail-on-leaks", str(a), str(a)])
    assert result.exit_code == 1 and "1 prompts are shared" in result.output


def test_bad_column_mapping() -> None:
    result = CliRunner().invoke(main, ["data", "check", "--column", "question", "x.jsonl"])
    # A usage error (exit status 2), as for every command's --column; no traceback.
    assert result.exit_code == 2 and "expected FIELD=COLUMN" in result.output and "Traceback" not in result.output


BLOCK_HEAVY = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('torch', 'transformers', 'sentence_transformers', 'sklearn', 'optimum', 'datasets'):
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, Block())
from lite_rm.cli import main
sys.argv = ['lite-rm'] + sys.argv[1:]
try:
    main()
finally:
    assert 'torch' not in sys.modules
"""


def test_help_and_data_check_work_without_torch(data_dir: Path) -> None:
    """Simulates a core-only install: the heavy packages cannot be imported at all."""
    for args in (["--help"], ["data", "check", str(data_dir / "general/webgpt.test.json")]):
        proc = subprocess.run([sys.executable, "-c", BLOCK_HEAVY, *args], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    assert "91 pairs from 140 records" in proc.stdout


def test_import_lite_rm_does_not_import_torch() -> None:
    code = "import sys, lite_rm, lite_rm.data, lite_rm.scoring.encoding; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
