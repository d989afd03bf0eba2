"""The ``lite-rm`` command line: a click group whose commands load on demand.

Each command lives in its own module and imports torch/optimum inside its body, so ``lite-rm --help``,
``lite-rm data check`` and ``lite-rm score`` work on a torch-free (core) install.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any, NoReturn

import click

# command name -> "module:attribute"; loaded only when the command runs or help lists it. `lite-rm --help`
# lists them in this order: the order of the work (data, train, eval, export, ...), not the alphabet's.
COMMANDS = {
    "data": "lite_rm.cli.data_cmd:data",
    "train": "lite_rm.cli.train_cmd:train",
    "eval": "lite_rm.cli.eval_cmd:eval_command",
    "export": "lite_rm.cli.export_cmd:export",
    "distill": "lite_rm.cli.distill_cmd:distill",
    "score": "lite_rm.cli.score_cmd:score",
    "serve": "lite_rm.cli.serve_cmd:serve",
    "personalize": "lite_rm.cli.personalize_cmd:personalize",
    "plot": "lite_rm.cli.plot_cmd:plot",
    "push": "lite_rm.cli.push_cmd:push",
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command is needed (click's docs pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *sorted(set(super().list_commands(ctx)) - set(COMMANDS))]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            module_name, attr = COMMANDS[cmd_name].split(":")
            return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        # Any error lite-rm explains (bad data, a missing extra's install hint, ...) and any file-system error
        # (a missing or unreadable file, a full disk) is one line, never a traceback; the commands do not
        # catch these themselves.
        from lite_rm.errors import LiteRMError

        try:
            return super().invoke(ctx)
        except LiteRMError as err:
            raise click.ClickException(str(err)) from None
        except BrokenPipeError:
            raise  # a closed stdout (| head): click exits quietly
        except OSError as err:
            raise click.ClickException(os_error_message(err)) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="lite-rm")
def main(verbose: int) -> None:
    """lite-rm: compact cross-encoder reward models, trained in three stages, scored fast on CPUs."""
    level = logging.WARNING - 10 * min(verbose, 2) if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def os_error_message(err: OSError) -> str:
    """``PATH: reason`` for an error the system raised, else the message lite-rm gave it."""
    if err.strerror and err.filename is not None:
        return f"{err.filename}: {err.strerror}"
    return str(err)


def fail(message: str | Exception) -> NoReturn:
    """Stop a command with a clear one-line error and exit status 1 (no traceback)."""
    raise click.ClickException(str(message))
