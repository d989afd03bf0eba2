"""Pairwise accuracy of a reward model on evaluation sets, and the stages x sets results table.

Works on any scoring function ``(prompts, responses) -> rewards``: a PyTorch checkpoint during
training, or an ONNX bundle through :class:`lite_rm.scoring.scorer.Scorer`. Every distinct
(prompt, response) text is scored once, however many pairs and sets share it (DSP's four domains
share one test file's texts).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lite_rm.data import DSP_DOMAINS, PreferencePair, load_preferences
from lite_rm.data.locations import DSP_TEST, GENERAL_TEST
from lite_rm.files import write_json_atomic, write_text_atomic

logger = logging.getLogger(__name__)

ScoreFn = Callable[[Sequence[str], Sequence[str]], np.ndarray]
GENERAL_SETS = tuple(GENERAL_TEST)  # helpful, harmless, webgpt: their mean is "general avg"


@dataclass(frozen=True)
class EvalSet:
    """An evaluation set: a preference source, and for DSP data the domain whose preference counts.

    ``format``, ``split``, ``columns`` and ``skip_invalid`` are passed to
    :func:`lite_rm.data.load_preferences` (a file, a ``save_to_disk`` folder or a dataset name).
    """

    name: str
    path: str
    domain: str | None = None
    format: str | None = None
    split: str | None = None
    columns: tuple[tuple[str, str], ...] = ()
    skip_invalid: bool = False

    def load(self) -> list[PreferencePair]:
        return load_preferences(self.path, domain=self.domain, format=self.format, split=self.split,
                                columns=dict(self.columns) or None, skip_invalid=self.skip_invalid).pairs


def default_eval_sets(data_dir: str | Path, domains: Sequence[str] = DSP_DOMAINS) -> list[EvalSet]:
    """The test files of the data folder: helpful, harmless, WebGPT, and DSP test per domain."""
    data_dir = Path(data_dir)
    sets = [EvalSet(name, str(data_dir / rel)) for name, rel in GENERAL_TEST.items()]
    sets += [EvalSet(f"dsp-{d}", str(data_dir / DSP_TEST), d) for d in domains]
    return sets


def eval_sets_from(named: dict[str, str], domains: Sequence[str] = DSP_DOMAINS, **load: Any) -> list[EvalSet]:
    """Eval sets from ``name = source``; DSP data becomes one set per domain (``name-<domain>``).

    ``load``: ``format``, ``split``, ``columns`` (tuple of pairs) and ``skip_invalid`` for every set.
    """
    sets: list[EvalSet] = []
    for name, path in named.items():
        if load.get("format") == "dsp" or is_multi_domain(path):
            sets += [EvalSet(f"{name}-{d}" if name != "dsp" else f"dsp-{d}", path, d, **load) for d in domains]
        else:
            sets.append(EvalSet(name, path, **load))
    return sets


def is_multi_domain(path: str | Path) -> bool:
    """Whether a file holds DSP multi-domain records (judged by its first record)."""
    from lite_rm.data.readers import iter_records

    path = Path(path)
    if not path.is_file():
        return False
    for _, record in iter_records(path):
        return isinstance(record, dict) and {"query", "responses"} <= set(record)
    return False


def pairwise_accuracy(chosen: np.ndarray, rejected: np.ndarray) -> float:
    """Share of pairs whose preferred response scores higher (a tie counts half)."""
    diff = np.asarray(chosen, dtype=np.float64) - np.asarray(rejected, dtype=np.float64)
    if diff.size == 0:
        return float("nan")
    return float(np.mean(pair_correctness(diff)))


def pair_correctness(diff: np.ndarray) -> np.ndarray:
    """Per pair: 1 when the preferred response scores higher, 0.5 for a tie, 0 otherwise (the rule of
    :func:`pairwise_accuracy`)."""
    diff = np.asarray(diff, dtype=np.float64)
    return (diff > 0) + 0.5 * (diff == 0)


def preference_probability(diff: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """P(a preferred over b) = sigmoid(scale * diff) from score differences ``diff = s_a - s_b``, float64.

    A difference so large that ``exp`` overflows gives exactly 0.0 (or 1.0), never NaN or a warning.
    """
    x = np.asarray(diff, dtype=np.float64)
    with np.errstate(over="ignore"):  # exp(large) = inf gives P = 0.0 exactly, as it should
        return 1.0 / (1.0 + np.exp(-scale * x))


@dataclass(frozen=True)
class OrderAgreement:
    """How far a model orders pairs as a reference does (:func:`order_agreement`).

    Attributes:
        same: per pair, whether both differences have the same sign (a tie agrees only with a tie).
        confident: per pair, whether the reference is confident about it.
    """

    same: np.ndarray
    confident: np.ndarray

    @property
    def overall(self) -> float:
        """The share of all pairs ordered the same (NaN without pairs)."""
        return float(np.mean(self.same)) if self.same.size else float("nan")

    @property
    def confident_pairs(self) -> int:
        return int(self.confident.sum())

    @property
    def confident_flipped(self) -> int:
        """Confident pairs the model orders otherwise."""
        return int((~self.same & self.confident).sum())

    @property
    def confident_share(self) -> float:
        """The share of confident pairs ordered the same; 1.0 when there are none (nothing to flip)."""
        return float(np.mean(self.same[self.confident])) if self.confident.any() else 1.0


def order_agreement(reference_diff: np.ndarray, diff: np.ndarray, scale: float = 1.0,
                    confidence_band: float = 0.0) -> OrderAgreement:
    """Whether a model orders each pair as a reference (teacher, PyTorch graph) does.

    The rule: a pair agrees when both score differences have the same sign; a tie (difference exactly 0)
    agrees only with a tie. A pair is confident when the reference's P(a preferred) =
    sigmoid(``scale`` * ``reference_diff``) lies outside 0.5 ± ``confidence_band``.

    Args:
        reference_diff: the reference's s_a - s_b per pair.
        diff: the model's, same pairs.
        scale: the reference's calibration scale.
        confidence_band: how far from 0.5 a probability must be to count as confident.
    """
    ref = np.asarray(reference_diff, dtype=np.float64)
    same = np.sign(ref) == np.sign(np.asarray(diff, dtype=np.float64))
    confident = np.abs(preference_probability(ref, scale) - 0.5) > confidence_band
    return OrderAgreement(same, confident)


def paired_accuracy_interval(a: np.ndarray, b: np.ndarray, confidence: float = 0.95, resamples: int = 2000,
                             seed: int = 0) -> tuple[float, float]:
    """Paired-bootstrap interval of mean(a) - mean(b) for two models' per-pair correctness on the same pairs.

    The same resampled pairs score both models, so pairs both get right (or wrong) cancel: the interval is
    as wide as the models' disagreements make it, not as wide as each accuracy's own noise.
    """
    delta = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if delta.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = delta[rng.integers(0, delta.size, size=(resamples, delta.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return (float(low), float(high))


def accuracy_interval(correct: np.ndarray, confidence: float = 0.95, resamples: int = 2000,
                      seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of one model's accuracy from its per-pair correctness (:func:`pair_correctness`).

    Pairs are resampled independently: pairs cut from one response list share a prompt, so for listwise
    data (DSP) the interval is, if anything, a little narrow.
    """
    return paired_accuracy_interval(correct, np.zeros(len(correct)), confidence, resamples, seed)


def accuracy_half_width(accuracy: float, pairs: int) -> float:
    """Half-width of the normal-approximation 95% interval of an accuracy over ``pairs`` pairs (for log
    lines, where a bootstrap per validation would cost more than it tells)."""
    if pairs <= 0 or accuracy != accuracy:  # no pairs, or NaN
        return float("nan")
    return 1.96 * float(np.sqrt(max(accuracy * (1.0 - accuracy), 0.0) / pairs))


def evaluate(score: ScoreFn, sets: Sequence[EvalSet], loaded: dict[str, list[PreferencePair]] | None = None
             ) -> dict[str, dict[str, Any]]:
    """Pairwise accuracy on every set (and per opponent for multi-domain data).

    Args:
        score: ``(prompts, responses) -> rewards``.
        sets: the evaluation sets.
        loaded: already loaded pairs by set name (loads the rest).

    Returns:
        ``{set: {"acc": float, "pairs": int, "per_opponent": {label: acc}}}``.
    """
    loaded = dict(loaded or {})
    for s in sets:
        if s.name not in loaded:
            loaded[s.name] = s.load()
    index: dict[tuple[str, str], int] = {}
    for s in sets:
        for p in loaded[s.name]:
            index.setdefault((p.prompt, p.chosen), len(index))
            index.setdefault((p.prompt, p.rejected), len(index))
    keys = sorted(index, key=index.__getitem__)
    rewards = np.asarray(score([k[0] for k in keys], [k[1] for k in keys]), dtype=np.float64)
    results: dict[str, dict[str, Any]] = {}
    for s in sets:
        pairs = loaded[s.name]
        c = rewards[[index[(p.prompt, p.chosen)] for p in pairs]]
        r = rewards[[index[(p.prompt, p.rejected)] for p in pairs]]
        row: dict[str, Any] = {"acc": pairwise_accuracy(c, r), "pairs": len(pairs)}
        labels = sorted({p.rejected_label for p in pairs if p.rejected_label})
        if labels:
            row["per_opponent"] = {
                lab: pairwise_accuracy(c[m], r[m])
                for lab in labels
                for m in [np.array([p.rejected_label == lab for p in pairs])]
            }
        results[s.name] = row
    return results


def general_average(row: dict[str, dict[str, Any]]) -> float | None:
    """Mean accuracy over the general sets (helpful, harmless, WebGPT); ``None`` unless all three are
    in ``row``: an average over other sets would be shown under a name that does not describe it."""
    vals = [row[n]["acc"] for n in GENERAL_SETS if n in row]
    return float(np.mean(vals)) if len(vals) == len(GENERAL_SETS) else None


def results_table(rows: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Markdown: rows are stages (or models), columns are sets, plus the general average; then the
    per-opponent accuracy of multi-domain sets."""
    sets: list[str] = []
    for row in rows.values():
        sets += [s for s in row if s not in sets]
    # the paper's column order: the general sets first, then the rest by name
    sets.sort(key=lambda s: (GENERAL_SETS.index(s) if s in GENERAL_SETS else len(GENERAL_SETS), s))
    has_avg = any(general_average(r) is not None for r in rows.values())
    header = ["model", *sets] + (["general avg"] if has_avg else [])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for stage, row in rows.items():
        cells = [stage] + [f"{row[s]['acc']:.3f}" if s in row else "" for s in sets]
        if has_avg:
            avg = general_average(row)
            cells.append(f"{avg:.3f}" if avg is not None else "")
        lines.append("| " + " | ".join(cells) + " |")
    opp_sets = [s for s in sets if any("per_opponent" in r.get(s, {}) for r in rows.values())]
    if opp_sets:
        lines += ["", "Per opponent (pairwise accuracy of the domain's response vs each other response):", ""]
        lines += ["| model | set | " + " | ".join(["vs " + o for o in _opponents(rows, opp_sets)]) + " |",
                  "|" + " --- |" * (2 + len(_opponents(rows, opp_sets)))]
        for stage, row in rows.items():
            for s in opp_sets:
                if s in row and "per_opponent" in row[s]:
                    per = row[s]["per_opponent"]
                    lines.append(f"| {stage} | {s} | " + " | ".join(
                        f"{per[o]:.3f}" if o in per else "—" for o in _opponents(rows, opp_sets)) + " |")
    return "\n".join(lines) + "\n"


def _opponents(rows: dict[str, dict[str, dict[str, Any]]], sets: list[str]) -> list[str]:
    found: list[str] = []
    for row in rows.values():
        for s in sets:
            for o in row.get(s, {}).get("per_opponent", {}):
                if o not in found:
                    found.append(o)
    return sorted(found, key=lambda o: (o == "normal", o))


def write_results(folder: str | Path, rows: dict[str, dict[str, dict[str, Any]]], extra: dict[str, Any] | None = None,
                  appendix: str = "") -> tuple[Path, Path]:
    """Write ``results.md`` (the table, then ``appendix``: more markdown) and ``results.json`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    md, js = folder / "results.md", folder / "results.json"
    write_text_atomic(md, results_table(rows) + appendix)
    payload = {"results": rows, "general_avg": {k: general_average(v) for k, v in rows.items()}, **(extra or {})}
    write_json_atomic(js, payload)
    return md, js
