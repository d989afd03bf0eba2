"""The ONNX steps: export the checkpoint with Optimum, fuse the graph, and prepare the files shipped
beside ``model.onnx`` (a plain ``tokenizer.json``, ``config.json`` and the tokenizer configs).

Nothing here runs code from the checkpoint: every transformers/Optimum load passes
``trust_remote_code=False``, and :func:`model_config` refuses a config whose ``auto_map`` names custom
code for an architecture transformers does not know (for a known one the ``auto_map`` is dropped).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from lite_rm.errors import ExportError
from lite_rm.extras import require
from lite_rm.files import write_json_atomic
from lite_rm.scoring.bundle import TOKENIZER_FILE
from lite_rm.scoring.runtimes import EMBEDDING_OUTPUT

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
# Tokenizer files transformers' AutoTokenizer reads beside tokenizer.json (whichever the checkpoint has).
TOKENIZER_CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def model_config(checkpoint: Path) -> dict[str, Any]:
    """The checkpoint's ``config.json``, checked: a one-label classifier without custom code.

    Raises:
        FileNotFoundError: no ``config.json``.
        ExportError: invalid JSON, more than one label, or an ``auto_map`` for an unknown architecture.
    """
    from lite_rm.training.encoders import refuse_bundle

    refuse_bundle(checkpoint)
    path = checkpoint / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{checkpoint}: not a checkpoint folder (config.json is missing)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ExportError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise ExportError(f"{path}: expected a JSON object, found {type(config).__name__}")
    if config.get("num_labels", len(config.get("id2label", {}) or {0: 0})) != 1:
        raise ExportError(f"{checkpoint}: a reward model has one output (num_labels=1); found {config.get('id2label')}")
    if "auto_map" in config:
        configuration_auto = require("transformers.models.auto.configuration_auto")
        model_type = config.get("model_type")
        if model_type not in configuration_auto.CONFIG_MAPPING:
            raise ExportError(
                f"{path}: auto_map names custom model code ({model_type!r} is not a transformers architecture); "
                "lite-rm never runs code from a checkpoint folder: export a built-in architecture")
        logger.warning("%s: ignoring auto_map (custom code is never run); exporting the built-in %s model",
                       path, model_type)
        config = {k: v for k, v in config.items() if k != "auto_map"}
    return dict(config)


def max_positions(config: dict[str, Any]) -> int | None:
    """The most tokens the model's position embeddings cover (512 for BERT), if the config says."""
    for key in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            # RoBERTa-family configs count two extra positions (padding offset) that inputs cannot use.
            return value - 2 if config.get("model_type") in ("roberta", "xlm-roberta", "camembert") else value
    return None


def _sanitize_config(folder: Path, config: dict[str, Any]) -> None:
    """Overwrite ``folder/config.json`` with the checked config (no ``auto_map``): Optimum's optimizer and
    quantizer read it with ``AutoConfig`` and no ``trust_remote_code`` argument of their own."""
    write_json_atomic(folder / CONFIG_FILE, config)


def onnx_export(checkpoint: Path, work: Path, config: dict[str, Any] | None = None) -> Path:
    """The fp32 ONNX graph of the sequence-classification model (Optimum's ``main_export``).

    Args:
        checkpoint: the checkpoint folder.
        work: a scratch folder; the graph goes to ``work/raw/model.onnx``.
        config: the checked config (:func:`model_config`), written beside the graph.

    Returns:
        The path of the graph.
    """
    exporters = require("optimum.exporters.onnx")
    from lite_rm.training.encoders import check_safetensors

    check_safetensors(checkpoint)  # Optimum's main_export would load a pickled pytorch_model.bin
    out = work / "raw"
    config = config if config is not None else model_config(checkpoint)
    # do_validation=False: lite-rm's own parity check is stricter and runs on real pairs.
    if config.get("lite_rm_pooling", "cls") != "cls":
        # lite-rm's mean-pooled forward is not the architecture's own: export the loaded model
        from lite_rm.training.modeling import load_reward_model

        model = load_reward_model(checkpoint, seed=0).eval()
        exporters.onnx_export_from_model(model, out, task="text-classification", do_validation=False)
    else:
        exporters.main_export(str(checkpoint), output=out, task="text-classification", do_validation=False,
                              local_files_only=True, trust_remote_code=False)
    _sanitize_config(out, config)
    return out / "model.onnx"


def optimize(model: Path, level: int, attention: str = "fused") -> Path:
    """Fuse the graph for CPUs with Optimum's ``ORTOptimizer`` (level 0 returns ``model`` unchanged).

    Args:
        model: the exported graph (its folder holds ``config.json``).
        level: ORTOptimizer level (1 basic, 2 + transformer fusions).
        attention: ``fused`` (one Attention node), ``multi_head`` or ``unfused`` (see the presets).

    Returns:
        The optimized graph, in ``<work>/optimized-<attention>/``.
    """
    if level == 0:
        return model
    onnxruntime_opt = require("optimum.onnxruntime")
    configuration = require("optimum.onnxruntime.configuration")
    optimizer = onnxruntime_opt.ORTOptimizer.from_pretrained(model.parent, file_names=[model.name])
    save = model.parent.parent / f"optimized-{attention}"
    config = configuration.OptimizationConfig(
        optimization_level=level, disable_attention_fusion=attention == "unfused",
        use_multi_head_attention=attention == "multi_head")
    optimizer.optimize(config, save_dir=save)
    return save / f"{model.stem}_optimized.onnx"


def bundle_tokenizer(checkpoint: Path, work: Path) -> Path:
    """A folder with the bundle's tokenizer files: ``tokenizer.json`` with truncation and padding off
    (the input rule does both; baked-in settings would make plain ``tokenizers`` users score other
    inputs) plus the tokenizer configs transformers' ``AutoTokenizer`` reads.

    Raises:
        ExportError: the checkpoint has no fast tokenizer to make ``tokenizer.json`` from.
    """
    tokenizers = require("tokenizers")
    out = work / "tokenizer"
    out.mkdir(parents=True, exist_ok=True)
    source = checkpoint
    if not (checkpoint / TOKENIZER_FILE).is_file():
        # Only a slow tokenizer (vocab.txt) was saved: let transformers convert it to tokenizer.json.
        transformers = require("transformers")
        tok = transformers.AutoTokenizer.from_pretrained(str(checkpoint), use_fast=True, trust_remote_code=False,
                                                         local_files_only=True)
        source = work / "converted"
        tok.save_pretrained(source)
        if not (source / TOKENIZER_FILE).is_file():
            raise ExportError(f"{checkpoint}: no tokenizer.json and no fast tokenizer to make one from")
    tokenizer = tokenizers.Tokenizer.from_file(str(source / TOKENIZER_FILE))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    tokenizer.save(str(out / TOKENIZER_FILE))
    for name in TOKENIZER_CONFIG_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)
    _drop_auto_map(out / "tokenizer_config.json")
    return out


def _drop_auto_map(path: Path) -> None:
    """Remove ``auto_map`` (custom tokenizer code) from a shipped config: the bundle never asks to run code."""
    if not path.is_file():
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise ExportError(f"{path}: not valid JSON") from None
    if isinstance(data, dict) and "auto_map" in data:
        del data["auto_map"]
        write_json_atomic(path, data)


def add_embedding_output(model: Path) -> tuple[int, Any, float, list[str]]:
    """Make the graph also return ``embedding``: what heads (:mod:`lite_rm.scoring.heads`) read.

    The embedding is the vector the score's last linear layer reads (BERT: the pooler's output),
    followed, when the graph has a CLS pooler, by the attention-masked mean of the last hidden states:
    the sentence-embedding view the default encoder was trained for, which lets a head on a frozen
    backbone learn styles the pooler's reward-tuned vector does not keep. Edits
    ``model`` in place (the raw export, before fusion) by adding nodes beside the existing ones, so the
    ``logits`` output is computed exactly as before. Why by hand: Optimum's exporter returns the task's
    outputs only.

    Returns:
        The embedding's size, the score layer as ``(weight (dim,), bias)`` on it (zero on the mean
        part: the default head in linear form), and what each part of the vector is.

    Raises:
        ExportError: the score is not made by a final ``Gemm`` (or ``MatMul`` + ``Add``) with constant
            weights, so there is no single linear layer to expose.
    """
    onnx = require("onnx")
    graph_model = onnx.load(str(model))
    graph = graph_model.graph
    pooled, weight, bias = _score_layer(onnx, graph, model)
    parts, inputs = ["the score layer's input"], [pooled]
    hidden = _pooler_hidden_state(graph, pooled)
    if hidden is not None and any(i.name == "attention_mask" for i in graph.input):
        graph.node.extend(_masked_mean_nodes(onnx, graph, hidden, "embedding_mean"))
        parts.append("mean of the last hidden states over the attention mask")
        inputs.append("embedding_mean")
        weight = np.concatenate([weight, np.zeros_like(weight)])
    dim = int(weight.shape[0])
    batch = graph.output[0].type.tensor_type.shape.dim[0].dim_param or "batch_size"
    graph.output.append(onnx.helper.make_tensor_value_info(EMBEDDING_OUTPUT, onnx.TensorProto.FLOAT, [batch, dim]))
    graph.node.append(onnx.helper.make_node("Concat", inputs, [EMBEDDING_OUTPUT], axis=1, name="embedding_output"))
    onnx.save(graph_model, str(model))
    return dim, weight, bias, parts


def _score_layer(onnx: Any, graph: Any, model: Path) -> tuple[str, Any, float]:
    """The input tensor, weight ``(dim,)`` and bias of the linear layer that makes the first output."""
    numpy_helper = require("onnx.numpy_helper")
    score = graph.output[0].name
    producers = {out: node for node in graph.node for out in node.output}
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    node, bias = producers.get(score), 0.0
    if node is not None and node.op_type == "Add" and node.input[0] in producers and node.input[1] in constants:
        bias = float(np.asarray(constants[node.input[1]]).reshape(-1)[0])
        node = producers[node.input[0]]
    if node is None or node.op_type not in ("Gemm", "MatMul") or node.input[1] not in constants:
        raise ExportError(f"{model}: the score {score!r} is not made by a final linear layer with constant weights; "
                         "cannot expose an embedding for heads")
    weight = np.asarray(constants[node.input[1]], dtype=np.float32)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Gemm":
        weight = weight.T if attrs.get("transB", 0) else weight
        if len(node.input) > 2 and node.input[2] in constants:
            bias = float(np.asarray(constants[node.input[2]]).reshape(-1)[0])
    if weight.ndim != 2 or weight.shape[1] != 1:
        raise ExportError(f"{model}: the last layer maps to {weight.shape[1:]} outputs; a reward model has one")
    return node.input[0], weight[:, 0].copy(), bias


def _pooler_hidden_state(graph: Any, pooled: str) -> str | None:
    """The last hidden states a CLS pooler reads (``Gather`` of position 0 on axis 1), walking back a few
    nodes from the score layer's input; ``None`` when the graph pools otherwise (mean pooling)."""
    producers = {out: node for node in graph.node for out in node.output}
    tensor = pooled
    for _ in range(4):
        node = producers.get(tensor)
        if node is None:
            return None
        if node.op_type == "Gather" and any(a.name == "axis" and a.i == 1 for a in node.attribute):
            return str(node.input[0])
        tensor = node.input[0]
    return None


def _masked_mean_nodes(onnx: Any, graph: Any, hidden: str, out: str) -> list[Any]:
    """Nodes computing ``sum(hidden * mask, 1) / sum(mask, 1)`` into ``out`` (opset 13+ axes inputs)."""
    helper = onnx.helper
    graph.initializer.extend([onnx.numpy_helper.from_array(np.array([-1], dtype=np.int64), "embedding_axis_last"),
                              onnx.numpy_helper.from_array(np.array([1], dtype=np.int64), "embedding_axis_seq")])
    return [
        helper.make_node("Cast", ["attention_mask"], ["embedding_mask"], to=onnx.TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["embedding_mask", "embedding_axis_last"], ["embedding_mask3"]),
        helper.make_node("Mul", [hidden, "embedding_mask3"], ["embedding_masked"]),
        helper.make_node("ReduceSum", ["embedding_masked", "embedding_axis_seq"], ["embedding_sum"], keepdims=0),
        helper.make_node("ReduceSum", ["embedding_mask3", "embedding_axis_seq"], ["embedding_count"], keepdims=0),
        helper.make_node("Div", ["embedding_sum", "embedding_count"], [out]),
    ]
