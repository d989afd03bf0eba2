"""The model card of a bundle shared on the Hugging Face Hub: a ``README.md`` written from its manifest.

Everything on the card comes from the manifest (what it scores, the input rule, parity, calibration,
fidelity, training data and metrics), so the card cannot disagree with the bundle it describes. Local
paths the manifest records (the checkpoint, the data files) are shown by their last part only: a card is
public, the folders of the machine that trained the model are not. Unless the owner gives a licence, the card's
follows the training data the manifest records (DSP's data and its cleaned general sets: CC BY-NC 4.0); for
other data it is ``other`` with a line asking the owner to set one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from lite_rm.data.locations import DSP_TEST, DSP_TRAIN, GENERAL_TEST, GENERAL_TRAIN
from lite_rm.scoring.bundle import Manifest

CARD_FILE = "README.md"
NON_COMMERCIAL = "cc-by-nc-4.0"
# The card's licence when neither the owner nor the recorded training data sets one: the Hub's id for a
# licence not in its list; the card then says that the owner has not chosen one.
UNSET_LICENSE = "other"
# The data of the data folder, known by its file names (lite_rm.data.locations), and its licence: DSP's
# preferences and DSP's cleaned general sets are CC BY-NC 4.0; Anthropic's HH-RLHF upstream is MIT.
_DSP_FILES = (DSP_TRAIN, DSP_TEST)
_GENERAL_FILES = (*GENERAL_TRAIN.values(), *GENERAL_TEST.values())
_DSP_LICENCE, _HH_RLHF_LICENCE = "CC BY-NC 4.0", "MIT"


@dataclass(frozen=True)
class TrainingSet:
    """One training set a bundle's manifest records (the checkpoint's validation split), with its licence.

    Attributes:
        name: the set's name in the run (``academy``, ``helpful``, ...).
        file: the last part of its source (a public card names no local folder).
        origin: what lite-rm recognises it as (``DSP``, ...), or ``""``.
        licence: the data's licence, or ``""`` when lite-rm does not know it.
    """

    name: str
    file: str
    origin: str = ""
    licence: str = ""

    def describe(self) -> str:
        known = f", {self.origin}: {self.licence}" if self.licence else ", licence unknown"
        return f"{self.name} (`{self.file}`{known})"


def _known(source: str, domain: Any) -> tuple[str, str]:
    """(origin, licence) of a recorded source, ``("", "")`` when unknown."""
    path = source.replace("\\", "/")
    ends = path.endswith  # a recorded file is absolute: its tail names it
    if domain or any(path == rel or ends("/" + rel) for rel in _DSP_FILES):
        return "DSP", _DSP_LICENCE  # only DSP data carries a DSP domain
    if any(path == rel or ends("/" + rel) for rel in _GENERAL_FILES):
        return "DSP's cleaned general set", _DSP_LICENCE
    if "/hh-rlhf/" in f"/{path}".lower() or path.lower() == "anthropic/hh-rlhf":
        return "HH-RLHF", _HH_RLHF_LICENCE
    return "", ""


def training_sets(manifest: Manifest) -> list[TrainingSet] | None:
    """The training sets the manifest records (its checkpoint's validation split), ``None`` if not recorded."""
    meta = manifest.source.lite_rm_meta if manifest.source else None
    split = meta.get("validation_split") if meta else None
    if not isinstance(split, dict) or not isinstance(split.get("sets"), list):
        return None
    found = []
    for raw in split["sets"]:
        if isinstance(raw, dict):
            origin, licence = _known(str(raw.get("source") or ""), raw.get("domain"))
            found.append(TrainingSet(str(raw.get("name")), _short(raw.get("source")), origin, licence))
    return found


def default_license(manifest: Manifest) -> str | None:
    """The licence the recorded training data calls for: ``cc-by-nc-4.0`` when it includes DSP data or DSP's
    general sets; ``None`` (the owner must choose) when it includes neither or is not recorded."""
    sets = training_sets(manifest) or []
    return NON_COMMERCIAL if any(s.licence == _DSP_LICENCE for s in sets) else None


def _number(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "n/a"
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def _share(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"


def _short(path: Any) -> str:
    """The last part of a local path (a public card names no folder of the training machine)."""
    return PurePath(str(path).replace("\\", "/")).name if path else "n/a"


def _front_matter(manifest: Manifest, license_id: str) -> list[str]:
    tags = ["lite-rm", "reward-model", "cross-encoder", "onnx", manifest.precision]
    tags += [f"domain-{d}" for d in manifest.domains]
    return ["---", "library_name: lite-rm", f"license: {license_id}", "pipeline_tag: text-classification",
            "tags:", *[f"- {tag}" for tag in tags], "---", ""]


def _summary(manifest: Manifest, repo_id: str) -> list[str]:
    domains = ", ".join(manifest.domains) or "the preferences of its training data"
    model_bytes = manifest.files.get(manifest.model_file)
    size = f", {model_bytes.bytes / 1e6:.1f} MB" if model_bytes else ""
    heads = ", ".join(sorted(manifest.heads)) or "none (its own score only)"
    return [
        f"# {repo_id}", "",
        "A lite-rm reward model bundle: a cross-encoder that reads a "
        "(prompt, response) pair and returns one number, higher for the response that the preferences it was "
        f"trained on would choose ({domains}). It is an ONNX model ({manifest.precision}{size}) with its "
        "tokenizer and a manifest, scored on CPUs with onnxruntime, without torch.", "",
        f"- Heads: {heads}",
        f"- Made by: {manifest.data.get('created_by', 'n/a')}, {manifest.data.get('created_at', 'n/a')}", "",
    ]


def _usage(repo_id: str) -> list[str]:
    return [
        "## How to use it", "",
        "Install lite-rm as its README says (from a clone of its repository; scoring needs only the core "
        "install, without torch).", "",
        "```python", "from lite_rm import Scorer", "",
        f'scorer = Scorer.from_pretrained("{repo_id}")',
        'scorer.score("How do I peel garlic?", ["Crush each clove with the flat of a knife.", "Look it up."])',
        'scorer.predict([("How do I peel garlic?", "Crush each clove with the flat of a knife.")])',
        "```", "",
        "From the command line, on a JSONL, JSON or CSV file of `prompt` + `response` rows (or preference "
        "rows `prompt`, `chosen`, `rejected`, which get the probability that `chosen` is preferred):", "",
        "```bash", f"lite-rm score {repo_id} -i rows.jsonl -o scores.jsonl", "```", "",
        "The files are fetched once into the Hugging Face cache; `HF_HUB_OFFLINE=1` uses the cache only.", "",
    ]


def _input(manifest: Manifest) -> list[str]:
    rule = manifest.input_rule
    return [
        "## Input", "",
        f"The pair is read as a text pair of at most **{rule.max_length} tokens** (the model has "
        f"{manifest.max_positions} positions). A longer pair keeps the {rule.prompt_keep} of the prompt and the "
        f"{rule.response_keep} of the response; when both are long the response keeps at least "
        f"{rule.min_response_share:.0%} of the budget. Scores are comparable between responses to the same "
        "prompt; a score difference is turned into a preference probability by the calibration below.", "",
    ]


def _parity(manifest: Manifest) -> list[str]:
    parity = manifest.data.get("parity")
    if not isinstance(parity, dict) or not parity:
        return ["## Parity with PyTorch", "", "Not recorded in the manifest.", ""]
    lines = ["## Parity with PyTorch", "",
             "The export compared the ONNX model with the PyTorch checkpoint on held-out pairs "
             f"({_validation(parity.get('validation'))}) and kept it only if it passed.", "",
             "| model | pairwise accuracy | largest score difference | confident pairs kept in order | passed |",
             "| --- | --- | --- | --- | --- |"]
    lines.append(f"| PyTorch | {_number(parity.get('pytorch_accuracy'))} | | | |")
    for name in ("fp32", "int8"):
        row = parity.get(name)
        if isinstance(row, dict):
            agreement = row.get("confident_agreement")
            kept = "" if agreement is None else f"{_share(agreement)} of {_number(row.get('confident_pairs'))}"
            difference = _number(row.get("max_abs_diff"), 2 if name == "int8" else 7)
            lines.append(f"| ONNX {name} | {_number(row.get('accuracy'))} | {difference} | {kept} | "
                         f"{'yes' if row.get('passed') else 'no'} |")
    if parity.get("overridden"):
        lines.append("\nThe gate was **overridden** at export: the bundle was kept although a check failed.")
    quantization = manifest.data.get("quantization")
    if isinstance(quantization, dict) and quantization.get("name"):
        lines += ["", f"int8 preset: `{quantization['name']}` ({quantization.get('description', '')})."]
    return [*lines, ""]


def _validation(raw: Any) -> str:
    if not isinstance(raw, dict):
        return "pairs not recorded"
    held = "held out from training" if raw.get("held_out") else "not held out from training"
    return f"{_number(raw.get('pairs'))} pairs, {held}"


def _calibration(manifest: Manifest) -> list[str]:
    cal = manifest.calibration
    lines = ["## Calibration", ""]
    if cal.method == "none":
        return [*lines, "None: `probability` is `sigmoid(score_a - score_b)`.", ""]
    lines.append(f"P(a preferred over b) = sigmoid({cal.scale:.4f} × (score_a − score_b)), fitted by {cal.method} "
                 f"on {_number(cal.pairs)} validation pairs (pairwise accuracy {_number(cal.accuracy)}); expected "
                 f"calibration error {_number(cal.ece_before)} before, {_number(cal.ece_after)} after "
                 f"({_number(cal.ece_bins)} bins).")
    if cal.degenerate:
        lines.append(f"\n**Degenerate fit**: {cal.reason or 'no signal in the validation pairs'}.")
    return [*lines, ""]


def _fidelity(manifest: Manifest) -> list[str]:
    fidelity = manifest.data.get("fidelity")
    if not isinstance(fidelity, dict):
        return []
    lines = ["## Fidelity to its teacher", "",
             "This is a distilled student. It was compared with its teacher's bundle on held-out pairs: "
             f"confident pairs in the teacher's order {_share(fidelity.get('confident_agreement'))} of "
             f"{_number(fidelity.get('confident_pairs'))} (at least {_share(fidelity.get('min_confident_agreement'))} "
             f"required), all pairs {_share(fidelity.get('order_agreement'))}; "
             f"{'passed' if fidelity.get('passed') else 'not passed'}.", ""]
    sets = fidelity.get("sets")
    if isinstance(sets, dict) and sets:
        lines += ["| set | pairs | student accuracy | teacher accuracy |", "| --- | --- | --- | --- |"]
        lines += [f"| {name} | {_number(row.get('pairs'))} | {_number(row.get('student_accuracy'))} | "
                  f"{_number(row.get('teacher_accuracy'))} |" for name, row in sorted(sets.items())
                  if isinstance(row, dict)]
        lines.append("")
    return lines


def _training(manifest: Manifest) -> list[str]:
    source = manifest.source
    meta = source.lite_rm_meta if source else None
    if not source or not meta:
        return ["## Training", "", "Not recorded in the manifest.", ""]
    lines = ["## Training", "",
             f"- Stage: {meta.get('stage', 'n/a')}, from `{_short(meta.get('base_model'))}`"
             f" ({source.model_type or 'n/a'})"]
    training = meta.get("training")
    if isinstance(training, dict):
        lines.append(f"- {_number(training.get('train_pairs'))} training pairs, {_number(training.get('steps'))} "
                     f"steps, {_number(training.get('valid_pairs'))} validation pairs")
        held_out = training.get("held_out")
        if isinstance(held_out, dict) and "accuracy" in held_out:
            teacher = held_out.get("teacher_accuracy")
            lines.append(f"- Held-out pairwise accuracy {_number(held_out['accuracy'])}"
                         + ("" if teacher is None else f" (teacher {_number(teacher)})"))
    split = meta.get("validation_split")
    if isinstance(split, dict) and isinstance(split.get("sets"), list):
        names = [f"{s.get('name')} (`{_short(s.get('source'))}`)" for s in split["sets"] if isinstance(s, dict)]
        lines.append(f"- Data: {', '.join(names)}")
    metrics = meta.get("metrics")
    if isinstance(metrics, dict) and metrics:
        lines += ["", "Pairwise accuracy of the checkpoint on test sets:", "",
                  "| set | pairs | accuracy |", "| --- | --- | --- |"]
        lines += [f"| {name} | {_number(row.get('pairs'))} | {_number(row.get('acc'))} |"
                  for name, row in sorted(metrics.items()) if isinstance(row, dict)]
    return [*lines, ""]


def _licence(manifest: Manifest, license_id: str | None) -> list[str]:
    sets = training_sets(manifest)
    data = ("Its training data, as recorded in the manifest: " + "; ".join(s.describe() for s in sets) + "."
            if sets else "Its training data is not recorded in the manifest.")
    if license_id:
        return ["## Licence", "", f"The model is shared under `{license_id}`. {data} The data's licence may "
                "restrict how the model is used.", ""]
    derived = default_license(manifest)
    if derived:
        return ["## Licence", "", f"The model is shared under `{derived}` (non-commercial use only) because data it "
                f"was trained on is under {_DSP_LICENCE}. {data}", ""]
    return ["## Licence", "", f"**Licence not set.** {data} lite-rm does not know a licence for it and the owner "
            "has not chosen one: ask the owner before using the model. Owner: set it with "
            "`lite-rm push BUNDLE ORG/NAME --license ID` (a Hugging Face Hub licence id).", ""]


def card_license(manifest: Manifest, license_id: str | None = None) -> str:
    """The licence id of the card's metadata: ``license_id`` if given, else :func:`default_license`, else
    ``other`` (the card then says that the licence is not set)."""
    return license_id or default_license(manifest) or UNSET_LICENSE


def model_card(manifest: Manifest, repo_id: str, *, license_id: str | None = None) -> str:
    """The ``README.md`` of a Hub repository holding this bundle.

    Args:
        manifest: the bundle's parsed manifest (:func:`lite_rm.scoring.bundle.read_manifest`).
        repo_id: the repository, ``org/name`` (used in the usage examples).
        license_id: the licence identifier of the card's metadata (the Hub's ids, e.g. ``apache-2.0``);
            ``None``: the one the recorded training data calls for (:func:`default_license`), else
            ``other`` with a line asking the owner to set it.

    Returns:
        The card: YAML metadata, then Markdown sections.
    """
    parts = [_front_matter(manifest, card_license(manifest, license_id)), _summary(manifest, repo_id),
             _usage(repo_id), _input(manifest), _parity(manifest), _calibration(manifest), _fidelity(manifest),
             _training(manifest), _licence(manifest, license_id)]
    return "\n".join(line for part in parts for line in part).rstrip("\n") + "\n"
