"""The README's and docs/' examples run as written: every ``lite-rm`` command line parses with the real
CLI, and every Python example runs (the bundle path pointed at a tiny bundle, the data at ../shared/data)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from lite_rm.cli import main

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]  # their Python examples run too
DOCS = [*PAGES, REPO / "export" / "README.md", REPO / "bench" / "SCORING.md", REPO / "bench" / "TRAINING.md"]


def _blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def _command_lines() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        for block in _blocks(doc, "(?:bash|console)"):
            for line in block.replace("\\\n", " ").splitlines():  # a continued line is one command
                line = line.removeprefix("$ ").strip()
                if "lite-rm " not in line or line.startswith(("#", "make ")):
                    continue
                words = shlex.split(line[line.index("lite-rm "):], comments=True)
                ends = [i for i, w in enumerate(words) if w in ("|", ">", ">>", "<", "&&", ";")]
                found.append((f"{doc.name}: {line}", words[1:ends[0] if ends else None]))
    return found


COMMANDS = _command_lines()


def test_the_docs_show_commands() -> None:
    verbs = {args[0] for _, args in COMMANDS}
    assert {"train", "eval", "export", "score", "data"} <= verbs


@pytest.mark.parametrize("line,args", COMMANDS, ids=[c[0][:80] for c in COMMANDS])
def test_every_documented_command_line_parses(line: str, args: list[str]) -> None:
    ctx = main.make_context("lite-rm", list(args), resilient_parsing=True)
    command: click.Command | None = main
    rest = list(args)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        name, rest = rest[0], rest[1:]
        command = command.get_command(ctx, name)
        assert command is not None, f"{line}: no command {name!r}"
    assert command is not None
    try:
        command.make_context(command.name or "", rest, parent=ctx)
    except click.BadParameter as err:
        # only paths the example would create or that live on the user's machine may be missing here
        assert "does not exist" in str(err), f"{line}: {err}"
    except click.UsageError as err:
        pytest.fail(f"{line}: {err}")


def test_python_examples_run(tmp_path: Path, tiny_checkpoint: Path, data_dir: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    from lite_rm.exporting import export_bundle

    valid = tmp_path / "valid.jsonl"
    valid.write_text('{"prompt": "q?", "chosen": "a good answer", "rejected": "no"}\n' * 12, encoding="utf-8")
    bundle = tmp_path / "bundle"
    export_bundle(tiny_checkpoint, bundle, validation=valid)
    monkeypatch.chdir(REPO)  # the examples read ../shared/data
    monkeypatch.setenv("LITE_RM_DATA", str(data_dir))
    examples = [(page, block) for page in PAGES for block in _blocks(page, "python")]
    assert len(examples) >= 4
    for page, block in examples:
        code = (block.replace("runs/demo/bundle", str(bundle)).replace("runs/quickstart/bundle", str(bundle))
                .replace("../shared/data", str(data_dir)))
        exec(compile(code, page.name, "exec"), {})  # noqa: S102 - the docs' own examples
