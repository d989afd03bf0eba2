"""``lite-rm eval``: outputs, --json, data sources, the torch-free install, bad input without a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_training_support import write_pairs

from lite_rm.cli import main


def _run(args: list[str]) -> object:
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_output_files_are_written_into_missing_folders_and_json_prints_json(tmp_path: Path,
                                                                            tiny_checkpoint: Path) -> None:
    pairs = write_pairs(tmp_path / "p.jsonl", 12)
    out_json, out_md = tmp_path / "a" / "b" / "out.json", tmp_path / "c" / "table.md"
    result = _run(["eval", str(tiny_checkpoint), "--data", f"mine={pairs}", "-o", str(out_json), "-o", str(out_md),
                   "--threads", "1"])
    assert result.exit_code == 0, result.output
    written = json.loads(out_json.read_text())
    assert written["kind"] == "checkpoint" and written["results"]["checkpoint"]["mine"]["pairs"] == 12
    assert out_md.read_text() == result.output.rstrip("\n") + "\n"
    # "general avg" is helpful/harmless/WebGPT only: a lone custom set shows its own column, no average
    assert out_md.read_text().startswith("| model | mine |\n") and "general avg" not in out_md.read_text()

    printed = _run(["eval", str(tiny_checkpoint), "--data", f"mine={pairs}", "--json", "--threads", "1"])
    assert printed.exit_code == 0
    assert json.loads(printed.output)["results"] == written["results"]


def test_general_avg_needs_the_three_general_sets(tmp_path: Path, tiny_checkpoint: Path) -> None:
    files = [f"{n}={write_pairs(tmp_path / f'{n}.jsonl', 6, seed=i)}"
             for i, n in enumerate(("helpful", "harmless", "webgpt"))]
    args = ["eval", str(tiny_checkpoint), "--threads", "1"]
    result = _run([*args, *sum((["--data", f] for f in files), [])])
    assert result.output.startswith("| model | helpful | harmless | webgpt | general avg |")
    two = _run([*args, *sum((["--data", f] for f in files[:2]), [])])
    assert two.exit_code == 0 and "general avg" not in two.output


def test_a_bad_output_suffix_is_refused_before_any_scoring(tmp_path: Path, tiny_checkpoint: Path) -> None:
    result = _run(["eval", str(tiny_checkpoint), "--data", str(tmp_path / "never-read.jsonl"),
                   "-o", str(tmp_path / "out.txt")])
    assert result.exit_code == 2 and "expected a .json or .md file" in result.output


def test_data_sources_take_the_loader_options(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from datasets import Dataset

    rows = [json.loads(line) for line in write_pairs(tmp_path / "p.jsonl", 10).read_text().splitlines()]
    renamed = [{"question": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]
    Dataset.from_list(renamed).save_to_disk(str(tmp_path / "saved"))
    result = _run(["eval", str(tiny_checkpoint), "--data", f"saved={tmp_path / 'saved'}",
                   "--column", "prompt=question", "--json", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["results"]["checkpoint"]["saved"]["pairs"] == 10

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n" + '{"prompt": "p", "chosen": 3, "rejected": "r"}\n')
    strict = _run(["eval", str(tiny_checkpoint), "--data", str(bad)])
    assert strict.exit_code == 1 and "bad.jsonl" in strict.output and "line 2" in strict.output
    assert "Traceback" not in strict.output
    skipped = _run(["eval", str(tiny_checkpoint), "--data", str(bad), "--skip-invalid", "--json", "--threads", "1"])
    assert skipped.exit_code == 0 and json.loads(skipped.output)["results"]["checkpoint"]["bad"]["pairs"] == 1


def test_bad_input_never_prints_a_traceback(tmp_path: Path, tiny_checkpoint: Path) -> None:
    pairs = write_pairs(tmp_path / "p.jsonl", 4)
    for args in (["--data", str(tmp_path / "missing.jsonl")], ["--data", "=", ], ["--column", "prompt"],
                 ["--data", str(pairs), "--threads", "-1"], ["--data", str(pairs), "--format", "dsp"]):
        result = _run(["eval", str(tiny_checkpoint), *args])
        assert result.exit_code in (1, 2) and "Traceback" not in result.output, (args, result.output)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    result = _run(["eval", str(broken), "--data", str(pairs)])
    assert result.exit_code == 1 and "cannot load the checkpoint" in result.output


def test_a_checkpoint_on_a_torch_free_install_names_the_extra(tmp_path: Path, tiny_checkpoint: Path) -> None:
    pairs = write_pairs(tmp_path / "p.jsonl", 4)
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # as on a core install: import torch fails\n"
        "from click.testing import CliRunner\n"
        "from lite_rm.cli import main\n"
        f"r = CliRunner().invoke(main, ['eval', {str(tiny_checkpoint)!r}, '--data', {str(pairs)!r}])\n"
        "print(r.exit_code)\n"
        "print(r.output)\n"
        "print(repr(r.exception) if r.exit_code not in (0, 1) else '')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = proc.stdout.splitlines()
    assert lines and lines[0] == "1", proc.stdout + proc.stderr
    assert 'pip install torch==2.13.0 "lite-rm[train]"' in proc.stdout
    assert "ModuleNotFoundError" not in proc.stdout and "Traceback" not in proc.stdout


@pytest.mark.parametrize("threads", ["0", "2"])
def test_threads_zero_means_free_cores(tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch,
                                       threads: str) -> None:
    import torch

    from lite_rm import threads as threads_module
    from lite_rm.training import modeling

    monkeypatch.setattr(threads_module, "free_cores", lambda sample_seconds=0.5: 1)
    seen: list[int] = []
    torch_score_fn = modeling.torch_score_fn

    def recording_score_fn(*args: object, **kwargs: object) -> object:
        score = torch_score_fn(*args, **kwargs)  # type: ignore[arg-type]

        def run(prompts: object, responses: object) -> object:
            seen.append(torch.get_num_threads())
            return score(prompts, responses)  # type: ignore[arg-type]

        return run

    monkeypatch.setattr(modeling, "torch_score_fn", recording_score_fn)
    before = torch.get_num_threads()
    try:
        result = _run(["eval", str(tiny_checkpoint), "--data", str(write_pairs(tmp_path / "p.jsonl", 4)),
                       "--threads", threads])
        assert result.exit_code == 0, result.output
        assert seen and set(seen) == {1 if threads == "0" else 2}
        # set while scoring only: the calling process keeps its own count
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)


def test_the_progress_chunks_give_the_unchunked_scores(tmp_path: Path, tiny_checkpoint: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from lite_rm.cli import eval_cmd

    args = ["eval", str(tiny_checkpoint), "--data", str(write_pairs(tmp_path / "p.jsonl", 20)), "--json",
            "--threads", "1", "--no-bf16"]
    whole = json.loads(_run(args).output)
    monkeypatch.setattr(eval_cmd, "PROGRESS_CHUNK", 7)  # 40 texts in six calls
    assert json.loads(_run(args).output) == whole
