"""Distillation benchmark: a 2-3-layer student of the ``make demo`` checkpoint against the teacher.

Resumable pieces, each writing a small JSON under bench/results/distill/ (skipped when it is there,
unless --redo names it):

  distill-l<N>   ``lite-rm distill TEACHER -o STUDENT --layers N`` (checkpoints go under --work, not git)
  export-l<N>    ``lite-rm export STUDENT`` fp32 and ``--int8`` with the default presets; if the default
                 int8 export refuses on parity, it is exported again with ``--accept-parity-loss`` to
                 measure it (marked ``parity_override`` in the JSON)
  eval-<name>    ``lite-rm eval`` of the teacher and every student checkpoint and bundle on helpful,
                 harmless, WebGPT and DSP academy test sets
  untrained-l<N> layer-dropped copies of the teacher, NOT distilled, exported the same way: the speed
                 of 1 and 2 layers without spending the CPU time on their distillation (speed does not
                 depend on the weights; no accuracy is reported for them)
  speed          one process, interleaved chunks: sentence-transformers ``CrossEncoder.predict`` fp32 of
                 the TEACHER against the lite-rm Scorer on every student bundle, 2 threads, batch 32,
                 max length 256, on the distinct DSP test (prompt, response) texts, de-duplication off
                 (the texts and timing helpers of bench/score_bench.py)

Then bench/DISTILL.md's table is printed from the JSONs (``--report`` writes bench/results/distill/report.md).

    .venv/bin/python bench/distill_bench.py --layers 3 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "distill"
sys.path.insert(0, str(REPO / "bench"))
# the scoring benchmark's own pieces, so both time the same way (bench/score_bench.py, bench/SCORING.md)
from score_bench import CrossEncoderFp32, distinct_texts, folder_mb, interleaved, machine, scorer  # noqa: E402

TARGETS = {"speedup_vs_teacher_crossencoder": 8.0, "max_accuracy_drop_pts": 1.0}
EVAL_SETS = ("helpful", "harmless", "webgpt", "dsp-academy")
LITE_RM = str(Path(sys.executable).parent / "lite-rm")


def run(cmd: list[str]) -> float:
    """Run a command (printed first); its wall seconds."""
    print("+", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def piece(name: str, args: argparse.Namespace) -> Path | None:
    """The piece's JSON path, or ``None`` when it is done and not asked to be redone."""
    path = RESULTS / f"{name}.json"
    return None if path.exists() and name not in args.redo else path


def save(path: Path, data: dict[str, Any], args: argparse.Namespace) -> None:
    data = {"command": args.command, **data}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path.relative_to(REPO)}", flush=True)


def kinds(args: argparse.Namespace) -> list[str]:
    """The bundles of every student: fp32, the default ``--int8``, and each forced ``--preset``."""
    return ["fp32", "int8", *(f"int8-{p}" for p in args.presets)]


def student_dir(args: argparse.Namespace, layers: int, prefix: str = "student") -> Path:
    return Path(args.work) / f"{prefix}-l{layers}"


def untrained_piece(layers: int, args: argparse.Namespace) -> None:
    """A layer-dropped copy of the teacher WITHOUT distillation: for the speed of N layers only (the
    speed of a graph does not depend on its weights); its accuracy is not measured."""
    out = student_dir(args, layers, "untrained")
    if out.exists():
        return
    from lite_rm.checkpoint import read_meta
    from lite_rm.encoding import InputRule
    from lite_rm.training.distill import _layer_list, kept_layers, shrink
    from lite_rm.training.modeling import load_reward_model, save_checkpoint
    from lite_rm.training.stages import hf_tokenizer

    model = load_reward_model(args.teacher, seed=0)
    shrink(model, kept_layers(len(_layer_list(model)), layers))
    meta = read_meta(args.teacher)
    save_checkpoint(model, hf_tokenizer(args.teacher), out, InputRule.from_dict(meta["input_rule"]),
                    stage="untrained-layer-drop", validation_split=meta["validation_split"])


def distill_piece(layers: int, args: argparse.Namespace) -> None:
    path = piece(f"distill-l{layers}", args)
    if path is None:
        return
    out = student_dir(args, layers)
    seconds = run([LITE_RM, "distill", args.teacher, "-o", str(out), "--layers", str(layers), "--epochs",
                   str(args.epochs), "--threads", str(args.threads), "--resume"])
    meta = json.loads((out / "lite_rm.json").read_text())
    save(path, {"layers": layers, "wall_seconds": seconds, "student": str(out), "distill": meta["distill"],
                "teacher": meta["teacher"], "training": meta["training"], "machine": machine()}, args)


def export_piece(layers: int, args: argparse.Namespace, prefix: str = "student") -> None:
    path = piece(f"export-{prefix}-l{layers}", args)
    if path is None:
        return
    student = student_dir(args, layers, prefix)
    bundles: dict[str, Any] = {}
    for kind in kinds(args):
        out = student.parent / f"{student.name}-{kind}"
        cmd = [LITE_RM, "export", str(student), "-o", str(out), "--threads", str(args.threads)]
        cmd += ["--int8"] if kind == "int8" else []
        # a forced preset is exported even when it fails parity, to measure it (marked in the JSON)
        cmd += ["--int8", "--preset", kind[5:], "--accept-parity-loss"] if kind.startswith("int8-") else []
        override = kind.startswith("int8-")
        try:
            if not (out / "manifest.json").exists():  # a bundle written by an earlier run is reused
                run(cmd)
        except subprocess.CalledProcessError:
            if kind != "int8":
                raise
            # measure the refused bundle anyway; the JSON says so
            run([*cmd, "--accept-parity-loss"])
            override = True
        manifest = json.loads((out / "manifest.json").read_text())
        bundles[kind] = {"bundle": str(out), "size_mb": folder_mb(out),
                         "model_onnx_mb": (out / "model.onnx").stat().st_size / 1e6,
                         "quantization": manifest.get("quantization"), "parity": manifest.get("parity"),
                         "parity_override": override}
    save(path, {"layers": layers, "bundles": bundles}, args)


def eval_piece(name: str, model: Path, args: argparse.Namespace) -> None:
    path = piece(f"eval-{name}", args)
    if path is None:
        return
    out = RESULTS / f".eval-{name}.json"
    run([LITE_RM, "eval", str(model), "--domain", "academy", "--threads", str(args.threads), "--name", name,
         "-o", str(out)])
    data = json.loads(out.read_text())
    out.unlink()
    row = data["results"][name]
    save(path, {"model": str(model), "kind": data["kind"],
                "accuracy": {s: row[s]["acc"] for s in EVAL_SETS if s in row}}, args)


def speed_piece(args: argparse.Namespace) -> None:
    path = piece("speed", args)
    if path is None:
        return
    from lite_rm.data import resolve_data_dir

    prompts, responses = distinct_texts(resolve_data_dir(None), args.texts)
    methods: dict[str, Any] = {"teacher-crossencoder-fp32": CrossEncoderFp32(Path(args.teacher), args)}
    for prefix, counts in (("student", args.layers), ("untrained", args.speed_only)):
        for layers in counts:
            for kind in kinds(args):
                bundle = Path(args.work) / f"{prefix}-l{layers}-{kind}"
                if bundle.exists():
                    methods[f"{prefix}-l{layers}-{kind}"] = scorer(bundle, args, dedupe=False)
    load_before = os.getloadavg()
    seconds = interleaved(methods, prompts, responses, args.chunk)
    base = seconds["teacher-crossencoder-fp32"]
    rows = {k: {"texts_per_s": len(prompts) / s, "speedup_vs_teacher_crossencoder": base / s}
            for k, s in seconds.items()}
    save(path, {"texts": len(prompts), "threads": args.threads, "batch_size": args.batch_size,
                "max_length": args.max_length, "chunk": args.chunk, "rows": rows,
                "load_average_before_after": [load_before, os.getloadavg()], "machine": machine()}, args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default=str(REPO / "runs/demo/custom-academy"))
    ap.add_argument("--layers", type=int, nargs="+", default=[3])
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--speed-only", type=int, nargs="*", default=[1, 2],
                    help="layer counts timed on untrained layer-dropped copies of the teacher (speed only)")
    ap.add_argument("--work", default=str(REPO / "runs/distill"), help="where students and bundles go")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--presets", nargs="*", default=["auto"],
                    help="int8 presets also exported (forced, --accept-parity-loss: to measure) and timed")
    ap.add_argument("--texts", type=int, default=680, help="distinct DSP test texts to time (as score_bench.py)")
    ap.add_argument("--chunk", type=int, default=85, help="texts per interleaved timing chunk")
    ap.add_argument("--skip", nargs="*", default=[], help="pieces to skip: distill export eval speed")
    ap.add_argument("--redo", nargs="*", default=[], help="piece names to run again (e.g. speed eval-teacher)")
    args = ap.parse_args()
    args.command = "python bench/distill_bench.py " + " ".join(sys.argv[1:])
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    print(json.dumps({"command": args.command, "machine": machine()}, indent=2), flush=True)
    for layers in args.layers:
        if "distill" not in args.skip:
            distill_piece(layers, args)
        if "export" not in args.skip:
            export_piece(layers, args)
    for layers in args.speed_only:
        if "untrained" not in args.skip:
            untrained_piece(layers, args)
            export_piece(layers, args, "untrained")
    if "eval" not in args.skip:
        eval_piece("teacher", Path(args.teacher), args)
        for layers in args.layers:
            eval_piece(f"student-l{layers}", student_dir(args, layers), args)
            for kind in ("fp32", "int8"):
                bundle = student_dir(args, layers).parent / f"student-l{layers}-{kind}"
                if bundle.exists():
                    eval_piece(f"student-l{layers}-{kind}", bundle, args)
    if "speed" not in args.skip:
        speed_piece(args)
    print(report(args))


def report(args: argparse.Namespace) -> str:
    """The DISTILL.md table from whatever pieces are there."""
    def load(name: str) -> dict[str, Any]:
        path = RESULTS / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else {}

    teacher = load("eval-teacher").get("accuracy", {})
    speed = load("speed").get("rows", {})
    head = ("| model | " + " | ".join(EVAL_SETS) + " | max drop (pt) | texts/s | x CrossEncoder fp32 (teacher) "
            "| bundle MB |")
    lines = [head, "|" + " --- |" * (len(EVAL_SETS) + 5)]

    def row(name: str, label: str, size: float | None) -> None:
        acc = load(f"eval-{name}").get("accuracy", {})
        drop = max((100 * (teacher[s] - acc[s]) for s in EVAL_SETS if s in acc and s in teacher), default=None)
        sp = speed.get(name if name != "teacher" else "teacher-crossencoder-fp32", {})
        cells = [f"{acc[s]:.3f}" if s in acc else "–" for s in EVAL_SETS]
        cells += [f"{drop:+.1f}" if drop is not None and name != "teacher" else "–",
                  f"{sp['texts_per_s']:.1f}" if sp else "–",
                  f"{sp['speedup_vs_teacher_crossencoder']:.2f}" if sp else "–",
                  f"{size:.1f}" if size else "–"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("teacher", "teacher (6 layers), PyTorch / CrossEncoder fp32", None)
    for layers in args.layers:
        bundles = load(f"export-student-l{layers}").get("bundles", {})
        row(f"student-l{layers}", f"student {layers} layers, PyTorch checkpoint", None)
        for kind in kinds(args):
            b = bundles.get(kind, {})
            note = " (forced, --accept-parity-loss)" if b.get("parity_override") else ""
            row(f"student-l{layers}-{kind}", f"student {layers} layers, {kind} bundle{note}", b.get("size_mb"))
    for layers in args.speed_only:
        bundles = load(f"export-untrained-l{layers}").get("bundles", {})
        for kind in ("fp32", "int8"):
            row(f"untrained-l{layers}-{kind}", f"{layers} layers, speed only (not distilled), {kind} bundle",
                bundles.get(kind, {}).get("size_mb"))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
