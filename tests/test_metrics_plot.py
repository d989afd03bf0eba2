"""Training metrics on disk (JSONL, TensorBoard) and ``lite-rm plot`` (training curves, reliability diagram)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_training_support import synthetic_config

from lite_rm.cli import main
from lite_rm.training.config import ConfigError, TrainConfig
from lite_rm.training.metrics import TIMING_FIELDS, live_path, publish, read_rows, stage_rows
from lite_rm.training.pipeline import train

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _config(tmp_path: Path, tiny_checkpoint: Path, name: str, **overrides: object) -> TrainConfig:
    raw = synthetic_config(tmp_path, tiny_checkpoint, stages=["general"], log_every=1, save_every=3,
                           **{"general.max_steps": 6, "general.eval_every": 2, **overrides})
    raw["output_dir"] = str(tmp_path / name)
    return TrainConfig.from_dict(raw)


def _untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 2000, path


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    """A 6-step general stage, logging every step, validating every 2 steps, with TensorBoard."""
    tmp = tmp_path_factory.mktemp("straight")
    train(_config(tmp, tiny_checkpoint, "run", report_to=["tensorboard"]))
    return tmp / "run"


def test_a_run_writes_one_row_per_logged_step_and_validation(straight_run: Path) -> None:
    rows = read_rows(live_path(straight_run, "general"))
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "acc", "margin", "reward", "lr", "pairs_per_s", "time"} <= set(train_rows[0])
    valid = [r for r in rows if r["kind"] == "valid"]
    assert [r["step"] for r in valid] == [2, 4, 6] and all(0 <= r["metric"] <= 1 for r in valid)
    # the same rows as the run's own record of its log and validation curve
    summary = json.loads((straight_run / "results.json").read_text())["training"]["general"]
    assert [r["metric"] for r in valid] == [v["metric"] for v in summary["valid_curve"]]
    assert train_rows[-1]["loss"] == summary["last_log"]["loss"]
    assert stage_rows(straight_run, "general") == rows
    assert read_rows(straight_run / "general" / "metrics.jsonl") == rows  # published beside the checkpoint


def test_publish_copies_the_live_file_beside_the_checkpoint(straight_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "general"
    folder.mkdir()
    copy = publish(straight_run, "general", folder)
    assert copy == folder / "metrics.jsonl" and read_rows(copy) == read_rows(live_path(straight_run, "general"))
    assert publish(straight_run, "no-such-stage", folder) is None


def test_kill_and_resume_leaves_no_duplicate_steps(straight_run: Path, tmp_path: Path, tiny_checkpoint: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import lite_rm.training.steps as steps

    real_step = steps.reward_step
    calls = {"n": 0}

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 5:  # rows 1-4 (and validation 2, 4) logged; the state was saved at step 3
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(steps, "reward_step", interrupted)
    config = _config(tmp_path, tiny_checkpoint, "resumed", report_to=["tensorboard"])
    with pytest.raises(KeyboardInterrupt):
        train(config)
    run = tmp_path / "resumed"
    killed = read_rows(live_path(run, "general"))
    assert [r["step"] for r in killed if r["kind"] == "train"] == [1, 2, 3, 4]  # a killed run keeps its rows
    monkeypatch.setattr(steps, "reward_step", real_step)
    train(config, resume=True)
    rows = read_rows(live_path(run, "general"))
    keys = [(r["kind"], r["step"]) for r in rows]
    assert len(keys) == len(set(keys)), keys
    assert _untimed(rows) == _untimed(read_rows(live_path(straight_run, "general")))


def test_a_fresh_run_over_an_old_one_starts_the_file_again(tmp_path: Path, tiny_checkpoint: Path) -> None:
    config = _config(tmp_path, tiny_checkpoint, "again", **{"general.max_steps": 2})
    train(config)
    train(config, overwrite=True)
    assert [r["step"] for r in read_rows(live_path(tmp_path / "again", "general")) if r["kind"] == "train"] == [1, 2]


def test_tensorboard_event_file_holds_the_scalars(straight_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(straight_run / "tensorboard" / "general"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/acc", "train/margin", "train/reward", "train/lr", "train/pairs_per_s",
            "valid/metric"} <= tags
    rows = read_rows(live_path(straight_run, "general"))
    for kind, name in (("train", "loss"), ("train", "lr"), ("valid", "metric")):
        logged = [(r["step"], r[name]) for r in rows if r["kind"] == kind]
        read = [(e.step, e.value) for e in events.Scalars(f"{kind}/{name}")]
        assert [s for s, _ in read] == [s for s, _ in logged]
        assert all(v == pytest.approx(w, rel=1e-6, abs=1e-9) for (_, v), (_, w) in zip(read, logged, strict=True))


def test_report_to_is_validated_and_a_missing_library_is_named(tmp_path: Path, tiny_checkpoint: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    raw = synthetic_config(tmp_path, tiny_checkpoint, report_to=["mlflow"])
    with pytest.raises(ConfigError, match="report_to"):
        TrainConfig.from_dict(raw)
    monkeypatch.setitem(__import__("sys").modules, "wandb", None)  # not installed, whatever this machine has
    result = CliRunner().invoke(main, ["train", "-o", str(tmp_path / "w"), "--report-to", "wandb"])
    assert result.exit_code == 1 and "lite-rm[wandb]" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# ---------------------------------------------------------------- lite-rm plot


def _plot(*args: str) -> object:
    result = CliRunner().invoke(main, ["plot", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_plot_a_run_draws_each_stage(straight_run: Path, tmp_path: Path) -> None:
    result = _plot(str(straight_run), "-o", str(tmp_path / "figs"))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    _assert_png(tmp_path / "figs" / "general.png")
    assert str(tmp_path / "figs" / "general.png") in result.output  # type: ignore[attr-defined]


def test_plot_marks_the_kept_step_and_draws_general_kept(tmp_path: Path) -> None:
    from lite_rm.jobs.plotting import best_validation, plot_run

    run = tmp_path / "run"
    (run / ".metrics").mkdir(parents=True)
    rows = [{"kind": "train", "step": s, "loss": 0.7 - 0.01 * s, "acc": 0.5 + 0.01 * s} for s in range(1, 9)]
    rows += [{"kind": "valid", "step": s, "metric": m} for s, m in ((2, 0.6), (4, 0.7), (6, 0.7), (8, 0.65))]
    for stage in ("general", "custom-academy"):
        (run / ".metrics" / f"{stage}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / ".metrics" / "base.jsonl").write_text(json.dumps({"kind": "train", "step": 1, "loss": 9.0}) + "\n")
    (run / "results.json").write_text(json.dumps({"general_kept": {"custom-academy": -0.021}}))
    assert best_validation([r for r in rows if r["kind"] == "valid"]) == {"kind": "valid", "step": 4, "metric": 0.7}
    written = plot_run(run)
    assert [p.name for p in written] == ["base.png", "general.png", "custom-academy.png", "general_kept.png"]
    for path in written:
        assert path.parent == run / "plots"
        _assert_png(path)


def test_reliability_bins_agree_with_the_exported_ece() -> None:
    import numpy as np

    from lite_rm.exporting.calibration import fit_temperature
    from lite_rm.jobs.plotting import pair_probabilities, reliability

    rng = np.random.default_rng(0)
    chosen, rejected = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.0, 300)
    fit = fit_temperature(chosen, rejected)
    for scale, ece in ((1.0, fit.ece_before), (fit.scale, fit.ece_after)):
        rel = reliability(*pair_probabilities(chosen - rejected, scale))
        assert rel.ece == pytest.approx(ece) and rel.counts.sum() == 600
        weighted = float(np.sum(rel.counts / 600 * np.abs(rel.observed - rel.predicted)))
        assert weighted == pytest.approx(ece)


def test_plot_a_bundle_draws_its_reliability_diagram(straight_run: Path, tmp_path: Path) -> None:
    from lite_rm.exporting import export_bundle

    bundle = tmp_path / "bundle"
    export_bundle(straight_run / "general", bundle)  # calibrated on the split the stage recorded
    result = _plot(str(bundle))  # default: that recorded held-out split, re-scored
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    _assert_png(bundle / "plots" / "reliability.png")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": f"excellent {i}", "rejected": f"terrible {i}"})
                             + "\n" for i in range(30)))
    result = _plot(str(bundle), "--data", str(pairs), "-o", str(tmp_path / "figs"))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    _assert_png(tmp_path / "figs" / "reliability.png")


@pytest.mark.parametrize("make", ["missing", "empty", "file", "checkpoint"])
def test_plot_bad_input_is_a_clear_error(tmp_path: Path, tiny_checkpoint: Path, make: str) -> None:
    target = {"missing": tmp_path / "nope", "empty": tmp_path, "checkpoint": tiny_checkpoint,
              "file": tmp_path / "x.txt"}[make]
    if make == "file":
        target.write_text("hello")
    result = _plot(str(target))
    assert result.exit_code == 1 and "Error:" in result.output  # type: ignore[attr-defined]
    assert "Traceback" not in result.output  # type: ignore[attr-defined]


GOOD_ROW = json.dumps({"kind": "train", "step": 2, "loss": 0.5, "acc": 0.6}) + "\n"


@pytest.mark.parametrize(("content", "expected"), [
    ('{"step": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n" + GOOD_ROW, "line 1: expected a JSON object"),
    (json.dumps({"kind": "valid", "step": 1, "metric": "high"}) + "\n" + GOOD_ROW, "line 1: field 'metric'"),
    (json.dumps({"step": 1, "loss": [1]}) + "\n" + GOOD_ROW, "line 1: field 'loss'"),
    (b"\xff\xfe\x00garbage\n", "not UTF-8"),
])
def test_plot_a_broken_metrics_file_names_it(tmp_path: Path, content: str | bytes, expected: str,
                                            run_cli) -> None:  # type: ignore[no-untyped-def]
    metrics = tmp_path / "run" / "general" / "metrics.jsonl"
    metrics.parent.mkdir(parents=True)
    metrics.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = run_cli("plot", str(tmp_path / "run"))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(metrics) in result.stderr and expected in result.stderr, result.stderr


@pytest.mark.parametrize(("content", "expected"), [
    (b"{not json", "not valid JSON"), (b"\xff\xfe", "not UTF-8"), (b'{"general_kept": {"a": "x"}}', "general_kept")])
def test_plot_a_broken_results_json_names_it(tmp_path: Path, content: bytes, expected: str,
                                             run_cli) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    (run / "general").mkdir(parents=True)
    (run / "general" / "metrics.jsonl").write_text(GOOD_ROW)
    (run / "results.json").write_bytes(content)
    result = run_cli("plot", str(run))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(run / "results.json") in result.stderr and expected in result.stderr, result.stderr


def test_plot_says_when_a_stage_has_no_metrics(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    for stage, text in (("general", GOOD_ROW), ("custom-academy", "")):
        (run / stage).mkdir(parents=True)
        (run / stage / "metrics.jsonl").write_text(text)
    result = run_cli("plot", str(run))
    assert result.returncode == 0, result.stderr
    assert "stage custom-academy: its metrics file holds no rows" in result.stderr
    assert (run / "plots" / "general.png").is_file() and not (run / "plots" / "custom-academy.png").exists()
    (run / "general" / "metrics.jsonl").write_text("")
    result = run_cli("plot", str(run))
    assert result.returncode == 1 and "no metrics to plot" in result.stderr and "Traceback" not in result.stderr
