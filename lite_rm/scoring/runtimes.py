"""The engines that run a bundle's graph: onnxruntime (the default) and OpenVINO (optional). Torch-free.

Both read the same ``model.onnx``. OpenVINO (extra ``[openvino]``) runs it in bfloat16 on CPUs with
native bf16 (Intel AMX / AVX512-BF16), where it is faster than onnxruntime; its scores are bf16-rounded,
so they are not the bundle's parity-checked onnxruntime scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from lite_rm.errors import LiteRMError

BACKENDS = ("onnxruntime", "openvino")
KNOWN_INPUTS = {"input_ids", "attention_mask", "token_type_ids"}
SCORE_OUTPUT = "logits"
# The pooled representation the score's last linear layer reads (bundles exported since heads exist).
EMBEDDING_OUTPUT = "embedding"


class RuntimeLoadError(LiteRMError, RuntimeError):
    """The engine cannot load the graph (the message says why)."""


class Runtime(Protocol):
    """A loaded graph: the inputs it wants and the outputs it has (by name), one call per padded batch."""

    input_names: list[str]
    output_names: list[str]

    def run(self, feed: dict[str, np.ndarray], outputs: Sequence[str] = (SCORE_OUTPUT,)) -> list[np.ndarray]:
        """The named outputs for the batch, float32: ``logits`` as ``(rows,)``, ``embedding`` as ``(rows, dim)``."""
        ...


def _shaped(name: str, value: object) -> np.ndarray:
    out = np.asarray(value, dtype=np.float32)
    return out.reshape(len(out), -1)[:, 0] if name == SCORE_OUTPUT else out.reshape(len(out), -1)


def score_output_of(names: list[str]) -> str:
    """The graph output holding the score: ``logits`` (Optimum's name), else the first output."""
    return SCORE_OUTPUT if SCORE_OUTPUT in names else names[0]


class OnnxRuntime:
    """onnxruntime ``InferenceSession`` (thread-safe: concurrent ``run`` calls are allowed)."""

    def __init__(self, model: Path, threads: int | None, providers: Sequence[str] | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # The graph was fused offline at export; ENABLE_ALL still adds the CPU layout passes, cheap at load time.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(str(model), sess_options=options,
                                                 providers=list(providers) if providers else ["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for a bad protobuf
            raise RuntimeLoadError(f"onnxruntime cannot load it ({str(err).strip()[:300]})") from None
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]
        self._score = score_output_of(self.output_names)

    def run(self, feed: dict[str, np.ndarray], outputs: Sequence[str] = (SCORE_OUTPUT,)) -> list[np.ndarray]:
        names = [self._score if name == SCORE_OUTPUT else name for name in outputs]
        return [_shaped(name, value) for name, value in zip(outputs, self._session.run(names, feed), strict=True)]


class OpenVinoRuntime:
    """OpenVINO on the CPU, bf16 where the CPU computes it natively, else fp32.

    An infer request is not thread-safe, so each call makes its own (cheap next to a batch).
    """

    def __init__(self, model: Path, threads: int | None, streams: int = 1) -> None:
        from lite_rm.extras import require

        ov = require("openvino", extra="openvino")
        core = ov.Core()
        precision = "bf16" if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES") else "f32"
        config: dict[str, object] = {"INFERENCE_PRECISION_HINT": precision, "NUM_STREAMS": streams}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self._model = core.compile_model(str(model), "CPU", config)
        except Exception as err:  # OpenVINO raises RuntimeError subclasses with long C++ traces
            raise RuntimeLoadError(f"OpenVINO cannot load it ({str(err).strip()[:300]})") from None
        self.precision = precision
        self.input_names = [i.get_any_name() for i in self._model.inputs]
        self._outputs = {o.get_any_name(): o for o in self._model.outputs}
        self.output_names = list(self._outputs)
        self._score = score_output_of(self.output_names)

    def run(self, feed: dict[str, np.ndarray], outputs: Sequence[str] = (SCORE_OUTPUT,)) -> list[np.ndarray]:
        result = self._model.create_infer_request().infer(feed)
        return [_shaped(name, result[self._outputs[self._score if name == SCORE_OUTPUT else name]])
                for name in outputs]


def open_runtime(model: Path, backend: str = "onnxruntime", threads: int | None = None,
                 providers: Sequence[str] | None = None, streams: int = 1) -> Runtime:
    """Load a bundle's graph with the named engine, for ``streams`` concurrent calls of ``threads`` in all.

    onnxruntime gets ``threads // streams`` intra-op threads (each concurrent ``run`` computes on its
    caller's thread and that many helpers); OpenVINO gets ``streams`` streams sharing ``threads``.

    Raises:
        ValueError: an unknown backend (the message lists the valid ones).
        RuntimeLoadError: the engine cannot load the graph.
        MissingExtraError: OpenVINO is asked for and not installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, found {backend!r}")
    per_call = None if threads is None else max(1, threads // streams)
    runtime: Runtime = OnnxRuntime(model, per_call, providers) if backend == "onnxruntime" \
        else OpenVinoRuntime(model, threads, streams)
    unknown = [n for n in runtime.input_names if n not in KNOWN_INPUTS]
    if unknown:
        raise RuntimeLoadError(f"the model wants inputs {unknown}; expected {sorted(KNOWN_INPUTS)}")
    return runtime
