"""``lite-rm export``: a trained checkpoint to a scoring bundle (ONNX, optionally int8)."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from lite_rm.cli import fail
from lite_rm.cli.options import json_option, threads_option

logger = logging.getLogger(__name__)


def _preset_help() -> str:
    from lite_rm.exporting.quantization import available_presets

    return ", ".join(["auto", *available_presets()])


def _default_preset() -> str:
    from lite_rm.exporting.options import DEFAULT_PRESET

    return DEFAULT_PRESET


@click.command("export")
@click.argument("checkpoint", type=click.Path(file_okay=False, path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(path_type=str),
              help="Bundle folder to write: a new or empty folder, or a bundle to replace with --overwrite.")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle at --output (atomically, at the end).")
@click.option("--int8", is_flag=True, help="Quantize to int8 (see --preset).")
@click.option("--preset", default=_default_preset(), show_default=True,
              help=f"Quantization preset: {_preset_help()} (auto: the dynamic preset for this CPU), or a "
                   ".toml file; several, comma-separated, are tried in order and the first that passes the "
                   "parity check is kept (see export/README.md).")
@click.option("--per-channel/--per-tensor", default=None, help="Override the preset's weight granularity.")
@click.option("--static", "static", flag_value=True, default=None,
              help="Static quantization: activation ranges calibrated on the validation pairs.")
@click.option("--exclude-nodes", multiple=True, metavar="REGEX",
              help="Keep nodes whose name matches in fp32 (repeatable).")
@click.option("--exclude-last-layers", type=click.IntRange(min=0), default=None,
              help="Keep the last N encoder layers in fp32 (overrides the preset).")
@click.option("--optimization-level", type=click.IntRange(0, 2), default=2, show_default=True,
              help="onnxruntime graph optimization (0: none, 1: basic, 2: + transformer fusions).")
@click.option("--validation", type=click.Path(dir_okay=True, path_type=str), default=None,
              help="Preference file for the parity check and calibration (default: validation split of "
                   "the training data in the data folder).")
@click.option("--validation-domain", default=None, help="Domain of a DSP validation file.")
@click.option("--validation-pairs", type=click.IntRange(min=10), default=512, show_default=True,
              help="Most validation pairs to use.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Data folder for the default validation sample (else $LITE_RM_DATA, else ../shared/data).")
@click.option("--min-confident-agreement", type=click.FloatRange(0, 1), default=0.99, show_default=True,
              help="Least share of the validation pairs PyTorch is confident about (calibrated P outside "
                   "0.5 ± --confidence-band) whose order int8 must keep.")
@click.option("--confidence-band", type=click.FloatRange(0, 0.5, max_open=True), default=0.1, show_default=True,
              help="Pairs whose calibrated P(a preferred) is within 0.5 ± this are near-ties, not confident.")
@click.option("--max-order-change", type=click.FloatRange(0, 1), default=None,
              help="Also cap the share of ALL validation pairs (near-ties included) whose order int8 flips "
                   "[default: reported, not enforced].")
@click.option("--max-accuracy-loss", type=click.FloatRange(0, 1), default=0.01, show_default=True,
              help="Largest pairwise-accuracy drop allowed for int8 (0.01 = 1 point).")
@click.option("--accept-parity-loss", is_flag=True,
              help="Write the bundle even if the parity check fails (the manifest records it).")
@click.option("--teacher-bundle", type=click.Path(file_okay=False, path_type=str), default=None,
              help="For a distilled student (lite-rm distill): its teacher's bundle; the student must pass the "
                   "fidelity gate against it on the held-out pairs (see docs/distill.md).")
@click.option("--if-unfaithful", type=click.Choice(["fail", "teacher", "keep"]), default="fail", show_default=True,
              help="When the student fails the gate: write nothing, write the teacher's bundle in its place, "
                   "or write the student anyway (marked).")
@threads_option("onnxruntime in the parity check")
@json_option
def export(checkpoint: str, output: str, overwrite: bool, int8: bool, preset: str, per_channel: bool | None,
           static: bool | None, exclude_nodes: tuple[str, ...], exclude_last_layers: int | None,
           optimization_level: int,
           validation: str | None, validation_domain: str | None, validation_pairs: int, data_dir: str | None,
           min_confident_agreement: float, confidence_band: float, max_order_change: float | None,
           max_accuracy_loss: float, accept_parity_loss: bool, teacher_bundle: str | None, if_unfaithful: str,
           threads: int, as_json: bool) -> None:
    """Export CHECKPOINT to a scoring bundle: model.onnx, tokenizer.json, manifest.json (plus config.json
    and the tokenizer configs, so Optimum and sentence-transformers load the folder too).

    The exported model is checked against PyTorch on the checkpoint's held-out validation pairs before
    anything is written; the bundle scores with `lite-rm score` or `lite_rm.Scorer` without torch.
    """
    from lite_rm.files import check_output
    from lite_rm.threads import resolve_threads

    check_output(output, "bundle", [checkpoint, teacher_bundle], overwrite)  # before the slow imports
    from lite_rm.exporting import ExportOptions, export_bundle, export_steps

    try:
        options = ExportOptions(
            int8=int8, preset=preset, per_channel=per_channel, static=static, exclude_nodes=exclude_nodes,
            exclude_last_layers=exclude_last_layers, optimization_level=optimization_level,
            validation=validation, validation_domain=validation_domain, validation_pairs=validation_pairs,
            data_dir=data_dir, min_confident_agreement=min_confident_agreement, confidence_band=confidence_band,
            max_order_change=max_order_change, max_accuracy_loss=max_accuracy_loss,
            accept_parity_loss=accept_parity_loss, threads=resolve_threads(threads),
            teacher_bundle=teacher_bundle, if_unfaithful=if_unfaithful,
        )
        with _progress_bar(export_steps(options)) as step_done:
            manifest = export_bundle(checkpoint, output, options, progress=step_done, overwrite=overwrite)
    except ValueError as err:  # a checkpoint's corrupted lite_rm.json (lite_rm.training.checkpoint)
        fail(err)
    summary = export_summary(output, manifest)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    for line in _summary_lines(summary):
        click.echo(line)
    if summary["parity"].get("overridden"):
        click.echo("  WARNING: the parity check failed; written because of --accept-parity-loss", err=True)
    if summary["calibration"].get("degenerate"):
        click.echo(f"  WARNING: degenerate calibration: {summary['calibration']['reason']}", err=True)


@contextlib.contextmanager
def _progress_bar(steps: list[str]) -> Iterator[Callable[[str], None]]:
    """A tqdm bar over the export steps (on stderr; int8 presets after the one kept are skipped)."""
    from tqdm.auto import tqdm

    with tqdm(total=len(steps), unit="step", desc="export", leave=False, file=sys.stderr) as bar:
        def step_done(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(1)

        yield step_done
        bar.update(bar.total - bar.n)


def export_summary(output: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """What ``lite-rm export`` reports (``--json`` prints it): the bundle, its size and the checks."""
    return {
        "bundle": output, "precision": manifest["precision"],
        "model_bytes": manifest["files"][manifest["model_file"]]["bytes"],
        "quantization": (manifest.get("quantization") or {}).get("name"),
        "parity": manifest["parity"], "calibration": manifest["calibration"],
        "fidelity": manifest.get("fidelity") or (manifest.get("distilled_student") or {}).get("fidelity"),
        "shipped": "teacher" if manifest.get("distilled_student") else "exported",
    }


def _summary_lines(summary: dict[str, Any]) -> list[str]:
    parity, cal = summary["parity"], summary["calibration"]
    validation = parity["validation"]
    lines = [
        f"wrote {summary['bundle']} ({summary['precision']}, {summary['model_bytes'] / 1e6:.1f} MB)",
        f"  validation: {validation['pairs']} pairs from {validation['source']}"
        + ("" if validation.get("held_out") is not False else " (may overlap training pairs)"),
        f"  fp32 ONNX vs PyTorch: max |diff| {parity['fp32']['max_abs_diff']:.1e}; "
        f"accuracy {parity['pytorch_accuracy']:.3f}",
    ]
    for attempt in parity.get("int8_attempts", [])[:-1]:
        lines.append(f"  int8 ({attempt['preset']}): {_agreement(attempt)}, accuracy {attempt['accuracy']:.3f}: "
                     "fails the check, next preset")
    if "int8" in parity:
        q = parity["int8"]
        lines.append(f"  int8 ({summary['quantization']}): {_agreement(q)}, "
                     f"accuracy {q['accuracy']:.3f} ({-q['accuracy_loss'] * 100:+.1f} pt)")
    lines.append(f"  calibration: temperature {cal['temperature']:.3g}, "
                 f"ECE {cal['ece_before']:.3f} -> {cal['ece_after']:.3f}")
    fidelity = summary.get("fidelity")
    if fidelity:
        verdict = "passes" if fidelity["passed"] else "FAILS"
        lines.append(f"  student vs teacher: {verdict} the fidelity gate: confident-pair agreement "
                     f"{fidelity['confident_agreement']:.3f} ({fidelity['confident_pairs']} pairs); "
                     + ", ".join(f"{k} {v['student_accuracy']:.3f} vs {v['teacher_accuracy']:.3f}"
                                 for k, v in fidelity["sets"].items()))
    if summary.get("shipped") == "teacher":
        lines.append("  the student failed the gate: this bundle is a copy of the TEACHER's bundle")
    return lines


def _agreement(check: dict[str, Any]) -> str:
    text = f"order agreement {check['order_agreement']:.3f}"
    if "confident_agreement" in check:  # bundles of earlier versions have only the overall figure
        text += f" ({check['confident_agreement']:.3f} on the {check['confident_pairs']} confident pairs)"
    return text
