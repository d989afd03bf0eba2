"""One command re-renders every benchmark table and plot from the committed JSON (``python bench/report.py``),
and the committed tables are exactly what their JSON renders to: a table edited by hand, or a JSON measured
again without its table, fails here, naming the file and the command."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_report", REPO / "bench" / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


report = _report()


def test_every_committed_table_is_what_its_json_renders() -> None:
    assert report.stale() == []


def test_every_generated_markdown_file_has_a_renderer() -> None:
    covered = {t.path for t in report.tables()}
    generated = {*REPO.glob("bench/results/**/*.md"), *REPO.glob("bench/*_results.md"), REPO / "bench/STUDY.md"}
    by_hand = {REPO / "bench/results/scoring/README.md", REPO / "bench/results/demo/amx.md"}
    assert sorted(str(p.relative_to(REPO)) for p in generated - by_hand - covered) == []


def test_a_differing_table_is_named_with_its_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    page = tmp_path / "PAGE.md"
    page.write_text("intro\n<!-- bench/report.py: t -->\n| old |\n<!-- /bench/report.py -->\nafter\n")
    edited = report.Table(page, lambda: "| new |\n", "python bench/x.py", section="t")
    assert report.rendered(edited) == "intro\n<!-- bench/report.py: t -->\n| new |\n<!-- /bench/report.py -->\nafter\n"
    monkeypatch.setattr(report, "REPO", tmp_path)
    monkeypatch.setattr(report, "tables", lambda: [edited])
    assert report.stale() == ["PAGE.md (measured by `python bench/x.py`; rerender with `python bench/report.py`)"]
    assert report.main(["--check"]) == 1
    with pytest.raises(ValueError, match="no <!-- bench/report.py: other -->"):
        report.splice(page.read_text(), "other", "x")


def test_the_plots_draw(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    plots = report.plots()
    assert {p.path.name for p in plots} >= {"amx.png", "personalize.png", "curves.png", "quick-curves.png"}
    plot = next(p for p in plots if p.path.parent.name == "scoring")
    plot.draw(tmp_path / "scoring.png")
    assert (tmp_path / "scoring.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
