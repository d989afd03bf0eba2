"""Where training runs: device resolution, and several gloo processes (DDP) matching one process.

The multi-process runs start real ``torchrun`` process groups on the CPU (gloo) on the tiny model;
each takes ~20 s on two cores (process start-up dominates).
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from test_training_support import synthetic_config

from lite_rm.training import parallel
from lite_rm.training.config import ConfigError, TrainConfig
from lite_rm.training.modeling import resolve_bf16, resolve_device
from lite_rm.training.parallel import ParallelRunError
from lite_rm.training.pipeline import train

# ---------------------------------------------------------------- device


def _no_gpu(monkeypatch: pytest.MonkeyPatch, cuda: bool = False, mps: bool = False, count: int = 1) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count if cuda else 0)
    monkeypatch.setattr("lite_rm.training.modeling.mps_available", lambda: mps)


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_gpu(monkeypatch)
    assert resolve_device("auto") == torch.device("cpu")
    _no_gpu(monkeypatch, mps=True)
    assert resolve_device("auto") == torch.device("mps")
    _no_gpu(monkeypatch, cuda=True, mps=True, count=2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)  # one GPU per process
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_is_the_cpu_on_this_machine() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_device("auto").type in ("cpu", "mps")


@pytest.mark.parametrize("setting", ["cuda", "cuda:3", "mps"])
def test_a_device_this_machine_lacks_is_a_config_error(monkeypatch: pytest.MonkeyPatch, setting: str) -> None:
    _no_gpu(monkeypatch)
    with pytest.raises(ConfigError, match="config key 'device'"):
        resolve_device(setting)


def test_bf16_auto_follows_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_gpu(monkeypatch, cuda=True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_bf16("auto", torch.device("cuda", 0)) is True
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_bf16("auto", "cuda") is False
    assert resolve_bf16("auto", "mps") is False
    monkeypatch.setattr("lite_rm.training.modeling.cpu_has_bf16", lambda: True)
    assert resolve_bf16("auto", "cpu") is True and resolve_bf16("auto") is True  # the CPU meaning is kept
    assert resolve_bf16(False, "cuda") is False


def test_config_validates_device_and_processes() -> None:
    assert TrainConfig().device == "auto" and TrainConfig().processes == 1
    with pytest.raises(ConfigError, match="'device'"):
        TrainConfig(device="tpu")
    with pytest.raises(ConfigError, match="'processes'"):
        TrainConfig(processes=0)


def test_cli_device_cuda_without_cuda_is_one_line(tmp_path: Path, tiny_checkpoint: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from lite_rm.cli import main

    _no_gpu(monkeypatch)
    out = CliRunner().invoke(main, ["train", "-o", str(tmp_path / "run"), "--model", str(tiny_checkpoint),
                                    "--device", "cuda", "--stages", "general"])
    assert out.exit_code == 1 and "Traceback" not in out.output
    assert "config key 'device'" in out.output and "no CUDA GPU" in out.output
    assert not (tmp_path / "run").exists()  # it failed before writing anything


def test_a_one_process_run_records_its_device(tmp_path: Path, tiny_checkpoint: Path) -> None:
    raw = synthetic_config(tmp_path, tiny_checkpoint, stages=["general"], device="cpu", **{"general.max_steps": 1})
    results = train(TrainConfig.from_dict(raw))
    assert results["device"] == "cpu" and results["processes"] == 1


# ---------------------------------------------------------------- sharding


def test_shard_deals_every_unit_once_and_pads_empty_shares() -> None:
    item = [5, 3, 9, 1, 7]
    parts = [parallel.shard(item, r, 2) for r in range(2)]
    assert parts == [([5, 9, 7], True), ([3, 1], True)]
    assert parallel.shard(item, 0, 1) == (item, True)
    # the custom stage's (units, replayed pairs): both dealt out
    assert parallel.shard(([1, 2, 3], [10, 11]), 1, 2) == (([2], [11]), True)
    # fewer units than processes: the idle process runs the first unit, weighted 0
    assert parallel.shard([4], 1, 2) == ([4], False)
    assert parallel.shard(([4], [8, 9]), 1, 2) == (([4], []), False)


def test_weigh_loss_alone_is_the_identity() -> None:
    loss = torch.tensor(0.25)
    assert parallel.weigh_loss(loss, 7, True) == (loss, 7, 0.25)


# ---------------------------------------------------------------- several processes


def _stage_weights(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {s: load_file(str(run / s / "model.safetensors")) for s in ("general", "custom-academy")}


# Parameters whose gradient is zero by symmetry (the rewards' loss is shift-invariant, and so is the
# softmax over attention keys): Adam turns their float-rounding gradients into full-size steps, so they
# carry no information about agreement.
_SYMMETRIC = ("classifier.bias", "attention.self.key.bias")


def _relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], start: dict[str, torch.Tensor]) -> float:
    """||a - b|| / ||a - start|| over the informative weights: the disagreement as a share of the update."""
    keys = [k for k in a if k in start and not k.endswith(_SYMMETRIC)]
    diff = sum(float((a[k] - b[k]).double().norm() ** 2) for k in keys) ** 0.5
    update = sum(float((a[k] - start[k]).double().norm() ** 2) for k in keys) ** 0.5
    return diff / update


def _config(tmp_path: Path, name: str, checkpoint: Path, processes: int, **extra: object) -> TrainConfig:
    # batch 15 with one pair per unit: the processes' shares differ (8 and 7), so the loss weighting counts
    raw = synthetic_config(tmp_path / name, checkpoint, processes=processes, **{
        "general.max_steps": 6, "general.batch_size": 15, "general.eval_every": 3, "custom.max_steps": 3,
        "custom.replay_share": 0.25, **extra})
    return TrainConfig.from_dict(raw)


# Measured on this CPU: 5e-5 (general) and 6e-4 (custom, which also starts from the general weights'
# difference); a wrong loss weighting or a lost shard gives differences of the order of the update.
TOLERANCE = {"general": 1e-3, "custom-academy": 1e-2}


def test_two_processes_equal_one_with_the_same_effective_batch(tmp_path: Path, tiny_checkpoint: Path) -> None:
    one = _config(tmp_path, "one", tiny_checkpoint, 1)
    two = _config(tmp_path, "two", tiny_checkpoint, 2)
    results_one, results_two = train(one), train(two)
    start = load_file(str(tiny_checkpoint / "model.safetensors"))
    a, b = _stage_weights(Path(one.output_dir)), _stage_weights(Path(two.output_dir))
    for stage, tolerance in TOLERANCE.items():
        assert _relative_difference(a[stage], b[stage], start) < tolerance, stage
    assert results_two["processes"] == 2
    # the same schedule, validations (process 0's, broadcast) and steps; the same evaluation
    for stage in TOLERANCE:
        t1, t2 = results_one["training"][stage], results_two["training"][stage]
        assert t1["steps"] == t2["steps"] and len(t1["valid_curve"]) == len(t2["valid_curve"]) > 0
        assert t2["last_log"]["lr"] == pytest.approx(t1["last_log"]["lr"])
        assert t2["last_log"]["loss"] == pytest.approx(t1["last_log"]["loss"], abs=1e-3)
    assert results_two["results"]["general"]["syn"]["acc"] == pytest.approx(results_one["results"]["general"]["syn"]["acc"])
    # process 0 alone wrote: one metrics file per stage with one row per logged step
    rows = (Path(two.output_dir) / "general" / "metrics.jsonl").read_text().splitlines()
    assert len([r for r in rows if json.loads(r)["kind"] == "train"]) == 3


def test_a_killed_rank_resumes_to_the_uninterrupted_result(tmp_path: Path, tiny_checkpoint: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # rank 1 dies (os._exit) in step 5 of the general stage; the state of step 4 (save_every 2) remains
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent("""
        import os
        if os.environ.get("RANK") == "1":
            import lite_rm.training.parallel as parallel
            original, calls = parallel.weigh_loss, []
            def weigh_loss(*args, **kwargs):
                calls.append(1)
                if len(calls) == 5:
                    os._exit(9)
                return original(*args, **kwargs)
            parallel.weigh_loss = weigh_loss
    """))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]))
    killed = _config(tmp_path, "killed", tiny_checkpoint, 2)
    with pytest.raises(ParallelRunError, match="--resume"):
        train(killed)
    run = Path(killed.output_dir)
    state = json.loads((run / ".state" / "general" / "resume" / "state.json").read_text())
    assert state["step"] == 4 and not (run / "general").exists()

    monkeypatch.delenv("PYTHONPATH")
    train(killed, resume=True)
    one = _config(tmp_path, "one", tiny_checkpoint, 1)
    train(one)
    start = load_file(str(tiny_checkpoint / "model.safetensors"))
    a, b = _stage_weights(Path(one.output_dir)), _stage_weights(run)
    for stage, tolerance in TOLERANCE.items():
        assert _relative_difference(a[stage], b[stage], start) < tolerance, stage
    assert not (run / ".state").exists()
