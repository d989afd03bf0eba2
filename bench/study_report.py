"""Tables and plots of the study from its committed result files (``bench/study/results/<variant>/``).

    python bench/study_report.py            # the full study  -> bench/STUDY.md, bench/study/*.png
    python bench/study_report.py --quick    # the quick check -> bench/study/quick.md, bench/study/quick-*.png

Only reads result files, so it runs in seconds and can be re-run whenever cells are added. The written
comparison with the paper (``bench/study/comparison.md``, by hand, citing these tables) is included
as is.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "study" / "results"
GENERAL = ("helpful", "harmless", "webgpt")


def load(variant: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((RESULTS / variant).glob("*.json"))]


def mean_sd(values: list[float], spec: str = ".3f", sd_spec: str = ".3f", show_n: bool = False) -> str:
    """``mean ± sd`` (just the value when there is one; empty when none)."""
    if not values:
        return ""
    if len(values) == 1:
        return format(values[0], spec)
    n = f" (n={len(values)})" if show_n else ""
    return f"{format(statistics.mean(values), spec)} ± {format(statistics.stdev(values), sd_spec)}{n}"


def _custom_cells(records: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in records if r["cell"]["claim"] != "general"
            and all(r["cell"].get(k) == v for k, v in match.items())]


def default_strategy() -> str | None:
    """The study strategy that is the same run as lite-rm's current custom-stage defaults."""
    sys.path.insert(0, str(Path(__file__).parent))
    from study import STRATEGIES

    from lite_rm.training.config import CustomStageConfig

    defaults = CustomStageConfig()
    return next((name for name, overrides in STRATEGIES.items()
                 if name != "default" and all(getattr(defaults, k) == v for k, v in overrides.items())), None)


def strategy_table(records: list[dict[str, Any]], domains: tuple[str, ...] | None = None,
                   seeds: tuple[int, ...] | None = None) -> tuple[str, list[tuple[str, float, float]]]:
    """Rows: the stage-2 model and each strategy; columns: general sets, avg, DSP domains, kept.

    Only the cells of ``domains`` and ``seeds`` (default: all), so that every row of one table covers
    the same domains and seeds (the first domain has three seeds, the others one).
    """
    general = {r["cell"]["enrichment"]: r for r in records if r["cell"]["claim"] == "general"}
    records = [r for r in records if r["cell"]["claim"] == "general" or (
        (domains is None or r["cell"]["domain"] in domains) and (seeds is None or r["cell"]["seed"] in seeds))]
    domains = tuple(sorted({r["cell"]["domain"] for r in _custom_cells(records)}))
    header = ["model", *GENERAL, "general avg", *[f"DSP {d}" for d in domains], "DSP avg", "general kept", "cells"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    tradeoff: list[tuple[str, float, float]] = []
    ref = general.get("hhw")
    if ref:
        acc = ref["accuracy"]
        dsp = [acc.get(f"dsp-{d}") for d in domains]
        lines.append("| general model (stage 2) | " + " | ".join(
            [f"{acc[s]:.3f}" for s in GENERAL] + [f"{ref['general_avg']:.3f}"]
            + [f"{v:.3f}" if v is not None else "" for v in dsp]
            + [f"{statistics.mean([v for v in dsp if v is not None]):.3f}" if any(dsp) else "", "—", ""]) + " |")
    strategies = []
    for r in _custom_cells(records, start="general", enrichment="hhw", size=0):
        if r["cell"]["strategy"] not in strategies:
            strategies.append(r["cell"]["strategy"])
    default = default_strategy()
    for strategy in strategies:
        cells = _custom_cells(records, start="general", enrichment="hhw", size=0, strategy=strategy)
        by_domain = defaultdict(list)
        for r in cells:
            by_domain[r["cell"]["domain"]].append(r)
        gen = {s: [r["accuracy"][s] for r in cells if s in r["accuracy"]] for s in GENERAL}
        avg = [r["general_avg"] for r in cells if r.get("general_avg") is not None]
        kept = [r["general_avg"] - r["general_reference"] for r in cells
                if r.get("general_avg") is not None and r.get("general_reference") is not None]
        dsp = {d: [r["accuracy"][f"dsp-{d}"] for r in by_domain[d]] for d in domains}
        dsp_means = [statistics.mean(v) for v in dsp.values() if v]
        label = f"**{strategy} (default)**" if strategy == default else strategy
        row = [label] + [mean_sd(gen[s]) for s in GENERAL] + [mean_sd(avg)]
        row += [mean_sd(dsp[d]) for d in domains]
        row += [f"{statistics.mean(dsp_means):.3f}" if dsp_means else "", mean_sd(kept), str(len(cells))]
        lines.append("| " + " | ".join(row) + " |")
        # plotted only when it covers every domain of the table (else its average is not comparable)
        if kept and dsp_means and ref and len(dsp_means) == len(domains):
            ref_dsp = statistics.mean([ref["accuracy"][f"dsp-{d}"] for d in domains if f"dsp-{d}" in ref["accuracy"]])
            tradeoff.append((strategy, statistics.mean(kept), statistics.mean(dsp_means) - ref_dsp))
    return "\n".join(lines) + "\n", tradeoff


def enrichment_table(records: list[dict[str, Any]], domain: str) -> str:
    """General accuracy of the stage-2 model per enrichment, and after the same customization on ``domain``."""
    header = ["general sets", *[f"{s} (stage 2)" for s in GENERAL], "avg (stage 2)", "avg after custom",
              "general kept", f"DSP {domain} after custom", "cells"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    names = {"h": "helpful", "hh": "helpful+harmless", "hhw": "helpful+harmless+WebGPT"}
    for key, label in names.items():
        ref = next((r for r in records if r["cell"]["claim"] == "general" and r["cell"]["enrichment"] == key), None)
        if ref is None:
            continue
        cells = _custom_cells(records, start="general", enrichment=key, size=0, strategy="plain", domain=domain)
        after = [r["general_avg"] for r in cells if r.get("general_avg") is not None]
        kept = [a - ref["general_avg"] for a in after]
        dsp = [r["accuracy"][f"dsp-{r['cell']['domain']}"] for r in cells]
        lines.append("| " + " | ".join([label] + [f"{ref['accuracy'][s]:.3f}" for s in GENERAL]
                                       + [f"{ref['general_avg']:.3f}", mean_sd(after), mean_sd(kept), mean_sd(dsp),
                                          str(len(cells))])
                     + " |")
    return "\n".join(lines) + "\n"


def curves(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[int, list[float]]]]:
    """domain -> start -> size -> accuracies over seeds (size 0 = all pairs)."""
    out: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in _custom_cells(records, strategy="plain", enrichment="hhw"):
        c = r["cell"]
        out[c["domain"]][c["start"]][c["size"]].append(r["accuracy"][f"dsp-{c['domain']}"])
    return out


def curve_table(data: dict[str, dict[str, dict[int, list[float]]]]) -> str:
    sizes = sorted({n for d in data.values() for s in d.values() for n in s}, key=lambda n: (n == 0, n))
    header = ["domain", "start", *[("all" if n == 0 else str(n)) + " pairs" for n in sizes]]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for domain in sorted(data):
        for start in ("general", "base", "plain"):
            if start in data[domain]:
                lines.append("| " + " | ".join([domain, start] + [mean_sd(data[domain][start].get(n, []))
                                                                   for n in sizes]) + " |")
    return "\n".join(lines) + "\n"


def effect_table(data: dict[str, dict[str, dict[int, list[float]]]], records: list[dict[str, Any]]) -> str:
    """Claim 1 as effect sizes: the general start's accuracy minus the other starts', paired by seed
    (same subset of pairs), in points, mean ± sd over seeds."""
    acc: dict[tuple[str, str, int, int], float] = {}
    for r in _custom_cells(records, strategy="plain", enrichment="hhw"):
        c = r["cell"]
        acc[(c["domain"], c["start"], c["size"], c["seed"])] = r["accuracy"][f"dsp-{c['domain']}"]
    sizes = sorted({n for d in data.values() for s in d.values() for n in s}, key=lambda n: (n == 0, n))
    header = ["domain", "general start minus", *[("all" if n == 0 else str(n)) + " pairs" for n in sizes]]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for domain in sorted(data):
        for other in ("plain", "base"):
            row = [domain, f"{other} start"]
            for n in sizes:
                diffs = [100 * (acc[(domain, "general", n, seed)] - acc[(domain, other, n, seed)])
                         for (d, start, size, seed) in acc
                         if d == domain and start == other and size == n and (domain, "general", n, seed) in acc]
                row.append(mean_sd(diffs, "+.1f", ".1f", show_n=True))
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(data: dict[str, dict[str, dict[int, list[float]]]], path: Path, full_size: int = 1507) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = sorted(data)
    fig, axes = plt.subplots(1, len(domains), figsize=(4 * len(domains), 3.4), squeeze=False, sharey=True)
    for ax, domain in zip(axes[0], domains, strict=True):
        for start, style in (("general", "o-"), ("base", "s--"), ("plain", "^:")):
            points = data[domain].get(start)
            if not points:
                continue
            xs = sorted(points, key=lambda n: (n == 0, n))
            x = [full_size if n == 0 else n for n in xs]
            y = [statistics.mean(points[n]) for n in xs]
            err = [statistics.stdev(points[n]) if len(points[n]) > 1 else 0.0 for n in xs]
            ax.errorbar(x, y, yerr=err, fmt=style, capsize=3, label=f"from {start}")
        ax.set_xscale("log")
        seeds = max(len(v) for points in data[domain].values() for v in points.values())
        ax.set_title(f"DSP {domain} ({'mean ± sd of ' + str(seeds) + ' seeds' if seeds > 1 else 'one seed'})",
                     fontsize=10)
        ax.set_xlabel("custom training pairs")
        ax.axhline(0.5, color="grey", lw=0.5)
    axes[0][0].set_ylabel("pairwise accuracy (test)")
    axes[0][-1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_tradeoff(panels: dict[str, list[tuple[str, float, float]]], path: Path) -> None:
    """One scatter per table (title -> (strategy, kept, gained) points)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {title: points for title, points in panels.items() if points}
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (title, points) in zip(axes[0], panels.items(), strict=True):
        for name, kept, gained in points:
            ax.scatter([100 * kept], [100 * gained])
            ax.annotate(name, (100 * kept, 100 * gained), fontsize=8, xytext=(3, 3), textcoords="offset points")
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_xlabel("general accuracy kept (points vs stage 2)")
        ax.set_ylabel("customized accuracy gained (points vs stage 2)")
        ax.set_title(f"Trade-off: {title}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def target(quick: bool) -> Path:
    """The page of a variant: bench/STUDY.md, or bench/study/quick.md."""
    return ROOT / "bench" / "study" / "quick.md" if quick else ROOT / "bench" / "STUDY.md"


def render(quick: bool, plot_dir: Path | None) -> str | None:
    """The page of the full (or quick) study from its result files (``None``: none yet); with ``plot_dir``
    also its curves and trade-off plots, drawn there."""
    variant = "quick" if quick else "full"
    records = load(variant)
    if not records:
        return None
    out_dir = ROOT / "bench" / "study"
    prefix = "quick-" if quick else ""
    # The first domain of the plan has every strategy with every seed; the others one seed: a table each,
    # so that each row of a table covers the same cells.
    first = records[0]["settings"]["domains"][0]
    first_seeds = tuple(sorted({r["cell"]["seed"] for r in _custom_cells(records, claim="strategy", domain=first)}))
    strategies, tradeoff = strategy_table(records, domains=(first,))
    all_domains, tradeoff_all = strategy_table(records, seeds=first_seeds[:1])
    curve_data = curves(records)
    # Strategies were added to the plan over time: show the ones that ran, not one file's plan.
    settings = records[0]["settings"] | {
        "strategies": sorted({r["cell"]["strategy"] for r in records if r["cell"]["claim"] == "strategy"})}
    seconds = sum(r.get("seconds", 0) for r in records)
    domains = sorted({r["cell"]["domain"] for r in _custom_cells(records)})
    parts = [f"# Study results ({variant} variant)", "",
             f"Written by `python bench/study_report.py{' --quick' if quick else ''}` from the "
             f"{len(records)} result files of `python bench/study.py{' --quick' if quick else ''}` "
             f"(bench/study/results/{variant}/), {seconds / 3600:.1f} CPU-hours of cells. Every accuracy is "
             "pairwise accuracy on the test split; nothing was tuned on test data.", "",
             "Settings: " + json.dumps(settings), "",
             "Machine: " + json.dumps(records[0]["machine"]), ""]
    comparison = out_dir / "comparison.md"
    if comparison.exists() and not quick:
        parts += [comparison.read_text(encoding="utf-8").strip(), ""]
    parts += ["## Preservation strategies (custom stage from the helpful+harmless+WebGPT general model, all pairs)", "",
              f"DSP {first}, seeds {', '.join(map(str, first_seeds))}: one custom model per strategy and seed; "
              "mean ± sd over seeds. *General kept*: the custom model's general average minus the stage-2 "
              "model's (points ×100 = accuracy points). *plain*: every preservation option off; *(default)*: "
              "the strategy that is lite-rm's current defaults; *cells*: custom models in the row.", "",
              strategies,
              f"Every domain ({', '.join(domains)}), seed {first_seeds[0] if first_seeds else 0}: one custom model "
              "per strategy and domain; general columns and *general kept* are mean ± sd over domains, *DSP avg* "
              "the mean of the domain columns. A row with fewer cells than the others is not comparable "
              "(its other domains have not run yet).", "", all_domains,
              "## General preference enrichment (claim 2)", "",
              "The stage-2 model trained on one, two or three general sets, then the same plain customization "
              f"(no preservation option) on {first}; mean ± sd over seeds where there are several.", "",
              enrichment_table(records, first),
              "## Data efficiency (claim 1)", "",
              "Pairwise accuracy on the domain's test pairs against the number of custom training pairs "
              "(subsets of whole queries, drawn with the seed, of which the custom stage holds 15% of the queries out "
              "for validation; mean ± sd over seeds). Start *general*: the "
              "stage-2 model; *base*: the masked-LM-adapted encoder; *plain*: all-MiniLM-L6-v2 with a new head.",
              "", curve_table(curve_data),
              "Effect of starting from the general model, in accuracy points (paired by seed):", "",
              effect_table(curve_data, records)]
    if curve_data:
        if plot_dir is not None:
            plot_curves(curve_data, plot_dir / f"{prefix}curves.png")
        parts.append(f"![curves](study/{prefix}curves.png)\n")
    if tradeoff:
        if plot_dir is not None:
            plot_tradeoff({f"DSP {first}, {len(first_seeds)} seeds": tradeoff,
                           f"{len(domains)} domains, seed {first_seeds[0] if first_seeds else 0}": tradeoff_all},
                          plot_dir / f"{prefix}tradeoff.png")
        parts.append(f"![trade-off](study/{prefix}tradeoff.png)\n")
    text = "\n".join(parts)
    return text.replace("](study/", "](") if quick else text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="report the quick variant")
    args = parser.parse_args(argv)
    text = render(args.quick, ROOT / "bench" / "study")
    if text is None:
        print(f"no results in {RESULTS / ('quick' if args.quick else 'full')}: run "
              f"bench/study.py{' --quick' if args.quick else ''} first")
        return 1
    target(args.quick).write_text(text, encoding="utf-8")
    print(text)
    print(f"written: {target(args.quick)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
