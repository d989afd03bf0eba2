"""What the custom stage ships (lite_rm.training.selection): the rule on fixed scores, and whole runs of
the tiny model where customizing does not help (kept the start), helps (shipped), or is forced."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_training_support import synthetic_config, write_pairs

from lite_rm.training.config import ConfigError, TrainConfig
from lite_rm.training.pipeline import train
from lite_rm.training.selection import choice_table, choose_validated, general_tolerance


def _correct(right: int, total: int, seed: int = 0) -> np.ndarray:
    """Per-pair correctness with ``right`` of ``total`` pairs right, in a seeded order."""
    out = np.array([1.0] * right + [0.0] * (total - right))
    np.random.default_rng(seed).shuffle(out)
    return out


def test_the_start_model_is_kept_unless_a_candidate_beats_it_beyond_chance() -> None:
    start = _correct(100, 200)
    # two pairs more out of 200 is a raw gain, not evidence: the start model stays
    near = start.copy()
    near[np.flatnonzero(start == 0)[:2]] = 1.0
    choice = choose_validated({0.0: (start, 0.6), 0.5: (near, 0.6), 1.0: (near, 0.6)}, 0.01, 190)
    assert choice.kept_start and choice.alpha == 0.0 and "200 pairs may be too few" in choice.reason
    assert choice.candidate(1.0) is not None and not choice.candidate(1.0).better_than_start  # type: ignore[union-attr]
    # a real gain ships; the configured mix (0.5) stays when the best (1.0) is not better than it beyond chance
    gained = start.copy()
    gained[np.flatnonzero(start == 0)[:60]] = 1.0
    slightly_more = gained.copy()
    slightly_more[np.flatnonzero(gained == 0)[:3]] = 1.0
    choice = choose_validated({0.0: (start, 0.6), 0.5: (gained, 0.6), 1.0: (slightly_more, 0.6)}, 0.01, 190,
                              preferred=0.5)
    assert choice.alpha == 0.5 and choice.shipped == "interpolated" and "beats the start model" in choice.reason
    assert choose_validated({0.0: (start, 0.6), 0.5: (gained, 0.6), 1.0: (slightly_more, 0.6)}, 0.01, 190).alpha == 1.0
    # ... but a mix clearly better than the configured one wins
    best = start.copy()
    best[np.flatnonzero(start == 0)[:95]] = 1.0
    choice = choose_validated({0.0: (start, 0.6), 0.5: (gained, 0.6), 1.0: (best, 0.6)}, 0.01, 190, preferred=0.5)
    assert choice.alpha == 1.0 and choice.shipped == "finetuned" and "beats the configured alpha 0.5" in choice.reason


def test_a_general_drop_beyond_the_tolerance_rules_a_candidate_out() -> None:
    start, better = _correct(100, 200), _correct(190, 200)
    tol = general_tolerance(0.01, 190)
    assert tol == pytest.approx(np.sqrt(0.25 / 190))
    choice = choose_validated({0.0: (start, 0.70), 0.5: (better, 0.70 - tol + 0.001), 1.0: (better, 0.5)}, 0.01, 190)
    assert choice.alpha == 0.5 and not choice.candidate(1.0).general_ok  # type: ignore[union-attr]
    choice = choose_validated({0.0: (start, 0.70), 1.0: (better, 0.5)}, 0.01, 190)
    assert choice.kept_start and "drop of general validation accuracy" in choice.reason
    # the record renders for results.md with every candidate's pairs and interval
    table = choice_table({"custom-x": {"choice": choice.to_dict()}, "general": {}})
    assert "| custom-x | 1 | 0.950 [" in table and "(drop)" in table and "- custom-x: start (alpha 0" in table


def _contradictory(tmp_path: Path) -> Path:
    """Every pair twice, once each way: no model can do better than chance on it (ties or one of two right)."""
    rows = [json.loads(line) for line in write_pairs(tmp_path / "fwd.jsonl", 40, seed=5).read_text().splitlines()]
    path = tmp_path / "noisy.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" + json.dumps({"prompt": r["prompt"], "chosen": r["rejected"],
                                                                "rejected": r["chosen"]}) + "\n" for r in rows))
    return path


def _meta(folder: Path) -> dict:
    return json.loads((folder / "lite_rm.json").read_text())


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_data_that_does_not_help_keeps_the_start_model_and_says_so(tmp_path: Path, tiny_checkpoint: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    raw = synthetic_config(tmp_path, tiny_checkpoint, **{"general.max_steps": 4, "custom.data": str(_contradictory(tmp_path)),
                                                          "custom.interpolate": 0.5, "custom.epochs": 2.0})
    del raw["custom"]["domains"]
    with caplog.at_level("INFO", logger="lite_rm.training.custom"):
        results = train(TrainConfig.from_dict(raw))
    run = Path(raw["output_dir"])
    choice = _meta(run / "custom-noisy")["training"]["choice"]
    assert choice["mode"] == "validated" and choice["shipped"] == "start" and choice["alpha"] == 0.0
    assert choice["custom_pairs"] > 0 and choice["general_pairs"] > 0
    assert [c["alpha"] for c in choice["candidates"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert all(len(c["custom_interval"]) == 2 and len(c["vs_start"]) == 2 for c in choice["candidates"])
    # what shipped is the start model, weight for weight
    general, shipped = _weights(run / "general"), _weights(run / "custom-noisy")
    assert all(torch.allclose(general[k], shipped[k]) for k in shipped)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("your data did not improve the model on its own validation pairs: kept the start model" in m
               for m in warned)
    assert any("pairs, 95% interval" in r.getMessage() for r in caplog.records)  # the start model's figure
    assert results["training"]["custom-noisy"]["choice"]["shipped"] == "start"
    md = (run / "results.md").read_text()
    assert "What each custom model ships" in md and "| custom-noisy | 0 |" in md and "**shipped**" in md


def test_forcing_the_fine_tuned_model_ships_it_anyway(tmp_path: Path, tiny_checkpoint: Path) -> None:
    raw = synthetic_config(tmp_path, tiny_checkpoint, **{"general.max_steps": 4, "custom.data": str(_contradictory(tmp_path)),
                                                          "custom.choose": "finetuned", "custom.max_steps": 4})
    del raw["custom"]["domains"]
    train(TrainConfig.from_dict(raw))
    run = Path(raw["output_dir"])
    meta = _meta(run / "custom-noisy")["training"]
    assert meta["choice"]["shipped"] == "finetuned" and "forced by custom.choose = finetuned" in meta["choice"]["reason"]
    assert meta["interpolation"]["alpha"] == 1.0  # interpolate = "off" in the synthetic config
    general, shipped = _weights(run / "general"), _weights(run / "custom-noisy")
    assert any(not torch.allclose(general[k], shipped[k]) for k in shipped)


def test_data_that_helps_ships_a_customized_model(tmp_path: Path, tiny_checkpoint: Path) -> None:
    # the DSP academy answers carry a word the general stage never saw: learnable, and general accuracy stays
    raw = synthetic_config(tmp_path, tiny_checkpoint, **{"general.epochs": 2.0, "custom.epochs": 4.0,
                                                          "custom.interpolate": 0.5})
    results = train(TrainConfig.from_dict(raw))
    choice = results["training"]["custom-academy"]["choice"]
    assert choice["shipped"] != "start" and choice["alpha"] > 0, choice
    shipped = next(c for c in choice["candidates"] if c["alpha"] == choice["alpha"])
    assert shipped["better_than_start"] and shipped["vs_start"][0] > 0 and shipped["general_ok"]


def test_choose_start_and_bad_values(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match="custom.choose"):
        TrainConfig.from_dict({"custom": {"choose": "best"}})
    raw = synthetic_config(tmp_path, tiny_checkpoint, **{"general.max_steps": 2, "custom.max_steps": 2,
                                                          "custom.choose": "start"})
    train(TrainConfig.from_dict(raw))
    run = Path(raw["output_dir"])
    assert _meta(run / "custom-academy")["training"]["choice"]["shipped"] == "start"
    general, shipped = _weights(run / "general"), _weights(run / "custom-academy")
    assert all(torch.allclose(general[k], shipped[k]) for k in shipped)


def test_the_choose_flag_sets_the_config_key() -> None:
    from lite_rm.cli.train_cmd import _config

    flags = {"domains": (), "columns": (), "report_to": (), "general_sets": (), "eval_sets": (), "choose": "finetuned"}
    assert _config(None, flags, ()).custom.choose == "finetuned"
    assert _config(None, flags | {"choose": None}, ()).custom.choose == "validated"
