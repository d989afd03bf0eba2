"""Pictures of a run and of a bundle (``lite-rm plot``), drawn with matplotlib (the ``[plot]`` extra).

For a run folder: one PNG per stage with its loss and accuracy per logged step, the validation points
and the step whose weights the stage kept (its best validation), read from the stage's metrics file
(:mod:`lite_rm.training.metrics`); and ``general_kept.png``, the general accuracy each custom model
kept, from ``results.json``. For a bundle: ``reliability.png``, the reliability diagram of P(a ≻ b)
on held-out pairs before and after the bundle's Platt scaling, in the bins of
:func:`lite_rm.exporting.calibration.expected_calibration_error`.

Figures are built with :class:`matplotlib.figure.Figure` directly, never pyplot: no GUI backend is
chosen and no global state changes (``Figure.savefig`` renders PNGs with Agg).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lite_rm.errors import InputError
from lite_rm.extras import require
from lite_rm.scoring.evaluation import preference_probability
from lite_rm.training.metrics import METRICS_DIR, METRICS_FILE, stage_rows

logger = logging.getLogger(__name__)

PLOTS_DIR = "plots"
RELIABILITY_FILE = "reliability.png"
GENERAL_KEPT_FILE = "general_kept.png"
_STAGE_ORDER = {"base": 0, "general": 1}


def _figure(width: float, height: float, panels: int = 1) -> tuple[Any, list[Any]]:
    """A figure with ``panels`` side-by-side axes, without pyplot."""
    figure_mod = require("matplotlib.figure")
    fig = figure_mod.Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    logger.info("wrote %s", path)
    return path


# ---------------------------------------------------------------- training curves


def is_run(folder: Path) -> bool:
    """Whether ``folder`` looks like a ``lite-rm train`` output folder."""
    return any((folder / name).exists() for name in ("results.json", METRICS_DIR)) or any(
        folder.glob(f"*/{METRICS_FILE}"))


def stage_names(run: Path) -> list[str]:
    """The stages with metrics in a run, in pipeline order (base, general, then custom-* by name)."""
    names = {p.parent.name for p in run.glob(f"*/{METRICS_FILE}")}
    names |= {p.stem for p in (run / METRICS_DIR).glob("*.jsonl")}
    return sorted(names, key=lambda n: (_STAGE_ORDER.get(n, 2), n))


def best_validation(valid: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The validation whose weights a stage keeps: the first with the highest metric (the loop keeps
    a new best only on a strict improvement)."""
    best = None
    for row in valid:
        if best is None or row["metric"] > best["metric"]:
            best = row
    return best


def plot_stage(rows: Sequence[dict[str, Any]], stage: str, path: Path) -> Path:
    """Loss (left) and accuracy (right) per step, validation points, and the kept step marked."""
    train = [r for r in rows if r.get("kind", "train") == "train"]
    valid = [r for r in rows if r.get("kind") == "valid"]
    fig, (loss_ax, acc_ax) = _figure(10, 3.6, panels=2)
    fig.suptitle(f"stage {stage}")
    loss_ax.plot([r["step"] for r in train], [r.get("loss", np.nan) for r in train], color="C0", label="train loss")
    loss_ax.set(xlabel="step", ylabel="loss", title="loss")
    acc_rows = [r for r in train if "acc" in r]
    if acc_rows:
        acc_ax.plot([r["step"] for r in acc_rows], [r["acc"] for r in acc_rows], color="C0", alpha=0.6,
                    label="train pairwise accuracy (batch)")
    if valid:
        acc_ax.plot([r["step"] for r in valid], [r["metric"] for r in valid], "o-", color="C1",
                    label="validation accuracy")
    best = best_validation(valid)
    if best is not None:
        for ax in (loss_ax, acc_ax):
            ax.axvline(best["step"], color="C2", linestyle="--", linewidth=1)
        acc_ax.plot([best["step"]], [best["metric"]], "*", color="C2", markersize=14,
                    label=f"kept: best validation, step {best['step']} ({best['metric']:.3f})")
    if acc_rows or valid:
        acc_ax.set(xlabel="step", ylabel="pairwise accuracy", title="accuracy", ylim=(-0.02, 1.02))
        acc_ax.legend(loc="lower right", fontsize="small")
    else:
        acc_ax.set_axis_off()
        acc_ax.text(0.5, 0.5, "no accuracy logged\n(masked-LM stage)", ha="center", va="center")
    loss_ax.legend(loc="upper right", fontsize="small")
    return _save(fig, path)


def plot_general_kept(kept: dict[str, float], path: Path) -> Path:
    """Bars: each custom model's general accuracy minus the general model's, in points."""
    names = sorted(kept)
    values = [100 * kept[n] for n in names]
    fig, (ax,) = _figure(max(6.0, 1.2 * len(names) + 2), 3.8)
    ax.bar(names, values, color=["C2" if v >= 0 else "C3" for v in values])
    ax.axhline(0, color="black", linewidth=0.8)
    for x, v in enumerate(values):
        ax.annotate(f"{v:+.1f}", (x, v), ha="center", va="bottom" if v >= 0 else "top", fontsize="small")
    ax.set(ylabel="points vs the general model", title="general accuracy kept by each custom model\n"
           "(helpful / harmless / WebGPT average)")
    return _save(fig, path)


def general_kept_of(results: Path) -> dict[str, float]:
    """``general_kept`` of a run's ``results.json`` (empty when there is no such file or entry).

    Raises:
        ValueError: the file is not UTF-8 JSON, or ``general_kept`` is not an object of numbers (the
            message names the file).
    """
    if not results.is_file():
        return {}
    try:
        data = json.loads(results.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise InputError(f"{results}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except (ValueError, RecursionError) as err:
        raise InputError(f"{results}: not valid JSON ({str(err)[:120]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{results}: expected a JSON object, found {type(data).__name__}")
    kept = data.get("general_kept") or {}
    if not isinstance(kept, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in kept.values()):
        raise InputError(f"{results}: field 'general_kept': expected an object of model name -> number, "
                         f"found {str(kept)[:80]}")
    return {str(k): float(v) for k, v in kept.items()}


def plot_run(run: str | Path, out: str | Path | None = None) -> list[Path]:
    """Write a run's PNGs into ``out`` (default ``RUN/plots/``).

    Returns:
        The files written, stages first.

    Raises:
        FileNotFoundError: ``run`` is not a run folder, or it holds no metrics to draw.
        ValueError: a metrics file or ``results.json`` is unreadable or malformed (naming the file, the
            line and the field).
    """
    run = Path(run)
    if not run.is_dir() or not is_run(run):
        raise FileNotFoundError(f"{run}: not a lite-rm run folder (expected results.json, {METRICS_DIR}/ or "
                                f"<stage>/{METRICS_FILE})")
    out = Path(out) if out is not None else run / PLOTS_DIR
    written = []
    for stage in stage_names(run):
        rows = stage_rows(run, stage)
        if rows:
            written.append(plot_stage(rows, stage, out / f"{stage}.png"))
        else:  # said, not silently missing from the plots
            logger.warning("stage %s: its metrics file holds no rows; no %s.png", stage, stage)
    kept = general_kept_of(run / "results.json")
    if kept:
        written.append(plot_general_kept(kept, out / GENERAL_KEPT_FILE))
    if not written:
        raise FileNotFoundError(f"{run}: no metrics to plot (runs made before lite-rm wrote {METRICS_FILE} "
                                "have none)")
    return written


# ---------------------------------------------------------------- reliability diagram


@dataclass(frozen=True)
class Reliability:
    """Predicted vs observed frequency per non-empty probability bin.

    Attributes:
        predicted: mean predicted probability per bin.
        observed: share of outcomes that happened per bin.
        counts: trials per bin.
        ece: expected calibration error over the same bins.
    """

    predicted: np.ndarray
    observed: np.ndarray
    counts: np.ndarray
    ece: float


def reliability(probabilities: np.ndarray, outcomes: np.ndarray) -> Reliability:
    """Bin predictions as :func:`~lite_rm.exporting.calibration.expected_calibration_error` does."""
    from lite_rm.exporting.calibration import ECE_BINS, expected_calibration_error

    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(outcomes, dtype=np.float64)
    which = np.minimum((p * ECE_BINS).astype(int), ECE_BINS - 1)
    used = [b for b in range(ECE_BINS) if (which == b).any()]
    return Reliability(np.array([p[which == b].mean() for b in used]), np.array([y[which == b].mean() for b in used]),
                       np.array([int((which == b).sum()) for b in used]), expected_calibration_error(p, y))


def pair_probabilities(diff: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """P(first ≻ second) = sigmoid(scale * diff) over both orders of every pair, and the outcomes
    (1 for chosen-first, 0 reversed): the symmetric view export calibrates and scores ECE on."""
    d = np.asarray(diff, dtype=np.float64)
    x = np.concatenate([d, -d])
    return preference_probability(x, scale), np.concatenate([np.ones_like(d), np.zeros_like(d)])


def plot_reliability(diff: np.ndarray, scale: float, path: Path, title: str) -> Path:
    """The reliability diagram of raw (scale 1) and calibrated (``scale``) probabilities."""
    fig, (ax,) = _figure(5.2, 5.0)
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":", label="perfectly calibrated")
    curves = (("before (sigmoid of the score gap)", 1.0, "s--"), (f"after Platt scaling (x{scale:.3g})", scale, "o-"))
    for name, s, style in curves:
        rel = reliability(*pair_probabilities(diff, s))
        ax.plot(rel.predicted, rel.observed, style, label=f"{name}: ECE {rel.ece:.3f}")
    ax.set(xlabel="predicted P(a preferred over b)", ylabel="observed share of a preferred", xlim=(0, 1),
           ylim=(0, 1), title=title)
    ax.legend(loc="upper left", fontsize="small")
    return _save(fig, path)


def held_out_pairs(manifest: Any) -> list[Any]:
    """The pairs the bundle's checkpoint held out in training, reloaded from its recorded split.

    Raises:
        ValueError: the bundle records no split (give the pairs with ``--data``), or its data is unreadable.
    """
    from lite_rm.training.checkpoint import ValidationSplit

    meta = (manifest.source.lite_rm_meta if manifest.source else None) or {}
    if not meta.get("validation_split"):
        raise InputError(f"{manifest.folder}: the bundle records no held-out split of its training data; "
                         "give the pairs with --data FILE")
    held = ValidationSplit.from_dict(meta["validation_split"]).held_out()
    return [pair for pairs in held.values() for pair in pairs]


def plot_bundle(bundle: str | Path, pairs: Sequence[Any] | None = None, out: str | Path | None = None,
                max_pairs: int = 2000, seed: int = 0) -> list[Path]:
    """Write a bundle's reliability diagram into ``out`` (default ``BUNDLE/plots/``).

    Args:
        bundle: the bundle folder.
        pairs: preference pairs to score; default: the checkpoint's recorded held-out pairs.
        out: the output folder.
        max_pairs: score at most this many pairs (a seeded sample).
        seed: the sample's seed.

    Raises:
        BundleError: not a bundle folder. ValueError: no pairs.
    """
    from lite_rm.scoring.scorer import Scorer

    bundle = Path(bundle)
    scorer = Scorer(bundle)
    pairs = list(pairs) if pairs is not None else held_out_pairs(scorer.manifest)
    if not pairs:
        raise InputError(f"{bundle}: no pairs to score for the reliability diagram")
    if len(pairs) > max_pairs:
        keep = np.random.default_rng(seed).choice(len(pairs), max_pairs, replace=False)
        pairs = [pairs[i] for i in sorted(keep)]
    prompts = [p.prompt for p in pairs]
    scores = scorer.score_pairs(prompts + prompts, [p.chosen for p in pairs] + [p.rejected for p in pairs])
    diff = scores[:len(pairs)].astype(np.float64) - scores[len(pairs):]
    out = Path(out) if out is not None else bundle / PLOTS_DIR
    title = f"{bundle.name}: {len(pairs)} held-out pairs"
    return [plot_reliability(diff, scorer.manifest.calibration.scale, out / RELIABILITY_FILE, title)]
