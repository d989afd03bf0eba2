"""Export a checkpoint to a scoring bundle: Optimum ONNX export, graph fusion, optional int8, parity
check against PyTorch, probability calibration, and an atomic write of the bundle folder.

Steps (all in a scratch folder; the bundle appears in one rename at the end):

1. ``optimum.exporters.onnx.main_export`` writes the fp32 ONNX graph of the sequence-classification model.
2. ``ORTOptimizer`` fuses it for CPU (attention, SkipLayerNormalization, BiasGelu kernels).
3. With ``int8``, a preset from ``export/presets`` quantizes it (block-wise ``MatMulNBits`` or Optimum's
   ``ORTQuantizer``, see :mod:`lite_rm.quantization`); several presets are tried in order.
4. Each candidate is scored by :class:`lite_rm.scorer.Scorer` (the same code users run) on validation
   pairs and compared with the PyTorch checkpoint: fp32 scores within ``fp32_tolerance``; int8 keeps the
   preference order of all but ``max_order_change`` of the pairs and loses at most ``max_accuracy_loss``
   of pairwise accuracy. The first int8 preset that passes is kept; if none does, export fails, unless
   ``accept_parity_loss`` (the manifest says so).
5. A temperature is fitted on the validation pairs (:mod:`lite_rm.calibration`).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from lite_rm.bundle import BUNDLE_FORMAT, FORMAT_VERSION, MANIFEST_FILE, MODEL_FILE, TOKENIZER_FILE, file_entry
from lite_rm.calibration import fit_temperature
from lite_rm.checkpoint import META_FILE, input_rule_of, read_meta
from lite_rm.data import DSP_DOMAINS, PreferencePair, load_preferences, resolve_data_dir, split_by_prompt
from lite_rm.data.locations import DSP_TRAIN, GENERAL_TRAIN
from lite_rm.encoding import InputRule, encode_pairs, load_tokenizer, pad_batch, pad_id_of
from lite_rm.extras import require
from lite_rm.files import atomic_dir
from lite_rm.quantization import QuantPreset, load_preset, quantize

logger = logging.getLogger(__name__)

DEFAULT_VALIDATION_PAIRS = 512
# Tried in order, the first that passes the parity check is kept: block-wise int8 compute (faster), then
# weight-only int8 (most faithful). "auto" picks the faster per-CPU dynamic preset (export/README.md).
DEFAULT_PRESET = "blockwise,blockwise_w8"
# ORTOptimizer level 2 = basic + extended fusions; 99 adds layout passes that make the saved graph
# specific to the exporting machine's CPU, so a bundle would not travel (onnxruntime warns about it).
DEFAULT_OPTIMIZATION_LEVEL = 2


class ParityError(RuntimeError):
    """The exported model disagrees with the PyTorch checkpoint beyond the allowed limits."""


@dataclass
class ExportOptions:
    """What ``lite-rm export`` does; every field is a CLI flag.

    Attributes:
        int8: quantize to int8 (dynamic unless the preset says static).
        preset: a preset name from ``export/presets``, ``auto`` (the dynamic preset for this CPU), or a
            ``.toml`` path; several, comma-separated, are tried in order and the first that passes the
            parity check is kept (default ``blockwise,blockwise_w8``).
        per_channel: override the preset's per-channel setting.
        static: override the preset's static/dynamic setting.
        exclude_nodes: extra node-name patterns kept in fp32.
        exclude_last_layers: override how many last encoder layers stay fp32.
        optimization_level: ORTOptimizer level (0 skips graph optimization).
        validation: a preference file for the parity check and calibration (default: a sample of the
            training data's validation split, see :func:`validation_pairs`).
        validation_domain: the domain of a DSP validation file.
        validation_pairs: the most validation pairs to use.
        data_dir: the data folder for the default validation sample.
        fp32_tolerance: allowed |ONNX - PyTorch| score difference for fp32.
        max_order_change: allowed share of validation pairs whose order int8 flips.
        max_accuracy_loss: allowed drop of pairwise accuracy (a share, 0.01 = 1 point).
        accept_parity_loss: write the bundle even if the checks fail (marked in the manifest).
        threads: onnxruntime threads for the checks.
        seed: the validation sample's seed.
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
    max_order_change: float = 0.01
    max_accuracy_loss: float = 0.01
    accept_parity_loss: bool = False
    threads: int | None = None
    seed: int = 0
    extra_manifest: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.optimization_level not in (0, 1, 2):
            raise ValueError(f"optimization_level: expected 0, 1 or 2, found {self.optimization_level!r}")
        if self.validation_pairs < 10:
            raise ValueError(f"validation_pairs: expected at least 10, found {self.validation_pairs}")
        for name in ("max_order_change", "max_accuracy_loss"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: expected a share in [0, 1], found {getattr(self, name)!r}")

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
            raise ValueError("preset: expected at least one preset name")
        return out


# -- validation data ----------------------------------------------------------------------------------


def _domains_of(meta: dict[str, Any]) -> list[str]:
    found = meta.get("domains") or meta.get("domain") or meta.get("custom_domain") or []
    if isinstance(found, str):
        found = [found]
    return [d for d in found if d in DSP_DOMAINS]


def validation_pairs(
    checkpoint: str | Path, options: ExportOptions
) -> tuple[list[PreferencePair], str]:
    """The pairs of the parity check and calibration, and a description for the manifest.

    A file given in ``options.validation`` is used as is. Otherwise the validation split (10% of prompts
    by hash, as :func:`lite_rm.data.split_by_prompt` makes it for training) of the default training
    files: the DSP domains the checkpoint was trained for first, then the general sets. Either way at
    most ``validation_pairs`` pairs, sampled with a fixed seed.
    """
    if options.validation:
        pairs = load_preferences(options.validation, domain=options.validation_domain).pairs
        source = str(options.validation)
    else:
        try:
            root = resolve_data_dir(options.data_dir)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{err}; or give a validation file with --validation FILE") from None
        pairs = []
        parts = []
        for domain in _domains_of(read_meta(checkpoint)):
            pairs += split_by_prompt(load_preferences(root / DSP_TRAIN, domain=domain).pairs)[1]
            parts.append(f"{DSP_TRAIN}[{domain}]")
        for rel in GENERAL_TRAIN.values():
            pairs += split_by_prompt(load_preferences(root / rel).pairs)[1]
            parts.append(rel)
        source = "validation split (10% of prompts) of " + ", ".join(parts)
    if len(pairs) > options.validation_pairs:
        # Domain pairs come first and the sample keeps file order, so both kinds stay represented.
        keep = sorted(random.Random(options.seed).sample(range(len(pairs)), options.validation_pairs))
        pairs = [pairs[i] for i in keep]
    return pairs, source


# -- the steps ----------------------------------------------------------------------------------------


def checkpoint_digest(folder: str | Path) -> str:
    """SHA-256 over a checkpoint folder's files (names and contents), so a bundle names its source."""
    import hashlib

    folder = Path(folder)
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    return h.hexdigest()


def _onnx_export(checkpoint: Path, work: Path) -> Path:
    exporters = require("optimum.exporters.onnx")
    out = work / "raw"
    # do_validation=False: lite-rm's own parity check below is stricter and runs on real pairs.
    exporters.main_export(str(checkpoint), output=out, task="text-classification", do_validation=False,
                          local_files_only=True)
    return out / "model.onnx"


def _optimize(model: Path, level: int, attention: str = "fused") -> Path:
    if level == 0:
        return model
    onnxruntime_opt = require("optimum.onnxruntime")
    configuration = require("optimum.onnxruntime.configuration")
    optimizer = onnxruntime_opt.ORTOptimizer.from_pretrained(model.parent, file_names=[model.name])
    save = model.parent.parent / f"optimized-{attention}"
    config = configuration.OptimizationConfig(
        optimization_level=level, disable_attention_fusion=attention == "unfused",
        use_multi_head_attention=attention == "multi_head")
    optimizer.optimize(config, save_dir=save)
    return save / f"{model.stem}_optimized.onnx"


def _tokenizer_file(checkpoint: Path, work: Path) -> Path:
    path = checkpoint / TOKENIZER_FILE
    if path.is_file():
        return path
    # Only a slow tokenizer (vocab.txt) was saved: let transformers convert it to tokenizer.json.
    transformers = require("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(checkpoint), use_fast=True)
    tok.save_pretrained(work / "tok")
    if not (work / "tok" / TOKENIZER_FILE).is_file():
        raise ValueError(f"{checkpoint}: no tokenizer.json and no fast tokenizer to make one from")
    return work / "tok" / TOKENIZER_FILE


def _stage(folder: Path, model: Path, tokenizer: Path, manifest: dict[str, Any]) -> Path:
    """Put bundle files into ``folder`` (copies, so the scratch files stay usable)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, folder / MODEL_FILE)
    shutil.copyfile(tokenizer, folder / TOKENIZER_FILE)
    manifest = dict(manifest)
    manifest["files"] = {name: file_entry(folder / name) for name in (MODEL_FILE, TOKENIZER_FILE)}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return folder


def torch_scores(checkpoint: Path, tokenizer_path: Path, prompts: list[str], responses: list[str],
                 rule: InputRule, batch_size: int = 32) -> np.ndarray:
    """Scores of the PyTorch checkpoint on the same encoded inputs the Scorer builds (the reference)."""
    torch = require("torch")
    transformers = require("transformers")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(checkpoint)).eval()
    tokenizer = load_tokenizer(tokenizer_path)
    encoded = encode_pairs(tokenizer, prompts, responses, rule)
    order = np.argsort(encoded.lengths(), kind="stable")
    out = np.empty(len(encoded), dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = pad_batch(encoded, idx.tolist(), pad_id_of(tokenizer))
            logits = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits
            out[idx] = logits[:, 0].double().numpy()
    return out


def _score_bundle(folder: Path, prompts: list[str], responses: list[str], threads: int | None) -> np.ndarray:
    from lite_rm.scorer import Scorer

    return Scorer(folder, threads=threads).score_pairs(prompts, responses).astype(np.float64)


def _accuracy(chosen: np.ndarray, rejected: np.ndarray) -> float:
    return float(np.mean(chosen > rejected))


def _model_config(checkpoint: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((checkpoint / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


# -- the entry point ----------------------------------------------------------------------------------


def export_bundle(checkpoint: str | Path, output: str | Path, options: ExportOptions | None = None,
                  **kwargs: Any) -> dict[str, Any]:
    """Export a lite-rm (or any Hugging Face one-label sequence-classification) checkpoint to a bundle.

    Args:
        checkpoint: the checkpoint folder (``save_pretrained`` + tokenizer, optionally ``lite_rm.json``).
        output: the bundle folder to write (replaced atomically if it exists).
        options: see :class:`ExportOptions`; keyword arguments build one when omitted.

    Returns:
        The manifest written into the bundle.

    Raises:
        ParityError: the checks failed and ``accept_parity_loss`` is off (nothing is written).
        FileNotFoundError, ValueError: a missing checkpoint, tokenizer or validation data.
    """
    options = options or ExportOptions(**kwargs)
    checkpoint = Path(checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise FileNotFoundError(f"{checkpoint}: not a checkpoint folder (config.json is missing)")
    config = _model_config(checkpoint)
    if config.get("num_labels", len(config.get("id2label", {}) or {0: 0})) != 1:
        raise ValueError(f"{checkpoint}: a reward model has one output (num_labels=1); found {config.get('id2label')}")
    rule = input_rule_of(checkpoint)
    meta = read_meta(checkpoint)
    presets = options.resolved_presets() if options.int8 else []
    pairs, validation_source = validation_pairs(checkpoint, options)
    prompts = [p.prompt for p in pairs] * 2
    responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    n = len(pairs)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="lite-rm-export-") as tmp:
        work = Path(tmp)
        raw = _onnx_export(checkpoint, work)
        timings["onnx_export_s"] = time.perf_counter() - t0
        attention = presets[0].attention if presets else "fused"
        fp32_model = _optimize(raw, options.optimization_level, attention)
        graphs: dict[str, Path] = {attention: fp32_model}
        timings["optimize_s"] = time.perf_counter() - t0 - timings["onnx_export_s"]
        tokenizer = _tokenizer_file(checkpoint, work)
        base_manifest = {
            "format": BUNDLE_FORMAT, "format_version": FORMAT_VERSION,
            "input_rule": rule.to_dict(), "max_length": rule.max_length,
        }

        reference = torch_scores(checkpoint, tokenizer, prompts, responses, rule)
        fp32 = _score_bundle(_stage(work / "fp32", fp32_model, tokenizer, base_manifest), prompts, responses,
                             options.threads)
        max_diff = float(np.max(np.abs(fp32 - reference)))
        parity: dict[str, Any] = {
            "validation": {"source": validation_source, "pairs": n},
            "pytorch_accuracy": _accuracy(reference[:n], reference[n:]),
            "fp32": {
                "max_abs_diff": max_diff, "tolerance": options.fp32_tolerance,
                "accuracy": _accuracy(fp32[:n], fp32[n:]), "passed": max_diff <= options.fp32_tolerance,
            },
        }
        problems = []
        if max_diff > options.fp32_tolerance:
            problems.append(f"fp32 ONNX scores differ from PyTorch by up to {max_diff:.2e} "
                            f"(allowed {options.fp32_tolerance:.0e})")
        final_model, final_scores = fp32_model, fp32
        preset: QuantPreset | None = None
        attempts = []
        int8_problems: list[str] = []
        for candidate in presets:
            if candidate.attention not in graphs:
                graphs[candidate.attention] = _optimize(raw, options.optimization_level, candidate.attention)
            feeds = _calibration_feeds(tokenizer, prompts, responses, rule) if candidate.static else None
            q_model = quantize(graphs[candidate.attention], work / f"int8-{candidate.name}", candidate, feeds)
            q = _score_bundle(_stage(work / f"int8b-{candidate.name}", q_model, tokenizer, base_manifest), prompts,
                              responses, options.threads)
            ref_order = reference[:n] > reference[n:]
            agreement = float(np.mean((q[:n] > q[n:]) == ref_order))
            acc_q = _accuracy(q[:n], q[n:])
            loss = parity["pytorch_accuracy"] - acc_q
            int8_problems = []
            if 1 - agreement > options.max_order_change:
                int8_problems.append(f"int8 ({candidate.name}) flips the preference order of {1 - agreement:.1%} "
                                     f"of {n} validation pairs (allowed {options.max_order_change:.1%})")
            if loss > options.max_accuracy_loss:
                int8_problems.append(f"int8 ({candidate.name}) loses {loss * 100:.1f} points of pairwise accuracy "
                                     f"(allowed {options.max_accuracy_loss * 100:.1f})")
            result = {
                "preset": candidate.name, "order_agreement": agreement, "accuracy": acc_q, "accuracy_loss": loss,
                "max_abs_diff": float(np.max(np.abs(q - reference))),
                "max_order_change": options.max_order_change, "max_accuracy_loss": options.max_accuracy_loss,
                "passed": not int8_problems,
            }
            attempts.append(result)
            parity["int8"] = result
            preset, final_model, final_scores = candidate, q_model, q
            if not int8_problems:
                break
            logger.info("preset %s fails the parity check: %s", candidate.name, "; ".join(int8_problems))
        timings["quantize_and_check_s"] = time.perf_counter() - t0 - sum(timings.values())
        if len(attempts) > 1:
            parity["int8_attempts"] = attempts
        problems += int8_problems
        parity["passed"] = not problems
        parity["overridden"] = bool(problems) and options.accept_parity_loss
        if problems and not options.accept_parity_loss:
            hint = ("try another preset (--preset), per-channel weights, keeping the last layers in fp32 "
                    "(--exclude-last-layers 1), or export fp32 (no --int8)") if preset else \
                "check that the checkpoint loads with transformers as a one-label sequence classifier"
            raise ParityError("parity check failed: " + "; ".join(problems) + f". Nothing was written; {hint}; "
                              "--accept-parity-loss writes it anyway, marked as such in the manifest.")
        for problem in problems:
            logger.warning("writing despite a failed parity check (--accept-parity-loss): %s", problem)

        calibration = fit_temperature(final_scores[:n], final_scores[n:])
        manifest = {
            **base_manifest,
            "created_by": f"lite-rm {_version()}",
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model_file": MODEL_FILE, "tokenizer_file": TOKENIZER_FILE,
            "precision": "int8" if preset else "fp32",
            "domains": _domains_of(meta),
            "source": {
                "checkpoint": str(checkpoint.resolve()), "sha256": checkpoint_digest(checkpoint),
                "model_type": config.get("model_type"), "lite_rm_meta": meta if (checkpoint / META_FILE).exists()
                else None,
            },
            "export": {
                "optimum_onnx": _dist_version("optimum-onnx"), "onnxruntime": _dist_version("onnxruntime"),
                "optimization_level": options.optimization_level, "timings_s": timings,
            },
            "quantization": preset.to_dict() if preset else None,
            "parity": parity,
            "calibration": calibration.to_dict(),
            **options.extra_manifest,
        }
        with atomic_dir(output) as folder:
            _stage(folder, final_model, tokenizer, manifest)
    size_mb = (Path(output) / MODEL_FILE).stat().st_size / 1e6
    logger.info("wrote %s (%s, %.1f MB)", output, manifest["precision"], size_mb)
    return json.loads((Path(output) / MANIFEST_FILE).read_text(encoding="utf-8"))


def _calibration_feeds(tokenizer: Path, prompts: list[str], responses: list[str], rule: InputRule,
                       batch_size: int = 16) -> list[dict[str, Any]]:
    tok = load_tokenizer(tokenizer)
    encoded = encode_pairs(tok, prompts, responses, rule)
    order = np.argsort(encoded.lengths(), kind="stable")
    return [pad_batch(encoded, order[i:i + batch_size].tolist(), pad_id_of(tok))
            for i in range(0, len(order), batch_size)]


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _version() -> str:
    return _dist_version("lite-rm") or "unknown"
