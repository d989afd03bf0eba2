"""``lite-rm personalize``: fit a user's head from a few comparisons on a bundle. Torch-free (scikit-learn)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from lite_rm.cli.options import data_source_options, json_option, parse_columns, threads_option


@click.command("personalize", short_help="Fit a head for one user from their comparisons.")
@click.argument("bundle", type=click.Path(path_type=str), metavar="BUNDLE|ORG/NAME")
@click.option("-c", "--comparisons", required=True, type=click.Path(path_type=str),
              help="The user's comparisons, in any preference format lite-rm reads (prompt/chosen/rejected "
                   "JSONL, text/score, HH-RLHF, DSP with --domain, a dataset folder or name).")
@click.option("-n", "--name", required=True, help="The head's name (then: lite-rm score --head NAME).")
@click.option("--profile", type=click.Path(path_type=str), default=None,
              help="Write the head to this file (a per-user profile an app keeps) instead of into the bundle.")
@click.option("--domain", default=None, help="For DSP data: the domain whose response is preferred.")
@data_source_options
@threads_option("encoding the comparisons")
@click.option("--seed", type=int, default=0, show_default=True, help="Recorded in the head's provenance.")
@json_option
def personalize(bundle: str, comparisons: str, name: str, profile: str | None, domain: str | None,
                data_format: str | None, split: str | None, columns: tuple[str, ...], skip_invalid: bool,
                threads: int, seed: int, as_json: bool) -> None:
    """Fit a head for one user (or domain) from their comparisons, on the bundle's frozen embedding.

    BUNDLE is a bundle folder, or a Hugging Face Hub repository ORG/NAME holding one (through the Hub's
    cache; its head then goes to --profile FILE).

    A logistic regression on embedding differences, regularized toward the bundle's own score, with the
    penalty chosen by cross-validation grouped by prompt. The head is saved atomically into BUNDLE
    (heads/, listed in the manifest) or --profile.

    \b
    Examples:
      lite-rm personalize bundles/academy -c alice.jsonl -n alice
      lite-rm personalize acme/tiny-rm -c alice.jsonl -n alice --profile alice.json
    """
    from lite_rm.data import load_preferences
    from lite_rm.scoring.heads import check_head_name
    from lite_rm.scoring.hub import is_hub_id, resolve_bundle
    from lite_rm.scoring.scorer import Scorer
    from lite_rm.threads import resolve_threads

    if profile is None and is_hub_id(bundle) and not Path(bundle).exists():
        # the Hub's cache is shared and its files are links to blobs: never write a head into it
        raise click.UsageError(f"{bundle} is a Hugging Face Hub repository: write the head to a file with "
                               "--profile FILE (then: lite-rm score ... --head FILE)")
    check_head_name(name)
    data = load_preferences(comparisons, format=data_format, domain=domain, skip_invalid=skip_invalid,
                            columns=parse_columns(columns), split=split)
    scorer = Scorer(resolve_bundle(bundle), threads=resolve_threads(threads))
    pairs = data.pairs
    report = scorer.personalize([p.prompt for p in pairs], [p.chosen for p in pairs],
                                [p.rejected for p in pairs], name, profile=profile, seed=seed)
    result = {"name": name, "bundle": bundle, "source": comparisons, "skipped": data.report.skipped_total,
              **report.to_dict()}
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    repeats = report.extra.get("duplicates_dropped", 0)
    counted = f"{report.comparisons} distinct comparisons ({repeats} repeats left out)" if repeats else \
        f"{report.comparisons} comparisons"
    click.echo(f"head {name!r}: {counted}, cross-validated accuracy {report.cv_accuracy:.3f} "
               f"({report.folds} folds by {report.groups}), default head weight {report.prior_weight:+.2f}, "
               f"fit {report.fit_s:.2f} s (+{report.embed_s:.1f} s encoding) -> {report.path}", err=True)
