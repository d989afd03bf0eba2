"""What an export does: :class:`ExportOptions`, validated on construction, and :data:`EXPORT_FLAGS`, the
``lite-rm export`` flags that set its fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lite_rm.errors import ConfigError
from lite_rm.exporting.quantization import QuantPreset, load_preset
from lite_rm.flags import Flag
from lite_rm.threads import resolve_threads

DEFAULT_VALIDATION_PAIRS = 512
# Tried in order, the first that passes the parity check is kept: the per-CPU dynamic preset ("auto"),
# block-wise int8 compute, then weight-only int8 (the most faithful).
DEFAULT_PRESET = "auto,blockwise,blockwise_w8"
# ORTOptimizer level 2 = basic + extended fusions; 99 adds layout passes that make the saved graph
# specific to the exporting machine's CPU, so a bundle would not travel (onnxruntime warns about it).
DEFAULT_OPTIMIZATION_LEVEL = 2
IF_UNFAITHFUL = ("fail", "teacher", "keep")


@dataclass
class ExportOptions:
    """What ``lite-rm export`` does; a bad value raises :class:`~lite_rm.errors.ConfigError` naming the field.

    Attributes:
        int8: quantize to int8 (dynamic unless the preset says static).
        preset: a preset name from ``export/presets``, ``auto`` (the dynamic preset for this CPU), or a
            ``.toml`` path; several, comma-separated, are tried in order and the first that passes the
            parity check is kept (default ``auto,blockwise,blockwise_w8``).
        per_channel: override the preset's per-channel setting.
        static: override the preset's static/dynamic setting.
        exclude_nodes: extra node-name patterns kept in fp32.
        exclude_last_layers: override how many last encoder layers stay fp32.
        optimization_level: ORTOptimizer level (0 skips graph optimization).
        validation: a preference file for the parity check and calibration (default: the checkpoint's
            held-out validation split, see :func:`lite_rm.exporting.validation.validation_pairs`).
        validation_domain: the domain of a DSP validation file.
        validation_pairs: the most validation pairs to use.
        data_dir: the data folder for the fallback validation sample (checkpoints without a recorded split).
        fp32_tolerance: allowed |ONNX - PyTorch| score difference for fp32.
        min_confident_agreement: the least share of confident validation pairs (PyTorch's calibrated
            P(a preferred) outside 0.5 ± ``confidence_band``) whose order int8 must keep.
        confidence_band: how far from 0.5 a calibrated probability must be for a pair to count as
            confident (0.1: outside 0.4–0.6).
        max_order_change: allowed share of ALL validation pairs whose order int8 flips, near-ties
            included (``None``, the default: reported, not enforced).
        max_accuracy_loss: allowed drop of pairwise accuracy (a share, 0.01 = 1 point).
        accept_parity_loss: write the bundle even if the checks fail (marked in the manifest).
        threads: onnxruntime threads for the checks (:func:`~lite_rm.threads.resolve_threads`).
        seed: the validation sample's seed.
        teacher_bundle: for a distilled student: its teacher's bundle, against which the student must
            pass the fidelity gate (:mod:`lite_rm.exporting.fidelity`) on the held-out pairs.
        if_unfaithful: what a student that fails the gate does: ``fail`` (nothing is written), ``teacher``
            (the teacher's bundle is written in its place, the student's figures in its manifest) or
            ``keep`` (the student is written anyway, marked ``fidelity.passed: false``).
        extra_manifest: extra top-level manifest keys (benchmarks record their settings there).
    """

    int8: bool = False
    preset: str = DEFAULT_PRESET
    per_channel: bool | None = None
    static: bool | None = None
    exclude_nodes: tuple[str, ...] = ()
    exclude_last_layers: int | None = None
    optimization_level: int = DEFAULT_OPTIMIZATION_LEVEL
    validation: str | Path | None = None
    validation_domain: str | None = None
    validation_pairs: int = DEFAULT_VALIDATION_PAIRS
    data_dir: str | Path | None = None
    fp32_tolerance: float = 1e-4
    min_confident_agreement: float = 0.99
    confidence_band: float = 0.1
    max_order_change: float | None = None
    max_accuracy_loss: float = 0.01
    accept_parity_loss: bool = False
    threads: int | None = None
    seed: int = 0
    teacher_bundle: str | Path | None = None
    if_unfaithful: str = "fail"
    extra_manifest: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.exclude_nodes = tuple(self.exclude_nodes)
        if self.optimization_level not in (0, 1, 2):
            raise ConfigError(f"optimization_level: expected 0, 1 or 2, found {self.optimization_level!r}")
        if self.validation_pairs < 10:
            raise ConfigError(f"validation_pairs: expected at least 10, found {self.validation_pairs}")
        for name in ("max_order_change", "max_accuracy_loss", "min_confident_agreement"):
            value = getattr(self, name)
            if not (value is None and name == "max_order_change") and not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name}: expected a share in [0, 1], found {value!r}")
        if not 0.0 <= self.confidence_band < 0.5:
            raise ConfigError(f"confidence_band: expected a number in [0, 0.5), found {self.confidence_band!r}")
        if self.if_unfaithful not in IF_UNFAITHFUL:
            raise ConfigError(f"if_unfaithful: expected one of {', '.join(IF_UNFAITHFUL)}, "
                              f"found {self.if_unfaithful!r}")
        resolve_threads(self.threads)  # fails early on a bad value

    def resolved_presets(self) -> list[QuantPreset]:
        """The presets to try in order (``preset`` may list several, comma-separated)."""
        out = []
        for name in (n.strip() for n in self.preset.split(",") if n.strip()):
            preset = load_preset(name)
            out.append(preset.with_overrides(
                per_channel=self.per_channel, static=self.static, exclude_last_layers=self.exclude_last_layers,
                exclude_nodes=(tuple(preset.exclude_nodes) + tuple(self.exclude_nodes)) if self.exclude_nodes
                else None,
            ))
        if not out:
            raise ConfigError("preset: expected at least one preset name")
        return out


# The flags of `lite-rm export` and the ExportOptions fields they set; the CLI is built from this table,
# defaults shown as ExportOptions has them ({presets}: the preset names, filled in by the CLI).
_OUT, _QUANT, _CHECK, _STUDENT = "Bundle", "Quantization", "Parity check", "Distilled student"
EXPORT_FLAGS = (
    Flag("--int8", "int8", "Quantize to int8 (see --preset).", _QUANT, kind="flag"),
    Flag("--preset", "preset", "Quantization preset: {presets} (auto: the dynamic preset for this CPU), or a .toml "
         "file; several, comma-separated, are tried in order and the first that passes the parity check is kept.",
         _QUANT),
    Flag("--per-channel/--per-tensor", "per_channel", "Override the preset's weight granularity.", _QUANT,
         kind="switch", default_text=""),
    Flag("--static", "static", "Static quantization: activation ranges calibrated on the validation pairs.", _QUANT,
         kind="flag"),
    Flag("--exclude-nodes", "exclude_nodes", "Keep nodes whose name matches in fp32 (repeatable).", _QUANT,
         kind="list", metavar="REGEX"),
    Flag("--exclude-last-layers", "exclude_last_layers", "Keep the last N encoder layers in fp32 (overrides the "
         "preset).", _QUANT, kind="int", low=0),
    Flag("--optimization-level", "optimization_level", "onnxruntime graph optimization (0: none, 1: basic, "
         "2: + transformer fusions).", _QUANT, kind="int", low=0, high=2),
    Flag("--validation", "validation", "Preference file for the parity check and calibration (default: the "
         "held-out split of the checkpoint's training data).", _CHECK, kind="file"),
    Flag("--validation-domain", "validation_domain", "Domain of a DSP validation file.", _CHECK),
    Flag("--validation-pairs", "validation_pairs", "Most validation pairs to use.", _CHECK, kind="int", low=10),
    Flag("--data-dir", "data_dir", "Data folder for the default validation sample (else $LITE_RM_DATA, else "
         "../shared/data).", _CHECK, kind="folder"),
    Flag("--min-confident-agreement", "min_confident_agreement", "Least share of the validation pairs PyTorch is "
         "confident about (calibrated P outside 0.5 ± --confidence-band) whose order int8 must keep.", _CHECK,
         kind="float", low=0, high=1),
    Flag("--confidence-band", "confidence_band", "Pairs whose calibrated P(a preferred) is within 0.5 ± this are "
         "near-ties, not confident.", _CHECK, kind="float", low=0, high=0.5, high_open=True),
    Flag("--max-order-change", "max_order_change", "Also cap the share of ALL validation pairs (near-ties "
         "included) whose order int8 flips.", _CHECK, kind="float", low=0, high=1,
         default_text="reported, not enforced"),
    Flag("--max-accuracy-loss", "max_accuracy_loss", "Largest pairwise-accuracy drop allowed for int8 (0.01 = 1 "
         "point).", _CHECK, kind="float", low=0, high=1),
    Flag("--accept-parity-loss", "accept_parity_loss", "Write the bundle even if the parity check fails (the "
         "manifest records it).", _CHECK, kind="flag"),
    Flag("--teacher-bundle", "teacher_bundle", "For a distilled student (lite-rm distill): its teacher's bundle; "
         "the student must pass the fidelity gate against it on the held-out pairs (see docs/distill.md).",
         _STUDENT, kind="folder"),
    Flag("--if-unfaithful", "if_unfaithful", "When the student fails the gate: write nothing, write the teacher's "
         "bundle in its place, or write the student anyway (marked).", _STUDENT, kind="choice",
         choices=IF_UNFAITHFUL),
)
