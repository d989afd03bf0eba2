"""``lite-rm distill``: a smaller student reward model trained on a teacher checkpoint's scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from lite_rm.cli.options import SectionedCommand, flag_options, flag_sections, flag_values, json_option
from lite_rm.training.config import DISTILL_FLAGS, DistillConfig


@click.command(cls=SectionedCommand, short_help="Distill a checkpoint into a smaller student.",
               sections=flag_sections(DISTILL_FLAGS, data_dir="Training"))
@click.argument("teacher", type=click.Path(path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(path_type=str), help="The student's checkpoint folder.")
@click.option("--resume", is_flag=True, help="Continue an interrupted distillation into the output folder.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing student checkpoint at --output (never another folder or the teacher).")
@json_option
@flag_options(DISTILL_FLAGS, DistillConfig())
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Where to find the teacher's recorded training files if they have moved.")
def distill(teacher: str, output: str, data_dir: str | None, resume: bool, overwrite: bool, as_json: bool,
            **flags: Any) -> None:
    """Distill TEACHER (a lite-rm checkpoint) into a smaller student with fewer encoder layers.

    The student starts as the teacher with only --layers of its encoder layers kept and learns the
    teacher's rewards (MSE, plus the pairwise term) on the texts of the teacher's training data, as
    recorded in its lite_rm.json; the held-out pairs stay out of training (they choose the best step,
    and export's parity check uses them). The result is a normal checkpoint: export it with
    `lite-rm export STUDENT -o BUNDLE --int8`, evaluate it with `lite-rm eval STUDENT`.

    \b
    Examples:
      lite-rm distill runs/demo/custom-academy -o runs/demo/student
      lite-rm distill runs/demo/custom-academy --layers 3 -o runs/demo/student-l3 --epochs 2
    """
    from lite_rm.extras import require
    from lite_rm.files import check_output
    from lite_rm.training.encoders import refuse_bundle

    refuse_bundle(teacher)
    check_output(output, "checkpoint", [teacher], overwrite, keep_existing=resume)  # before torch loads
    require("torch")
    require("transformers")
    from lite_rm.training.distill import distill as run_distill

    settings = flag_values(DISTILL_FLAGS, flags)
    summary = run_distill(teacher, output, data_dir=data_dir, resume=resume, overwrite=overwrite, **settings)
    if as_json:
        click.echo(json.dumps({"student": str(output), "training": summary}, indent=2))
        return
    held = summary.get("held_out") or {}
    line = (f"held-out pairs: order agreement with the teacher {held['agreement']:.3f}, accuracy "
            f"{held['accuracy']:.3f} (teacher {held['teacher_accuracy']:.3f})") if held else "no held-out pairs"
    layers = settings.get("layers", DistillConfig.layers)
    click.echo(f"student ({layers} layers) in {Path(output)}/: {summary['steps']} steps, "
               f"{summary['train_seconds']:.0f} s; {line}")
