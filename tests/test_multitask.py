"""custom.multitask: one backbone for several domains, a head per domain, shipped in one bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_training_support import DOMAIN_WORD, synthetic_config

from lite_rm.training.config import TrainConfig
from lite_rm.training.pipeline import train


def test_head_view_reads_what_the_score_layer_reads(tiny_checkpoint: Path) -> None:
    from lite_rm.training.modeling import load_reward_model
    from lite_rm.training.multitask import HeadView, score_layer

    model = load_reward_model(tiny_checkpoint, seed=0).eval()
    batch = {"input_ids": torch.tensor([[101, 2000, 2001, 102]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    same = HeadView(model, score_layer(model))
    assert torch.equal(same(**batch).logits, model(**batch).logits)  # the score layer as a head: the score
    other = torch.nn.Linear(score_layer(model).in_features, 1)
    assert not torch.allclose(HeadView(model, other)(**batch).logits, model(**batch).logits)


def test_multitask_trains_one_backbone_with_a_head_per_domain_and_exports_them(tmp_path: Path,
                                                                              tiny_checkpoint: Path) -> None:
    from lite_rm.exporting import export_bundle
    from lite_rm.scoring.scorer import Scorer

    domains = ["academy", "business"]
    raw = synthetic_config(tmp_path, tiny_checkpoint, **{
        "general.max_steps": 2, "custom.domains": domains, "custom.multitask": True, "custom.epochs": 3.0})
    results = train(TrainConfig.from_dict(raw))
    run = Path(raw["output_dir"])
    assert sorted(p.name for p in run.iterdir() if p.is_dir() and not p.name.startswith(".")) >= [
        "custom-multitask", "general"]
    meta = json.loads((run / "custom-multitask" / "lite_rm.json").read_text())
    assert meta["multitask"] is True and sorted(meta["heads"]) == domains
    summary = results["training"]["custom-multitask"]
    assert summary["replay_share"] == 0.25 and "replay_acc" in summary["last_log"]
    # each head learned its own domain's word: it prefers its domain's response over the other's
    assert summary["valid_by_head"]["academy"] > 0.6 and summary["valid_by_head"]["business"] > 0.6

    bundle = tmp_path / "bundle"
    export_bundle(run / "custom-multitask", bundle)
    scorer = Scorer(bundle, threads=1)
    assert set(scorer.heads) == {"default", *domains} and scorer.manifest.domains == domains
    assert scorer.get_head("academy").calibration.pairs  # calibrated on academy's held-out pairs
    prompt = "query 1 river table"
    responses = [f"{DOMAIN_WORD['academy']} river table green", f"{DOMAIN_WORD['business']} river table green"]
    academy, business = scorer.score(prompt, responses, head="academy"), scorer.score(prompt, responses, head="business")
    assert academy[0] - academy[1] > business[0] - business[1]


def test_multitask_refuses_what_it_does_not_combine_with(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from lite_rm.training.config import ConfigError

    with pytest.raises(ConfigError, match="custom.multitask"):
        TrainConfig.from_dict(synthetic_config(tmp_path, tiny_checkpoint, **{"custom.multitask": True}))
    with pytest.raises(ConfigError, match="l2sp_coef"):
        TrainConfig.from_dict(synthetic_config(tmp_path, tiny_checkpoint, **{
            "custom.multitask": True, "custom.domains": ["academy", "business"], "custom.l2sp_coef": 0.1}))


def test_train_multitask_flag_sets_the_key(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lite_rm.cli import main

    # one domain is not a multi-task run: the flag reached custom.multitask and its check
    result = CliRunner().invoke(main, ["train", "-o", str(tmp_path / "run"), "--multitask", "--domain", "academy"])
    assert result.exit_code == 1 and "custom.multitask" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
