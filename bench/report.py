"""Re-render every benchmark table and plot from the committed results, measuring nothing.

    python bench/report.py              # rewrite the tables (.md) and plots (.png) from their JSON
    python bench/report.py --check      # write nothing; exit 1 naming each table that differs from its JSON
    python bench/report.py --no-plots   # the tables only (no matplotlib needed)

The measurements stay in their own scripts (``score_bench.py``, ``train_benchmark.py``, ``study.py``, ...),
each run on the machine it names and writing its JSON under ``bench/``; this script holds no figure of its
own, it calls each script's renderer on the JSON. A table that lives inside a hand-written page sits
between ``<!-- bench/report.py: NAME -->`` and ``<!-- /bench/report.py -->`` and only that part is rewritten.
``tests/test_bench_report.py`` checks that the committed tables are what their JSON renders to.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
BEGIN, END = "<!-- bench/report.py: {name} -->", "<!-- /bench/report.py -->"


@dataclass(frozen=True)
class Table:
    """A Markdown file (or, with ``section``, the marked part of a page) and how to render it."""

    path: Path
    render: Callable[[], str]
    measured_by: str
    section: str | None = None


@dataclass(frozen=True)
class Plot:
    """A PNG and how to draw it (into the path given)."""

    path: Path
    draw: Callable[[Path], None]


def script(name: str) -> ModuleType:
    """A bench script as a module (its measurement runs only from its own ``main``)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _families(folder: Path) -> list[Path]:
    """The per-CPU-family result files of a folder (``<family>.json`` whose machine is that family)."""
    found = []
    for path in sorted(folder.glob("*.json")):
        data = _json(path)
        if isinstance(data, dict) and (data.get("machine") or {}).get("family") == path.stem and "rows" in data:
            found.append(path)
    return found


# (table, the script that measures it and renders it, its renderer, the JSON it renders)
FROM_ONE_JSON = [
    ("threads_results.md", "threads_bench", "markdown", "threads_results.json"),
    ("scoring_quant_study.md", "score_quant_study", "markdown", "scoring_quant_study.json"),
    ("pooling_results.md", "pooling_study", "page", "pooling_results.json"),
    ("personalize_results.md", "personalize_bench", "report_text", "personalize_results.json"),
]


def tables() -> list[Table]:
    """Every generated table, in the order they are written."""
    found: list[Table] = []
    for source in _families(BENCH / "results" / "scoring"):
        found.append(Table(source.with_suffix(".md"), lambda s=source: script("score_bench").markdown(_json(s)),
                           "python bench/score_bench.py --run runs/demo"))
    for source in _families(BENCH / "results" / "distill"):
        found.append(Table(source.with_suffix(".md"), lambda s=source: script("distill_bench").markdown(_json(s)),
                           "python bench/distill_bench.py --run runs/demo"))
    found += [Table(BENCH / "SCORING.md", lambda s=source: engines_markdown(_json(s)),
                    "python bench/engine_bench.py --texts 200", section=f"engines-{source.stem}")
              for source in _families(BENCH / "results" / "engines")]
    found += [Table(BENCH / page, lambda m=module, f=function, j=source: getattr(script(m), f)(_json(BENCH / j)),
                    f"python bench/{module}.py") for page, module, function, source in FROM_ONE_JSON]
    found += [
        Table(BENCH / "training_results.md", lambda: script("train_benchmark").report_text(),
              "python bench/train_benchmark.py PIECE"),
        Table(BENCH / "STUDY.md", lambda: _study(quick=False), "python bench/study.py"),
        Table(BENCH / "study" / "quick.md", lambda: _study(quick=True), "python bench/study.py --quick"),
        Table(BENCH / "CUSTOM.md", lambda: script("custom_bench").report(), "python bench/custom_bench.py",
              section="custom"),
        Table(BENCH / "POOLING.md", lambda: script("pooling_study").markdown(_json(BENCH / "pooling_results.json")),
              "python bench/pooling_study.py", section="pooling"),
        Table(BENCH / "MEMORY.md",
              lambda: script("memory_bench").table(_json(BENCH / "memory_results.json")["rows"]) + "\n",
              "python bench/memory_bench.py", section="memory"),
    ]
    return found


def engines_markdown(result: dict[str, Any]) -> str:
    """The table of ``bench/engine_bench.py``'s JSON: texts/s and × PyTorch fp32 per depth and engine."""
    m = result["machine"]
    lines = [f"`{result['command']}` ({result['date']}) on {m['cpu']} ({', '.join(m['flags'])}), {m['cores']} "
             f"cores; {result['texts']} distinct DSP test texts, {result['threads']} threads, max length "
             f"{result['max_length']}, one text per call:", "",
             "| model and engine | texts/s | × PyTorch fp32, batch 32 |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {row['texts_per_s']:.1f} | {row['speedup']:.2f} |"
              for name, row in result["rows"].items()]
    return "\n".join(lines) + "\n"


def _study(quick: bool) -> str:
    text = script("study_report").render(quick, None)
    if text is None:
        raise FileNotFoundError(f"no study results under bench/study/results/{'quick' if quick else 'full'}")
    return str(text)


def plots() -> list[Plot]:
    """Every generated plot."""
    found = [Plot(s.with_suffix(".png"), lambda p, s=s: script("score_bench").chart(_json(s), p))
             for s in _families(BENCH / "results" / "scoring")]
    found += [Plot(s.with_suffix(".png"), lambda p, s=s: script("distill_bench").chart(_json(s), p))
              for s in _families(BENCH / "results" / "distill")]
    found.append(Plot(BENCH / "plots" / "personalize.png",
                      lambda p: script("personalize_bench").chart(_json(BENCH / "personalize_results.json"), p)))
    # the study's plots are drawn by its report, into bench/study/ (curves, trade-off; quick-*)
    found += [Plot(BENCH / "study" / f"{prefix}curves.png",
                   lambda p, quick=bool(prefix): script("study_report").render(quick, p.parent))
              for prefix in ("", "quick-")]
    return found


def splice(page: str, name: str, table: str) -> str:
    """``page`` with the part between the markers of ``name`` replaced by ``table``.

    Raises:
        ValueError: the page has no such markers.
    """
    begin = BEGIN.format(name=name)
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(END), flags=re.S)
    if not pattern.search(page):
        raise ValueError(f"no {begin} ... {END} markers: add them where the table goes")
    return pattern.sub(lambda _: f"{begin}\n{table}{END}", page, count=1)


def rendered(table: Table) -> str:
    """The whole file as the table's JSON renders it."""
    text = table.render()
    if table.section is None:
        return text
    try:
        return splice(table.path.read_text(encoding="utf-8"), table.section, text)
    except ValueError as err:
        raise ValueError(f"{table.path.relative_to(REPO)}: {err}") from None


def stale() -> list[str]:
    """The tables whose committed file differs from what their JSON renders to, each with its command."""
    return [f"{t.path.relative_to(REPO)} (measured by `{t.measured_by}`; rerender with `python bench/report.py`)"
            for t in tables() if not t.path.is_file() or t.path.read_text(encoding="utf-8") != rendered(t)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; list the tables that differ")
    parser.add_argument("--no-plots", action="store_true", help="render the tables only")
    args = parser.parse_args(argv)
    if args.check:
        differ = stale()
        print("\n".join(differ) if differ else f"all {len(tables())} tables match their JSON")
        return 1 if differ else 0
    for table in tables():
        text = rendered(table)
        if not table.path.is_file() or table.path.read_text(encoding="utf-8") != text:
            table.path.write_text(text, encoding="utf-8")
            print(f"wrote {table.path.relative_to(REPO)}")
    if not args.no_plots:
        for plot in plots():
            plot.draw(plot.path)
            print(f"drew {plot.path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
