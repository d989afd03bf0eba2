"""``lite-rm distill``: a smaller student reward model trained on a teacher checkpoint's scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from lite_rm.cli import fail
from lite_rm.cli.options import json_option


@click.command(context_settings={"show_default": True})
@click.argument("teacher", type=click.Path(path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(path_type=str), help="The student's checkpoint folder.")
@click.option("--layers", type=click.IntRange(min=1), default=2, help="Encoder layers the student keeps.")
@click.option("--keep", type=click.Choice(["first", "spread"]), default="first",
              help="Which of the teacher's layers: the lowest ones, or evenly spaced ending with the last.")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=1.0,
              help="Passes over the teacher's training texts.")
@click.option("--max-steps", type=click.IntRange(min=0), default=0, help="Stop after this many steps (0: no limit).")
@click.option("--lr", type=float, default=1e-4, help="Peak learning rate (AdamW, linear warm-up and decay).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, help="Pairs per step.")
@click.option("--pair-coef", type=click.FloatRange(min=0), default=1.0,
              help="Weight of the pairwise term (the student's r(a) - r(b) toward the teacher's) beside the MSE.")
@click.option("--eval-every", type=click.IntRange(min=0), default=0,
              help="Validate on the held-out pairs every N steps (0: once per epoch); the best is kept.")
@click.option("--patience", type=click.IntRange(min=0), default=0,
              help="Stop after N validations without improvement (0: never).")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Where to find the teacher's recorded training files if they have moved.")
@click.option("--seed", type=int, default=0, help="Seed of the batch order.")
@click.option("--bf16/--no-bf16", default=None, help="bfloat16 autocast on CPU. [default: auto]")
@click.option("--threads", type=click.IntRange(min=0), default=0, help="Torch threads (0: as many as free cores).")
@click.option("--resume", is_flag=True, help="Continue an interrupted distillation into the output folder.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing student checkpoint at --output (never another folder or the teacher).")
@json_option
def distill(teacher: str, output: str, layers: int, keep: str, epochs: float, max_steps: int, lr: float,
            batch_size: int, pair_coef: float, eval_every: int, patience: int, data_dir: str | None, seed: int,
            bf16: bool | None, threads: int, resume: bool, overwrite: bool, as_json: bool) -> None:
    """Distill TEACHER (a lite-rm checkpoint) into a smaller student with fewer encoder layers.

    The student starts as the teacher with only --layers of its encoder layers kept and learns the
    teacher's rewards (MSE, plus the pairwise term) on the texts of the teacher's training data, as
    recorded in its lite_rm.json; the held-out pairs stay out of training (they choose the best step,
    and export's parity check uses them). The result is a normal checkpoint: export it with
    `lite-rm export STUDENT -o BUNDLE --int8`, evaluate it with `lite-rm eval STUDENT`.

    \b
    Examples:
      lite-rm distill runs/demo/custom-academy -o runs/demo/student-l3
      lite-rm distill runs/demo/custom-academy -o runs/demo/student-l3 --layers 3 --epochs 2
    """
    from lite_rm.extras import require
    from lite_rm.files import check_output
    from lite_rm.training.encoders import refuse_bundle

    try:
        refuse_bundle(teacher)  # a ValueError of lite_rm.training.encoders
    except ValueError as err:
        fail(err)
    check_output(output, "checkpoint", [teacher], overwrite, keep_existing=resume)  # before torch loads
    require("torch")
    require("transformers")
    from lite_rm.training.distill import distill as run_distill

    settings: dict[str, Any] = {
        "keep": keep, "epochs": epochs, "max_steps": max_steps, "lr": lr, "batch_size": batch_size,
        "pair_coef": pair_coef, "eval_every": eval_every, "patience": patience, "seed": seed,
        "bf16": "auto" if bf16 is None else bf16, "threads": threads}
    try:
        summary = run_distill(teacher, output, layers, data_dir=data_dir, resume=resume, overwrite=overwrite,
                              **settings)
    except ValueError as err:  # the distillation's own checks (--layers, the teacher's recorded data)
        fail(err)
    if as_json:
        click.echo(json.dumps({"student": str(output), "training": summary}, indent=2))
        return
    held = summary.get("held_out") or {}
    line = (f"held-out pairs: order agreement with the teacher {held['agreement']:.3f}, accuracy "
            f"{held['accuracy']:.3f} (teacher {held['teacher_accuracy']:.3f})") if held else "no held-out pairs"
    click.echo(f"student ({layers} layers) in {Path(output)}/: {summary['steps']} steps, "
               f"{summary['train_seconds']:.0f} s; {line}")
