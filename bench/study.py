"""The paper's study at compact scale: one resumable command that runs every cell of it.

"Everyone Deserves A Reward" (Cheng et al., 2023) claims that (1) general RM fine-tuning first makes
customization data-efficient, (2) general preference enrichment and (3) customized preference imitation
learning preserve general ability. This runner trains lite-rm's 22M models on the real data to check
each claim, plus lite-rm's other preservation options (replay, L2-SP, freezing, interpolation).

Every cell (one strategy x domain x seed, or one data size of a curve) is a job whose small result file
is written to ``bench/study/results/<cell>.json`` and committed; the runner skips cells whose file
exists, so the study carries on across sessions and fresh machines. Start models (base, general) are
rebuilt under ``bench/.work/study`` when missing (never committed); with the same seed they are the same.

    python bench/study.py --quick                 # a small check: one domain, two sizes, short runs
    python bench/study.py --budget-minutes 110    # the full study, one stretch of at most ~2 hours
    python bench/study.py --list                  # the cells and which are done
    python bench/study_report.py                  # tables + plots -> bench/STUDY.md, bench/study/*.png
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "study" / "results"
WORK = ROOT / "bench" / ".work" / "study"
DOMAINS = ("academy", "business", "entertainment", "literature")
SIZES = (25, 50, 100, 200, 400, 0)  # custom pairs (before the validation split); 0 = all (1,507)
ENRICHMENT = {"h": ["helpful"], "hh": ["helpful", "harmless"], "hhw": ["helpful", "harmless", "webgpt"]}
GENERAL_FILES = {"helpful": "general/helpful.train.json", "harmless": "general/harmless.train.json",
                 "webgpt": "general/webgpt.train.json"}

# Preservation strategies for the custom stage. "plain" switches every option off; the others change
# one thing; "default" is whatever lite-rm's CustomStageConfig defaults are.
OFF = {"imitation_coef": 0.0, "replay_share": 0.0, "l2sp_coef": 0.0, "freeze_layers": 0,
       "freeze_embeddings": False, "interpolate": "off"}
STRATEGIES: dict[str, dict[str, Any]] = {
    "plain": OFF,
    "imitation-0.1": {**OFF, "imitation_coef": 0.1},
    "imitation-0.5": {**OFF, "imitation_coef": 0.5},
    "imitation-1.0": {**OFF, "imitation_coef": 1.0},
    "replay-0.25": {**OFF, "replay_share": 0.25},
    "l2sp-0.1": {**OFF, "l2sp_coef": 0.1},
    # Added after the first three seeds: l2sp-0.1 kept all general accuracy but cost 3 points on the
    # domain, plain kept the domain but lost 3.5 general points; these two look for the middle.
    "l2sp-0.03": {**OFF, "l2sp_coef": 0.03},
    "interpolate-0.5": {**OFF, "interpolate": 0.5},
    "freeze-emb+3": {**OFF, "freeze_embeddings": True, "freeze_layers": 3},
    "interpolate-auto": {**OFF, "interpolate": "auto"},
    "default": {},
}


@dataclass(frozen=True)
class Settings:
    """What every cell of one study variant shares (recorded in each result file)."""

    # 128 rather than the product's 256: it halves the cost of every cell so that the ~260 cells fit a
    # few 2-hour stretches of a 2-core CPU (said in the results page).
    max_length: int = 128
    general_epochs: float = 1.0
    general_lr: float = 1e-4  # lite-rm's default; cells before this field trained at 4e-5 and were rerun
    custom_epochs: float = 2.0
    base_max_texts: int = 1024  # the base stage's default: a seeded sample of the distinct texts
    max_steps: int = 0  # 0: no cap
    seeds: tuple[int, ...] = (0, 1, 2)
    # The other domains get one seed: three seeds of every domain's curves and strategies would take
    # ~15 CPU-hours, not the few hours the study may take; the first domain's three seeds give the
    # seed-to-seed spread against which their single-seed differences are read (said in the results).
    other_domain_seeds: tuple[int, ...] = (0,)
    # The domains in order of priority: the first gets every strategy, the enrichment comparison and
    # the curves with every seed; the others follow (strategies, then curves) as time allows. Academy
    # first: it is the domain whose style is closest to another's (business), the hardest to customize.
    domains: tuple[str, ...] = DOMAINS
    sizes: tuple[int, ...] = SIZES
    # "default" is left out: with lite-rm's current defaults it is the same run as "interpolate-0.5"
    # (the report marks the row that matches the defaults).
    strategies: tuple[str, ...] = tuple(s for s in STRATEGIES if s != "default")
    # Curve cells train at least this many steps (more epochs on small subsets): 2 epochs of 25 pairs
    # are 4 steps, which would measure the start model, not how well it learns from 25 pairs.
    min_curve_steps: int = 24
    variant: str = "full"
    threads: int = 0  # 0: the cores not already busy
    # Every committed cell trained with the encoder's own dropout (attention dropout included), the
    # training default when the study ran; pinned so that a resumed study stays comparable.
    dropout: str = "all"


QUICK = Settings(max_length=128, general_epochs=0.25, custom_epochs=1.0, base_max_texts=800, max_steps=40,
                 seeds=(0,), domains=("academy",), sizes=(25, 100), strategies=("plain", "imitation-0.5", "default"),
                 min_curve_steps=0, variant="quick", threads=1)


@dataclass(frozen=True)
class Cell:
    """One job of the study."""

    claim: str                   # curve | enrichment | strategy | general
    domain: str = ""
    seed: int = 0
    start: str = "general"       # general | plain | base: where the custom stage starts
    enrichment: str = "hhw"      # which general sets trained the general model
    strategy: str = "default"
    size: int = 0                # custom training pairs (0: all)
    overrides: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def id(self) -> str:
        if self.claim == "general":
            return f"general-{self.enrichment}-s{self.seed}"
        # The claim is not part of the id: a cell that serves two claims (the plain strategy on all pairs is
        # also the last point of a curve) runs once.
        size = "all" if self.size == 0 else str(self.size)
        return f"{self.start}-{self.enrichment}-{self.strategy}-{self.domain}-n{size}-s{self.seed}"


def plan(settings: Settings) -> list[Cell]:
    """Every cell, most informative first: the general models; on the first domain every strategy, the
    enrichment comparison and the curves (seed 0, then further seeds); then the other domains (curves
    with ``other_domain_seeds``: curves, then strategies)."""
    first, others = settings.domains[0], settings.domains[1:]
    cells: list[Cell] = [Cell("general", enrichment=e, seed=0) for e in ENRICHMENT]

    def curve(domain: str, seed: int) -> list[Cell]:
        return [Cell("curve", domain, seed, start=start, strategy="plain", size=n)
                for start in ("general", "plain", "base") for n in settings.sizes]

    seed0 = settings.seeds[0]
    cells += [Cell("strategy", first, seed0, strategy=s) for s in settings.strategies]
    # The same customization (no preservation) from each general model: enrichment alone.
    cells += [Cell("enrichment", first, seed0, enrichment=e, strategy="plain") for e in ENRICHMENT]
    for seed in settings.seeds:
        cells += curve(first, seed)
    # Further seeds of the strategies on the first domain: one seed cannot separate them (the spread of
    # "plain" over seeds is as large as the differences between strategies).
    for seed in settings.seeds[1:]:
        cells += [Cell("strategy", first, seed, strategy=s) for s in settings.strategies]
    # The other domains' curves next (claim 1 is asked for each domain), then their strategies.
    for seed in settings.other_domain_seeds:
        for domain in others:
            cells += curve(domain, seed)
    for seed in settings.other_domain_seeds:
        for domain in others:
            cells += [Cell("strategy", domain, seed, strategy=s) for s in settings.strategies]
    unique: dict[str, Cell] = {}
    for cell in cells:
        unique.setdefault(cell.id, cell)
    return list(unique.values())


@contextlib.contextmanager
def locked(name: str, wait: bool = True) -> Iterator[bool]:
    """An exclusive file lock under the work folder, so that two runners (``--shard``) never build the
    same start model or run the same cell at once. Yields whether the lock was taken."""
    path = WORK / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    import transformers

    import lite_rm

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "lite_rm": lite_rm.__version__,
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                     text=True).stdout.strip()}


def data_dir_for(data: Path, size: int, seed: int, domain: str) -> Path:
    """A data folder whose ``dsp/train.json`` keeps ``size`` pairs' worth of queries (4 pairs each),
    chosen with the seed; the general files and test files are links to the real ones."""
    if size == 0:
        return data
    folder = WORK / "data" / f"{domain}-n{size}-s{seed}"
    if (folder / "dsp" / "train.json").exists():
        return folder
    items = json.loads((data / "dsp" / "train.json").read_text(encoding="utf-8"))
    rng = random.Random(f"{seed}-{domain}-{size}")
    keep = rng.sample(items, max(1, -(-size // 4)))
    (folder / "dsp").mkdir(parents=True, exist_ok=True)
    (folder / "dsp" / "train.json").write_text(json.dumps(keep), encoding="utf-8")
    for name in ("general", "hh-rlhf"):
        if not (folder / name).exists():
            (folder / name).symlink_to((data / name).resolve())
    if not (folder / "dsp" / "test.json").exists():
        (folder / "dsp" / "test.json").symlink_to((data / "dsp" / "test.json").resolve())
    return folder


def _common(settings: Settings, seed: int, output: Path, data: Path) -> dict[str, Any]:
    cfg: dict[str, Any] = {"output_dir": str(output), "seed": seed, "max_length": settings.max_length,
                           "data_dir": str(data), "log_every": 50, "save_every": 100, "threads": settings.threads,
                           "dropout": settings.dropout}
    return cfg


def _with_steps(section: dict[str, Any], settings: Settings) -> dict[str, Any]:
    if settings.max_steps:
        section["max_steps"] = settings.max_steps
    return section


def _train(cfg: dict[str, Any]) -> dict[str, Any]:
    from lite_rm.training.config import TrainConfig
    from lite_rm.training.pipeline import train

    config = TrainConfig.from_dict(cfg)
    resume = (Path(config.output_dir) / "config.json").exists()
    return train(config, resume=resume, overwrite=not resume)


def base_model(settings: Settings, data: Path) -> Path:
    """The base-stage (MLM) encoder on the general and DSP training text, seed 0, built once."""
    out = WORK / settings.variant / "base"
    with locked(f"{settings.variant}-base"):
        if not (out / "base" / "lite_rm.json").exists():
            _build_base(settings, data, out)
    return out / "base"


def _build_base(settings: Settings, data: Path, out: Path) -> None:
    cfg = _common(settings, 0, out, data) | {"stages": ["base"], "eval_sets": {"dsp": str(data / "dsp/test.json")}}
    cfg["base"] = _with_steps({"max_texts": settings.base_max_texts}, settings)
    cfg["custom"] = {"domains": list(DOMAINS)}
    _train(cfg)


def general_model(settings: Settings, data: Path, enrichment: str) -> tuple[Path, dict[str, Any]]:
    """The stage-2 general model trained from the base encoder on the enrichment's sets."""
    out = WORK / settings.variant / f"general-{enrichment}"
    sets = {name: str(data / GENERAL_FILES[name]) for name in ENRICHMENT[enrichment]}
    base = base_model(settings, data)
    with locked(f"{settings.variant}-general-{enrichment}"):
        if not (out / "general" / "lite_rm.json").exists():
            cfg = _common(settings, 0, out, data) | {"stages": ["general"], "model": str(base)}
            cfg["general"] = _with_steps({"sets": sets, "epochs": settings.general_epochs,
                                          "lr": settings.general_lr}, settings)
            _train(cfg)
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return out / "general", results


def run_cell(cell: Cell, settings: Settings, data: Path) -> dict[str, Any]:
    """Train and evaluate one cell; return its result record."""
    started = time.perf_counter()
    if cell.claim == "general":
        _, results = general_model(settings, data, cell.enrichment)
        row = results["results"]["general"]
        return {"accuracy": {k: v["acc"] for k, v in row.items()}, "general_avg": results["general_avg"]["general"],
                "per_opponent": {k: v["per_opponent"] for k, v in row.items() if "per_opponent" in v},
                "seconds": round(time.perf_counter() - started, 1)}
    reference = None
    if cell.start == "general":
        general, general_results = general_model(settings, data, cell.enrichment)
        start, reference = str(general), general_results["general_avg"]["general"]
    elif cell.start == "base":
        start = str(base_model(settings, data))
    else:
        start = "default"  # the plain encoder (offline all-MiniLM-L6-v2)
    cell_data = data_dir_for(data, cell.size, cell.seed, cell.domain)
    out = WORK / settings.variant / "cells" / cell.id
    eval_sets = {"dsp": str(data / "dsp/test.json")}
    # General ability kept is measured against the general model; a curve's smaller points only need
    # the domain's accuracy (this saves a third of their time).
    if cell.start == "general" and (cell.claim != "curve" or cell.size == 0):
        eval_sets |= {name: str(data / f"general/{name}.test.json") for name in GENERAL_FILES}
    cfg = _common(settings, cell.seed, out, cell_data) | {"stages": ["custom"], "model": start,
                                                         "eval_sets": eval_sets}
    custom = {"domains": [cell.domain], "epochs": settings.custom_epochs, **STRATEGIES[cell.strategy]}
    if cell.start != "general":
        custom["interpolate"] = "off"  # interpolation needs a general model to interpolate with
    if cell.size and cell.size < 100:
        custom["valid_fraction"] = 0.0  # too few queries to hold any out
    if cell.size and settings.min_curve_steps:
        kept = cell.size * (1 - custom.get("valid_fraction", 0.15))
        steps_per_epoch = max(1, round(kept / 16))  # batches of 16 pairs (a list of five is 4 pairs)
        custom["epochs"] = max(settings.custom_epochs, round(settings.min_curve_steps / steps_per_epoch, 2))
    cfg["custom"] = _with_steps(custom, settings)
    if custom.get("replay_share") or custom.get("interpolate") not in (None, "off"):
        cfg["general"] = {"sets": {name: str(data / GENERAL_FILES[name]) for name in ENRICHMENT[cell.enrichment]}}
    results = _train(cfg)
    name = f"custom-{cell.domain}"
    row = results["results"][name]
    record = {"accuracy": {k: v["acc"] for k, v in row.items()},
              "per_opponent": {k: v["per_opponent"] for k, v in row.items() if "per_opponent" in v},
              "general_avg": results["general_avg"].get(name), "general_reference": reference,
              "training": results.get("training", {}).get(name, {}),
              "custom_config": cfg["custom"],
              "seconds": round(time.perf_counter() - started, 1)}
    shutil.rmtree(out, ignore_errors=True)  # the cell's checkpoint is not needed once measured
    return record


def result_path(cell: Cell, settings: Settings) -> Path:
    return RESULTS / settings.variant / f"{cell.id}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small variant for a check (minutes, not hours)")
    parser.add_argument("--budget-minutes", type=float, default=110.0,
                        help="start no new cell after this long (a stretch is at most ~2 hours)")
    parser.add_argument("--only", default="", help="run only cells whose id contains this text")
    parser.add_argument("--list", action="store_true", help="list the cells and whether each is done")
    parser.add_argument("--data-dir", default="", help="data folder (else $LITE_RM_DATA or ../shared/data)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per cell (default: the variant's setting; 0: the free cores)")
    parser.add_argument("--shard", default="0/1",
                        help="I/N: run every N-th cell starting at I, so that N runners (e.g. one per core) "
                             "share the study; file locks keep them from building the same model twice")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else Settings()
    if args.threads is not None:
        settings = replace(settings, threads=args.threads)
    index, count = (int(x) for x in args.shard.split("/"))
    cells = [c for i, c in enumerate(plan(settings)) if args.only in c.id and i % count == index]
    if args.list:
        for cell in cells:
            print(("done  " if result_path(cell, settings).exists() else "todo  ") + cell.id)
        print(f"{sum(result_path(c, settings).exists() for c in cells)}/{len(cells)} cells done")
        return 0

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from lite_rm.data import resolve_data_dir

    data = resolve_data_dir(args.data_dir or None).resolve()
    info = machine()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    print("machine:", json.dumps(info))
    print("settings:", json.dumps(asdict(settings)))
    deadline = time.monotonic() + 60 * args.budget_minutes
    todo = [c for c in cells if not result_path(c, settings).exists()]
    print(f"{len(cells) - len(todo)}/{len(cells)} cells done; {len(todo)} to run")
    for i, cell in enumerate(todo, 1):
        if time.monotonic() > deadline:
            print(f"budget reached: {len(todo) - i + 1} cells left for the next stretch")
            break
        path = result_path(cell, settings)
        with locked(f"{settings.variant}-{cell.id}", wait=False) as mine:
            if not mine or path.exists():  # another runner has it, or finished it since we listed
                continue
            print(f"[{i}/{len(todo)}] {cell.id}", flush=True)
            record = run_cell(cell, settings, data)
        record = {"cell": asdict(cell) | {"id": cell.id}, "settings": asdict(settings), "machine": info, **record}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        acc = record["accuracy"].get(f"dsp-{cell.domain}") if cell.domain else record.get("general_avg")
        print(f"    done in {record['seconds']:.0f}s: {acc}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
