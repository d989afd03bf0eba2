"""Loading, running and saving the reward model (a one-label sequence-classification encoder)."""

from __future__ import annotations

import contextlib
import logging
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lite_rm.errors import ConfigError, InputError
from lite_rm.files import atomic_dir
from lite_rm.scoring.encoding import EncodedPairs, InputRule, encode_pairs, length_batches, pad_batch, pad_id_of
from lite_rm.scoring.evaluation import ScoreFn
from lite_rm.threads import resolve_threads
from lite_rm.training.checkpoint import write_meta
from lite_rm.training.config import DROPOUT_CHOICES, POOLING_CHOICES

logger = logging.getLogger(__name__)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), where autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_bf16(setting: Any, device: str | torch.device = "cpu") -> bool:
    """``auto`` -> whether ``device`` computes bf16 natively (a CUDA GPU that supports it, a CPU with
    AVX-512 BF16 or AMX; never MPS); true/false as given."""
    if setting != "auto":
        return bool(setting)
    kind = torch.device(device).type
    if kind == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return cpu_has_bf16() if kind == "cpu" else False


def mps_available() -> bool:
    """Whether Apple's Metal backend is usable (PyTorch builds without it have no ``torch.backends.mps``)."""
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(setting: str, local_rank: int = 0) -> torch.device:
    """The device of ``--device``: ``auto`` is CUDA when available, else MPS, else the CPU.

    Args:
        setting: ``auto``, ``cpu``, ``cuda`` (``cuda:N`` allowed) or ``mps``.
        local_rank: this process's index on its machine; with several processes on CUDA each takes
            the GPU of its index.

    Raises:
        ConfigError: an unknown device, or one this machine does not have (the message names the
            ``device`` key and what is available).
    """
    from lite_rm.training.config import DEVICE_CHOICES, ConfigError

    kind = setting.split(":", 1)[0]
    if kind not in DEVICE_CHOICES:
        raise ConfigError(f"config key 'device': expected one of {', '.join(DEVICE_CHOICES)}, found {setting!r}")
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"config key 'device': {setting!r} asked for, but torch finds no CUDA GPU here "
                              f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
                              "use --device cpu or auto")
        index = int(setting.split(":", 1)[1]) if ":" in setting else local_rank
        if index >= torch.cuda.device_count():
            raise ConfigError(f"config key 'device': GPU {index} asked for, but this machine has "
                              f"{torch.cuda.device_count()} (one process per GPU)")
        return torch.device("cuda", index)
    if kind == "mps" and not mps_available():
        raise ConfigError(f"config key 'device': {setting!r} asked for, but torch finds no Apple MPS device "
                          "here; use --device cpu or auto")
    return torch.device(kind)


def autocast(enabled: bool, device_type: str = "cpu") -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast (matmuls in bf16, reductions and the loss in float32) on ``device_type``."""
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=enabled)


def device_of(model: Any) -> torch.device:
    """Where a model's weights are (the CPU for a model without parameters)."""
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


# The dropout keys of BERT-family configs (BERT, MiniLM, RoBERTa, XLM-R, ELECTRA): attention
# probabilities, and hidden states (the classifier falls back to the hidden rate when its own is unset).
_ATTENTION_DROPOUT = ("attention_probs_dropout_prob",)
_HIDDEN_DROPOUT = ("hidden_dropout_prob", "classifier_dropout")
_ORIGINAL_CONFIG = "_lite_rm_original_config"  # model attribute: config values to write back on save


def dropout_overrides(path: str | Path, dropout: str) -> tuple[dict[str, float], dict[str, Any]]:
    """Config overrides that switch an encoder's dropout to ``dropout``, and the values they replace.

    ``all`` keeps the encoder's own rates; ``hidden`` turns off attention-probability dropout only;
    ``off`` turns off every dropout. Why not ``all`` on CPU: with a dropout rate, PyTorch's
    ``scaled_dot_product_attention`` leaves its fused CPU kernel for the unfused one, which is much
    slower at training lengths.
    """
    if dropout not in DROPOUT_CHOICES:
        raise ConfigError(f"dropout: expected one of {', '.join(DROPOUT_CHOICES)}, found {dropout!r}")
    if dropout == "all":
        return {}, {}
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(path), trust_remote_code=False)
    keys = _ATTENTION_DROPOUT + (_HIDDEN_DROPOUT if dropout == "off" else ())
    original = {k: getattr(config, k) for k in keys if getattr(config, k, None)}
    if not any(hasattr(config, k) for k in keys):
        logger.warning("dropout = %r: %s names none of %s; training with its own dropout rates",
                       dropout, type(config).__name__, ", ".join(keys))
    return {k: 0.0 for k in original}, original


def load_pretrained(auto_class: Any, path: str | Path, seed: int, dropout: str, **kwargs: Any) -> Any:
    """``auto_class.from_pretrained(path)`` with the seed set first and dropout as in
    :func:`dropout_overrides`; the model remembers the encoder's own rates for :func:`save_checkpoint`."""
    from transformers.utils import logging as hf_logging

    from lite_rm.training.encoders import check_safetensors

    check_safetensors(path)
    overrides, original = dropout_overrides(path, dropout)
    torch.manual_seed(seed)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized head" warnings are expected here
    try:
        # never run code shipped in a model folder (config.json auto_map), and never ask whether to
        # and never unpickle weights: safetensors only (check_safetensors said why a folder is refused)
        model = auto_class.from_pretrained(str(path), trust_remote_code=False, use_safetensors=True, **kwargs,
                                           **overrides)
    finally:
        hf_logging.set_verbosity(verbosity)
    # a saved checkpoint keeps the encoder's own dropout rates: training's choice is not the user's
    setattr(model, _ORIGINAL_CONFIG, original)
    return model


def load_reward_model(path: str | Path, seed: int, dropout: str = "all", pooling: str | None = None) -> Any:
    """A one-label sequence-classification model from a checkpoint, encoder or MLM folder.

    The seed is set first: loading an encoder creates a randomly initialized head. ``dropout`` as in
    :func:`dropout_overrides` (for training; inference runs without dropout anyway).

    Args:
        path: the folder (or hub id) to load.
        seed: set before loading.
        dropout: ``all``, ``hidden`` or ``off``.
        pooling: what a new head reads (``cls`` or ``mean``, see :func:`use_pooling`); ``None``: what
            the folder records (``cls`` when it records nothing). A reward checkpoint always keeps the
            pooling its head was trained with; asking for another one logs a warning.

    Raises:
        ValueError: not a one-label model, an unknown pooling, or mean pooling on a head that is not a
            linear layer on the pooled vector.
    """
    from transformers import AutoModelForSequenceClassification

    model = load_pretrained(AutoModelForSequenceClassification, path, seed, dropout, num_labels=1)
    if model.config.num_labels != 1:
        raise InputError(f"{path}: expected a reward model with one label, found {model.config.num_labels}")
    recorded = getattr(model.config, POOLING_KEY, None)
    trained_head = any(a.endswith("ForSequenceClassification") for a in model.config.architectures or ())
    chosen = pooling or recorded or "cls"
    if trained_head and pooling is not None and pooling != (recorded or "cls"):
        # the head's weights were fitted to one representation: reading another would score nonsense
        logger.warning("%s: its reward head was trained with pooling %r; keeping it (config asked for %r)",
                       path, recorded or "cls", pooling)
        chosen = recorded or "cls"
    use_pooling(model, chosen, where=str(path))
    return model


# config.json key recording a reward checkpoint's pooling; absent means "cls" (every checkpoint before it)
POOLING_KEY = "lite_rm_pooling"


def pooling_of(model_or_config: Any) -> str:
    """The pooling a model (or its config) scores with: ``cls`` or ``mean``."""
    config = getattr(model_or_config, "config", model_or_config)
    return str(getattr(config, POOLING_KEY, None) or "cls")


def use_pooling(model: Any, pooling: str, where: str = "model") -> Any:
    """Make a loaded sequence-classification model score with ``pooling``, in place.

    ``cls`` is the model's own forward (BERT: ``[CLS]`` -> pooler dense + tanh -> dropout ->
    classifier). ``mean`` replaces the instance's forward with the masked mean of the encoder's last
    hidden states -> the model's dropout -> the same classifier, and records ``lite_rm_pooling =
    "mean"`` in the config so that ``save_pretrained`` writes it to config.json; the class, the
    weights (the unused pooler included) and ``architectures`` stay as they are, so the folder is
    still a plain Hugging Face checkpoint.

    Raises:
        ValueError: an unknown pooling, or (``mean``) a model whose ``classifier`` is not a linear
            layer on a hidden-size vector (RoBERTa/ELECTRA-style heads, DistilBERT's pre-classifier).
    """
    if pooling not in POOLING_CHOICES:
        raise ConfigError(f"{where}: pooling: expected one of {', '.join(POOLING_CHOICES)}, found {pooling!r}")
    model.__dict__.pop("forward", None)  # back to the class's forward
    if pooling == "cls":
        if hasattr(model.config, POOLING_KEY):
            delattr(model.config, POOLING_KEY)
        return model
    head = getattr(model, "classifier", None)
    hidden = getattr(model.config, "hidden_size", None)
    if not isinstance(head, torch.nn.Linear) or head.in_features != hidden or hasattr(model, "pre_classifier"):
        raise ConfigError(
            f"{where}: pooling 'mean' needs a BERT-style head (classifier = Linear(hidden_size, 1) on the "
            f"pooled vector); {type(model).__name__} has {type(head).__name__} ({type(model.config).__name__}); "
            "use pooling = \"cls\" for this encoder"
        )
    setattr(model.config, POOLING_KEY, "mean")
    model.forward = types.MethodType(_mean_pooled_forward, model)
    return model


def _mean_pooled_forward(
    self: Any, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
    token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None, labels: torch.Tensor | None = None,
) -> Any:
    """The sequence-classification forward with mean pooling (bound to a model by :func:`use_pooling`).

    Named arguments, not ``**kwargs``: exporters (Optimum) match their inputs to this signature.
    """
    from transformers.modeling_outputs import SequenceClassifierOutput

    if labels is not None:
        raise TypeError("mean pooling returns logits only; compute the loss from them (labels not supported)")
    given = {"token_type_ids": token_type_ids, "position_ids": position_ids, "inputs_embeds": inputs_embeds}
    outputs = self.base_model(input_ids=input_ids, attention_mask=attention_mask,
                              **{k: v for k, v in given.items() if v is not None})
    hidden = outputs[0].float()  # sum in float32 even under bf16 autocast
    if attention_mask is None:
        attention_mask = torch.ones(hidden.shape[:2], device=hidden.device)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    dropout = getattr(self, "dropout", None)
    if dropout is not None:
        pooled = dropout(pooled)
    return SequenceClassifierOutput(logits=self.classifier(pooled))


def to_torch(batch: dict[str, np.ndarray], device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """A padded numpy batch as tensors, on ``device`` (``None``: the CPU)."""
    tensors = {k: torch.from_numpy(v) for k, v in batch.items()}
    return tensors if device is None else to_device(tensors, device)


def to_device(batch: dict[str, torch.Tensor], device: torch.device | str) -> dict[str, torch.Tensor]:
    """Every tensor of a batch on ``device`` (non-blocking from the CPU to a GPU)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def score_ids(model: Any, texts: EncodedPairs, ids: Sequence[int], pad_id: int, bf16: bool) -> torch.Tensor:
    """Rewards of the given texts in one forward pass (dynamic padding), shape ``(len(ids),)``, on the
    model's device (the batch is moved there)."""
    device = device_of(model)
    batch = to_torch(pad_batch(texts, list(ids), pad_id), device)
    with autocast(bf16, device.type):
        logits = model(**batch).logits
    return logits.float().squeeze(-1)


@torch.no_grad()
def score_all(
    model: Any, texts: EncodedPairs, pad_id: int, bf16: bool, batch_size: int = 64, ids: Sequence[int] | None = None
) -> np.ndarray:
    """Rewards of many texts, longest first in batches of similar length; ``(n,)`` float32."""
    was_training = model.training
    model.eval()
    ids = list(range(len(texts))) if ids is None else list(ids)
    out = np.zeros(len(ids), dtype=np.float32)
    for rows in length_batches([len(texts.input_ids[i]) for i in ids], batch_size, longest_first=True):
        out[rows] = score_ids(model, texts, [ids[r] for r in rows], pad_id, bf16).cpu().numpy()
    model.train(was_training)
    return out


def trainable_state(model: Any) -> dict[str, torch.Tensor]:
    """A detached copy of the model's weights (for best-so-far snapshots and interpolation)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def hf_tokenizer(path: str | Path) -> Any:
    """The transformers tokenizer of a folder (for saving beside a checkpoint and for MLM masking)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)


def save_checkpoint(
    model: Any, tokenizer: Any, folder: str | Path, rule: InputRule, **meta: Any
) -> Path:
    """Write a Hugging Face checkpoint (safetensors + tokenizer) and ``lite_rm.json``, atomically."""
    folder = Path(folder)
    original = getattr(model, _ORIGINAL_CONFIG, {})
    during = {k: getattr(model.config, k) for k in original}
    with atomic_dir(folder) as tmp:
        model.config.update(original)
        try:
            model.save_pretrained(tmp, safe_serialization=True)
        finally:
            model.config.update(during)
        tokenizer.model_max_length = rule.max_length
        tokenizer.save_pretrained(tmp)
        write_meta(tmp, rule, **meta)
    logger.info("saved %s", folder)
    return folder


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Use ``n`` intra-op threads inside the block, counted by :func:`~lite_rm.threads.resolve_threads`
    (a positive count as given, so an already resolved one stays; 0: free cores now; None: all usable
    cores), and restore torch's count after it.
    """
    n = resolve_threads(n)
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def torch_score_fn(model: Any, tokenizer: Any, rule: Any, bf16: bool, batch_size: int = 64) -> ScoreFn:
    """A :data:`ScoreFn` for a PyTorch reward model, with the input rule."""
    def score(prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        texts = encode_pairs(tokenizer, prompts, responses, rule)
        return score_all(model, texts, pad_id_of(tokenizer), bf16, batch_size)

    return score
