"""The validation pairs of an export's parity check and calibration: the checkpoint's held-out split.

Training records which prompts it held out (:class:`lite_rm.training.checkpoint.ValidationSplit` in
``lite_rm.json``); export reloads exactly those pairs, so neither the parity figures nor the calibration
are measured on pairs the model was trained on. ``--validation FILE`` overrides. A checkpoint without a
recorded split (older runs, plain Hugging Face models) falls back to a sample of the default data's
10%-of-prompts split, which may overlap the training pairs: a warning says so and the manifest records
``parity.validation.held_out: false``.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lite_rm.data import DSP_DOMAINS, PreferencePair, load_preferences, resolve_data_dir, split_by_prompt
from lite_rm.data.locations import DSP_TRAIN, GENERAL_TRAIN
from lite_rm.errors import ExportError
from lite_rm.exporting.options import ExportOptions
from lite_rm.training.checkpoint import read_meta, validation_split_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationPairs:
    """The pairs and where they came from.

    Attributes:
        pairs: at most ``validation_pairs`` pairs, domain sets first.
        source: a description for the manifest.
        held_out: ``True``: the checkpoint's recorded held-out split; ``False``: the fallback sample
            (may overlap training); ``None``: a file the user gave.
        set_names: the evaluation set of each pair (the recorded set's name, a DSP domain or the file).
    """

    pairs: list[PreferencePair]
    source: str
    held_out: bool | None
    set_names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "pairs": len(self.pairs), "held_out": self.held_out}


def checkpoint_domains(meta: dict[str, Any]) -> list[str]:
    """The DSP domains a checkpoint was trained for, from its ``lite_rm.json``."""
    found = meta.get("domains") or meta.get("domain") or meta.get("custom_domain") or []
    if isinstance(found, str):
        found = [found]
    return [d for d in found if d in DSP_DOMAINS]


def _set_name(pair: PreferencePair) -> str:
    """A pair's set when none was recorded: its DSP domain, else its file's name."""
    return pair.domain or Path(pair.source.split("#")[0].rsplit(":", 1)[0]).name or "validation"


def _recorded(checkpoint: Path) -> tuple[list[PreferencePair], str, list[str]] | None:
    split = validation_split_of(checkpoint)
    if split is None:
        return None
    held = split.held_out()
    # Custom (domain) sets first, then the general ones: the sample keeps file order.
    names = [s.name for s in split.sets if s.domain] + [s.name for s in split.sets if not s.domain]
    pairs = [p for name in names for p in held[name]]
    if not pairs:
        raise ExportError(f"{checkpoint}: its recorded validation split holds no pairs; give --validation FILE")
    parts = ", ".join(f"{s.name} ({s.valid_fraction:.0%} of prompts)" for s in split.sets if s.valid_fraction)
    return pairs, f"held-out split of the training data, seed {split.seed}: {parts}", \
        [name for name in names for _ in held[name]]


def _fallback(checkpoint: Path, options: ExportOptions) -> tuple[list[PreferencePair], str]:
    try:
        root = resolve_data_dir(options.data_dir)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err}; or give a validation file with --validation FILE") from None
    pairs: list[PreferencePair] = []
    parts = []
    for domain in checkpoint_domains(read_meta(checkpoint)):
        pairs += split_by_prompt(load_preferences(root / DSP_TRAIN, domain=domain).pairs)[1]
        parts.append(f"{DSP_TRAIN}[{domain}]")
    for rel in GENERAL_TRAIN.values():
        pairs += split_by_prompt(load_preferences(root / rel).pairs)[1]
        parts.append(rel)
    logger.warning("%s records no validation split (trained by an older lite-rm, or not by lite-rm): the "
                   "parity check and calibration use a 10%%-of-prompts sample of the default data that may "
                   "overlap the training pairs; give --validation FILE with pairs it never saw", checkpoint)
    return pairs, "validation split (10% of prompts, seed 0) of " + ", ".join(parts)


def validation_pairs(checkpoint: str | Path, options: ExportOptions) -> ValidationPairs:
    """The pairs of the parity check and calibration (see the module docstring for the sources).

    At most ``options.validation_pairs`` pairs, sampled with ``options.seed`` (order kept).

    Raises:
        FileNotFoundError, ExportError, lite_rm.data.DataError: missing or unreadable data.
    """
    checkpoint = Path(checkpoint)
    held_out: bool | None
    if options.validation:
        pairs = load_preferences(options.validation, domain=options.validation_domain).pairs
        source, held_out = str(options.validation), None
    elif (recorded := _recorded(checkpoint)) is not None:
        (pairs, source, names), held_out = recorded, True
    else:
        (pairs, source), held_out = _fallback(checkpoint, options), False
    if held_out is not True:
        names = [_set_name(p) for p in pairs]
    if len(pairs) > options.validation_pairs:
        # Domain pairs come first and the sample keeps file order, so both kinds stay represented.
        keep = sorted(random.Random(options.seed).sample(range(len(pairs)), options.validation_pairs))
        pairs, names = [pairs[i] for i in keep], [names[i] for i in keep]
    return ValidationPairs(pairs, source, held_out, names)
