"""A few steps of all three stages on the real MiniLM and the real data (marked slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lite_rm.training.config import TrainConfig
from lite_rm.training.pipeline import train


@pytest.mark.slow
def test_three_stages_on_real_minilm_and_data(tmp_path: Path, data_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    # small evaluation slices of the real test files, so the test stays within a couple of minutes
    helpful = json.loads((data_dir / "general" / "helpful.test.json").read_text())[:24]
    dsp = json.loads((data_dir / "dsp" / "test.json").read_text())[:6]
    (tmp_path / "helpful.json").write_text(json.dumps(helpful))
    (tmp_path / "dsp.json").write_text(json.dumps(dsp))
    config = TrainConfig.from_dict({
        "output_dir": str(tmp_path / "run"), "data_dir": str(data_dir), "seed": 0, "log_every": 1,
        "save_every": 0, "eval_sets": {"helpful": str(tmp_path / "helpful.json"), "dsp": str(tmp_path / "dsp.json")},
        "base": {"max_texts": 16, "batch_size": 8, "max_steps": 2},
        "general": {"batch_size": 8, "max_steps": 2, "valid_fraction": 0.01},
        "custom": {"domains": ["academy"], "batch_size": 8, "max_steps": 2, "valid_fraction": 0.03,
                   "imitation_coef": 0.1, "replay_share": 0.25, "interpolate": "auto"},
    })
    results = train(config)
    run = tmp_path / "run"
    for stage in ("base", "general", "custom-academy"):
        assert (run / stage / "model.safetensors").exists() and (run / stage / "lite_rm.json").exists()
    assert set(results["results"]) == {"general", "custom-academy"}
    row = results["results"]["custom-academy"]
    assert set(row) == {"helpful", "dsp-academy", "dsp-business", "dsp-entertainment", "dsp-literature"}
    assert set(row["dsp-academy"]["per_opponent"]) == {"business", "entertainment", "literature", "normal"}
    log = results["training"]["custom-academy"]["last_log"]
    assert {"loss", "acc", "margin", "pairs_per_s", "mlm", "replay_acc"} <= set(log)
    model = AutoModelForSequenceClassification.from_pretrained(run / "custom-academy")
    assert model.config.num_labels == 1 and model.config.num_hidden_layers == 6
    assert "| custom-academy |" in (run / "results.md").read_text()
