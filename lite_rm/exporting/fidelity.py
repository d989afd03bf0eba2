"""The fidelity gate of a distilled student against its teacher (both as bundles, scored torch-free).

A student ships in the teacher's place only when, on the teacher's held-out pairs (the pairs neither
model trained on, which the student records from its teacher):

- it keeps the order of at least ``min_confident_agreement`` of the pairs the teacher is **confident**
  about (the teacher bundle's calibrated P(a preferred) outside 0.5 ± ``confidence_band``), and
- on **every** evaluation set among those pairs, its accuracy is not below the teacher's beyond chance:
  the upper end of the paired-bootstrap 95% interval of (student − teacher) accuracy is at least 0.
  Resampling the same pairs for both models keeps the interval as wide as their *disagreements* make
  it, so a near-chance set (many near-ties) cannot fail the gate by noise, and a real loss on a set
  with clear pairs cannot pass it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lite_rm.errors import LiteRMError
from lite_rm.scoring.evaluation import order_agreement, pair_correctness, paired_accuracy_interval


@dataclass(frozen=True)
class SetFidelity:
    """One evaluation set of the gate.

    Attributes:
        pairs: pairs of the set.
        teacher_accuracy: the teacher's pairwise accuracy (ties count half).
        student_accuracy: the student's.
        difference_interval: paired-bootstrap 95% interval of student − teacher accuracy.
    """

    pairs: int
    teacher_accuracy: float
    student_accuracy: float
    difference_interval: tuple[float, float]

    @property
    def passed(self) -> bool:
        return self.difference_interval[1] >= 0.0


@dataclass(frozen=True)
class FidelityResult:
    """The gate's figures: order agreement on the teacher's confident pairs and accuracy per set."""

    confident_pairs: int
    confident_agreement: float
    order_agreement: float
    sets: dict[str, SetFidelity]
    min_confident_agreement: float
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "confident_pairs": self.confident_pairs,
                "confident_agreement": self.confident_agreement, "order_agreement": self.order_agreement,
                "min_confident_agreement": self.min_confident_agreement,
                "sets": {k: asdict(v) for k, v in self.sets.items()}, "problems": list(self.problems)}

    def summary(self) -> str:
        sets = ", ".join(f"{k} {v.student_accuracy:.3f} vs {v.teacher_accuracy:.3f} "
                         f"[{v.difference_interval[0]:+.3f}, {v.difference_interval[1]:+.3f}]"
                         for k, v in self.sets.items())
        return (f"confident-pair agreement {self.confident_agreement:.3f} ({self.confident_pairs} pairs), "
                f"accuracy student vs teacher [95% interval of the difference]: {sets}")


def check_fidelity(teacher_diff: np.ndarray, student_diff: np.ndarray, set_names: Sequence[str],
                   teacher_scale: float, min_confident_agreement: float = 0.99, confidence_band: float = 0.1,
                   seed: int = 0) -> FidelityResult:
    """Gate a student's score differences (chosen − rejected) against its teacher's on the same pairs.

    Args:
        teacher_diff: the teacher's r(chosen) − r(rejected) per pair.
        student_diff: the student's, same pairs.
        set_names: the evaluation set of each pair.
        teacher_scale: the teacher's calibration (P = sigmoid(scale · diff)) that says which pairs it is
            confident about.
        min_confident_agreement: the least share of confident pairs whose order the student keeps.
        confidence_band: confident means P outside 0.5 ± this.
        seed: the bootstrap's seed.
    """
    t, s = np.asarray(teacher_diff, np.float64), np.asarray(student_diff, np.float64)
    names = np.asarray(list(set_names))
    if not (len(t) == len(s) == len(names)) or not len(t):
        raise ValueError(f"fidelity: expected the same non-zero number of pairs for teacher, student and set "
                         f"names, found {len(t)}, {len(s)}, {len(names)}")
    order = order_agreement(t, s, teacher_scale, confidence_band)
    agreement = order.confident_share
    problems = []
    if agreement < min_confident_agreement:
        problems.append(f"confident-pair agreement {agreement:.3f} < {min_confident_agreement} "
                        f"({order.confident_flipped} of {order.confident_pairs} confident pairs flipped)")
    sets = {}
    for name in dict.fromkeys(names.tolist()):
        m = names == name
        tc, sc = pair_correctness(t[m]), pair_correctness(s[m])
        sets[name] = SetFidelity(int(m.sum()), float(tc.mean()), float(sc.mean()),
                                 paired_accuracy_interval(sc, tc, seed=seed))
        if not sets[name].passed:
            low, high = sets[name].difference_interval
            problems.append(f"{name}: accuracy {sc.mean():.3f} vs the teacher's {tc.mean():.3f}, below it beyond "
                            f"chance (95% interval of the difference [{low:+.3f}, {high:+.3f}], {m.sum()} pairs)")
    return FidelityResult(order.confident_pairs, agreement, order.overall, sets, min_confident_agreement,
                          problems)


class FidelityError(LiteRMError, ValueError):
    """The student failed the gate (the message gives the figures)."""


__all__ = ["FidelityError", "FidelityResult", "SetFidelity", "check_fidelity"]
