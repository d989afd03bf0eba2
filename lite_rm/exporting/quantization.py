"""Int8 quantization presets (``export/presets/*.toml``) and the quantizer that applies them.

A preset names the CPU family it is for (the ``AutoQuantizationConfig`` factory of Optimum), whether
weights are quantized per channel, which operator types are quantized, and which nodes stay fp32
(regular expressions on node names, e.g. the classifier head). ``export/README.md`` explains each preset
and the measurements behind its defaults. Loading presets needs only the standard library; applying
them needs the ``export`` extra (optimum-onnx).
"""

from __future__ import annotations

import logging
import platform
import re
import shutil
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from lite_rm.errors import ConfigError
from lite_rm.extras import require
from lite_rm.files import TOMLDecodeError, parse_toml

logger = logging.getLogger(__name__)

PRESET_PACKAGE = "lite_rm.export_presets"
# Optimum's AutoQuantizationConfig factories we accept as a preset's ``optimum_config``.
OPTIMUM_CONFIGS = ("avx512_vnni", "avx512", "avx2", "arm64")
ATTENTION_FUSIONS = ("fused", "multi_head", "unfused")
# CPU families for auto-detection, best first: the preset is chosen by the first flag the CPU has.
AUTO_ORDER = (("avx512_vnni", ("avx512_vnni", "avx512vnni")), ("avx2", ("avx2",)))


@dataclass(frozen=True)
class QuantPreset:
    """One quantization recipe (a TOML file in ``export/presets``).

    Attributes:
        name: the preset's name (its file name without ``.toml``).
        description: one line for ``lite-rm export --help`` and the manifest.
        method: ``dynamic`` (Optimum's ``ORTQuantizer``: per-tensor dynamic activations) or
            ``blockwise`` (onnxruntime ``MatMulNBits``, 8 bits: weights and activations quantized per
            block of ``block_size`` values, int8 compute; embeddings still quantized by Optimum).
        block_size: values per quantization block (``blockwise`` only).
        symmetric: ``blockwise`` weights without zero points (``False`` adds one per block).
        accuracy_level: ``blockwise`` compute: 4 quantizes activations to int8 per block (fast), 0 keeps
            them fp32 and dequantizes the int8 weights (weight-only: most faithful, about fp32 speed).
        attention: how graph optimization fuses attention: ``fused`` (one ``Attention`` node holding
            the Q/K/V weights, which only the ``dynamic`` method quantizes), ``multi_head``
            (``MultiHeadAttention`` after separate Q/K/V MatMuls, which ``blockwise`` quantizes), or
            ``unfused``.
        optimum_config: which ``AutoQuantizationConfig`` factory builds the base config.
        per_channel: quantize weights per output channel (one scale per row) instead of per tensor.
        reduce_range: 7-bit weights, for CPUs whose int8 instructions saturate (AVX2/AVX-512 without VNNI).
        static: static quantization (activation ranges from calibration data) instead of dynamic.
        operators: operator types to quantize (empty: Optimum's default for the mode).
        exclude_nodes: regular expressions; matching node names stay in fp32.
        exclude_last_layers: how many of the last encoder layers stay in fp32 (0: none).
    """

    name: str
    description: str = ""
    method: str = "dynamic"
    block_size: int = 128
    symmetric: bool = True
    accuracy_level: int = 4
    attention: str = "fused"
    optimum_config: str = "avx512_vnni"
    per_channel: bool = True
    reduce_range: bool = False
    static: bool = False
    operators: tuple[str, ...] = ()
    exclude_nodes: tuple[str, ...] = ()
    exclude_last_layers: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in ("dynamic", "blockwise"):
            raise ConfigError(f"preset {self.name}: method {self.method!r} is not 'dynamic' or 'blockwise'")
        if self.method == "blockwise" and (self.block_size < 16 or self.block_size & (self.block_size - 1)):
            raise ConfigError(f"preset {self.name}: block_size must be a power of two >= 16, found {self.block_size}")
        if self.accuracy_level not in (0, 1, 2, 3, 4):
            raise ConfigError(f"preset {self.name}: accuracy_level must be 0-4, found {self.accuracy_level!r}")
        if self.attention not in ATTENTION_FUSIONS:
            raise ConfigError(
                f"preset {self.name}: attention {self.attention!r} is not one of {', '.join(ATTENTION_FUSIONS)}")
        if self.optimum_config not in OPTIMUM_CONFIGS:
            raise ConfigError(
                f"preset {self.name}: optimum_config {self.optimum_config!r} is not one of {', '.join(OPTIMUM_CONFIGS)}"
            )
        for pattern in self.exclude_nodes:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ConfigError(f"preset {self.name}: exclude_nodes pattern {pattern!r} is invalid ({err})") from None
        if self.exclude_last_layers < 0:
            raise ConfigError(f"preset {self.name}: exclude_last_layers must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["operators"] = list(self.operators)
        data["exclude_nodes"] = list(self.exclude_nodes)
        return data

    def with_overrides(self, **changes: Any) -> QuantPreset:
        """A copy with the given fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def available_presets() -> list[str]:
    """Names of the presets shipped in ``export/presets``."""
    root = resources.files(PRESET_PACKAGE)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_preset(name: str) -> QuantPreset:
    """Load a preset by name (``auto`` picks the one for this CPU) or from a ``.toml`` path.

    Raises:
        ConfigError: unknown name (the message lists the valid ones) or an invalid preset file.
    """
    if name == "auto":
        name = detect_preset()
    if name.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"preset file {path} not found")
        text, source = path.read_text(encoding="utf-8"), str(path)
        name = path.stem
    else:
        names = available_presets()
        if name not in names:
            raise ConfigError(f"unknown preset {name!r}; choose one of: auto, {', '.join(names)} (or a .toml path)")
        text = (resources.files(PRESET_PACKAGE) / f"{name}.toml").read_text(encoding="utf-8")
        source = f"export/presets/{name}.toml"
    try:
        data = parse_toml(text)
    except TOMLDecodeError as err:
        raise ConfigError(f"{source}: invalid TOML ({err})") from None
    known = set(QuantPreset.__dataclass_fields__) - {"name", "extra"}
    extra = {k: v for k, v in data.items() if k not in known}
    fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
    try:
        return QuantPreset(name=name, extra=extra, **fields)  # type: ignore[arg-type]
    except TypeError as err:
        raise ConfigError(f"{source}: {err}") from None


def _cpu_flags() -> set[str]:
    """CPU feature flags on Linux (``/proc/cpuinfo``); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def detect_preset() -> str:
    """The preset for the CPU this runs on: ``arm64`` on ARM, else the best x86 family it supports."""
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    flags = _cpu_flags()
    for preset, needed in AUTO_ORDER:
        if flags & set(needed):
            return preset
    # Unknown (e.g. macOS x86, where /proc is absent): AVX2 is on every x86-64 CPU of the last decade.
    logger.info("could not read CPU flags; using the avx2 preset")
    return "avx2"


def nodes_to_exclude(model_path: str | Path, preset: QuantPreset) -> list[str]:
    """Names of the nodes that a preset keeps in fp32, found in the exported graph."""
    onnx = require("onnx")
    graph = onnx.load(str(model_path), load_external_data=False).graph
    names = [n.name for n in graph.node]
    # Dynamic quantization first rewrites every Gemm (the pooler and the classifier head) as MatMul + Add
    # named "<gemm>_MatMul", then quantizes that MatMul: exclude the new name, or the head gets int8.
    names += [f"{n.name}_MatMul" for n in graph.node if n.op_type == "Gemm"]
    patterns = [re.compile(p) for p in preset.exclude_nodes]
    if preset.exclude_last_layers:
        # Optimum names BERT nodes after the module path: /bert/encoder/layer.5/...
        layers = sorted({int(m.group(1)) for n in names if (m := re.search(r"/layer\.(\d+)/", n))})
        for index in layers[-preset.exclude_last_layers:]:
            # ORTOptimizer's fused attention nodes lose the module path: Attention_<layer index>.
            patterns.append(re.compile(rf"/layer\.{index}/|^Attention_{index}$"))
    return [n for n in names if any(p.search(n) for p in patterns)]


def quantization_config(preset: QuantPreset, model_path: str | Path) -> Any:
    """Optimum's ``QuantizationConfig`` for a preset, with the excluded nodes resolved on the graph."""
    configuration = require("optimum.onnxruntime.configuration")
    factory = getattr(configuration.AutoQuantizationConfig, preset.optimum_config)
    kwargs: dict[str, Any] = {
        "is_static": preset.static,
        "per_channel": preset.per_channel,
        "nodes_to_exclude": nodes_to_exclude(model_path, preset),
        "operators_to_quantize": list(preset.operators) or None,
    }
    if preset.optimum_config in ("avx2", "avx512"):
        kwargs["reduce_range"] = preset.reduce_range
    return factory(**kwargs)


def quantize(
    model_path: str | Path,
    output_dir: str | Path,
    preset: QuantPreset,
    calibration_feeds: list[dict[str, Any]] | None = None,
) -> Path:
    """Quantize an ONNX model with Optimum's ``ORTQuantizer`` and a preset.

    Args:
        model_path: the fp32 ONNX file.
        output_dir: where the quantized ``model_quantized.onnx`` is written.
        preset: the quantization recipe.
        calibration_feeds: model inputs for static quantization's activation ranges.

    Returns:
        The path of the quantized model.
    """
    onnxruntime_opt = require("optimum.onnxruntime")
    if preset.method == "blockwise":
        return _blockwise(Path(model_path), Path(output_dir), preset)
    model_path = _with_shapes(Path(model_path), Path(output_dir))
    config = quantization_config(preset, model_path)
    quantizer = onnxruntime_opt.ORTQuantizer.from_pretrained(model_path.parent, file_name=model_path.name)
    ranges = None
    if preset.static:
        if not calibration_feeds:
            raise ConfigError(f"preset {preset.name} is static: it needs calibration data (validation pairs)")
        ranges = _calibration_ranges(model_path, config, calibration_feeds)
    logger.info("quantizing %s with preset %s (%d nodes kept fp32)", model_path.name, preset.name,
                len(config.nodes_to_exclude))
    # onnxruntime's quantizer logs one INFO line per unquantized tensor on the root logger; keep them out
    # of the CLI's output (a filter on the root logger sees only records logged directly to it).
    root = logging.getLogger()
    root.addFilter(_drop_root_info)
    try:
        quantizer.quantize(quantization_config=config, save_dir=output_dir, calibration_tensors_range=ranges)
    finally:
        root.removeFilter(_drop_root_info)
    return Path(output_dir) / f"{model_path.stem}_quantized.onnx"


def _blockwise(model_path: Path, output_dir: Path, preset: QuantPreset) -> Path:
    """Block-wise int8: every MatMul with a constant weight becomes 8-bit ``MatMulNBits``; the word
    embeddings become int8 rows with one scale per token.

    ``accuracy_level=4`` makes onnxruntime quantize the activations to int8 per block of
    ``block_size`` values at run time (instead of one scale for a whole batch, as dynamic quantization
    does), which is what keeps reward margins: see export/README.md for the measurements.
    """
    onnx = require("onnx")
    nbits = require("onnxruntime.quantization.matmul_nbits_quantizer", extra="export")
    model = onnx.load(str(model_path))
    exclude = nodes_to_exclude(model_path, preset)
    if "Gather" in preset.operators:
        _rowwise_int8_embeddings(model, exclude)
    level = preset.accuracy_level or None  # 0: onnxruntime's default, fp32 compute
    algo = nbits.DefaultWeightOnlyQuantConfig(block_size=preset.block_size, is_symmetric=preset.symmetric,
                                              accuracy_level=level, bits=8)
    quantizer = nbits.MatMulNBitsQuantizer(model, bits=8, block_size=preset.block_size,
                                           is_symmetric=preset.symmetric, accuracy_level=level,
                                           nodes_to_exclude=exclude, algo_config=algo)
    # It logs one INFO line per node it skips; only its warnings are worth showing.
    nbits_logger = logging.getLogger(nbits.__name__)
    level = nbits_logger.level
    nbits_logger.setLevel(logging.WARNING)
    try:
        quantizer.process()
    finally:
        nbits_logger.setLevel(level)
    output_dir.mkdir(parents=True, exist_ok=True)
    out = output_dir / f"{model_path.stem}_quantized.onnx"
    quantizer.model.save_model_to_file(str(out), False)
    return out


def _rowwise_int8_embeddings(model: Any, exclude: list[str], min_rows: int = 512) -> None:
    """Replace ``Gather(table, ids)`` on large fp32 tables by int8 rows with one scale per row.

    ``Gather(int8 table, ids) -> Cast -> Mul(Gather(scales, ids))`` gives each token its own scale.
    Optimum's Gather quantization shares one scale over the table, and the rows of rare tokens lose
    most of their precision, which costs order agreement.
    onnxruntime's GatherBlockQuantized would do this natively but supports only 4 bits.
    """
    onnx = require("onnx")
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    new_nodes = []
    for node in model.graph.node:
        table = inits.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None or node.name in exclude or len(table.dims) != 2 or table.dims[0] < min_rows \
                or table.data_type != onnx.TensorProto.FLOAT:
            new_nodes.append(node)
            continue
        weights = numpy_helper.to_array(table)
        scales = np.maximum(np.abs(weights).max(axis=1, keepdims=True), 1e-12) / 127.0
        q = np.clip(np.rint(weights / scales), -127, 127).astype(np.int8)
        base = table.name
        model.graph.initializer.remove(table)
        model.graph.initializer.extend([numpy_helper.from_array(q, base + "_int8"),
                                        numpy_helper.from_array(scales.astype(np.float32), base + "_row_scale")])
        ids, out = node.input[1], node.output[0]
        new_nodes += [
            helper.make_node("Gather", [base + "_int8", ids], [out + "_int8"], name=node.name + "_int8"),
            helper.make_node("Cast", [out + "_int8"], [out + "_i2f"], name=node.name + "_cast",
                             to=onnx.TensorProto.FLOAT),
            helper.make_node("Gather", [base + "_row_scale", ids], [out + "_scale"], name=node.name + "_scale"),
            helper.make_node("Mul", [out + "_i2f", out + "_scale"], [out], name=node.name + "_dequant"),
        ]
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)


def _drop_root_info(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or record.name != "root"


def _with_shapes(model_path: Path, work: Path) -> Path:
    """A copy of the model with every tensor's type and shape filled in.

    onnxruntime's quantizer needs the element type of each MatMul output; plain ONNX shape inference
    cannot see through the fused contrib ops (``Attention``, ``SkipLayerNormalization``) that graph
    optimization creates, and the quantizer then stops with "Unable to find data type". onnxruntime's
    symbolic shape inference knows those ops (it is what ``quant_pre_process`` runs).
    """
    onnx = require("onnx")
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = onnx.load(str(model_path))
    inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    work.mkdir(parents=True, exist_ok=True)
    out = work / model_path.name
    onnx.save(inferred, str(out))
    if (model_path.parent / "config.json").is_file():  # ORTQuantizer reads the model config beside it
        shutil.copyfile(model_path.parent / "config.json", work / "config.json")
    return out


def _calibration_ranges(
    model_path: Path, config: Any, feeds: list[dict[str, Any]]
) -> dict[str, Any]:
    """Activation ranges for static quantization, collected by onnxruntime's MinMax calibrator.

    Optimum's ``ORTQuantizer.fit`` wants a ``datasets.Dataset``; feeding onnxruntime's calibrator
    directly avoids that dependency and lets batches of different widths through.
    """
    quant = require("onnxruntime.quantization")
    calibrate = require("onnxruntime.quantization.calibrate")

    class _Reader(quant.CalibrationDataReader):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._it, None)

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        calibrator = calibrate.create_calibrator(
            str(model_path), op_types_to_calibrate=list(config.operators_to_quantize),
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=calibrate.CalibrationMethod.MinMax,
            extra_options={"symmetric": config.activations_symmetric},
        )
        calibrator.collect_data(_Reader())
        ranges = calibrator.compute_data()
    # onnxruntime >= 1.16 returns TensorsData; the quantizer accepts it as tensors_range.
    return ranges  # type: ignore[no-any-return]
