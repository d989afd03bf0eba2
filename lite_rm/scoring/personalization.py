"""Personalization from a few comparisons, on the device: a user head fit on frozen embeddings.

Torch-free: the bundle's graph gives each (prompt, response) its ``embedding`` (:mod:`lite_rm.scoring.heads`),
and scikit-learn fits a logistic regression on the differences ``e(chosen) - e(rejected)``: a fit is a
small convex problem, cheap next to encoding the texts.

Regularized toward the bundle's own head: besides the embedding difference, the model sees the
default head's margin ``w0 . x`` as one feature scaled by :data:`PRIOR_FEATURE_SCALE`. The L2
penalty then makes using the default head (in either direction, at any strength) almost free while
every departure from it costs, so a handful of comparisons moves the head little from the general
reward, and many comparisons can move it as far as they show. The penalty strength ``C`` is chosen by
cross-validation grouped by prompt (a prompt's comparisons never sit on both sides of a fold).
Why not a hand-written optimizer: the prior enters as a feature, so plain ``LogisticRegression`` does
the fit; scikit-learn's ``GroupKFold`` makes the folds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lite_rm.errors import InputError
from lite_rm.extras import require
from lite_rm.scoring.bundle import Calibration, Manifest
from lite_rm.scoring.evaluation import pair_correctness
from lite_rm.scoring.heads import DEFAULT_HEAD, LinearHead, check_head_name, save_into_bundle, write_head

logger = logging.getLogger(__name__)

# Fewer comparisons than this cannot be cross-validated in two folds of two.
MIN_COMPARISONS = 4
# Large enough that the prior feature's coefficient is almost unpenalized at every C of the grid.
PRIOR_FEATURE_SCALE = 100.0
# Strong to weak regularization: of equally good settings the first, the safest, is kept.
C_GRID = (0.001, 0.01, 0.1, 1.0)
MAX_FOLDS = 5
# lbfgs tolerance, looser than scikit-learn's 1e-4: a faster fit, the same held-out accuracy.
TOLERANCE = 1e-3


@dataclass(frozen=True)
class FitReport:
    """What a personalization fit saw and how well it generalizes.

    Attributes:
        comparisons: distinct comparisons used (a repeated one counts once; ``duplicates_dropped`` in
            ``extra`` says how many repeats were left out).
        cv_accuracy: pairwise accuracy on held-out folds at the chosen ``C`` (grouped by prompt; a tie counts
            half, as each comparison is tested both ways).
        folds: cross-validation folds; ``groups`` says what a fold keeps together (``prompt`` or
            ``comparison`` when fewer than two distinct prompts were given).
        C: the chosen inverse penalty.
        prior_weight: the coefficient of the default head inside the new head (negative: the user
            prefers the opposite of the general reward).
        train_accuracy: accuracy on the comparisons themselves (a tie counts half).
        fit_s: seconds of the fit (search and final fit; the encoding is ``embed_s``).
    """

    comparisons: int
    cv_accuracy: float
    folds: int
    groups: str
    C: float
    prior_weight: float
    train_accuracy: float
    fit_s: float
    embed_s: float = 0.0
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"comparisons": self.comparisons, "cv_accuracy": self.cv_accuracy, "folds": self.folds,
                "groups": self.groups, "C": self.C, "prior_weight": self.prior_weight,
                "train_accuracy": self.train_accuracy, "fit_s": self.fit_s, "embed_s": self.embed_s,
                "path": self.path, **self.extra}


def fit_head(diffs: np.ndarray, prior: LinearHead, name: str, groups: Sequence[Any] | None = None,
             seed: int = 0) -> tuple[LinearHead, FitReport]:
    """Fit a head on embedding differences (chosen minus rejected), regularized toward ``prior``.

    Args:
        diffs: ``(n, dim)`` embedding differences, one row per comparison.
        prior: the head to stay close to (the bundle's default head).
        name: the new head's name.
        groups: one key per comparison (its prompt) so that cross-validation folds keep a prompt's
            comparisons together; ``None``: every comparison its own group.
        seed: unused by the deterministic solver; recorded for the record.

    Returns:
        The head (calibration scale 1: its scores are logits of P(a preferred over b)) and the report.

    Raises:
        ValueError: fewer than :data:`MIN_COMPARISONS` distinct comparisons, or shapes that do not match.
    """
    check_head_name(name)
    diffs = np.asarray(diffs, dtype=np.float64)
    if diffs.ndim != 2 or diffs.shape[1] != prior.dim:
        raise InputError(f"personalize: expected embedding differences of shape (n, {prior.dim}), found {diffs.shape}")
    keys = list(groups) if groups is not None else list(range(len(diffs)))
    if len(keys) != len(diffs):
        raise InputError(f"personalize: {len(keys)} groups for {len(diffs)} comparisons; expected one per comparison")
    # A repeated comparison adds no evidence, and its copies in different folds would score each other
    # (an inflated cross-validated accuracy). Keep each once.
    _, first = np.unique(diffs, axis=0, return_index=True)
    first = np.sort(first)
    given, diffs, keys = len(diffs), diffs[first], [keys[i] for i in first]
    n = len(diffs)
    if n < MIN_COMPARISONS:
        raise InputError(f"personalize: {_counted(given, n)}; at least {MIN_COMPARISONS} distinct comparisons "
                         "are needed to fit and cross-validate a head (give more of the user's choices)")
    model_selection = require("sklearn.model_selection", extra="personalize")
    linear_model = require("sklearn.linear_model", extra="personalize")
    started = time.perf_counter()  # after the imports: loading scikit-learn is not the fit's time
    distinct = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    group_ids = np.array([distinct[k] for k in keys])
    kind = "prompt" if groups is not None else "comparison"
    if len(distinct) < 2:  # one prompt: folds of comparisons instead (said in the report)
        group_ids, kind = np.arange(n), "comparison"
    folds = min(MAX_FOLDS, len(np.unique(group_ids)))
    # Each comparison both ways (x -> 1, -x -> 0): P(a > b) = 1 - P(b > a) with no intercept.
    features = np.hstack([diffs, PRIOR_FEATURE_SCALE * (diffs @ prior.weight.astype(np.float64))[:, None]])
    x = np.vstack([features, -features])
    y = np.concatenate([np.ones(n, dtype=int), np.zeros(n, dtype=int)])
    group_ids = np.concatenate([group_ids, group_ids])
    splits = list(model_selection.GroupKFold(n_splits=folds).split(x, y, group_ids))
    C, cv_accuracy = _choose_c(linear_model, x, y, splits)
    final = linear_model.LogisticRegression(C=C, fit_intercept=False, max_iter=2000, tol=TOLERANCE).fit(x, y)
    coef = final.coef_[0]
    prior_weight = float(coef[-1] * PRIOR_FEATURE_SCALE)
    weight = (coef[:-1] + prior_weight * prior.weight).astype(np.float32)
    fit_s = time.perf_counter() - started
    train_accuracy = float(np.mean(pair_correctness(diffs @ weight.astype(np.float64))))
    extra: dict[str, Any] = {"duplicates_dropped": given - n}
    if cv_accuracy <= 0.5:
        # Saved all the same (the user may add comparisons later), but never silently: the head is a coin toss.
        extra["warning"] = (f"cross-validated accuracy {cv_accuracy:.3f} is at or below chance (0.5): on held-out "
                            f"comparisons head {name!r} predicts the user's choices no better than a coin; give "
                            "more (or more consistent) comparisons, or keep using the bundle's own score")
        logger.warning("%s", extra["warning"])
    report = FitReport(comparisons=n, cv_accuracy=cv_accuracy, folds=folds, groups=kind, C=C, prior_weight=prior_weight,
                       train_accuracy=train_accuracy, fit_s=fit_s, extra=extra)
    provenance = {"method": "personalize", "base_head": prior.name, "created_at":
                  datetime.now(timezone.utc).isoformat(timespec="seconds"), "seed": seed, **report.to_dict()}
    head = LinearHead(name, weight, prior_weight * prior.bias, Calibration(scale=1.0, method="logistic-regression",
                                                                              pairs=n, accuracy=report.cv_accuracy),
                      prior.backbone, provenance)
    return head, report


def _counted(given: int, distinct: int) -> str:
    return (f"{given} comparison(s) given" if given == distinct
            else f"{given} comparisons given, only {distinct} distinct (repeats count once)")


def _choose_c(linear_model: Any, x: np.ndarray, y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]],
              ) -> tuple[float, float]:
    """The C of :data:`C_GRID` with the best mean held-out accuracy (the first, most regularized, of
    equals) and that accuracy. Why not ``GridSearchCV``: its bookkeeping costs more than these small fits;
    here each fold walks the grid warm-started from the previous C."""
    accuracy = np.zeros(len(C_GRID))
    for train, test in splits:
        model = linear_model.LogisticRegression(fit_intercept=False, max_iter=2000, warm_start=True, tol=TOLERANCE)
        for i, c in enumerate(C_GRID):
            model.set_params(C=c).fit(x[train], y[train])
            accuracy[i] += float(np.mean(model.predict(x[test]) == y[test])) / len(splits)
    best = int(np.argmax(accuracy))
    return float(C_GRID[best]), float(accuracy[best])


class EmbeddingScorer(Protocol):
    """What :func:`personalize` uses of a :class:`lite_rm.scoring.scorer.Scorer` (a protocol, not the class:
    the scorer module imports this one, and an import back would close a circle)."""

    @property
    def manifest(self) -> Manifest: ...

    def embed_pairs(self, prompts: Sequence[Any], responses: Sequence[Any]) -> np.ndarray: ...

    def get_head(self, name: str) -> LinearHead: ...

    def load_head(self, path: str | Path) -> str: ...


def personalize(scorer: EmbeddingScorer, prompts: Sequence[Any], chosen: Sequence[Any], rejected: Sequence[Any],
                name: str, profile: str | Path | None = None, seed: int = 0, base: str = DEFAULT_HEAD) -> FitReport:
    """Fit a user head on the comparisons and save it: into the bundle, or into ``profile``.

    Args:
        scorer: an open :class:`lite_rm.scoring.scorer.Scorer` of a bundle with an embedding output.
        prompts, chosen, rejected: the comparisons (``chosen[i]`` preferred over ``rejected[i]``).
        name: the head's name; afterwards ``scorer.score(..., head=name)`` scores with it.
        profile: a head file to write instead of changing the bundle (an app's per-user file).
        seed: recorded in the head's provenance.
        base: the head to regularize toward (default: the bundle's own score).

    Returns:
        The fit's report, with ``path`` the head file written.
    """
    check_head_name(name)
    if name == DEFAULT_HEAD:
        raise InputError(f"personalize: {DEFAULT_HEAD!r} is the bundle's own score; give the head another name")
    if not (len(prompts) == len(chosen) == len(rejected)):
        raise InputError(f"personalize: {len(prompts)} prompts, {len(chosen)} chosen, {len(rejected)} rejected; "
                         "expected one of each per comparison")
    distinct = len(set(zip(map(str, prompts), map(str, chosen), map(str, rejected), strict=True)))
    if distinct < MIN_COMPARISONS:  # before the encoding: duplicates are dropped again, exactly, by fit_head
        raise InputError(f"personalize: {_counted(len(prompts), distinct)}; at least {MIN_COMPARISONS} distinct "
                         "comparisons are needed to fit and cross-validate a head")
    started = time.perf_counter()
    embedded = scorer.embed_pairs(list(prompts) * 2, list(chosen) + list(rejected))
    embed_s = time.perf_counter() - started
    n = len(prompts)
    head, report = fit_head(embedded[:n] - embedded[n:], scorer.get_head(base), name,
                            groups=[str(p) for p in prompts], seed=seed)
    path = write_head(profile, head) if profile is not None else save_into_bundle(scorer.manifest.folder, head)
    scorer.load_head(path)
    return FitReport(**{**report.__dict__, "embed_s": embed_s, "path": str(path)})
