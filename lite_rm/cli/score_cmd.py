"""``lite-rm score``: CPU batch scoring of a JSONL/CSV file with a bundle. Torch-free (core install)."""

from __future__ import annotations

import click

from lite_rm.cli import fail


@click.command("score")
@click.argument("bundle", type=click.Path(path_type=str))
@click.option("-i", "--input", "input_path", required=True, type=click.Path(path_type=str),
              help="JSONL or CSV (optionally .gz) rows: prompt+response, or prompt+a+b.")
@click.option("-o", "--output", "output_path", required=True, type=click.Path(path_type=str),
              help="Results (JSONL, or CSV if it ends in .csv/.tsv); written as OUTPUT.partial, renamed when done.")
@click.option("--format", "input_format", type=click.Choice(["jsonl", "csv", "preferences"]), default=None,
              help="Input format (default: from the file name; .json = a preference file of any format "
                   "lite-rm loads, scored as prompt, a=chosen, b=rejected).")
@click.option("--domain", default=None, help="For a DSP preference file: the domain whose response is preferred.")
@click.option("--skip-invalid", is_flag=True, help="Skip bad rows and count them instead of stopping.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUTPUT.partial.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="onnxruntime threads (default: all cores).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Pairs per model call.")
@click.option("--prompt-field", default="prompt", show_default=True)
@click.option("--response-field", default="response", show_default=True)
@click.option("--a-field", default="a", show_default=True)
@click.option("--b-field", default="b", show_default=True)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar with rows/s.")
def score(bundle: str, input_path: str, output_path: str, input_format: str | None, domain: str | None,
          skip_invalid: bool,
          resume: bool, threads: int | None, batch_size: int, prompt_field: str, response_field: str,
          a_field: str, b_field: str, progress: bool) -> None:
    """Score a file of (prompt, response) rows, or give P(a preferred over b) for (prompt, a, b) rows.

    Streams both files, so memory stays flat whatever the input's size.
    """
    from lite_rm.batch_scoring import Fields, RowError, score_file
    from lite_rm.bundle import BundleError
    from lite_rm.scorer import Scorer

    try:
        scorer = Scorer(bundle, threads=threads, batch_size=batch_size)
        report = score_file(
            scorer, input_path, output_path, input_format=input_format,
            fields=Fields(prompt_field, response_field, a_field, b_field), skip_invalid=skip_invalid,
            resume=resume, chunk_size=max(256, 8 * batch_size), progress=progress, domain=domain,
        )
    except RowError as err:
        fail(f"{err}. Nothing is lost: fix the row (or use --skip-invalid) and rerun with --resume.")
        return
    except (BundleError, FileNotFoundError, ValueError) as err:
        fail(err)
        return
    except KeyboardInterrupt:
        fail(f"interrupted; rerun with --resume to continue from {output_path}.partial")
        return
    click.echo(f"{report.summary()} -> {output_path}", err=True)
    for message in report.first_errors:
        click.echo(f"  skipped: {message}", err=True)
