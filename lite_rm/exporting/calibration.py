"""Calibrating preference probabilities: Platt scaling of score differences (a temperature).

A Bradley-Terry reward model reads P(a preferred over b) as ``sigmoid(r(a) - r(b))``, but a model
trained for a few epochs is rarely calibrated: its margins are too large or too small. Export fits one
number, ``scale = 1 / temperature``, by logistic regression (scikit-learn) of the observed preference on
the score difference, without intercept, on the validation pairs, and stores it in the manifest.

The fit uses every pair in both orders ((d, 1) and (-d, 0)): with no intercept this keeps
P(a > b) = 1 - P(b > a), and the data has no "chosen comes first" bias to learn.

The scale is kept within ``[SCALE_MIN, SCALE_MAX]`` (temperature 0.05 to 100). A model without signal
fits a scale near 0 (a weak checkpoint once got temperature 1e6: every probability 0.5, silently); one
that orders every validation pair correctly has no finite optimum at all. Both are *degenerate*:
:func:`calibrate` warns and the manifest says so (``calibration.degenerate``, ``reason``).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from lite_rm.extras import require
from lite_rm.scoring.bundle import Calibration
from lite_rm.scoring.evaluation import pairwise_accuracy, preference_probability

logger = logging.getLogger(__name__)

ECE_BINS = 10
METHOD = "platt-no-intercept"
# Temperature within [0.05, 100]: beyond 100 every probability of a typical margin (|d| < 1) is within
# 0.0025 of 0.5; below 0.05 a margin of 0.1 already gives 0.88, more confidence than validation sets of
# a few hundred pairs can support.
SCALE_MIN, SCALE_MAX = 0.01, 20.0
CalibrationFit = Calibration  # the fit is the manifest's calibration record

__all__ = ["SCALE_MAX", "SCALE_MIN", "CalibrationFit", "calibrate", "expected_calibration_error", "fit_temperature"]


def expected_calibration_error(probabilities: np.ndarray, outcomes: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the mean |observed frequency - predicted probability| over equal-width bins, weighted by size.

    Args:
        probabilities: predicted P(event), one per trial.
        outcomes: 1 where the event happened, else 0.
        bins: number of equal-width probability bins on [0, 1].
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(outcomes, dtype=np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(y[mask].mean() - p[mask].mean())
    return float(ece)


def _degenerate(accuracy: float, pairs: int, fitted: float, scale: float) -> str | None:
    """Why a fit carries no usable calibration, or ``None``.

    No signal: accuracy within two standard errors of chance (sd of a fair coin's share: 0.5/sqrt(n)).
    """
    if accuracy <= 0.5 + 1.0 / math.sqrt(pairs):
        return (f"no signal: validation accuracy {accuracy:.3f} on {pairs} pairs is within noise of chance, "
                "so the probabilities mean little")
    if fitted != scale:
        return f"the fitted scale {fitted:.3g} hit the bound [{SCALE_MIN}, {SCALE_MAX}] and was clipped"
    return None


def fit_temperature(chosen_scores: np.ndarray, rejected_scores: np.ndarray) -> Calibration:
    """Fit ``scale`` so that ``sigmoid(scale * (r_chosen - r_rejected))`` matches observed preferences.

    Args:
        chosen_scores: scores of the preferred responses of the validation pairs.
        rejected_scores: scores of the other responses, same order.

    Returns:
        The fit, its scale clipped to ``[SCALE_MIN, SCALE_MAX]`` (a scale <= 0, a model worse than
        chance, becomes ``SCALE_MIN``: uninformative, never inverted). ECE is computed over both orders
        of every pair; ``degenerate`` and ``reason`` say when the fit has no signal or hit a bound.
    """
    linear_model = require("sklearn.linear_model")
    chosen = np.asarray(chosen_scores, dtype=np.float64)
    rejected = np.asarray(rejected_scores, dtype=np.float64)
    diff = chosen - rejected
    if diff.size == 0:
        raise ValueError("calibration needs at least one validation pair")
    x = np.concatenate([diff, -diff])[:, None]
    y = np.concatenate([np.ones_like(diff), np.zeros_like(diff)])
    # C=1e4: almost no regularization; separable pairs are caught by the bound below.
    model = linear_model.LogisticRegression(fit_intercept=False, C=1e4)
    model.fit(x, y)
    fitted = float(model.coef_[0, 0])
    scale = float(np.clip(fitted, SCALE_MIN, SCALE_MAX))
    accuracy = pairwise_accuracy(chosen, rejected)
    reason = _degenerate(accuracy, int(diff.size), fitted, scale)
    return Calibration(
        scale=scale, method=METHOD,
        ece_before=expected_calibration_error(preference_probability(x[:, 0]), y),
        ece_after=expected_calibration_error(preference_probability(x[:, 0], scale), y),
        ece_bins=ECE_BINS, pairs=int(diff.size), accuracy=accuracy, degenerate=reason is not None, reason=reason,
    )


def calibrate(chosen_scores: np.ndarray, rejected_scores: np.ndarray) -> Calibration:
    """:func:`fit_temperature`, with a warning when the fit is degenerate (the export step)."""
    fit = fit_temperature(chosen_scores, rejected_scores)
    if fit.degenerate:
        logger.warning("calibration is degenerate (temperature %.3g): %s", fit.temperature, fit.reason)
    return fit
