"""Export a checkpoint to a scoring bundle, as named steps and a short driver (:func:`export_bundle`).

Steps (all in a scratch folder; the bundle appears in one rename at the end):

1. :func:`~lite_rm.exporting.onnx.onnx_export`: Optimum's ``main_export`` writes the fp32 ONNX graph;
   :func:`~lite_rm.exporting.onnx.add_embedding_output` also names the vector the score's last linear
   layer reads as the output ``embedding`` (for heads, :mod:`lite_rm.scoring.heads`).
2. :func:`~lite_rm.exporting.onnx.optimize`: ``ORTOptimizer`` fuses it for CPU (attention,
   SkipLayerNormalization, BiasGelu kernels).
3. With ``int8``, :func:`~lite_rm.exporting.quantization.quantize` applies a preset from
   ``export/presets`` (block-wise ``MatMulNBits`` or Optimum's ``ORTQuantizer``); several are tried in order.
4. :func:`~lite_rm.exporting.parity.check_parity`: each candidate, scored by :class:`lite_rm.scoring.scorer.Scorer`
   (the code users run) on the checkpoint's held-out validation pairs
   (:func:`~lite_rm.exporting.validation.validation_pairs`), against the PyTorch checkpoint: fp32 within
   ``fp32_tolerance``; int8 keeps the order of ``min_confident_agreement`` of the pairs PyTorch is
   confident about and loses at most ``max_accuracy_loss`` of accuracy. The first int8 preset that
   passes is kept; if none does, export fails, unless ``accept_parity_loss`` (the manifest says so).
5. :func:`~lite_rm.exporting.calibration.calibrate`: a temperature fitted on the validation pairs;
   :func:`~lite_rm.exporting.heads.checkpoint_heads`: a multi-task checkpoint's heads, each calibrated on
   its domain's held-out pairs.
6. :func:`~lite_rm.exporting.writer.write_bundle`: the atomic write of the folder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lite_rm.errors import ExportError
from lite_rm.exporting.calibration import calibrate, fit_temperature
from lite_rm.exporting.fidelity import FidelityError, FidelityResult, check_fidelity
from lite_rm.exporting.heads import checkpoint_heads
from lite_rm.exporting.onnx import (
    add_embedding_output,
    bundle_tokenizer,
    max_positions,
    model_config,
    onnx_export,
    optimize,
)
from lite_rm.exporting.options import ExportOptions
from lite_rm.exporting.parity import ParityError, ParityResult, bundle_scores, check_parity, torch_scores
from lite_rm.exporting.quantization import QuantPreset, quantize
from lite_rm.exporting.validation import ValidationPairs, checkpoint_domains, validation_pairs
from lite_rm.exporting.writer import stage_bundle, write_bundle, write_teacher_in_place
from lite_rm.extras import installed_version, lite_rm_version
from lite_rm.files import check_output, folder_digest, scratch_dir
from lite_rm.scoring.bundle import DEFAULT_MAX_POSITIONS, TOKENIZER_FILE, Calibration, Embedding, Manifest, Source
from lite_rm.scoring.encoding import InputRule
from lite_rm.scoring.heads import DEFAULT_HEAD, LinearHead
from lite_rm.scoring.runtimes import EMBEDDING_OUTPUT
from lite_rm.training.checkpoint import META_FILE, input_rule_of, read_meta

logger = logging.getLogger(__name__)

__all__ = ["ExportOptions", "FidelityError", "ParityError", "ParityResult", "export_bundle", "export_steps",
           "torch_scores", "validation_pairs"]

Progress = Callable[[str], None]
SCRATCH_PREFIX = "lite-rm-export-"


def export_steps(options: ExportOptions) -> list[str]:
    """The names of the steps :func:`export_bundle` reports to its ``progress`` callback, in order
    (the int8 steps after the first preset that passes are skipped)."""
    presets = [f"int8 {p.name}" for p in options.resolved_presets()] if options.int8 else []
    gate = ["fidelity gate"] if options.teacher_bundle else []
    return ["ONNX export", "optimize", "reference scores", "fp32 check", *presets, "calibration", *gate, "write"]


@dataclass
class _Run:
    """What the steps share: the scratch folder, the inputs, the reference scores and timings."""

    checkpoint: Path
    work: Path
    options: ExportOptions
    rule: InputRule
    config: dict[str, Any]
    validation: ValidationPairs
    base: Manifest
    progress: Progress
    tokenizer: Path = Path()
    raw: Path = Path()
    embedding: tuple[int, Any, float, list[str]] | None = None  # (dim, default head weight, bias, parts)
    graphs: dict[str, Path] = field(default_factory=dict)
    reference: Any = None
    reference_scale: float = 1.0
    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @property
    def texts(self) -> tuple[list[str], list[str]]:
        pairs = self.validation.pairs
        return [p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs]

    def done(self, step: str | None, timing: str | None = None) -> None:
        """Report a finished step; ``timing`` records the seconds since the previous timing."""
        if timing:
            self.timings[timing] = time.perf_counter() - self.started - sum(self.timings.values())
        if step:
            self.progress(step)

    def graph(self, attention: str) -> Path:
        if attention not in self.graphs:
            self.graphs[attention] = optimize(self.raw, self.options.optimization_level, attention)
        return self.graphs[attention]

    def check(self, name: str, model: Path, preset: str | None) -> ParityResult:
        prompts, responses = self.texts
        staged = stage_bundle(self.work / f"check-{name}", model, self.tokenizer, self.base)
        scores = bundle_scores(staged, prompts, responses, self.options.threads)
        return check_parity(self.reference, scores, self.options, preset, self.reference_scale)


def _quantized(run: _Run, presets: list[QuantPreset]) -> tuple[QuantPreset, Path, ParityResult, list[ParityResult]]:
    """Try the presets in order; the first that passes (else the last) with every attempt."""
    from lite_rm.exporting.parity import calibration_feeds

    attempts: list[ParityResult] = []
    for preset in presets:
        feeds = calibration_feeds(run.tokenizer / TOKENIZER_FILE, *run.texts, run.rule) if preset.static else None
        model = quantize(run.graph(preset.attention), run.work / f"int8-{preset.name}", preset, feeds)
        result = run.check(f"int8-{preset.name}", model, preset.name)
        attempts.append(result)
        run.done(f"int8 {preset.name}")
        if result.passed:
            break
        logger.info("preset %s fails the parity check: %s", preset.name, "; ".join(result.problems))
    return preset, model, attempts[-1], attempts


def _parity_record(run: _Run, fp32: ParityResult, int8: ParityResult | None, attempts: list[ParityResult],
                   ) -> dict[str, Any]:
    """The manifest's ``parity``; raises :class:`ParityError` unless it passed or is overridden."""
    problems = fp32.problems + (int8.problems if int8 else [])
    record: dict[str, Any] = {"validation": run.validation.to_dict(), "pytorch_accuracy": fp32.reference_accuracy,
                              "fp32": fp32.to_dict()}
    if int8 is not None:
        record["int8"] = int8.to_dict()
    if len(attempts) > 1:
        record["int8_attempts"] = [a.to_dict() for a in attempts]
    record["passed"] = not problems
    record["overridden"] = bool(problems) and run.options.accept_parity_loss
    if problems and not run.options.accept_parity_loss:
        hint = ("try another preset (--preset), per-channel weights, keeping the last layers in fp32 "
                "(--exclude-last-layers 1), or export fp32 (no --int8)") if int8 else \
            "check that the checkpoint loads with transformers as a one-label sequence classifier"
        raise ParityError("parity check failed: " + "; ".join(problems) + f". Nothing was written; {hint}; "
                          "--accept-parity-loss writes it anyway, marked as such in the manifest.")
    for problem in problems:
        logger.warning("writing despite a failed parity check (--accept-parity-loss): %s", problem)
    return record


def _fidelity(run: _Run, student_scores: Any, teacher_bundle: Path) -> FidelityResult:
    """The student's final scores against its teacher's bundle on the same held-out pairs."""
    from lite_rm.scoring.scorer import Scorer

    teacher = Scorer(teacher_bundle, threads=run.options.threads)
    t = teacher.score_pairs(*run.texts)
    n = len(run.validation.pairs)
    result = check_fidelity(t[:n] - t[n:], student_scores[:n] - student_scores[n:], run.validation.set_names,
                            teacher.manifest.calibration.scale, run.options.min_confident_agreement,
                            run.options.confidence_band, run.options.seed)
    run.done("fidelity gate")
    return result


def _fidelity_record(run: _Run, result: FidelityResult, teacher_bundle: Path) -> dict[str, Any]:
    """The manifest's ``fidelity``; raises :class:`FidelityError` when it failed and ``if_unfaithful`` is ``fail``."""
    from lite_rm.files import file_digest
    from lite_rm.scoring.bundle import read_manifest

    teacher = read_manifest(teacher_bundle)
    record = {**result.to_dict(), "teacher_bundle": str(teacher_bundle.resolve()),
              "teacher_model_sha256": file_digest(teacher.model_path), "validation": run.validation.to_dict()}
    if not result.passed and run.options.if_unfaithful == "fail":
        raise FidelityError("the student fails the fidelity gate against its teacher: " + "; ".join(result.problems)
                            + f". Nothing was written; ship the teacher's bundle ({teacher_bundle}), "
                            "distill longer or keep more layers; --if-unfaithful teacher writes the teacher's "
                            "bundle in its place, --if-unfaithful keep writes the student anyway (marked).")
    for problem in result.problems:
        logger.warning("student fails the fidelity gate: %s", problem)
    return record


def _base_manifest(checkpoint: Path, rule: InputRule, config: dict[str, Any]) -> Manifest:
    positions = max_positions(config) or DEFAULT_MAX_POSITIONS
    if rule.max_length > positions:
        raise ExportError(f"{checkpoint / META_FILE}: input_rule.max_length {rule.max_length} exceeds the model's "
                         f"{positions} positions (config.json)")
    return Manifest(folder=Path(), input_rule=rule, calibration=Calibration(), max_positions=positions)


def _default_head(run: _Run, calibration: Calibration, backbone: str) -> LinearHead | None:
    """The score's last layer as a linear head on the embedding: the prior of personalized heads."""
    if run.embedding is None:
        return None
    _, weight, bias, _ = run.embedding
    return LinearHead(DEFAULT_HEAD, weight, bias, calibration, backbone,
                      {"method": "export", "note": "the checkpoint's own score layer (the graph's logits output)"})


def _final_manifest(run: _Run, preset: QuantPreset | None, parity: dict[str, Any], calibration: Calibration,
                    backbone: str, fidelity: dict[str, Any] | None = None) -> Manifest:
    meta = read_meta(run.checkpoint)
    source = Source(str(run.checkpoint.resolve()), backbone, run.config.get("model_type"),
                    meta if (run.checkpoint / META_FILE).exists() else None)
    export = {
        # the engine the parity check scored with (Scorer(backend="openvino") can still run the graph)
        "engine": "onnxruntime",
        "optimum_onnx": installed_version("optimum-onnx"), "onnxruntime": installed_version("onnxruntime"),
        "optimization_level": run.options.optimization_level, "timings_s": run.timings,
    }
    embedding = None if run.embedding is None else Embedding(EMBEDDING_OUTPUT, run.embedding[0], run.embedding[3])
    return Manifest(folder=Path(), input_rule=run.rule, calibration=calibration,
                    precision="int8" if preset else "fp32", max_positions=run.base.max_positions,
                    domains=checkpoint_domains(meta), embedding=embedding, source=source,
                    created_by=f"lite-rm {lite_rm_version()}",
                    created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), export=export,
                    quantization=preset.to_dict() if preset else None, parity=parity, fidelity=fidelity,
                    extra=dict(run.options.extra_manifest))


def _write(run: _Run, output: str | Path, model: Path, manifest: Manifest, backbone: str) -> Manifest:
    """Write the bundle with its heads: the score's own (``default``) and a multi-task checkpoint's."""
    default_head = _default_head(run, manifest.calibration, backbone)
    heads = [default_head] if default_head else []
    if default_head:
        heads += checkpoint_heads(run.checkpoint, model, run.tokenizer, manifest, run.work, backbone,
                                  run.options.threads)
    written = write_bundle(output, model, run.tokenizer, manifest, run.config, heads)
    run.done("write")
    return written


def export_bundle(checkpoint: str | Path, output: str | Path, options: ExportOptions | None = None,
                  progress: Progress | None = None, overwrite: bool = False, **kwargs: Any) -> Manifest:
    """Export a lite-rm (or any Hugging Face one-label sequence-classification) checkpoint to a bundle.

    Args:
        checkpoint: the checkpoint folder (``save_pretrained`` + tokenizer, optionally ``lite_rm.json``).
        output: the bundle folder to write: a new or empty folder, or an existing bundle (replaced
            atomically) with ``overwrite`` (:func:`lite_rm.files.check_output`).
        options: see :class:`ExportOptions`; keyword arguments build one when omitted.
        progress: called with each step's name (:func:`export_steps`) when it is done.
        overwrite: replace an existing bundle at ``output``.

    Returns:
        The manifest written into the bundle, as read back from it.

    Raises:
        ParityError: the checks failed and ``accept_parity_loss`` is off (nothing is written).
        OutputError: ``output`` may not be written (checked before any work; a ``ValueError``).
        FidelityError: a distilled student fails its gate and ``if_unfaithful`` is ``fail``.
        ConfigError: a bad option or preset (a ``ValueError``).
        ExportError: not a one-label reward model, custom code, no tokenizer, no validation pairs (a
            ``ValueError``).
        FileNotFoundError, DataError: a missing checkpoint, or missing or unreadable validation data.
    """
    options = options or ExportOptions(**kwargs)
    checkpoint = Path(checkpoint)
    check_output(output, "bundle", [checkpoint, options.teacher_bundle], overwrite)
    config = model_config(checkpoint)
    rule = input_rule_of(checkpoint)
    base = _base_manifest(checkpoint, rule, config)
    presets = options.resolved_presets() if options.int8 else []
    validation = validation_pairs(checkpoint, options)
    with scratch_dir(SCRATCH_PREFIX) as work:
        run = _Run(checkpoint, work, options, rule, config, validation, base, progress or (lambda step: None))
        run.raw = onnx_export(checkpoint, work, config)
        run.embedding = add_embedding_output(run.raw)
        run.done("ONNX export", "onnx_export_s")
        fp32_model = run.graph(presets[0].attention if presets else "fused")
        run.done("optimize", "optimize_s")
        run.tokenizer = bundle_tokenizer(checkpoint, work)
        run.reference = torch_scores(checkpoint, run.tokenizer / TOKENIZER_FILE, *run.texts, rule)
        n = len(validation.pairs)
        # which pairs PyTorch is confident about: its own calibrated probabilities (the parity gate)
        run.reference_scale = fit_temperature(run.reference[:n], run.reference[n:]).scale
        run.done("reference scores")
        fp32 = run.check("fp32", fp32_model, None)
        run.done("fp32 check")
        preset, model, int8, attempts = _quantized(run, presets) if presets else (None, fp32_model, None, [])
        run.done(None, "quantize_and_check_s")
        parity = _parity_record(run, fp32, int8, attempts)
        final = int8 or fp32
        calibration = calibrate(final.scores[:n], final.scores[n:])
        run.done("calibration")
        teacher = Path(options.teacher_bundle) if options.teacher_bundle else None
        fidelity = _fidelity_record(run, _fidelity(run, final.scores, teacher), teacher) if teacher else None
        if teacher and fidelity and not fidelity["passed"] and options.if_unfaithful == "teacher":
            manifest = write_teacher_in_place(output, teacher, {
                "checkpoint": str(checkpoint.resolve()), "fidelity": fidelity})
            run.done("write")
            logger.warning("wrote the teacher's bundle %s to %s in the student's place", teacher, output)
            return manifest
        backbone = folder_digest(checkpoint)
        manifest = _write(run, output, model, _final_manifest(run, preset, parity, calibration, backbone, fidelity),
                          backbone)
    size_mb = manifest.files[manifest.model_file].bytes / 1e6
    logger.info("wrote %s (%s, %.1f MB)", output, manifest.precision, size_mb)
    return manifest
