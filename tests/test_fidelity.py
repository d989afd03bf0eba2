"""The student-vs-teacher fidelity gate (lite_rm.exporting.fidelity) and its paired-bootstrap interval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lite_rm.exporting.fidelity import check_fidelity
from lite_rm.scoring.evaluation import pair_correctness, paired_accuracy_interval, pairwise_accuracy


def test_pair_correctness_counts_ties_half_like_pairwise_accuracy() -> None:
    diff = np.array([1.0, -1.0, 0.0, 2.0])
    assert pair_correctness(diff).tolist() == [1.0, 0.0, 0.5, 1.0]
    assert pairwise_accuracy(diff, np.zeros(4)) == pytest.approx(0.625)


def test_paired_interval_is_narrow_when_models_agree_and_covers_the_true_difference() -> None:
    rng = np.random.default_rng(0)
    a = (rng.random(400) < 0.7).astype(float)
    low, high = paired_accuracy_interval(a, a.copy())
    assert low == high == 0.0  # the same answers on every pair: no difference at all
    b = a.copy()
    b[:40] = 1 - b[:40]  # 40 disagreements
    low, high = paired_accuracy_interval(a, b)
    assert low <= a.mean() - b.mean() <= high
    assert high - low < 0.1


def _sets(n: int, names: tuple[str, ...]) -> list[str]:
    return [names[i % len(names)] for i in range(n)]


def test_a_student_equal_to_its_teacher_passes() -> None:
    t = np.random.default_rng(1).normal(0.3, 1.0, 600)
    result = check_fidelity(t, t * 0.9, _sets(600, ("academy", "helpful")), teacher_scale=2.0)
    assert result.passed, result.problems
    assert result.confident_agreement == 1.0
    assert set(result.sets) == {"academy", "helpful"}


def test_flipping_confident_pairs_fails_the_gate() -> None:
    t = np.random.default_rng(2).normal(0.0, 2.0, 600)
    s = t.copy()
    confident = np.flatnonzero(np.abs(t) > 1.0)
    s[confident[:20]] *= -1  # 20 confident pairs in the other order, accuracy nearly unchanged overall
    result = check_fidelity(t, s, _sets(600, ("a",)), teacher_scale=2.0)
    assert not result.passed
    assert "confident-pair agreement" in result.problems[0]


def test_a_real_accuracy_loss_on_one_set_fails_and_near_ties_do_not() -> None:
    rng = np.random.default_rng(3)
    clear = rng.normal(1.0, 0.5, 300)  # a set the teacher mostly gets right
    ties = rng.normal(0.0, 0.01, 300)  # near-ties: not confident at scale 2
    t = np.concatenate([clear, ties])
    names = ["clear"] * 300 + ["noise"] * 300
    noisy = t.copy()
    noisy[300:] = rng.normal(0.0, 0.01, 300)  # the student reorders every near-tie at random
    result = check_fidelity(t, noisy, names, teacher_scale=2.0)
    assert result.passed, result.problems  # a near-chance set cannot fail the gate by noise
    worse = t.copy()
    worse[:60] = -np.abs(worse[:60]) * 0.01  # 60 clear wins lost, all of them low-confidence for the student
    result = check_fidelity(t, worse, names, teacher_scale=0.01, min_confident_agreement=0.0)
    assert not result.passed
    assert any(p.startswith("clear:") for p in result.problems)
    assert result.sets["clear"].difference_interval[1] < 0


def test_mismatched_lengths_are_an_error() -> None:
    with pytest.raises(ValueError, match="same non-zero number of pairs"):
        check_fidelity(np.ones(3), np.ones(2), ["a"] * 3, teacher_scale=1.0)


@pytest.fixture(scope="module")
def gate_setup(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, data_dir: Path) -> dict[str, Path]:
    """A teacher bundle (the tiny model), validation pairs labelled by the teacher itself (so it has a signal
    to lose), and a 'student' whose score layer is negated: every order reversed."""
    import shutil

    from safetensors.torch import load_file, save_file

    from lite_rm.data import load_preferences
    from lite_rm.exporting import export_bundle
    from lite_rm.scoring.scorer import Scorer

    tmp = tmp_path_factory.mktemp("gate")
    pairs = load_preferences(data_dir / "dsp" / "test.json", domain="academy").pairs[:60]
    teacher_bundle = tmp / "teacher"
    raw = tmp / "raw.jsonl"
    raw.write_text("".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n"
                           for p in pairs))
    export_bundle(tiny_checkpoint, teacher_bundle, validation=raw)
    scorer = Scorer(teacher_bundle)
    a = scorer.score_pairs([p.prompt for p in pairs], [p.chosen for p in pairs])
    b = scorer.score_pairs([p.prompt for p in pairs], [p.rejected for p in pairs])
    valid = tmp / "valid.jsonl"  # chosen = what the teacher prefers
    valid.write_text("".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen if x > y else p.rejected,
                                         "rejected": p.rejected if x > y else p.chosen}) + "\n"
                             for p, x, y in zip(pairs, a, b, strict=True) if x != y))
    export_bundle(tiny_checkpoint, teacher_bundle, validation=valid, overwrite=True)  # calibrated on the same pairs
    reversed_student = tmp / "reversed"
    shutil.copytree(tiny_checkpoint, reversed_student)
    weights = load_file(str(reversed_student / "model.safetensors"))
    for key in ("classifier.weight", "classifier.bias"):
        weights[key] = -weights[key]
    save_file(weights, str(reversed_student / "model.safetensors"), metadata={"format": "pt"})
    return {"teacher": teacher_bundle, "valid": valid, "reversed": reversed_student, "tmp": tmp}


def test_export_records_a_passing_gate(gate_setup: dict[str, Path], tiny_checkpoint: Path) -> None:
    from lite_rm.exporting import export_bundle

    out = gate_setup["tmp"] / "same"
    manifest = export_bundle(tiny_checkpoint, out, validation=gate_setup["valid"], teacher_bundle=gate_setup["teacher"])
    fidelity = manifest.fidelity
    assert fidelity["passed"] and fidelity["order_agreement"] == 1.0
    assert fidelity["teacher_bundle"] == str(gate_setup["teacher"].resolve())


def test_an_unfaithful_student_writes_nothing_or_the_teacher(gate_setup: dict[str, Path]) -> None:
    from lite_rm.exporting import FidelityError, export_bundle
    from lite_rm.scoring.bundle import read_manifest

    out = gate_setup["tmp"] / "student-bundle"
    args = {"validation": gate_setup["valid"], "teacher_bundle": gate_setup["teacher"]}
    with pytest.raises(FidelityError, match="fails the fidelity gate"):
        export_bundle(gate_setup["reversed"], out, **args)
    assert not out.exists()
    export_bundle(gate_setup["reversed"], out, if_unfaithful="teacher", **args)
    shipped, teacher = read_manifest(out, verify=True), read_manifest(gate_setup["teacher"])
    assert shipped.files[shipped.model_file].sha256 == teacher.files[teacher.model_file].sha256
    record = shipped.distilled_student
    assert not record["fidelity"]["passed"] and record["fidelity"]["problems"]
    kept = gate_setup["tmp"] / "kept"
    manifest = export_bundle(gate_setup["reversed"], kept, if_unfaithful="keep", **args)
    assert manifest.fidelity["passed"] is False


def test_export_cli_reports_the_gate(gate_setup: dict[str, Path]) -> None:
    from lite_rm.cli import main

    out = gate_setup["tmp"] / "cli"
    args = ["export", str(gate_setup["reversed"]), "-o", str(out), "--validation", str(gate_setup["valid"]),
            "--teacher-bundle", str(gate_setup["teacher"])]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and "fails the fidelity gate" in result.output and not out.exists()
    result = CliRunner().invoke(main, [*args, "--if-unfaithful", "teacher"])
    assert result.exit_code == 0, result.output
    assert "FAILS the fidelity gate" in result.output and "copy of the TEACHER" in result.output
