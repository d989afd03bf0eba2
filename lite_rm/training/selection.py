"""What the custom stage ships: a validated choice among the start model, the fine-tuned model and their mixes.

Customizing can make a model worse at the user's own preferences (too few or too noisy pairs for the
encoder) and at everything else. So after training, the candidates ``alpha * custom + (1 - alpha) *
start`` (alpha 0: the start model, 1: the fine-tuned model, and the interpolation grid between) are
scored on the custom validation pairs and on the general held-out pairs, and
:func:`choose_validated` ships a candidate other than the start model only when

- its general validation accuracy is within the tolerance of the start model's (as ``interpolate =
  "auto"`` judges it: at least one standard error of that accuracy), and
- it beats the start model on the custom validation pairs by a **paired** comparison: the lower end of
  the paired-bootstrap 95% interval of (candidate − start) accuracy is above 0; a raw difference of a
  few pairs is noise (:func:`lite_rm.scoring.evaluation.paired_accuracy_interval`).

Among those, the configured mix (``custom.interpolate``, 0.5 by default: the study's best trade-off
of domain and general accuracy, docs/study.md) is kept unless another candidate is better than it on
the custom validation pairs beyond chance; otherwise the best custom validation accuracy wins (ties:
the smaller alpha, closer to the start). ``custom.choose`` forces the fine-tuned model (as
``interpolate`` sets it) or the start model instead. This module holds the rule and its record; numpy
only, so the results table can render it without torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lite_rm.scoring.evaluation import accuracy_interval, paired_accuracy_interval
from lite_rm.training.config import CHOOSE_CHOICES

__all__ = ["CHOOSE_CHOICES", "NO_GAIN", "Candidate", "Choice", "choice_table", "choose_validated", "describe", "forced",
           "general_tolerance", "score_candidates", "unchecked"]

# The one line a run whose data did not help prints (the wording: plain, and says what to suspect).
NO_GAIN = ("your data did not improve the model on its own validation pairs: kept the start model; "
           "{pairs} pairs may be too few or too noisy for this encoder")


def general_tolerance(tolerance: float, general_pairs: int) -> float:
    """The accepted drop of general validation accuracy: ``tolerance``, and at least one standard error
    of that accuracy, ``sqrt(0.25 / general_pairs)`` (0.036 for 190 pairs): a smaller drop is noise."""
    return max(tolerance, math.sqrt(0.25 / general_pairs)) if general_pairs > 0 else tolerance


@dataclass(frozen=True)
class Candidate:
    """One set of weights the custom stage could ship, scored on the validation pairs.

    Attributes:
        alpha: the fine-tuned model's share (0: the start model, 1: the fine-tuned model).
        custom_valid: accuracy on the custom validation pairs (ties count half).
        custom_interval: its bootstrap 95% interval.
        general_valid: accuracy on the general held-out pairs (``None``: none were scored).
        vs_start: paired-bootstrap 95% interval of (this − start) custom validation accuracy.
        general_ok: general validation accuracy within the tolerance of the start model's.
    """

    alpha: float
    custom_valid: float
    custom_interval: tuple[float, float]
    general_valid: float | None
    vs_start: tuple[float, float]
    general_ok: bool = True

    @property
    def better_than_start(self) -> bool:
        return self.vs_start[0] > 0.0


@dataclass(frozen=True)
class Choice:
    """What the custom stage shipped and why (``lite_rm.json`` ``training.choice``).

    Attributes:
        mode: ``custom.choose``: ``validated``, ``finetuned`` or ``start``.
        alpha: the shipped weights' alpha (0: the start model).
        shipped: ``start``, ``finetuned`` (alpha 1) or ``interpolated``.
        reason: one sentence.
        custom_pairs: custom validation pairs.
        general_pairs: general held-out pairs scored (0: none).
        tolerance: the accepted drop of general validation accuracy.
        candidates: every candidate scored, by alpha.
    """

    mode: str
    alpha: float
    reason: str
    custom_pairs: int
    general_pairs: int
    tolerance: float
    candidates: list[Candidate] = field(default_factory=list)

    @property
    def shipped(self) -> str:
        return "start" if self.alpha == 0 else "finetuned" if self.alpha == 1 else "interpolated"

    @property
    def kept_start(self) -> bool:
        return self.alpha == 0

    def candidate(self, alpha: float) -> Candidate | None:
        return next((c for c in self.candidates if c.alpha == alpha), None)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "alpha": self.alpha, "shipped": self.shipped, "reason": self.reason,
                "custom_pairs": self.custom_pairs, "general_pairs": self.general_pairs, "tolerance": self.tolerance,
                "candidates": [asdict(c) | {"better_than_start": c.better_than_start} for c in self.candidates]}


Scores = Mapping[float, tuple[np.ndarray, float | None]]  # alpha -> (custom per-pair correctness, general acc)


def score_candidates(scores: Scores, tolerance: float, general_pairs: int, seed: int = 0
                     ) -> tuple[list[Candidate], float]:
    """Candidates from per-alpha scores (alpha 0, the start model, must be among them).

    Returns:
        The candidates by alpha, and the general tolerance applied.
    """
    if 0.0 not in scores:
        raise ValueError(f"candidate scores: expected alpha 0 (the start model) among them, found {sorted(scores)}")
    tol = general_tolerance(tolerance, general_pairs)
    start_correct, start_general = scores[0.0]
    out = []
    for alpha in sorted(scores):
        correct, general = scores[alpha]
        ok = general is None or start_general is None or general >= start_general - tol - 1e-9
        out.append(Candidate(float(alpha), float(np.mean(correct)), accuracy_interval(correct, seed=seed), general,
                             paired_accuracy_interval(correct, start_correct, seed=seed), ok))
    return out, tol


def choose_validated(scores: Scores, tolerance: float, general_pairs: int, preferred: float | None = None,
                     seed: int = 0) -> Choice:
    """The validated choice (the module's rule): the start model unless a candidate beats it on the custom
    validation pairs beyond chance while keeping general validation accuracy within the tolerance.

    Args:
        scores: alpha -> (per-pair correctness on the custom validation pairs, general validation accuracy
            or ``None``); alpha 0 is the start model.
        tolerance: ``custom.interpolate_tolerance``.
        general_pairs: how many general held-out pairs the general accuracies are over (0: none).
        preferred: the configured mix (kept unless another candidate is better beyond chance).
        seed: the bootstraps' seed.
    """
    candidates, tol = score_candidates(scores, tolerance, general_pairs, seed)
    pairs = len(scores[0.0][0])

    def chosen(alpha: float, reason: str) -> Choice:
        return Choice("validated", alpha, reason, pairs, general_pairs, tol, candidates)

    gains = [c for c in candidates if c.alpha > 0 and c.better_than_start]
    better = [c for c in gains if c.general_ok]
    if not better:
        if gains:
            configured = [c for c in gains if c.alpha == preferred]
            gain = configured[0] if configured else max(gains, key=lambda c: (c.custom_valid, -c.alpha))
            first = candidates[0]
            reason = (f"fine-tuning beat the start model on the custom validation pairs (alpha {gain.alpha:g}: "
                      f"{gain.custom_valid:.3f} vs {first.custom_valid:.3f}, {pairs} pairs) only with a drop of "
                      f"general validation accuracy ({gain.general_valid:.3f} vs {first.general_valid:.3f}, "
                      f"{general_pairs} pairs) beyond the tolerance {tol:.3f}: kept the start model; "
                      "--choose finetuned ships the fine-tuned model anyway, a larger custom.interpolate_tolerance "
                      "accepts a larger drop")
        else:
            reason = NO_GAIN.format(pairs=pairs)
        return chosen(0.0, reason)
    top = max(better, key=lambda c: (c.custom_valid, -c.alpha))
    pick = top
    by_alpha = {c.alpha: c for c in better}
    if preferred is not None and preferred in by_alpha and preferred != top.alpha:
        mine = by_alpha[preferred]
        _, high = paired_accuracy_interval(scores[preferred][0], scores[top.alpha][0], seed=seed)
        if high >= 0.0:  # not worse than the best beyond chance: keep the configured mix
            pick = mine
    low, high = pick.vs_start
    reason = (f"alpha {pick.alpha:g} beats the start model on the custom validation pairs "
              f"({pick.custom_valid:.3f} vs {candidates[0].custom_valid:.3f}, 95% interval of the difference "
              f"[{low:+.3f}, {high:+.3f}], {pairs} pairs)")
    if general_pairs:
        reason += f" and keeps general validation accuracy within {tol:.3f} of it"
    if preferred is not None and pick.alpha != preferred and preferred in by_alpha:
        reason += f"; it also beats the configured alpha {preferred:g} beyond chance"
    return chosen(pick.alpha, reason)


def forced(mode: str, alpha: float, scores: Scores, tolerance: float, general_pairs: int, seed: int = 0) -> Choice:
    """The record of a forced choice (``custom.choose`` ``finetuned`` or ``start``): ``alpha`` ships."""
    candidates, tol = score_candidates(scores, tolerance, general_pairs, seed)
    reason = f"forced by custom.choose = {mode}"
    return Choice(mode, alpha, reason, len(scores[0.0][0]), general_pairs, tol, candidates)


def unchecked(mode: str, alpha: float) -> Choice:
    """The record when there are no custom validation pairs to choose on: the configured mix ships."""
    return Choice(mode, alpha, "no custom validation pairs (custom.valid_fraction = 0): shipped the configured "
                  "mix unchecked", 0, 0, 0.0)


def describe(choice: Mapping[str, Any]) -> list[str]:
    """Log lines (and results-table rows) for a recorded choice: one per candidate, with its interval."""
    lines = []
    for c in choice.get("candidates", []):
        low, high = c["custom_interval"]
        d_low, d_high = c["vs_start"]
        general = f", general valid {c['general_valid']:.3f}" if c.get("general_valid") is not None else ""
        flag = "" if c.get("general_ok", True) else " (general drop beyond tolerance)"
        lines.append(f"alpha {c['alpha']:g}: custom valid {c['custom_valid']:.3f} [{low:.3f}, {high:.3f}] "
                     f"({choice['custom_pairs']} pairs), vs start [{d_low:+.3f}, {d_high:+.3f}]{general}{flag}")
    return lines


def choice_table(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown for ``results.md``: per custom model, every candidate on the validation pairs (accuracy,
    95% interval, pairs; general held-out accuracy), which shipped, and why. Empty when no model chose."""
    rows = [(name, s["choice"]) for name, s in summaries.items() if isinstance(s, Mapping) and s.get("choice")]
    if not rows:
        return ""
    lines = ["", "What each custom model ships (validation pairs; 95% intervals; alpha 0 = the start model, "
             "1 = the fine-tuned model):", "",
             "| model | alpha | custom valid [95%] | pairs | vs start [95%] | general valid | pairs | shipped |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, choice in rows:
        for c in choice.get("candidates", []):
            low, high = c["custom_interval"]
            d_low, d_high = c["vs_start"]
            general = f"{c['general_valid']:.3f}" if c.get("general_valid") is not None else "—"
            if not c.get("general_ok", True):
                general += " (drop)"
            mark = "**shipped**" if c["alpha"] == choice["alpha"] else ""
            lines.append(f"| {name} | {c['alpha']:g} | {c['custom_valid']:.3f} [{low:.3f}, {high:.3f}] | "
                         f"{choice['custom_pairs']} | [{d_low:+.3f}, {d_high:+.3f}] | {general} | "
                         f"{choice['general_pairs'] or '—'} | {mark} |")
    lines.append("")
    lines += [f"- {name}: {choice['shipped']} (alpha {choice['alpha']:g}, custom.choose = {choice['mode']}): "
              f"{choice['reason']}" for name, choice in rows]
    return "\n".join(lines) + "\n"
