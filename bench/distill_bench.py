"""Distillation benchmark: students of the `make demo` teacher at several depths, through the same gate.

For each depth N (resumable pieces; a student already distilled or exported is reused):

  distill   ``lite-rm distill TEACHER -o WORK/student-lN --layers N`` (the demo's own student, RUN/student,
            is reused for its depth)
  export    ``lite-rm export STUDENT --int8 --teacher-bundle RUN/bundle-teacher --if-unfaithful keep``:
            the default int8 export and the fidelity gate against the teacher's bundle (kept even when it
            fails, to measure it; the gate's figures come from its manifest)
  accuracy  the student bundle on the DSP academy test pairs and the general test sets, with its order
            agreement with the teacher's PyTorch scores on all pairs and on the teacher's confident pairs
  speed     one process, interleaved: CrossEncoder fp32 of the teacher at batch 32 against each bundle
            (teacher and students) at the Scorer's defaults, the distinct DSP test texts of score_bench

    .venv/bin/python bench/distill_bench.py --run runs/demo --layers 2 3

Writes bench/results/distill/<cpu family>.json and .md (one file per CPU family) and a speed-vs-accuracy
chart; students and bundles go under --work (not in git).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench/results/distill"
sys.path.insert(0, str(REPO / "bench"))
# the scoring benchmark's pieces, so both measure the same way
from score_bench import (  # noqa: E402
    TEST_SETS,
    Peer,
    bundle_mb,
    bundle_scorer,
    cpu_family,
    distinct_texts,
    fidelity,
    interleaved,
    machine,
    teacher_work,
    test_diffs,
)


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def student(run_dir: Path, work: Path, layers: int, epochs: float) -> Path:
    """The student checkpoint of this depth: the demo's own when it has this depth, else distilled here."""
    demo = run_dir / "student"
    meta = demo / "lite_rm.json"
    if meta.exists() and json.loads(meta.read_text()).get("distill", {}).get("layers") == layers:
        return demo
    out = work / f"student-l{layers}"
    if not (out / "lite_rm.json").exists():
        run([str(Path(sys.executable).parent / "lite-rm"), "distill", str(run_dir / "custom-academy"), "-o", str(out),
             "--layers", str(layers), "--epochs", str(epochs), "--resume"])
    return out


def exported(checkpoint: Path, run_dir: Path, work: Path, layers: int) -> Path:
    demo_bundle = run_dir / "bundle" / "manifest.json"
    # RUN/bundle is the student's only when it passed the gate (else it is a copy of the teacher's)
    shipped = checkpoint == run_dir / "student" and demo_bundle.exists() and \
        "fidelity" in json.loads(demo_bundle.read_text())
    bundle = run_dir / "bundle" if shipped else work / f"bundle-l{layers}"
    if not (bundle / "manifest.json").exists():
        run([str(Path(sys.executable).parent / "lite-rm"), "export", str(checkpoint), "-o", str(bundle), "--int8",
             "--teacher-bundle", str(run_dir / "bundle-teacher"), "--if-unfaithful", "keep"])
    return bundle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo", help="a `make demo` run folder (teacher, its bundle, student)")
    ap.add_argument("--layers", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--texts", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=50)
    ap.add_argument("--work", default="runs/distill")
    args = ap.parse_args()
    from sentence_transformers import CrossEncoder

    from lite_rm.data import resolve_data_dir

    run_dir, work, data = Path(args.run), Path(args.work), resolve_data_dir(None)
    work.mkdir(parents=True, exist_ok=True)
    bundles = {"teacher (6 layers)": run_dir / "bundle-teacher"}
    for n in args.layers:
        bundles[f"student {n} layers"] = exported(student(run_dir, work, n, args.epochs), run_dir, work, n)
    import torch

    torch.set_num_threads(args.threads)
    ce = Peer(CrossEncoder(str(run_dir / "custom-academy"), max_length=256, device="cpu"), 32)
    cache = teacher_work(REPO / "bench/.work/score", run_dir / "custom-academy")  # shared with score_bench
    ref = test_diffs("teacher-pytorch", ce, data, cache)
    scale = json.loads((run_dir / "bundle-teacher/manifest.json").read_text())["calibration"]["scale"]
    prompts, responses = distinct_texts(data, args.texts)
    methods = {"CE fp32, batch 32": ce, **{k: bundle_scorer(v, args.threads) for k, v in bundles.items()}}
    seconds = interleaved(methods, prompts, responses, args.chunk)
    rows: dict[str, Any] = {}
    for key, fn in methods.items():
        row: dict[str, Any] = {"texts_per_s": len(prompts) / seconds[key],
                               "speedup": seconds["CE fp32, batch 32"] / seconds[key]}
        if key in bundles:
            manifest = json.loads((bundles[key] / "manifest.json").read_text())
            diffs = test_diffs(f"distill-{bundles[key].name}-{manifest['files']['model.onnx']['sha256'][:12]}", fn,
                               data, cache)
            meta = (manifest.get("source") or {}).get("lite_rm_meta") or {}
            row |= fidelity(diffs, ref, scale) | {"size_mb": bundle_mb(bundles[key]), "gate": manifest.get("fidelity"),
                                                  "distill": meta.get("distill"),
                                                  "train_seconds": (meta.get("training") or {}).get("train_seconds")}
        else:
            row |= fidelity(ref, ref, scale)
        rows[key] = row
    result = {"command": "python bench/distill_bench.py " + " ".join(sys.argv[1:]), "machine": machine(),
              "run": str(run_dir), "texts": len(prompts), "threads": args.threads, "date": time.strftime("%Y-%m-%d"),
              "rows": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    family = cpu_family()
    (OUT / f"{family}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (OUT / f"{family}.md").write_text(markdown(result))
    chart(result, OUT / f"{family}.png")
    print(markdown(result))


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [f"# Distilled students of the demo teacher ({m['family']})", "",
             f"Command: `{r['command']}` ({r['date']})  ",
             f"Machine: {m['cpu']} ({', '.join(m['flags'])}), {m['cores']} cores  ",
             f"Speed: {r['texts']} distinct DSP test texts, {r['threads']} threads, bundles at the Scorer's defaults, "
             "CE = sentence-transformers CrossEncoder fp32 of the teacher at batch 32.", "",
             "| model | texts/s | × CE fp32 b32 | " + " | ".join(TEST_SETS) + " | agreement with teacher, all / "
             "confident | gate (held-out pairs) | MB |",
             "| --- | ---: | ---: | " + " | ".join("---:" for _ in TEST_SETS) + " | ---: | --- | ---: |"]
    for key, row in r["rows"].items():
        gate = row.get("gate")
        verdict = "" if gate is None else (
            ("passed" if gate["passed"] else "FAILED") + f", confident agreement {gate['confident_agreement']:.3f}")
        size = f"{row['size_mb']:.1f}" if "size_mb" in row else ""
        lines.append(f"| {key} | {row['texts_per_s']:.1f} | {row['speedup']:.2f} | "
                     + " | ".join(f"{row['accuracy'][s]:.3f}" for s in TEST_SETS)
                     + f" | {row['agreement']:.3f} / {row['confident_agreement']:.3f} | {verdict} | {size} |")
    return "\n".join(lines) + "\n"


def chart(r: dict[str, Any], path: Path) -> None:
    from score_bench import speed_accuracy_chart

    speed_accuracy_chart(r, path, f"students vs teacher, {r['machine']['family']}", log=False)


if __name__ == "__main__":
    main()
