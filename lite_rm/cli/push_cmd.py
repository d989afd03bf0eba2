"""``lite-rm push``: upload a bundle to the Hugging Face Hub with a generated model card. Torch-free (core install)."""

from __future__ import annotations

import json

import click

from lite_rm.cli.options import json_option


@click.command("push", short_help="Upload a bundle to the Hugging Face Hub.")
@click.argument("bundle", type=click.Path(path_type=str))
@click.argument("repo_id", metavar="ORG/NAME")
@click.option("--private", is_flag=True, help="Create the repository private (an existing one keeps its visibility).")
@click.option("--revision", default=None, metavar="BRANCH",
              help="Push to this branch, created from main if missing [default: main].")
@click.option("--license", "license_id", default=None, metavar="ID",
              help="The licence on the model card (a Hub licence id, e.g. apache-2.0). [default: cc-by-nc-4.0 "
                   "when the training data recorded in the manifest includes DSP data or DSP's general sets, "
                   "whose licence it is; otherwise required to upload (a dry run shows 'other')]")
@click.option("--token", default=None, envvar="HF_TOKEN", show_envvar=True,
              help="A Hub token with write access [default: the one of huggingface-cli login]. Prefer the "
                   "environment variable: a flag is visible to other users in the process list.")
@click.option("-m", "--message", "commit_message", default=None, help="The commit message.")
@click.option("--card", "card_path", type=click.Path(path_type=str, allow_dash=True, dir_okay=False), default=None,
              help="Also write the model card to this file (- for stdout).")
@click.option("--dry-run", is_flag=True,
              help="Check the bundle and show the card (on stdout, or in --card) and the files; upload nothing.")
@json_option
def push(bundle: str, repo_id: str, private: bool, revision: str | None, license_id: str | None, token: str | None,
         commit_message: str | None, card_path: str | None, dry_run: bool, as_json: bool) -> None:
    """Upload BUNDLE to the Hugging Face Hub repository ORG/NAME (created if missing), with a model card.

    The card (the repository's README.md) is written from the manifest: what the model scores, its input
    rule, parity and calibration figures, fidelity if distilled, training data and metrics, licence and
    how to use it. The licence follows the training data the manifest records (DSP's: cc-by-nc-4.0)
    unless --license sets it; data of unknown licence needs --license to upload.

    The bundle is checked against its SHA-256s first and its folder is left as it is; only the files its
    manifest names travel. Others then open it by name: Scorer.from_pretrained("ORG/NAME") or
    lite-rm score ORG/NAME -i FILE -o OUT.

    \b
    Examples:
      lite-rm push runs/demo/bundle my-org/academy-rm --dry-run
      lite-rm push runs/demo/bundle my-org/academy-rm --private
      lite-rm push runs/mine/bundle my-org/mine-rm --license apache-2.0
    """
    from lite_rm.files import write_text_atomic
    from lite_rm.jobs.publishing import push_bundle

    result = push_bundle(bundle, repo_id, private=private, revision=revision, token=token, license_id=license_id,
                         commit_message=commit_message, dry_run=dry_run)
    if card_path == "-" or (dry_run and card_path is None and not as_json):
        click.echo(result.card, nl=False)
    elif card_path:
        write_text_atomic(card_path, result.card)
    if as_json:
        click.echo(json.dumps({"repo_id": result.repo_id, "files": result.files, "url": result.url,
                               "dry_run": dry_run, "license": result.license_id,
                               "license_from": result.license_from}, indent=2))
        return
    click.echo(_licence_line(result.license_id, result.license_from), err=True)
    where = "would be uploaded to" if dry_run else "uploaded to"
    click.echo(f"{len(result.files)} files {where} {repo_id}: {', '.join(result.files)}", err=True)
    if result.url:
        click.echo(f"-> {result.url}", err=True)


def _licence_line(license_id: str, origin: str) -> str:
    if origin == "not set":
        return ("licence: not set (the card says 'other' and asks the owner to set it): lite-rm knows no licence "
                "for the training data recorded in the manifest; an upload needs --license ID")
    why = " (from the training data recorded in the manifest; --license sets another)" \
        if origin == "training data" else ""
    return f"licence: {license_id}{why}"
