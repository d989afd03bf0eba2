"""Training configuration: plain dataclasses, validated on construction, loadable from TOML or YAML.

Every key is documented on its field. A config file holds the top-level keys plus one table per
stage (``[base]``, ``[general]``, ``[custom]``)::

    output_dir = "runs/demo"
    stages = ["base", "general", "custom"]

    [general]
    epochs = 1.0

    [custom]
    domains = ["academy"]
    listwise = true

A bad value raises :class:`ConfigError` naming the key (``custom.replay_share``), what was expected
and what was found; an unknown key lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from lite_rm.data.formats import DSP_DOMAINS, SOURCE_FORMATS
from lite_rm.errors import ConfigError
from lite_rm.flags import Flag
from lite_rm.training.metrics import REPORTERS

STAGES = ("base", "general", "custom")
DROPOUT_CHOICES = ("all", "hidden", "off")
INTERPOLATE_CHOICES = ("off", "auto")
CHOOSE_CHOICES = ("validated", "finetuned", "start")  # custom.choose (lite_rm.training.selection)
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
POOLING_CHOICES = ("cls", "mean")
KEEP_CHOICES = ("first", "spread")  # distill.keep (lite_rm.training.distill.kept_layers)

T = TypeVar("T")


def _check(ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"config key {key!r}: expected {expected}, found {value!r}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(key: str, value: Any, integer: bool = False) -> None:
    kind = "a positive integer" if integer else "a positive number"
    ok = (isinstance(value, int) and not isinstance(value, bool)) if integer else _number(value)
    _check(ok and value > 0, key, kind, value)


def _non_negative(key: str, value: Any, integer: bool = False) -> None:
    kind = "an integer >= 0" if integer else "a number >= 0"
    ok = (isinstance(value, int) and not isinstance(value, bool)) if integer else _number(value)
    _check(ok and value >= 0, key, kind, value)


def _fraction(key: str, value: Any, upper_open: bool = True) -> None:
    ok = _number(value) and 0 <= value < 1 if upper_open else _number(value) and 0 <= value <= 1
    _check(ok, key, "a number in [0, 1)" if upper_open else "a number in [0, 1]", value)


def _boolean(key: str, value: Any) -> None:
    _check(isinstance(value, bool), key, "true or false", value)


@dataclass
class OptimConfig:
    """What every training stage shares: optimizer, schedule, batch and stopping settings.

    Attributes:
        epochs: passes over the stage's training data (fractions allowed, e.g. 0.5).
        max_steps: stop after this many optimizer steps (0: no limit; for quick runs and tests).
        lr: peak learning rate of AdamW (linear warm-up, then linear decay to 0).
        batch_size: pairs per step (lists per step when listwise; texts per step for the base stage).
        warmup: share of the steps spent warming up the learning rate.
        weight_decay: AdamW weight decay (not applied to biases and LayerNorm weights).
        max_grad_norm: gradient clipping norm (0: off).
        valid_fraction: share of prompts held out (by a hash of the prompt) as a validation split,
            used for early stopping, checkpoint selection and weight interpolation; 0 disables.
        eval_every: validate every this many steps (0: once per epoch).
        patience: stop after this many validations without improvement (0: never stop early).
        head_lr_scale: the reward head's (pooler and classifier) learning rate as a multiple of
            ``lr``; a new head is tiny and needs a larger rate to reach a useful reward scale.
    """

    epochs: float = 1.0
    max_steps: int = 0
    lr: float = 3e-5
    batch_size: int = 16
    warmup: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    valid_fraction: float = 0.0
    eval_every: int = 0
    patience: int = 0
    head_lr_scale: float = 1.0

    def _validate(self, prefix: str) -> None:
        _positive(f"{prefix}.epochs", self.epochs)
        _non_negative(f"{prefix}.max_steps", self.max_steps, integer=True)
        _check(_number(self.lr) and 0 < self.lr < 1, f"{prefix}.lr", "a number in (0, 1)", self.lr)
        _positive(f"{prefix}.batch_size", self.batch_size, integer=True)
        _fraction(f"{prefix}.warmup", self.warmup)
        _non_negative(f"{prefix}.weight_decay", self.weight_decay)
        _non_negative(f"{prefix}.max_grad_norm", self.max_grad_norm)
        _check(_number(self.valid_fraction) and 0 <= self.valid_fraction <= 0.5,
               f"{prefix}.valid_fraction", "a number in [0, 0.5]", self.valid_fraction)
        _non_negative(f"{prefix}.eval_every", self.eval_every, integer=True)
        _non_negative(f"{prefix}.patience", self.patience, integer=True)
        _positive(f"{prefix}.head_lr_scale", self.head_lr_scale)


@dataclass
class BaseStageConfig(OptimConfig):
    """Stage ``base``: masked-LM training continued on the text the model will judge.

    Attributes:
        mlm_probability: share of tokens masked (BERT's 15%).
        text_from: whose text to train on: ``general`` and/or ``custom`` training data.
        max_texts: use at most this many texts, sampled with the seed (0: all).
    """

    lr: float = 5e-5
    batch_size: int = 32
    mlm_probability: float = 0.15
    text_from: list[str] = field(default_factory=lambda: ["general", "custom"])
    max_texts: int = 1024

    def __post_init__(self) -> None:
        self._validate("base")
        _check(_number(self.mlm_probability) and 0 < self.mlm_probability < 1,
               "base.mlm_probability", "a number in (0, 1)", self.mlm_probability)
        _check(isinstance(self.text_from, list) and bool(self.text_from)
               and all(t in ("general", "custom") for t in self.text_from),
               "base.text_from", "a non-empty list of 'general', 'custom'", self.text_from)
        _non_negative("base.max_texts", self.max_texts, integer=True)


@dataclass
class GeneralStageConfig(OptimConfig):
    """Stage ``general`` (GRFT): Bradley-Terry loss on general preference sets, mixed.

    Attributes:
        sets: name -> preference file. Empty: helpful, harmless and WebGPT train files of the data
            folder.
        proportions: name -> how many times each of that set's pairs is used per epoch (1.0: once;
            0.5: a random half; 2.0: twice). Sets not named get 1.0. This is the mixing of
            "general preference enrichment".
        streaming: ``auto`` (stream when a set is a glob of shards or the sets hold 100,000 records or
            more), ``on`` or ``off``: read the general sets a buffer at a time so memory does not grow
            with them (:mod:`lite_rm.data.streaming`).
        buffer_pairs: pairs tokenized and grouped by length at a time when streaming.
    """

    sets: dict[str, str] = field(default_factory=dict)
    proportions: dict[str, float] = field(default_factory=dict)
    streaming: str = "auto"
    buffer_pairs: int = 8192
    # Above the usual 2e-5..4e-5: with a new reward head, smaller rates barely move the loss in one epoch.
    lr: float = 1e-4
    valid_fraction: float = 0.05

    def __post_init__(self) -> None:
        self._validate("general")
        _check(isinstance(self.sets, dict) and all(isinstance(v, str) for v in self.sets.values()),
               "general.sets", "a table of name = file path", self.sets)
        _check(isinstance(self.proportions, dict), "general.proportions", "a table of name = number",
               self.proportions)
        for name, value in self.proportions.items():
            _non_negative(f"general.proportions.{name}", value)
        if self.sets:
            unknown = sorted(set(self.proportions) - set(self.sets))
            _check(not unknown, "general.proportions", f"names among {sorted(self.sets)}", unknown)
        _check(self.streaming in ("auto", "on", "off"), "general.streaming", "'auto', 'on' or 'off'", self.streaming)
        _positive("general.buffer_pairs", self.buffer_pairs, integer=True)


@dataclass
class CustomStageConfig(OptimConfig):
    """Stage ``custom`` (CRFT): the same loss on customized preferences, keeping general ability.

    Attributes:
        domains: DSP domains to customize for, one model each (``custom-<domain>/``).
        data: preference data (a file, a ``datasets`` folder or a hub dataset name; any supported
            format) to customize on instead of DSP domains; its model is saved as ``custom-<stem>/``.
        data_format, data_split, data_columns, skip_invalid: how ``data`` is read: the format (detected
            when empty), the split of a Hugging Face dataset, field -> column name, and whether to skip
            malformed records (``lite-rm train --format/--split/--column/--skip-invalid``).
        listwise: train multi-response items (DSP: five responses, one preferred) with a softmax over
            the list instead of the paper's pairwise conversion.
        imitation_coef: weight of the masked-LM loss on the preferred responses (the paper's
            customized preference imitation learning); 0 disables.
        replay_share: share of each batch filled with general pairs (general replay); 0 disables.
        l2sp_coef: strength of the L2-SP pull of the encoder toward the stage-2 weights: the share of
            the distance removed after each step at the peak learning rate (decoupled, like AdamW's
            weight decay but toward the general weights), in [0, 1); 0 disables.
        freeze_embeddings: keep the embedding layer fixed.
        freeze_layers: keep the lowest N transformer layers fixed.
        interpolate: ``off``; ``auto`` (choose the mixing weight ``alpha`` of
            ``alpha * custom + (1 - alpha) * general`` on the validation splits); or a number in
            [0, 1] used as is (default 0.5: the study's best trade-off on domains that agree with the
            general preferences).
        interpolate_tolerance: with ``auto`` and ``choose = "validated"``, the largest drop of general
            validation accuracy (vs. the start model) accepted, and at least one standard error of that
            accuracy (a smaller drop is noise); among those alphas the best custom accuracy wins.
        choose: what the stage ships (:mod:`lite_rm.training.selection`). ``validated``: the start
            model, the fine-tuned model and their mixes (the ``interpolate`` grid; with a number, that
            mix is preferred; ``off``: no mixes) are scored on the custom validation pairs and the
            general held-out pairs; a candidate other than the start model ships only if it keeps
            general validation accuracy within ``interpolate_tolerance`` and beats the start model on
            the custom validation pairs by a paired bootstrap, else the start model ships and the log
            says so. ``finetuned``: the fine-tuned model as ``interpolate`` sets it, unchecked (the
            behaviour before this key). ``start``: the start model. The choice and every candidate's
            figures go into ``lite_rm.json`` (``training.choice``) and ``results.md``. A ``multitask``
            model ships its configured interpolation (not validated yet).
        multitask: train ONE model for all ``domains`` (``custom-multitask/``): a head per domain on a
            shared encoder, the general pairs training the general head (:mod:`lite_rm.training.multitask`).
    """

    domains: list[str] = field(default_factory=lambda: ["academy"])
    data: str = ""
    data_format: str = ""
    data_split: str = ""
    skip_invalid: bool = False
    listwise: bool = True
    data_columns: dict[str, str] = field(default_factory=dict)
    # Defaults that differ from OptimConfig's (lr and batch size are its own): custom data is a few
    # hundred pairs, so two passes, a larger held-out share and validation every 40 steps with early
    # stopping after two validations without gain.
    epochs: float = 2.0
    valid_fraction: float = 0.15
    eval_every: int = 40
    patience: int = 2
    # 0.5, not auto: a fixed half-way mix keeps the general model's accuracy and most of the custom gain,
    # while auto must judge accuracy drops on a small, noisy general validation split.
    interpolate: float | str = 0.5
    imitation_coef: float = 0.0
    replay_share: float = 0.0
    l2sp_coef: float = 0.0
    freeze_embeddings: bool = False
    freeze_layers: int = 0
    interpolate_tolerance: float = 0.01
    # validated: never ship weights that do not beat the start model on the user's own validation pairs
    # (fine-tuning on a user's data can make a model worse at it and at the general sets, silently)
    choose: str = "validated"
    multitask: bool = False

    def __post_init__(self) -> None:
        self._validate("custom")
        _check(isinstance(self.domains, list) and all(d in DSP_DOMAINS for d in self.domains),
               "custom.domains", f"a list of DSP domains among {list(DSP_DOMAINS)}", self.domains)
        _check(isinstance(self.data, str), "custom.data", "a file path or dataset name", self.data)
        _check(self.data_format in ("", *SOURCE_FORMATS), "custom.data_format",
               f"one of {', '.join(SOURCE_FORMATS)} (or empty: detected)", self.data_format)
        _check(isinstance(self.data_split, str), "custom.data_split", "a split name", self.data_split)
        _check(isinstance(self.data_columns, dict) and all(isinstance(v, str) for v in self.data_columns.values()),
               "custom.data_columns", "a table of field = column name", self.data_columns)
        _boolean("custom.skip_invalid", self.skip_invalid)
        _check(bool(self.domains) or bool(self.data), "custom.domains",
               "at least one domain, or custom.data", self.domains)
        _boolean("custom.listwise", self.listwise)
        _non_negative("custom.imitation_coef", self.imitation_coef)
        _check(_number(self.replay_share) and 0 <= self.replay_share < 1, "custom.replay_share",
               "a number in [0, 1)", self.replay_share)
        _check(_number(self.l2sp_coef) and 0 <= self.l2sp_coef < 1, "custom.l2sp_coef", "a number in [0, 1)",
               self.l2sp_coef)
        _boolean("custom.freeze_embeddings", self.freeze_embeddings)
        _non_negative("custom.freeze_layers", self.freeze_layers, integer=True)
        if isinstance(self.interpolate, str) and self.interpolate not in INTERPOLATE_CHOICES:
            try:
                self.interpolate = float(self.interpolate)
            except ValueError:
                pass
        value = self.interpolate
        ok = value in INTERPOLATE_CHOICES or (isinstance(value, (int, float)) and _number(value) and 0 <= value <= 1)
        _check(ok, "custom.interpolate", "'off', 'auto' or a number in [0, 1]", self.interpolate)
        _fraction("custom.interpolate_tolerance", self.interpolate_tolerance, upper_open=False)
        _check(self.choose in CHOOSE_CHOICES, "custom.choose", " or ".join(repr(c) for c in CHOOSE_CHOICES),
               self.choose)
        _boolean("custom.multitask", self.multitask)
        if self.multitask:
            combined = (("custom.data", bool(self.data)), ("interpolate = auto", self.interpolate == "auto"),
                        ("imitation_coef", self.imitation_coef > 0), ("l2sp_coef", self.l2sp_coef > 0),
                        ("freeze_embeddings", self.freeze_embeddings), ("freeze_layers", self.freeze_layers > 0))
            unsupported = [key for key, on in combined if on]
            _check(not unsupported and len(self.domains) >= 2, "custom.multitask",
                   "two or more custom.domains, without custom.data, interpolate = auto, imitation_coef, "
                   "l2sp_coef or freezing (not combined with multitask yet)",
                   f"{len(self.domains)} domain(s)" + (f", {', '.join(unsupported)}" if unsupported else ""))

    def load_options(self) -> dict[str, Any]:
        """How :attr:`data` is read: keyword arguments of :func:`lite_rm.data.load_preferences`."""
        options: dict[str, Any] = {"format": self.data_format or None, "split": self.data_split or None,
                                   "columns": dict(self.data_columns) or None, "skip_invalid": self.skip_invalid}
        return {k: v for k, v in options.items() if v}

    def targets(self) -> list[str]:
        """Names of the custom models this config trains (``custom-<name>`` folders)."""
        if self.data:
            return [Path(self.data).name.split(".")[0]]
        return ["multitask"] if self.multitask else list(self.domains)


@dataclass
class TrainConfig:
    """A whole ``lite-rm train`` run.

    Attributes:
        output_dir: where the stage checkpoints and the results table go.
        model: the encoder to start from: ``default`` (offline all-MiniLM-L6-v2), a local folder or a
            Hugging Face hub id.
        data_dir: the data folder (default: ``$LITE_RM_DATA`` or ``../shared/data``).
        stages: which stages to run, in order; a later stage starts from the last earlier stage's
            checkpoint in ``output_dir`` when present, else from ``model``.
        seed: seeds data order, masking, dropout and head initialization; same seed, same run.
        max_length: the input rule's token budget for (prompt, response).
        bf16: bfloat16 autocast: ``auto`` (on a GPU that supports it, on a CPU with native bf16), true,
            false.
        device: where training runs: ``auto`` (CUDA when available, else Apple MPS, else the CPU),
            ``cpu``, ``cuda`` (``cuda:N``), ``mps``. Checkpoints and resumable states do not depend on it.
        processes: training processes on this machine (data parallel, PyTorch DDP: one per GPU, or
            gloo processes on the CPU); each takes its share of every step's batch, so the effective
            batch stays ``batch_size``. Ignored under ``torchrun``, which sets the processes itself.
        pooling: what the reward head reads: ``cls`` (the ``[CLS]`` token through the encoder's pooler,
            as ``AutoModelForSequenceClassification`` does) or ``mean`` (the masked mean of the last
            hidden states, as sentence embedders are trained). Applies when a stage starts a new head;
            a reward checkpoint keeps the pooling it was trained with (recorded in its config.json).
        dropout: dropout while training: ``all`` (the encoder's own rates), ``hidden`` (no dropout of
            attention probabilities, which on CPU forces PyTorch's slow unfused attention), ``off``
            (none). Checkpoints keep the encoder's own rates.
        threads: torch intra-op threads (0: as many as there are free cores,
            :func:`lite_rm.threads.resolve_threads`).
        log_every: log loss / accuracy / margin / pairs/s every this many steps.
        save_every: write a resumable mid-stage checkpoint every this many steps (0: only at stage ends).
        eval_sets: name -> preference file evaluated after every stage; empty: the default test
            files (helpful, harmless, WebGPT, DSP test per domain). ``dsp`` files are evaluated for
            the custom domains with per-opponent accuracy.
        eval_batch_size: texts per forward pass in evaluation.
        report_to: where the logged metrics go besides ``RUN/.metrics/<stage>.jsonl`` (always
            written): ``tensorboard`` (``RUN/tensorboard/<stage>/``), ``wandb``; empty: nowhere else.
        base, general, custom: per-stage settings.
    """

    output_dir: str = "runs/lite-rm"
    model: str = "default"
    data_dir: str = ""
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    seed: int = 0
    max_length: int = 256
    bf16: bool | Literal["auto"] = "auto"
    # off: attention dropout forces slow unfused attention on CPU, for no accuracy gain on validation;
    # TRL's preference trainers (DPO among them) turn dropout off by default too.
    dropout: str = "off"
    pooling: str = "cls"
    threads: int = 0
    device: str = "auto"
    processes: int = 1
    log_every: int = 20
    save_every: int = 50
    eval_sets: dict[str, str] = field(default_factory=dict)
    eval_batch_size: int = 64
    report_to: list[str] = field(default_factory=list)
    base: BaseStageConfig = field(default_factory=BaseStageConfig)
    general: GeneralStageConfig = field(default_factory=GeneralStageConfig)
    custom: CustomStageConfig = field(default_factory=CustomStageConfig)

    def __post_init__(self) -> None:
        _check(isinstance(self.output_dir, str) and bool(self.output_dir), "output_dir", "a folder path",
               self.output_dir)
        _check(isinstance(self.model, str) and bool(self.model), "model", "a model folder or hub id",
               self.model)
        _check(isinstance(self.stages, list) and bool(self.stages) and all(s in STAGES for s in self.stages)
               and len(set(self.stages)) == len(self.stages),
               "stages", f"a non-empty list of distinct stages among {list(STAGES)}", self.stages)
        self.stages = [s for s in STAGES if s in self.stages]  # always run in pipeline order
        _check(isinstance(self.seed, int) and not isinstance(self.seed, bool), "seed", "an integer",
               self.seed)
        _check(isinstance(self.max_length, int) and 16 <= self.max_length <= 512, "max_length",
               "an integer in [16, 512]", self.max_length)
        _check(self.bf16 in ("auto", True, False), "bf16", "'auto', true or false", self.bf16)
        _check(self.dropout in DROPOUT_CHOICES, "dropout", " or ".join(repr(c) for c in DROPOUT_CHOICES),
               self.dropout)
        _check(self.pooling in POOLING_CHOICES, "pooling", " or ".join(repr(c) for c in POOLING_CHOICES),
               self.pooling)
        _non_negative("threads", self.threads, integer=True)
        _check(isinstance(self.device, str) and self.device.split(":", 1)[0] in DEVICE_CHOICES, "device",
               f"one of {', '.join(DEVICE_CHOICES)} (cuda:N for one GPU)", self.device)
        _positive("processes", self.processes, integer=True)
        _positive("log_every", self.log_every, integer=True)
        _non_negative("save_every", self.save_every, integer=True)
        _check(isinstance(self.eval_sets, dict) and all(isinstance(v, str) for v in self.eval_sets.values()),
               "eval_sets", "a table of name = file path", self.eval_sets)
        _positive("eval_batch_size", self.eval_batch_size, integer=True)
        _check(isinstance(self.report_to, list) and all(r in REPORTERS for r in self.report_to)
               and len(set(self.report_to)) == len(self.report_to),
               "report_to", f"a list of distinct reporters among {list(REPORTERS)}", self.report_to)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a nested dict (a parsed config file); unknown keys raise :class:`ConfigError`."""
        _check(isinstance(data, dict), "(top level)", "a table of keys", data)
        data = dict(data)
        sections = {"base": BaseStageConfig, "general": GeneralStageConfig, "custom": CustomStageConfig}
        kwargs: dict[str, Any] = {}
        for name, section_cls in sections.items():
            if name in data:
                section = data.pop(name)
                _check(isinstance(section, dict), name, "a table of keys", section)
                kwargs[name] = _build(section_cls, section, prefix=f"{name}.")
        return _build(cls, {**data, **kwargs}, prefix="", nested=set(sections))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


@dataclass
class DistillConfig(OptimConfig):
    """Settings of a distillation (the optimizer fields as in :class:`OptimConfig`).

    Attributes:
        layers: encoder layers the student keeps (fewer than the teacher has).
        keep: which layers: ``first`` (the lowest ones) or ``spread`` (evenly spaced, ending with the last).
        pair_coef: weight of the pairwise term (the student's r(a) - r(b) toward the teacher's) beside
            the MSE on the raw reward; 0: MSE only.
        seed: seeds the batch plan and dropout.
        bf16: bfloat16 autocast on CPU: ``auto`` (when the CPU computes bf16 natively), true or false.
        dropout: dropout while training, as ``lite-rm train --dropout``.
        threads: torch threads (0: as many as there are free cores).
        eval_batch_size: texts per forward pass when scoring (the teacher, validation).
        log_every: log every this many steps.
        save_every: save the resumable state every this many steps (0: never mid-run).
    """

    # 2 layers, 1 epoch: the student of `make demo`
    layers: int = 2
    keep: str = "first"
    pair_coef: float = 1.0
    epochs: float = 1.0
    lr: float = 1e-4
    batch_size: int = 32
    threads: int = 0
    eval_batch_size: int = 64
    seed: int = 0
    dropout: str = "off"  # as lite-rm train: attention dropout forces slow unfused attention on CPU
    bf16: bool | Literal["auto"] = "auto"
    log_every: int = 10
    save_every: int = 50

    def __post_init__(self) -> None:
        self._validate("distill")
        _positive("distill.layers", self.layers, integer=True)
        _check(self.keep in KEEP_CHOICES, "distill.keep", f"one of {', '.join(KEEP_CHOICES)}", self.keep)
        _non_negative("distill.pair_coef", self.pair_coef)
        _check(self.bf16 in ("auto", True, False), "distill.bf16", "auto, true or false", self.bf16)
        _check(self.dropout in DROPOUT_CHOICES, "distill.dropout", f"one of {', '.join(DROPOUT_CHOICES)}",
               self.dropout)
        _non_negative("distill.threads", self.threads, integer=True)
        _positive("distill.eval_batch_size", self.eval_batch_size, integer=True)
        _positive("distill.log_every", self.log_every, integer=True)
        _non_negative("distill.save_every", self.save_every, integer=True)


def _build(cls: type[T], data: dict[str, Any], prefix: str, nested: set[str] | None = None) -> T:
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix + unknown[0]!r}; valid keys{' in [' + prefix[:-1] + ']' if prefix else ''}: "
            f"{', '.join(n for n in names if n not in (nested or set()))}"
        )
    try:
        return cls(**data)
    except TypeError as err:  # a wrong type the checks could not name (should be rare)
        raise ConfigError(f"config {prefix[:-1] or 'top level'}: {err}") from None


# The flags of `lite-rm train` and the keys they set; the CLI is built from this table, defaults shown as
# TrainConfig has them. A flag not given leaves the key as the config file (or the default) has it.
_RUN, _DATA, _CUSTOM, _STAGES, _MACHINE = "Run", "Data", "Custom stage", "Every reward stage", "Hardware"
TRAIN_FLAGS = (
    Flag("-o --output", "output_dir", "Run folder for checkpoints and results.", _RUN),
    Flag("--model", "model", "Encoder to start from: 'default' (offline all-MiniLM-L6-v2), a folder or a hub id.",
         _RUN),
    Flag("--data-dir", "data_dir", "Data folder (else $LITE_RM_DATA or ../shared/data).", _RUN, kind="folder"),
    Flag("--stages", "stages", "Comma-separated stages to run, e.g. 'general,custom'.", _RUN, kind="csv"),
    Flag("--domain", "custom.domains", "DSP domain to customize for (repeatable).", _DATA, kind="list"),
    Flag("--custom-data", "custom.data", "Preference data to customize on instead of DSP: a file, a datasets "
         "folder or a hub dataset name (read with --format/--split/--column/--skip-invalid).", _DATA,
         metavar="SOURCE"),
    Flag("--general-set", "general.sets", "A general preference set: a file, a quoted glob of shards "
         "('shards/*.jsonl.gz'), a datasets folder or a hub dataset name (repeatable; replaces the default "
         "helpful/harmless/WebGPT). Large sets are streamed. Read in the format detected from the first record "
         "(--format, --split, --column and --skip-invalid are for --custom-data only).", _DATA, kind="table",
         metavar="NAME=SOURCE"),
    Flag("--proportion", "general.proportions", "Uses per epoch of a general set's pairs (repeatable; 1 = once).",
         _DATA, kind="numbers", metavar="NAME=X"),
    Flag("--eval-set", "eval_sets", "An evaluation set (repeatable; replaces the default test files). Read in the "
         "format detected from the first record, as --general-set is.", _DATA,
         kind="table", metavar="NAME=FILE"),
    Flag("--multitask/--one-model-per-domain", "custom.multitask", "Train ONE model for all --domain values: a "
         "head per domain on a shared encoder (custom-multitask/).", _CUSTOM, kind="switch"),
    Flag("--listwise/--pairwise", "custom.listwise", "Train DSP lists with a softmax, or as pairs.", _CUSTOM,
         kind="switch"),
    Flag("--imitation-coef", "custom.imitation_coef", "Weight of the MLM loss on preferred responses.", _CUSTOM,
         kind="float"),
    Flag("--replay-share", "custom.replay_share", "Share of each custom batch that is general pairs.", _CUSTOM,
         kind="float"),
    Flag("--l2sp-coef", "custom.l2sp_coef", "L2-SP: share of the distance to the general weights pulled back per "
         "step, in [0, 1).", _CUSTOM, kind="float"),
    Flag("--freeze-layers", "custom.freeze_layers", "Freeze the lowest N transformer layers.", _CUSTOM, kind="int"),
    Flag("--freeze-embeddings/--train-embeddings", "custom.freeze_embeddings", "Freeze the embeddings.", _CUSTOM,
         kind="switch"),
    Flag("--interpolate", "custom.interpolate", "Weight interpolation: off, auto (chosen on validation) or a "
         "number in [0, 1].", _CUSTOM),
    Flag("--choose", "custom.choose", "What the custom stage ships: validated = the fine-tuned model or a mix only "
         "if it beats the start model on the custom validation pairs (paired bootstrap) and keeps general "
         "accuracy, else the start model; finetuned = as --interpolate sets it, unchecked; start = the start "
         "model.", _CUSTOM, kind="choice", choices=CHOOSE_CHOICES),
    Flag("--epochs", ("general.epochs", "custom.epochs"), "Epochs of every reward stage.", _STAGES, kind="float"),
    Flag("--max-steps", ("base.max_steps", "general.max_steps", "custom.max_steps"),
         "Stop every stage after this many steps (0: no limit; quick runs).", _STAGES, kind="int"),
    Flag("--seed", "seed", "Seed for data order, masking, dropout and head initialization.", _STAGES, kind="int"),
    Flag("--max-length", "max_length", "Token budget of the input rule.", _STAGES, kind="int"),
    Flag("--bf16/--no-bf16", "bf16", "bfloat16 autocast (auto: on a GPU that supports it, on a CPU with native "
         "bf16).", _MACHINE, kind="switch"),
    Flag("--device", "device", "Where to train: auto = CUDA when available, else Apple MPS, else the CPU.",
         _MACHINE, kind="choice", choices=DEVICE_CHOICES),
    Flag("--processes", "processes", "Training processes on this machine (PyTorch DDP: one per GPU, or gloo "
         "processes on the CPU); every step's batch is shared out, so results match one process.", _MACHINE,
         kind="int", low=1),
    Flag("--dropout", "dropout", "Dropout while training: the encoder's own (all), none on attention (hidden), "
         "none (off).", _MACHINE, kind="choice", choices=DROPOUT_CHOICES),
    Flag("--threads", "threads", "Torch threads (0: as many as free cores).", _MACHINE, kind="int", low=0),
    Flag("--report-to", "report_to", "Also send the logged metrics to TensorBoard (RUN/tensorboard/<stage>/) or "
         "Weights & Biases (repeatable; RUN/.metrics/<stage>.jsonl is always written).", _MACHINE, kind="list",
         choices=REPORTERS),
)
# The shared data-source flags (lite_rm.cli.options.data_source_options) and the keys they set for train.
DATA_SOURCE_KEYS = {"data_format": "custom.data_format", "split": "custom.data_split",
                    "columns": "custom.data_columns", "skip_invalid": "custom.skip_invalid"}


# The flags of `lite-rm distill` and the DistillConfig fields they set (built as TRAIN_FLAGS is).
_STUDENT, _STEPS = "Student", "Training"
DISTILL_FLAGS = (
    Flag("--layers", "layers", "Encoder layers the student keeps.", _STUDENT, kind="int", low=1),
    Flag("--keep", "keep", "Which of the teacher's layers: the lowest ones, or evenly spaced ending with the last.",
         _STUDENT, kind="choice", choices=KEEP_CHOICES),
    Flag("--pair-coef", "pair_coef", "Weight of the pairwise term (the student's r(a) - r(b) toward the "
         "teacher's) beside the MSE.", _STUDENT, kind="float", low=0),
    Flag("--epochs", "epochs", "Passes over the teacher's training texts.", _STEPS, kind="float", low=0,
         low_open=True),
    Flag("--max-steps", "max_steps", "Stop after this many steps (0: no limit).", _STEPS, kind="int", low=0),
    Flag("--lr", "lr", "Peak learning rate (AdamW, linear warm-up and decay).", _STEPS, kind="float"),
    Flag("--batch-size", "batch_size", "Pairs per step.", _STEPS, kind="int", low=1),
    Flag("--eval-every", "eval_every", "Validate on the held-out pairs every N steps (0: once per epoch); the "
         "best is kept.", _STEPS, kind="int", low=0),
    Flag("--patience", "patience", "Stop after N validations without improvement (0: never).", _STEPS, kind="int",
         low=0),
    Flag("--seed", "seed", "Seed of the batch order.", _STEPS, kind="int"),
    Flag("--bf16/--no-bf16", "bf16", "bfloat16 autocast on CPU (auto: when the CPU computes bf16 natively).",
         _MACHINE, kind="switch"),
    Flag("--threads", "threads", "Torch threads (0: as many as free cores).", _MACHINE, kind="int", low=0),
)
