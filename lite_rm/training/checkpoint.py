"""Checkpoint folders: the lite-rm metadata file (``lite_rm.json``). Torch-free.

A checkpoint is a Hugging Face folder (``save_pretrained`` of a sequence-classification model with one
label, plus its tokenizer) that transformers and sentence-transformers' ``CrossEncoder`` load as is,
plus ``lite_rm.json``: the input rule and what produced it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lite_rm.data import PreferencePair, load_preferences, split_by_prompt
from lite_rm.errors import InputError
from lite_rm.files import write_json_atomic
from lite_rm.scoring.encoding import InputRule

META_FILE = "lite_rm.json"
# The keyword arguments of load_preferences a held-out set may record (how its source was read).
LOAD_OPTIONS = {"format", "split", "columns", "skip_invalid"}
META_VERSION = 1


def write_meta(folder: str | Path, input_rule: InputRule, **fields: Any) -> Path:
    """Write ``lite_rm.json`` (format version, input rule, and any extra fields) into ``folder``."""
    path = Path(folder) / META_FILE
    meta = {"format_version": META_VERSION, "input_rule": input_rule.to_dict(), **fields}
    write_json_atomic(path, meta)
    return path


def read_meta(folder: str | Path) -> dict[str, Any]:
    """Read ``lite_rm.json``; a plain Hugging Face folder without one gets the default input rule."""
    path = Path(folder) / META_FILE
    if not path.exists():
        return {"format_version": META_VERSION, "input_rule": InputRule().to_dict()}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid JSON ({err}); the checkpoint metadata is corrupted") from None
    if not isinstance(meta, dict) or "input_rule" not in meta:
        raise InputError(f"{path}: expected an object with 'input_rule', found {str(meta)[:80]}")
    return meta


def input_rule_of(folder: str | Path) -> InputRule:
    """The input rule written into a checkpoint (or the default one)."""
    return InputRule.from_dict(read_meta(folder)["input_rule"])


@dataclass(frozen=True)
class HeldOutSet:
    """One preference source of a training stage and the share of its prompts held out of training.

    Attributes:
        name: the set's name in the run (``helpful``, ``academy``, ...).
        source: the file, folder or dataset name it was loaded from, as given to the stage.
        valid_fraction: the share of prompts held out (:func:`lite_rm.data.split_by_prompt`).
        domain: for DSP data, the domain whose preference it is.
        options: how the source was read: the keyword arguments of
            :func:`lite_rm.data.load_preferences` among ``format``, ``split``, ``columns``, ``skip_invalid``.
    """

    name: str
    source: str
    valid_fraction: float
    domain: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "valid_fraction": self.valid_fraction,
                "domain": self.domain, "options": dict(self.options)}

    @classmethod
    def from_dict(cls, data: Any) -> HeldOutSet:
        if not isinstance(data, dict):
            raise InputError(f"validation_split.sets: expected objects, found {type(data).__name__}")
        fraction = data.get("valid_fraction")
        if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 <= fraction < 1:
            raise InputError(f"validation_split valid_fraction: expected a number in [0, 1), found {fraction!r}")
        for key in ("name", "source"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise InputError(f"validation_split {key}: expected a non-empty string, found {data.get(key)!r}")
        domain = data.get("domain")
        if domain is not None and not isinstance(domain, str):
            raise InputError(f"validation_split domain: expected a string or null, found {domain!r}")
        options = data.get("options") or {}
        if not isinstance(options, dict) or not set(options) <= LOAD_OPTIONS:
            raise InputError(f"validation_split options: expected an object with keys among {sorted(LOAD_OPTIONS)}, "
                             f"found {options!r:.80}")
        return cls(data["name"], data["source"], float(fraction), domain, dict(options))


@dataclass(frozen=True)
class ValidationSplit:
    """Which pairs a checkpoint never trained on: its stages' sources, held-out shares and seed.

    Training records it in ``lite_rm.json`` (key ``validation_split``); export reloads exactly these
    held-out pairs for its parity check and calibration, so neither is measured on training pairs.
    """

    seed: int
    sets: tuple[HeldOutSet, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "sets": [s.to_dict() for s in self.sets]}

    @classmethod
    def from_dict(cls, data: Any) -> ValidationSplit:
        if not isinstance(data, dict) or not isinstance(data.get("sets"), list):
            raise InputError(f"validation_split: expected an object with 'seed' and 'sets', found {data!r:.80}")
        seed = data.get("seed")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise InputError(f"validation_split seed: expected an integer, found {seed!r}")
        return cls(seed, tuple(HeldOutSet.from_dict(s) for s in data["sets"]))

    def held_out(self) -> dict[str, list[PreferencePair]]:
        """The held-out pairs of every set (loaded again and split as training split them), by name."""
        out = {}
        for s in self.sets:
            pairs = load_preferences(s.source, domain=s.domain, **s.options).pairs
            out[s.name] = split_by_prompt(pairs, s.valid_fraction, self.seed)[1] if s.valid_fraction else []
        return out


def validation_split_of(folder: str | Path) -> ValidationSplit | None:
    """The validation split recorded in a checkpoint's ``lite_rm.json`` (``None`` when it has none)."""
    data = read_meta(folder).get("validation_split")
    if data is None:
        return None
    try:
        return ValidationSplit.from_dict(data)
    except ValueError as err:
        raise InputError(f"{Path(folder) / META_FILE}: {err}") from None
