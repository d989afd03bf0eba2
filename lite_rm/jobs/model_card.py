"""The model card of a bundle shared on the Hugging Face Hub: a ``README.md`` written from its manifest.

Everything on the card comes from the manifest (what it scores, the input rule, parity, calibration,
fidelity, training data and metrics), so the card cannot disagree with the bundle it describes. Local
paths the manifest records (the checkpoint, the data files) are shown by their last part only: a card is
public, the folders of the machine that trained the model are not.
"""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any

from lite_rm.scoring.bundle import Manifest

CARD_FILE = "README.md"
DEFAULT_LICENSE = "apache-2.0"


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
        "```bash", "pip install lite-rm", "```", "",
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
    source = manifest.data.get("source")
    meta = source.get("lite_rm_meta") if isinstance(source, dict) else None
    if not isinstance(meta, dict):
        return ["## Training", "", "Not recorded in the manifest.", ""]
    lines = ["## Training", "",
             f"- Stage: {meta.get('stage', 'n/a')}, from `{_short(meta.get('base_model'))}`"
             f" ({source.get('model_type', 'n/a') if isinstance(source, dict) else 'n/a'})"]
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


def _licence(license_id: str) -> list[str]:
    return ["## Licence", "",
            f"The model is shared under `{license_id}`. The data it was trained on has its own licence, which "
            "may restrict how the model is used.", ""]


def model_card(manifest: Manifest, repo_id: str, *, license_id: str = DEFAULT_LICENSE) -> str:
    """The ``README.md`` of a Hub repository holding this bundle.

    Args:
        manifest: the bundle's parsed manifest (:func:`lite_rm.scoring.bundle.read_manifest`).
        repo_id: the repository, ``org/name`` (used in the usage examples).
        license_id: the licence identifier of the card's metadata (the Hub's ids, e.g. ``apache-2.0``).

    Returns:
        The card: YAML metadata, then Markdown sections.
    """
    parts = [_front_matter(manifest, license_id), _summary(manifest, repo_id), _usage(repo_id), _input(manifest),
             _parity(manifest), _calibration(manifest), _fidelity(manifest), _training(manifest),
             _licence(license_id)]
    return "\n".join(line for part in parts for line in part).rstrip("\n") + "\n"
