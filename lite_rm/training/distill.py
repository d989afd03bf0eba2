"""``distill(teacher, output)``: a smaller student reward model trained on a teacher's scores.

The student starts from the teacher itself with only some of its encoder layers kept (the usual
layer-dropping start of MiniLM-L2/L4-style cross-encoders), keeps the teacher's embeddings, pooler and
reward head, and learns to reproduce the teacher's raw reward on the texts of the teacher's TRAINING
data: the sources recorded in the teacher's ``validation_split``, minus the held-out pairs, which stay
out of training and serve for early stopping here and for ``lite-rm export``'s parity check later.

The student is a normal lite-rm checkpoint (``stage: "distill"``, the teacher's input rule, path and
digest, and the teacher's own ``validation_split`` record), so ``lite-rm export`` and ``lite-rm eval``
take it as they take any checkpoint.

Which layers are kept (``keep``): ``first`` (default) keeps the lowest ``layers`` layers, ``spread``
keeps evenly spaced ones ending with the last (DistilBERT's every-other-layer start). ``first`` is the
default because dropping the top layers loses the least when a model is fine-tuned afterwards (Sajjad
et al., "On the effect of dropping layers of pre-trained transformer models", 2023), and the low layers
sit next to the embeddings they were trained with; the training here then re-fits the pooler and head
to the shorter stack.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lite_rm.data import PreferencePair, load_preferences, split_by_prompt
from lite_rm.data.locations import DSP_TRAIN, GENERAL_TRAIN
from lite_rm.errors import InputError
from lite_rm.files import check_output, folder_digest
from lite_rm.scoring.encoding import load_tokenizer, pad_id_of
from lite_rm.scoring.evaluation import order_agreement, pairwise_accuracy
from lite_rm.threads import resolve_threads
from lite_rm.training.batching import PairData, encode_preferences, plan_epochs
from lite_rm.training.checkpoint import META_FILE, ValidationSplit, input_rule_of, read_meta, validation_split_of
from lite_rm.training.config import KEEP_CHOICES, ConfigError, DistillConfig
from lite_rm.training.loop import run_loop
from lite_rm.training.modeling import (
    hf_tokenizer,
    load_reward_model,
    resolve_bf16,
    save_checkpoint,
    score_all,
    score_ids,
    torch_threads,
)

logger = logging.getLogger(__name__)

TEACHER_SCORES = "teacher_scores.safetensors"  # in the state folder: the teacher runs once per distillation


def kept_layers(teacher_layers: int, layers: int, keep: str = "first") -> list[int]:
    """The teacher's layer indices the student keeps.

    Raises:
        ValueError: ``layers`` is not smaller than the teacher's count, or ``keep`` is unknown.
    """
    if not 0 < layers < teacher_layers:
        raise ConfigError(f"--layers: expected 1 to {teacher_layers - 1} (the teacher has {teacher_layers} "
                         f"encoder layers; a student keeps fewer), found {layers}")
    if keep == "first":
        return list(range(layers))
    if keep == "spread":  # evenly spaced, the last layer included: 6 -> 3 keeps 1, 3, 5
        return sorted({round((i + 1) * teacher_layers / layers) - 1 for i in range(layers)})
    raise ConfigError(f"keep: expected one of {', '.join(KEEP_CHOICES)}, found {keep!r}")


def _layer_list(model: Any) -> torch.nn.ModuleList:
    """The encoder's layer list of a BERT-family (``encoder.layer``) or DistilBERT (``transformer.layer``) model."""
    base = model.base_model
    for owner in (getattr(base, "encoder", None), getattr(base, "transformer", None)):
        layers = getattr(owner, "layer", None)
        if isinstance(layers, torch.nn.ModuleList):
            return layers
    raise InputError(f"{type(model).__name__}: cannot find its encoder layers (expected base_model.encoder.layer "
                     "or base_model.transformer.layer); distillation supports BERT-family encoders")


def shrink(model: Any, keep: list[int]) -> Any:
    """Keep only the given encoder layers of ``model`` (in place); the config records the new count."""
    layers = _layer_list(model)
    owner = model.base_model.encoder if hasattr(model.base_model, "encoder") else model.base_model.transformer
    owner.layer = torch.nn.ModuleList([layers[i] for i in keep])
    for key in ("num_hidden_layers", "n_layers"):
        if hasattr(model.config, key):
            setattr(model.config, key, len(keep))
    return model


def relocate(split: ValidationSplit, data_dir: str | Path | None) -> ValidationSplit:
    """The split with recorded sources that are gone found again under ``data_dir`` (by the data folder's
    own layout: ``general/helpful.train.json``, ``dsp/train.json``).

    Raises:
        FileNotFoundError: a recorded file is missing and ``data_dir`` does not hold it either.
    """
    from dataclasses import replace

    known = [*GENERAL_TRAIN.values(), DSP_TRAIN]
    sets = []
    for s in split.sets:
        source = s.source
        looks_like_file = "/" in source and Path(source).suffix
        if looks_like_file and not Path(source).exists():
            tail = next((k for k in known if source.replace("\\", "/").endswith(k)), None)
            moved = Path(data_dir) / tail if data_dir and tail else None
            if moved is None or not moved.exists():
                hint = f"not under --data-dir {data_dir} either" if data_dir else "pass --data-dir DIR"
                raise FileNotFoundError(f"the teacher's training set {s.name!r} was read from {source}, which is "
                                        f"gone ({hint})")
            source = str(moved.resolve())
        sets.append(replace(s, source=source))
    return ValidationSplit(split.seed, tuple(sets))


def split_pairs(split: ValidationSplit) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """The teacher's training pairs and held-out pairs, every set loaded once and split as training split it
    (the held-out part equals :meth:`ValidationSplit.held_out`)."""
    train: list[PreferencePair] = []
    valid: list[PreferencePair] = []
    for s in split.sets:
        loaded = load_preferences(s.source, domain=s.domain, **s.options)
        tr, va = split_by_prompt(loaded.pairs, s.valid_fraction, split.seed)
        logger.info("distill: set %s: %d training pairs, %d held out", s.name, len(tr), len(va))
        train += tr
        valid += va
    return train, valid


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, chosen: torch.Tensor, rejected: torch.Tensor,
                 pair_coef: float) -> tuple[torch.Tensor, dict[str, float]]:
    """``mean((s - t)^2) + pair_coef * mean(((s_a - s_b) - (t_a - t_b))^2)`` over a batch.

    Args:
        student: the student's rewards of the batch's texts.
        teacher: the teacher's rewards of the same texts.
        chosen: rows of the preferred text of each pair.
        rejected: rows of the other text of each pair.
        pair_coef: weight of the pairwise (difference) term.

    Returns:
        The loss, and metrics: ``mse``, ``pair_mse``, ``agree`` (pairs the student orders as the teacher
        does, :func:`~lite_rm.scoring.evaluation.order_agreement`) and ``acc`` (pairs the student orders as
        the labels do, a tie counting half as in :func:`~lite_rm.scoring.evaluation.pairwise_accuracy`).
    """
    mse = torch.mean((student - teacher) ** 2)
    s_diff = student[chosen] - student[rejected]
    t_diff = teacher[chosen] - teacher[rejected]
    pair = torch.mean((s_diff - t_diff) ** 2) if len(chosen) else student.new_zeros(())
    loss = mse + pair_coef * pair if pair_coef else mse
    with torch.no_grad():
        s_np, t_np = s_diff.detach().float().cpu().numpy(), t_diff.detach().float().cpu().numpy()
        agree = order_agreement(t_np, s_np).overall  # NaN without pairs
        acc = pairwise_accuracy(s_np, np.zeros_like(s_np))
    return loss, {"mse": float(mse.detach()), "pair_mse": float(pair.detach()), "agree": agree, "acc": acc}


def _teacher_scores(teacher: Any, data: PairData, valid: PairData, pad_id: int, bf16: bool, batch: int,
                    cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's rewards of the training and held-out texts, cached in the state folder for a resume."""
    from safetensors.numpy import load_file, save_file

    if cache.is_file():
        saved = load_file(str(cache))
        if len(saved["train"]) == len(data.texts) and len(saved["valid"]) == len(valid.texts):
            return saved["train"], saved["valid"]
    logger.info("distill: scoring %d training and %d held-out texts with the teacher",
                len(data.texts), len(valid.texts))
    train_scores = score_all(teacher, data.texts, pad_id, bf16, batch)
    valid_scores = score_all(teacher, valid.texts, pad_id, bf16, batch) if len(valid.texts) else np.zeros(0, "f4")
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_file({"train": train_scores, "valid": valid_scores}, str(cache))
    return train_scores, valid_scores


def _fidelity(student: Any, valid: PairData, teacher_valid: np.ndarray, pad_id: int, bf16: bool,
              batch: int) -> dict[str, float]:
    """The student against the teacher on the held-out texts: MSE, order agreement and both accuracies."""
    if not len(valid.texts):
        return {}
    s = score_all(student, valid.texts, pad_id, bf16, batch)
    c, r = valid.pairs[:, 0], valid.pairs[:, 1]
    return {"mse": float(np.mean((s - teacher_valid) ** 2)),
            "agreement": order_agreement(teacher_valid[c] - teacher_valid[r], s[c] - s[r]).overall,
            "accuracy": pairwise_accuracy(s[c], s[r]),
            "teacher_accuracy": pairwise_accuracy(teacher_valid[c], teacher_valid[r])}


def _prepare_output(teacher: Path, output: Path, state_dir: Path, resume: bool, overwrite: bool
                    ) -> dict[str, Any] | None:
    """Check the teacher and the output folder; the finished student's summary when resuming one."""
    if not (teacher / "config.json").is_file():
        raise FileNotFoundError(f"teacher {teacher}: expected a checkpoint folder (config.json, weights, "
                                "tokenizer), found none")
    check_output(output, "checkpoint", [teacher], overwrite, keep_existing=resume)
    if resume and not overwrite and (output / META_FILE).is_file():  # finished before: nothing left to do
        return dict(read_meta(output).get("training", {}))
    if overwrite or not resume:
        shutil.rmtree(state_dir, ignore_errors=True)
    return None


def _distill_step(student: Any, data: PairData, targets: torch.Tensor, pad_id: int, bf16: bool,
                  pair_coef: float) -> Callable[[list[int]], tuple[torch.Tensor, dict[str, float], int]]:
    """A :func:`run_loop` step: the student's rewards of a batch's texts against the teacher's."""
    def step(units: list[int]) -> tuple[torch.Tensor, dict[str, float], int]:
        pair_ids = [p for u in units for p in data.units[u]]
        rows = sorted({int(t) for p in pair_ids for t in data.pairs[p]})
        local = {t: i for i, t in enumerate(rows)}
        rewards = score_ids(student, data.texts, rows, pad_id, bf16)
        chosen = torch.tensor([local[int(data.pairs[p, 0])] for p in pair_ids])
        rejected = torch.tensor([local[int(data.pairs[p, 1])] for p in pair_ids])
        loss, metrics = distill_loss(rewards, targets[rows], chosen, rejected, pair_coef)
        return loss, metrics, len(pair_ids)
    return step


def _save_student(student: Any, teacher: Path, output: Path, split: ValidationSplit, summary: dict[str, Any],
                  config: DistillConfig, keep: list[int], teacher_layers: int) -> None:
    """The student as a normal checkpoint: the teacher's input rule and held-out split, and where it came from."""
    meta = read_meta(teacher)
    save_checkpoint(student, hf_tokenizer(teacher), output, input_rule_of(teacher), stage="distill",
                    base_model=str(teacher), domains=meta.get("domains", []), training=summary,
                    validation_split=split.to_dict(),
                    teacher={"path": str(teacher.resolve()), "digest": folder_digest(teacher),
                             "layers": teacher_layers, "stage": meta.get("stage")},
                    distill=asdict(config) | {"kept_layers": keep})


def distill(teacher: str | Path, output: str | Path, layers: int = DistillConfig.layers, *,
            data_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
            **settings: Any) -> dict[str, Any]:
    """Distill ``teacher`` into a ``layers``-layer student saved at ``output``.

    The steps read in order: check the folders, load the split data, score it with the teacher, shrink
    the teacher into the student, train it (:func:`lite_rm.training.loop.run_loop`), save it.

    Args:
        teacher: a lite-rm reward checkpoint whose ``lite_rm.json`` records a ``validation_split``.
        output: the student's checkpoint folder.
        layers: encoder layers the student keeps.
        data_dir: where to find recorded training files that have moved.
        resume: continue an interrupted distillation into ``output``.
        overwrite: replace an existing student checkpoint at ``output`` (never anything else).
        **settings: other :class:`DistillConfig` fields (``epochs``, ``lr``, ``keep``, ``pair_coef``, ...).

    Returns:
        The training summary written into the student's ``lite_rm.json`` (``training``).

    Raises:
        FileNotFoundError: the teacher, or one of its recorded training files, is missing.
        OutputError: ``output`` is the teacher (or holds it, or lies in it), is not a lite-rm checkpoint,
            or is one and neither ``resume`` nor ``overwrite`` is set (a ``ValueError``).
        ConfigError: a bad setting (the message names it).
        ValueError: the teacher has no validation split, or ``layers`` is not below its layer count.
    """
    config = DistillConfig(layers=layers, **settings)
    teacher, output = Path(teacher), Path(output)
    state_dir = output.parent / ".state" / f"distill-{output.name}"
    finished = _prepare_output(teacher, output, state_dir, resume, overwrite)
    if finished is not None:
        return finished
    recorded = validation_split_of(teacher)
    if recorded is None:
        raise InputError(f"teacher {teacher}: its lite_rm.json records no validation_split, so its training "
                         "and held-out pairs are unknown; retrain it with this lite-rm version")
    split = relocate(recorded, data_dir)
    rule, bf16, batch = input_rule_of(teacher), resolve_bf16(config.bf16), config.eval_batch_size
    with torch_threads(resolve_threads(config.threads)):
        model = load_reward_model(teacher, config.seed, config.dropout)
        teacher_layers = len(_layer_list(model))
        keep = kept_layers(teacher_layers, config.layers, config.keep)
        tokenizer = load_tokenizer(teacher)
        pad_id = pad_id_of(tokenizer)
        train_pairs, valid_pairs = split_pairs(split)
        if not train_pairs:
            raise InputError(f"teacher {teacher}: its recorded training sets hold no training pairs")
        data, valid = encode_preferences(tokenizer, rule, train_pairs), encode_preferences(tokenizer, rule, valid_pairs)
        t_train, t_valid = _teacher_scores(model, data, valid, pad_id, bf16, batch, state_dir / TEACHER_SCORES)
        student = shrink(model, keep)  # the teacher's weights, layers dropped: the teacher itself is gone now
        start = _fidelity(student, valid, t_valid, pad_id, bf16, batch)
        plan, per_epoch = plan_epochs(data, config.batch_size, config.epochs, config.seed)
        logger.info("distill: %d -> %d layers (kept %s), %d training texts, %d steps", teacher_layers,
                    len(keep), keep, len(data.texts), len(plan))

        def validate() -> float:  # higher is better: the negative held-out MSE against the teacher
            return -_fidelity(student, valid, t_valid, pad_id, bf16, batch)["mse"]

        result = run_loop(modules={"model": student}, named_params=list(student.named_parameters()), plan=plan,
                          step_fn=_distill_step(student, data, torch.from_numpy(t_train), pad_id, bf16,
                                                config.pair_coef),
                          optim=config, steps_per_epoch=per_epoch,
                          validate=validate if len(valid.texts) else None, state_dir=state_dir, resume=resume,
                          log_every=config.log_every, save_every=config.save_every, desc="distill",
                          report_to=[])
        end = _fidelity(student, valid, t_valid, pad_id, bf16, batch)
    summary = result.summary() | {"train_pairs": len(train_pairs), "train_texts": len(data.texts),
                                  "valid_pairs": len(valid_pairs), "held_out_start": start, "held_out": end}
    _save_student(student, teacher, output, split, summary, config, keep, teacher_layers)
    shutil.rmtree(state_dir, ignore_errors=True)
    return summary


__all__ = ["ConfigError", "DistillConfig", "distill", "distill_loss", "kept_layers", "shrink", "split_pairs"]
