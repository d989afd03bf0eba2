"""Mean pooling of the reward head (config key ``pooling``), on the tiny random BERT."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lite_rm.cli import main
from lite_rm.scoring.encoding import InputRule, encode_pairs, load_tokenizer, pad_id_of
from lite_rm.training.config import ConfigError, TrainConfig

PROMPTS = ["a question", "another question that is a good deal longer than the first one, with more words in it"]
RESPONSES = ["an answer", "a reply that goes on and on so that this pair is padded far less than the first"]


def _scores(model: object, folder: Path, ids: list[int]) -> np.ndarray:
    from lite_rm.training.modeling import score_ids

    tokenizer = load_tokenizer(folder)
    texts = encode_pairs(tokenizer, PROMPTS, RESPONSES, InputRule(max_length=128))
    return score_ids(model, texts, ids, pad_id_of(tokenizer), bf16=False).detach().numpy()


def _encoder_folder(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """The tiny checkpoint's encoder without its head: a start from which a stage creates a new head."""
    from transformers import AutoModel

    folder = tmp_path / "encoder"
    AutoModel.from_pretrained(tiny_checkpoint).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (tiny_checkpoint / name).is_file():
            shutil.copy(tiny_checkpoint / name, folder / name)
    return folder


def test_mean_pooling_changes_the_score_and_ignores_padding(tiny_checkpoint: Path) -> None:
    import torch

    from lite_rm.training.modeling import load_reward_model, pooling_of, use_pooling

    cls = load_reward_model(tiny_checkpoint, seed=0).eval()
    mean = use_pooling(load_reward_model(tiny_checkpoint, seed=0).eval(), "mean")
    assert pooling_of(cls) == "cls" and pooling_of(mean) == "mean"
    cls_scores, mean_scores = _scores(cls, tiny_checkpoint, [0, 1]), _scores(mean, tiny_checkpoint, [0, 1])
    assert np.abs(cls_scores - mean_scores).min() > 1e-4  # the head reads another vector
    # the short pair alone, and padded in one batch with the long one: padding must not enter the mean
    alone = _scores(mean, tiny_checkpoint, [0])
    assert np.allclose(alone, mean_scores[:1], atol=1e-5)
    # the masked mean by hand, from the encoder's hidden states
    tokenizer = load_tokenizer(tiny_checkpoint)
    texts = encode_pairs(tokenizer, PROMPTS[:1], RESPONSES[:1], InputRule(max_length=128))
    ids = torch.tensor([texts.input_ids[0]])
    with torch.no_grad():
        hidden = mean.base_model(input_ids=ids, token_type_ids=torch.tensor([texts.token_type_ids[0]]))[0]
        by_hand = mean.classifier(hidden.mean(dim=1)).squeeze(-1).numpy()
    assert np.allclose(alone, by_hand, atol=1e-5)


def test_a_mean_pooled_checkpoint_reloads_mean_pooled(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lite_rm.training.modeling import load_reward_model, pooling_of, save_checkpoint, use_pooling

    model = use_pooling(load_reward_model(tiny_checkpoint, seed=0).eval(), "mean")
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    folder = save_checkpoint(model, tokenizer, tmp_path / "mean", InputRule(max_length=128))
    saved = json.loads((folder / "config.json").read_text())
    assert saved["lite_rm_pooling"] == "mean" and saved["architectures"] == ["BertForSequenceClassification"]
    # still a plain Hugging Face checkpoint, pooler weights included
    plain = AutoModelForSequenceClassification.from_pretrained(folder)
    assert plain.config.lite_rm_pooling == "mean" and plain.bert.pooler is not None
    before = _scores(model, tiny_checkpoint, [0, 1])
    for asked in (None, "cls"):  # a trained head keeps its pooling, whatever a config asks for
        again = load_reward_model(folder, seed=1, pooling=asked).eval()
        assert pooling_of(again) == "mean"
        assert np.allclose(_scores(again, tiny_checkpoint, [0, 1]), before, atol=1e-6)
    # and a cls checkpoint asked for mean stays cls
    assert pooling_of(load_reward_model(tiny_checkpoint, seed=0, pooling="mean")) == "cls"


def test_mean_pooling_refuses_a_head_that_is_not_a_linear_layer(tmp_path: Path) -> None:
    from transformers import RobertaConfig, RobertaForSequenceClassification

    from lite_rm.training.modeling import use_pooling

    model = RobertaForSequenceClassification(RobertaConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        num_labels=1))
    with pytest.raises(ValueError, match=r"roberta-like: pooling 'mean' needs a BERT-style head.*RobertaClassificationHead"):
        use_pooling(model, "mean", where="roberta-like")
    with pytest.raises(ValueError, match="expected one of cls, mean, found 'max'"):
        use_pooling(model, "max")


def test_pooling_is_a_checked_config_key(tmp_path: Path) -> None:
    assert TrainConfig().pooling == "cls"
    assert TrainConfig.from_dict({"pooling": "mean"}).pooling == "mean"
    with pytest.raises(ConfigError, match=r"config key 'pooling': expected 'cls' or 'mean', found 'bogus'"):
        TrainConfig.from_dict({"pooling": "bogus"})
    result = CliRunner().invoke(main, ["train", "-o", str(tmp_path / "run"), "--set", "pooling=bogus"])
    assert result.exit_code == 1 and "'pooling'" in result.output and "'mean'" in result.output
    assert "Traceback" not in result.output


def test_a_stage_trains_and_records_the_configured_pooling(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from test_training_support import synthetic_config

    from lite_rm.training.modeling import load_reward_model, pooling_of
    from lite_rm.training.pipeline import train

    raw = synthetic_config(tmp_path, _encoder_folder(tiny_checkpoint, tmp_path), pooling="mean",
                           **{"general.max_steps": 2, "custom.max_steps": 2})
    train(TrainConfig.from_dict(raw))
    run = Path(raw["output_dir"])
    for stage in ("general", "custom-academy"):  # custom starts from the mean-pooled general model
        assert json.loads((run / stage / "config.json").read_text()).get("lite_rm_pooling") == "mean", stage
        assert pooling_of(load_reward_model(run / stage, seed=0)) == "mean"


def test_optimum_exports_the_mean_pooled_forward(tmp_path: Path) -> None:
    """Optimum traces the model's forward as bound on the instance: the ONNX graph scores like mean
    pooling, not like the class's CLS forward (what lite_rm/exporting needs for a mean checkpoint)."""
    pytest.importorskip("optimum.exporters.onnx")
    import onnxruntime as ort
    import torch
    from optimum.exporters.onnx import onnx_export_from_model
    from transformers import BertConfig, BertForSequenceClassification

    from lite_rm.training.modeling import use_pooling

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        num_labels=1)).eval()
    ids = np.array([[1, 5, 9, 2, 0, 0], [1, 7, 8, 9, 10, 2]], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64), "token_type_ids": np.zeros_like(ids)}
    with torch.no_grad():
        cls = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits[:, 0].numpy()
        use_pooling(model, "mean")
        mean = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits[:, 0].numpy()
    onnx_export_from_model(model, tmp_path, task="text-classification", do_validation=False)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    exported = session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})[0][:, 0]
    assert np.allclose(exported, mean, atol=1e-5) and not np.allclose(exported, cls, atol=1e-3)
    assert json.loads((tmp_path / "config.json").read_text())["lite_rm_pooling"] == "mean"
