"""Calibrating preference probabilities: Platt scaling of score differences (a temperature).

A Bradley-Terry reward model reads P(a preferred over b) as ``sigmoid(r(a) - r(b))``, but a model
trained for a few epochs is rarely calibrated: its margins are too large or too small. Export fits one
number, ``scale = 1 / temperature``, by logistic regression (scikit-learn) of the observed preference on
the score difference, without intercept, on the validation pairs, and stores it in the manifest.

The fit uses every pair in both orders ((d, 1) and (-d, 0)): with no intercept this keeps
P(a > b) = 1 - P(b > a), and the data has no "chosen comes first" bias to learn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lite_rm.extras import require

ECE_BINS = 10


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


@dataclass(frozen=True)
class CalibrationFit:
    """A fitted scale and how calibrated the probabilities are before (scale 1) and after."""

    scale: float
    ece_before: float
    ece_after: float
    pairs: int

    @property
    def temperature(self) -> float:
        return 1.0 / self.scale if self.scale > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "platt-no-intercept",
            "scale": self.scale,
            "temperature": self.temperature,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
            "ece_bins": ECE_BINS,
            "pairs": self.pairs,
        }


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def fit_temperature(chosen_scores: np.ndarray, rejected_scores: np.ndarray) -> CalibrationFit:
    """Fit ``scale`` so that ``sigmoid(scale * (r_chosen - r_rejected))`` matches observed preferences.

    Args:
        chosen_scores: scores of the preferred responses of the validation pairs.
        rejected_scores: scores of the other responses, same order.

    Returns:
        The fit. ECE is computed over both orders of every pair; a model that orders every pair
        correctly gets the largest scale scikit-learn's (weak, C=1e4) regularization allows.
    """
    linear_model = require("sklearn.linear_model")
    diff = np.asarray(chosen_scores, dtype=np.float64) - np.asarray(rejected_scores, dtype=np.float64)
    if diff.size == 0:
        raise ValueError("calibration needs at least one validation pair")
    x = np.concatenate([diff, -diff])[:, None]
    y = np.concatenate([np.ones_like(diff), np.zeros_like(diff)])
    model = linear_model.LogisticRegression(fit_intercept=False, C=1e4)
    model.fit(x, y)
    scale = float(model.coef_[0, 0])
    if not scale > 0:
        # The model orders validation pairs worse than chance: no temperature can make that calibrated;
        # keep probabilities uninformative rather than inverting the model's preferences.
        scale = 1e-6
    return CalibrationFit(
        scale=scale,
        ece_before=expected_calibration_error(_sigmoid(x[:, 0]), y),
        ece_after=expected_calibration_error(_sigmoid(scale * x[:, 0]), y),
        pairs=int(diff.size),
    )
