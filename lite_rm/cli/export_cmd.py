"""``lite-rm export``: a trained checkpoint to a scoring bundle (ONNX, optionally int8)."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from lite_rm.cli.options import SectionedCommand, flag_options, flag_sections, flag_values, json_option, threads_option
from lite_rm.exporting.options import EXPORT_FLAGS, ExportOptions
from lite_rm.scoring.bundle import Manifest

logger = logging.getLogger(__name__)


def _preset_names() -> str:
    from lite_rm.exporting.quantization import available_presets

    return ", ".join(["auto", *available_presets()])


@click.command("export", cls=SectionedCommand, short_help="Export a checkpoint to an ONNX scoring bundle.",
               sections=flag_sections(EXPORT_FLAGS, threads="Parity check"))
@click.argument("checkpoint", type=click.Path(file_okay=False, path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(path_type=str),
              help="Bundle folder to write: a new or empty folder, or a bundle to replace with --overwrite.")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle at --output (atomically, at the end).")
@json_option
@flag_options(EXPORT_FLAGS, ExportOptions(), presets=_preset_names())
@threads_option("onnxruntime in the parity check")
def export(checkpoint: str, output: str, overwrite: bool, threads: int, as_json: bool, **flags: Any) -> None:
    """Export CHECKPOINT to a scoring bundle: model.onnx, tokenizer.json, manifest.json (plus config.json
    and the tokenizer configs, so Optimum and sentence-transformers load the folder too).

    The exported model is checked against PyTorch on the checkpoint's held-out validation pairs before
    anything is written; the bundle scores with `lite-rm score` or `lite_rm.Scorer` without torch.

    \b
    Examples:
      lite-rm export runs/demo/custom-academy -o bundles/academy
      lite-rm export runs/demo/custom-academy -o bundles/academy-int8 --int8
      lite-rm export runs/demo/student -o bundles/student --int8 --teacher-bundle bundles/academy-int8
    """
    from lite_rm.files import check_output
    from lite_rm.threads import resolve_threads

    check_output(output, "bundle", [checkpoint, flags.get("teacher_bundle")], overwrite)  # before the slow imports
    from lite_rm.exporting import export_bundle, export_steps

    options = ExportOptions(**flag_values(EXPORT_FLAGS, flags), threads=resolve_threads(threads))
    with _progress_bar(export_steps(options)) as step_done:
        manifest = export_bundle(checkpoint, output, options, progress=step_done, overwrite=overwrite)
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


def export_summary(output: str, manifest: Manifest) -> dict[str, Any]:
    """What ``lite-rm export`` reports (``--json`` prints it): the bundle, its size and the checks."""
    return {
        "bundle": output, "precision": manifest.precision,
        "model_bytes": manifest.files[manifest.model_file].bytes,
        "quantization": (manifest.quantization or {}).get("name"),
        "parity": manifest.parity, "calibration": manifest.calibration.to_dict(),
        "fidelity": manifest.fidelity or (manifest.distilled_student or {}).get("fidelity"),
        "shipped": "teacher" if manifest.distilled_student else "exported",
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
    return (f"order agreement {check['order_agreement']:.3f} ({check['confident_agreement']:.3f} on the "
            f"{check['confident_pairs']} confident pairs)")
