"""``lite-rm plot``: PNGs of a run's training curves, or of a bundle's calibration."""

from __future__ import annotations

from pathlib import Path

import click

from lite_rm.cli import fail
from lite_rm.cli.options import data_source_options, parse_columns


@click.command(context_settings={"show_default": True},
               short_help="Plot training curves or a reliability diagram.")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the PNGs. [default: FOLDER/plots]")
@click.option("--data", metavar="SOURCE",
              help="Bundle only: preference pairs for the reliability diagram (a file, datasets folder or hub "
                   "name). [default: the held-out split recorded by the bundle's checkpoint]")
@data_source_options
@click.option("--max-pairs", type=click.IntRange(min=1), default=2000,
              help="Bundle only: score at most this many pairs (a seeded sample).")
def plot(folder: Path, output: Path | None, data: str | None, data_format: str | None, split: str | None,
         columns: tuple[str, ...], skip_invalid: bool, max_pairs: int) -> None:
    """Draw a run's training curves, or a bundle's reliability diagram, as PNG files.

    For a run folder (lite-rm train's output): one PNG per stage with the loss and accuracy per logged
    step, the validation points and the step whose weights were kept, and general_kept.png (the
    general accuracy each custom model kept). For a bundle folder (lite-rm export's output):
    reliability.png, P(a preferred over b) on held-out pairs before and after Platt scaling.

    \b
    Examples:
      lite-rm plot runs/demo
      lite-rm plot bundles/academy --data held_out.jsonl -o figures/
    """
    from lite_rm.extras import require

    require("matplotlib")
    from lite_rm.jobs import plotting

    if (folder / "manifest.json").is_file():
        _plot_bundle(folder, output, data, data_format, split, columns, skip_invalid, max_pairs)
        return
    if data:
        fail(f"--data is for a bundle folder; {folder} has no manifest.json")
    try:
        written = plotting.plot_run(folder, output)
    except (OSError, ValueError) as err:  # not a run folder, or an unreadable results/metrics file: say what fits
        fail(f"{err}; give a run folder (lite-rm train -o) or a bundle folder (lite-rm export)")
    for path in written:
        click.echo(str(path))


def _plot_bundle(folder: Path, output: Path | None, data: str | None, data_format: str | None, split: str | None,
                 columns: tuple[str, ...], skip_invalid: bool, max_pairs: int) -> None:
    from lite_rm.data import load_preferences
    from lite_rm.jobs import plotting

    pairs = None
    if data:
        pairs = load_preferences(data, format=data_format, split=split, columns=parse_columns(columns) or None,
                                 skip_invalid=skip_invalid).pairs
    written = plotting.plot_bundle(folder, pairs, output, max_pairs=max_pairs)
    for path in written:
        click.echo(str(path))
