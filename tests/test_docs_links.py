"""The docs hold together: every relative link in the README and docs/ points at a file that exists
(and, for a ``#section`` of a Markdown file, at a heading it has), and the quick start's sample data
is what its generator writes, loads, and passes ``lite-rm data check``."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from lite_rm.cli import main

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "data"
PAGES = [REPO / "README.md", SAMPLE / "README.md", *sorted((REPO / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```.*?^```", flags=re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(text: str) -> str:
    """The text without code blocks and inline code, where brackets are not links."""
    return _CODE.sub("", _FENCE.sub("", text))


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings (lower case, punctuation dropped, spaces to '-')."""
    seen: dict[str, int] = {}
    anchors = set()
    for line in _FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links() -> list[tuple[str, Path, str]]:
    found = []
    for page in PAGES:
        for target in _LINK.findall(_prose(page.read_text(encoding="utf-8"))):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not checked offline
                continue
            found.append((f"{page.relative_to(REPO)} -> {target}", page, target))
    return found


LINKS = _links()


def test_the_docs_pages_exist_and_link() -> None:
    names = {p.name for p in PAGES}
    assert {"training.md", "export.md", "scoring.md", "personalization.md", "study.md", "architecture.md",
            "glossary.md", "data.md", "distill.md"} <= names
    readme_targets = {target for label, page, target in LINKS if page.name == "README.md" and page.parent == REPO}
    for page in PAGES[2:]:  # every docs page is reachable from the README
        assert any(t.split("#")[0] == f"docs/{page.name}" for t in readme_targets), f"README never links {page.name}"


@pytest.mark.parametrize("label,page,target", LINKS, ids=[label for label, _, _ in LINKS])
def test_relative_link_resolves(label: str, page: Path, target: str) -> None:
    path_part, _, anchor = target.partition("#")
    path = (page.parent / path_part).resolve() if path_part else page
    assert path.exists(), f"{label}: {path} does not exist"
    assert REPO in path.parents or path == REPO, f"{label}: points outside the repository"
    if anchor and path.suffix == ".md":
        assert anchor in _anchors(path), f"{label}: no heading #{anchor} in {path.relative_to(REPO)}"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sample", SAMPLE / "make_sample.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sample_files_are_what_the_generator_writes() -> None:
    for name, text in _generator().build().items():
        assert (SAMPLE / name).read_text(encoding="utf-8") == text, f"rerun python examples/data/make_sample.py ({name})"


def test_sample_preferences_load_and_do_not_leak() -> None:
    from lite_rm import load_preferences

    train = load_preferences(SAMPLE / "prefs-train.jsonl")
    test = load_preferences(SAMPLE / "prefs-test.jsonl")
    assert (len(train), len(test)) == (243, 54)  # the counts the README and examples/data/README.md give
    assert not {p.prompt for p in train} & {p.prompt for p in test}


def test_sample_files_pass_data_check() -> None:
    result = CliRunner().invoke(main, ["data", "check", "--fail-on-leaks", str(SAMPLE / "prefs-train.jsonl"),
                                       str(SAMPLE / "prefs-test.jsonl")])
    assert result.exit_code == 0, result.output
    assert "243 pairs" in result.output and "54 pairs" in result.output


def _quick_start() -> list[list[str]]:
    """The README quick start's three commands, as argument lists."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Quick start"):]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert block is not None
    lines = [line for line in block.group(1).replace("\\\n", " ").splitlines() if line.strip()]
    return [shlex.split(line, comments=True)[1:] for line in lines]


def test_quick_start_is_train_export_score() -> None:
    assert [args[0] for args in _quick_start()] == ["train", "export", "score"]


@pytest.mark.slow
def test_quick_start_runs(tmp_path: Path) -> None:
    """The three commands as written (a few steps of training), outputs under tmp_path."""
    runner = CliRunner()
    for args in _quick_start():
        args = [a.replace("runs/quickstart", str(tmp_path / "quickstart")) for a in args]
        args = [str(REPO / a) if a.startswith("examples/") else a for a in args]
        args = [a.replace("sample=examples/", f"sample={REPO}/examples/") for a in args]
        if args[0] == "train":
            args += ["--max-steps", "4"]
        result = runner.invoke(main, args)
        assert result.exit_code == 0, f"{args}: {result.output}"
    rows = (tmp_path / "quickstart" / "scores.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 12 and all('"score": ' in row for row in rows)
