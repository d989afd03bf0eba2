"""Command-line flags described as data, in a table beside the config dataclass whose keys they set.

``TRAIN_FLAGS`` (:mod:`lite_rm.training.config`) and ``EXPORT_FLAGS`` (:mod:`lite_rm.exporting.options`)
hold each flag's name, the config key it sets, its help and its section of ``--help``; the CLI
(:mod:`lite_rm.cli.options`) builds its click options from them and shows each default as the dataclass
has it, so a flag, its key, its help and its default are written once. No click here: the library does
not depend on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from typing import Any

# What a flag's value is, and how the CLI reads it:
#   text, int, float, choice, folder, file: one value (int/float bounded by low/high);
#   switch: an on/off pair ("--bf16/--no-bf16"); flag: on when given;
#   csv: "a,b" as a list; list: repeatable, a list; table: repeatable NAME=VALUE, a table of strings;
#   numbers: repeatable NAME=X, a table of numbers (TOML literals).
KINDS = ("text", "int", "float", "choice", "folder", "file", "switch", "flag", "csv", "list", "table", "numbers")


@dataclass(frozen=True)
class Flag:
    """One command-line flag and the config key(s) it sets.

    Attributes:
        decls: the declarations, space-separated: ``"--l2sp-coef"``, ``"-o --output"``, ``"--bf16/--no-bf16"``.
        keys: the dotted config key it sets (``custom.l2sp_coef``), or several (``--epochs`` sets every
            reward stage's).
        help: one or two short sentences; the default is added from the dataclass.
        group: its section of ``--help``.
        kind: see :data:`KINDS`.
        choices: the values of a ``choice``, or of each item of a ``list``.
        low, high: bounds of an ``int`` or ``float`` (``low_open``, ``high_open``: the bound itself excluded).
        metavar: how ``--help`` names the value.
        default_text: shown as the default instead of the dataclass's value (``""``: none shown).
    """

    decls: str
    keys: str | tuple[str, ...]
    help: str
    group: str
    kind: str = "text"
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    metavar: str | None = None
    default_text: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"flag {self.decls}: kind {self.kind!r} is not one of {', '.join(KINDS)}")

    @property
    def key_list(self) -> tuple[str, ...]:
        return (self.keys,) if isinstance(self.keys, str) else self.keys

    @property
    def dest(self) -> str:
        """The parameter name the command receives: ``--l2sp-coef`` -> ``l2sp_coef``."""
        return self.decls.split()[-1].split("/")[0].lstrip("-").replace("-", "_")

    def default_of(self, config: Any) -> str:
        """The default to show, read from ``config`` (a dataclass instance) at this flag's keys."""
        if self.default_text is not None:
            return self.default_text
        values = [_get(config, key) for key in self.key_list]
        shown = [self._show(v) for v in values]
        if len(set(shown)) == 1:
            return shown[0]
        return ", ".join(f"{key.split('.')[0]} {text}" for key, text in zip(self.key_list, shown, strict=True))

    def _show(self, value: Any) -> str:
        if self.kind == "switch" and isinstance(value, bool):
            on, off = self.decls.split()[-1].split("/")
            return on if value else off
        if value is None or value is False or value in ("", (), [], {}):
            return ""
        if isinstance(value, (list, tuple)):
            return ",".join(str(v) for v in value)
        return str(value)


def _get(config: Any, dotted: str) -> Any:
    value = config
    for part in dotted.split("."):
        if not is_dataclass(value) or part not in {f.name for f in fields(value)}:
            raise KeyError(f"{type(config).__name__} has no key {dotted!r}")
        value = getattr(value, part)
    return value
