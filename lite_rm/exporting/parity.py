"""The parity check: the exported model against the PyTorch checkpoint, on identical inputs.

fp32: every score within ``fp32_tolerance`` of PyTorch. int8: at least ``min_confident_agreement`` of
the pairs PyTorch is *confident* about (calibrated P(a preferred) outside 0.5 ± ``confidence_band``) keep
their order, and at most ``max_accuracy_loss`` of pairwise accuracy is lost; ``max_order_change`` (all
pairs, near-ties included) is reported and only enforced when set. Why confident pairs: the pairs int8
flips are near-ties the fp32 model itself cannot call (export/README.md, "The parity gate").
Candidates are scored by :class:`lite_rm.scoring.scorer.Scorer`, the code users run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lite_rm.errors import LiteRMError
from lite_rm.exporting.options import ExportOptions
from lite_rm.extras import require
from lite_rm.scoring.encoding import InputRule, encode_pairs, length_batches, load_tokenizer, pad_batch, pad_id_of
from lite_rm.scoring.evaluation import order_agreement, pairwise_accuracy


class ParityError(LiteRMError, RuntimeError):
    """The exported model disagrees with the PyTorch checkpoint beyond the allowed limits."""


@dataclass
class ParityResult:
    """How one candidate graph compares with the PyTorch reference on the validation pairs.

    Scores are ``[chosen of every pair, then rejected of every pair]``.

    Attributes:
        preset: the int8 preset's name, ``None`` for fp32.
        scores: the candidate's scores.
        max_abs_diff: the largest |candidate - PyTorch| score difference.
        accuracy: the candidate's pairwise accuracy (ties count half).
        reference_accuracy: PyTorch's pairwise accuracy.
        order_agreement: the share of pairs ordered as PyTorch orders them.
        confident_pairs: how many pairs PyTorch is confident about (calibrated P outside 0.5 ± band).
        confident_agreement: the share of those ordered as PyTorch orders them (1.0 when there are none).
        limits: the thresholds it was held to.
        problems: one sentence per failed check (empty: passed).
    """

    preset: str | None
    scores: np.ndarray
    max_abs_diff: float
    accuracy: float
    reference_accuracy: float
    order_agreement: float
    limits: dict[str, float | None]
    confident_pairs: int = 0
    confident_agreement: float = 1.0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def accuracy_loss(self) -> float:
        return self.reference_accuracy - self.accuracy

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``parity.fp32`` or ``parity.int8`` record."""
        if self.preset is None:
            return {"max_abs_diff": self.max_abs_diff, "tolerance": self.limits["tolerance"],
                    "accuracy": self.accuracy, "passed": self.passed}
        return {"preset": self.preset, "order_agreement": self.order_agreement,
                "confident_pairs": self.confident_pairs, "confident_agreement": self.confident_agreement,
                "accuracy": self.accuracy, "accuracy_loss": self.accuracy_loss, "max_abs_diff": self.max_abs_diff,
                **self.limits, "passed": self.passed}


def check_parity(reference: np.ndarray, scores: np.ndarray, options: ExportOptions,
                 preset: str | None = None, reference_scale: float = 1.0) -> ParityResult:
    """Compare a candidate's scores with the PyTorch reference.

    Args:
        reference: PyTorch scores (:func:`torch_scores`), chosen then rejected.
        scores: the candidate's scores, same order.
        options: the thresholds (``fp32_tolerance``; ``min_confident_agreement``, ``confidence_band``,
            ``max_accuracy_loss``, ``max_order_change``).
        preset: the int8 preset's name; ``None`` checks an fp32 graph.
        reference_scale: the calibration scale of the reference scores (Platt scaling), which turns a
            score difference into P(a preferred) to tell confident pairs from near-ties.
    """
    n = len(reference) // 2
    ref_diff, diff = reference[:n] - reference[n:], scores[:n] - scores[n:]
    agreement = order_agreement(ref_diff, diff, reference_scale, options.confidence_band)
    result = ParityResult(preset, scores, float(np.max(np.abs(scores - reference))),
                          pairwise_accuracy(scores[:n], scores[n:]), pairwise_accuracy(reference[:n], reference[n:]),
                          agreement.overall, limits={})
    if preset is None:
        result.limits = {"tolerance": options.fp32_tolerance}
        if result.max_abs_diff > options.fp32_tolerance:
            result.problems.append(f"fp32 ONNX scores differ from PyTorch by up to {result.max_abs_diff:.2e} "
                                   f"(allowed {options.fp32_tolerance:.0e})")
        return result
    result.confident_pairs = agreement.confident_pairs
    result.confident_agreement = agreement.confident_share
    result.limits = {"min_confident_agreement": options.min_confident_agreement,
                     "confidence_band": options.confidence_band, "max_accuracy_loss": options.max_accuracy_loss,
                     "max_order_change": options.max_order_change}
    _int8_problems(result, options, n)
    return result


def _int8_problems(result: ParityResult, options: ExportOptions, n: int) -> None:
    name = result.preset
    if result.confident_agreement < options.min_confident_agreement:
        result.problems.append(
            f"int8 ({name}) flips {1 - result.confident_agreement:.1%} of the {result.confident_pairs} validation "
            f"pairs PyTorch is confident about (allowed {1 - options.min_confident_agreement:.1%})")
    if result.accuracy_loss > options.max_accuracy_loss:
        result.problems.append(f"int8 ({name}) loses {result.accuracy_loss * 100:.1f} points of pairwise accuracy "
                               f"(allowed {options.max_accuracy_loss * 100:.1f})")
    if options.max_order_change is not None and 1 - result.order_agreement > options.max_order_change:
        result.problems.append(f"int8 ({name}) flips the preference order of {1 - result.order_agreement:.1%} "
                               f"of {n} validation pairs (allowed {options.max_order_change:.1%})")


def torch_scores(checkpoint: Path, tokenizer_path: Path, prompts: list[str], responses: list[str],
                 rule: InputRule, batch_size: int = 32) -> np.ndarray:
    """Scores of the PyTorch checkpoint on the same encoded inputs the Scorer builds (the reference)."""
    torch = require("torch")
    require("transformers")
    from lite_rm.training.modeling import load_reward_model

    model = load_reward_model(checkpoint, seed=0).eval()  # with the pooling the checkpoint records
    tokenizer = load_tokenizer(tokenizer_path)
    encoded = encode_pairs(tokenizer, prompts, responses, rule)
    out = np.empty(len(encoded), dtype=np.float64)
    with torch.inference_mode():
        for idx in length_batches(encoded.lengths(), batch_size):
            batch = pad_batch(encoded, idx.tolist(), pad_id_of(tokenizer))
            logits = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits
            out[idx] = logits[:, 0].double().numpy()
    return out


def bundle_scores(folder: Path, prompts: list[str], responses: list[str], threads: int | None) -> np.ndarray:
    """Scores of a (staged) bundle by the Scorer users run."""
    from lite_rm.scoring.scorer import Scorer

    return Scorer(folder, threads=threads).score_pairs(prompts, responses).astype(np.float64)


def calibration_feeds(tokenizer_path: Path, prompts: list[str], responses: list[str], rule: InputRule,
                      batch_size: int = 16) -> list[dict[str, Any]]:
    """Model inputs for static quantization's activation ranges, batched by length."""
    tokenizer = load_tokenizer(tokenizer_path)
    encoded = encode_pairs(tokenizer, prompts, responses, rule)
    return [pad_batch(encoded, idx.tolist(), pad_id_of(tokenizer))
            for idx in length_batches(encoded.lengths(), batch_size)]
