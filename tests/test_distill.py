"""``lite-rm distill``: a fewer-layer student trained on a teacher's scores over its training texts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_training_support import write_pairs

from lite_rm.cli import main
from lite_rm.files import folder_digest
from lite_rm.scoring.encoding import InputRule
from lite_rm.training.checkpoint import HeldOutSet, ValidationSplit, read_meta, validation_split_of, write_meta
from lite_rm.training.distill import kept_layers, relocate, split_pairs


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    """The tiny random BERT as a teacher whose lite_rm.json records two synthetic training sets."""
    tmp = tmp_path_factory.mktemp("distill")
    general = write_pairs(tmp / "general.jsonl", 80, seed=1)
    custom = write_pairs(tmp / "custom.jsonl", 48, seed=4)
    folder = tmp / "teacher"
    shutil.copytree(tiny_checkpoint, folder)
    # A random tiny BERT gives every text nearly the same reward; a large second layer and head make the
    # teacher's rewards vary (std about 1) and the one-layer student start far from them.
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(1)
    model = BertForSequenceClassification.from_pretrained(folder)
    for name, param in model.bert.encoder.layer[1].named_parameters():
        if name.endswith("weight") and "LayerNorm" not in name:
            param.data.normal_(0, 0.2)
    model.classifier.weight.data *= 300
    model.save_pretrained(folder)
    split = ValidationSplit(0, (HeldOutSet("syn", str(general), 0.2), HeldOutSet("mine", str(custom), 0.25)))
    write_meta(folder, InputRule(max_length=64), stage="custom", domains=[], validation_split=split.to_dict())
    return folder


@pytest.fixture(scope="module")
def student(teacher: Path) -> tuple[Path, dict]:
    out = teacher.parent / "student"
    result = CliRunner().invoke(main, ["distill", str(teacher), "-o", str(out), "--layers", "1", "--epochs", "4",
                                       "--lr", "3e-4", "--batch-size", "8", "--no-bf16", "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.output)


def test_student_has_fewer_layers_and_the_teachers_records(student: tuple[Path, dict], teacher: Path) -> None:
    from safetensors import safe_open

    folder, _ = student
    config = json.loads((folder / "config.json").read_text())
    assert config["num_hidden_layers"] == 1
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        layer_ids = {k.split("encoder.layer.")[1].split(".")[0] for k in f.keys() if "encoder.layer." in k}
    assert layer_ids == {"0"}
    meta = read_meta(folder)
    assert meta["stage"] == "distill"
    assert meta["input_rule"] == read_meta(teacher)["input_rule"]
    assert meta["teacher"]["digest"] == folder_digest(teacher)
    assert meta["teacher"]["layers"] == 2 and meta["distill"]["kept_layers"] == [0]
    # the same held-out record, so export's parity check uses the teacher's held-out pairs
    assert validation_split_of(folder) == validation_split_of(teacher)
    assert not (folder.parent / ".state" / "distill-student").exists()  # the resumable state is cleaned up


def test_student_moves_toward_the_teacher(student: tuple[Path, dict]) -> None:
    _, out = student
    training = out["training"]
    # the held-out MSE against the teacher falls (1.40 -> 0.97 here; a random teacher is hard to fit)
    assert training["held_out"]["mse"] < 0.8 * training["held_out_start"]["mse"]
    assert training["best_valid"] == -training["held_out"]["mse"]  # the best validated step is the one kept
    assert training["steps"] > 0 and training["train_texts"] > 0


def test_training_texts_exclude_the_held_out_pairs(teacher: Path) -> None:
    split = validation_split_of(teacher)
    assert split is not None
    train, valid = split_pairs(split)
    held = [p for pairs in split.held_out().values() for p in pairs]
    assert valid == held and valid
    assert not {p.prompt for p in train} & {p.prompt for p in held}


def test_student_exports_and_scores(student: tuple[Path, dict], tmp_path: Path) -> None:
    from lite_rm.scoring.scorer import Scorer
    from lite_rm.training.modeling import load_reward_model, torch_score_fn

    folder, _ = student
    bundle = tmp_path / "bundle"
    result = CliRunner().invoke(main, ["export", str(folder), "-o", str(bundle), "--threads", "1"])
    assert result.exit_code == 0, result.output
    prompts, responses = ["question 1: river?", "question 2: stone?"], ["excellent river", "terrible stone"]
    onnx_scores = Scorer(bundle, threads=1).score_pairs(prompts, responses)
    from lite_rm.scoring.encoding import load_tokenizer

    torch_scores = torch_score_fn(load_reward_model(folder, seed=0), load_tokenizer(folder),
                                  InputRule(max_length=64), bf16=False)(prompts, responses)
    assert onnx_scores == pytest.approx(torch_scores, abs=1e-4)


def test_kept_layers() -> None:
    assert kept_layers(6, 3) == [0, 1, 2]
    assert kept_layers(6, 3, "spread") == [1, 3, 5]
    assert kept_layers(6, 2, "spread") == [2, 5]
    with pytest.raises(ValueError, match="expected 1 to 5"):
        kept_layers(6, 6)


def test_relocate_finds_moved_files_under_data_dir(tmp_path: Path) -> None:
    moved = tmp_path / "data"
    write_pairs((moved / "general").mkdir(parents=True) or moved / "general" / "helpful.train.json", 4)
    split = ValidationSplit(0, (HeldOutSet("helpful", "/gone/data/general/helpful.train.json", 0.1),))
    assert relocate(split, moved).sets[0].source == str((moved / "general" / "helpful.train.json").resolve())
    with pytest.raises(FileNotFoundError, match="pass --data-dir"):
        relocate(split, None)


def _handled(args: list[str]) -> str:
    result = CliRunner().invoke(main, ["distill", *args])
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.output


def test_bad_input_is_a_clear_error(teacher: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "s")
    assert "expected 1 to 1" in _handled([str(teacher), "-o", out, "--layers", "2", "--threads", "1"])
    assert "expected a checkpoint folder" in _handled([str(tmp_path / "nope"), "-o", out])
    assert "no validation_split" in _handled([str(tiny_checkpoint), "-o", out, "--layers", "1"])
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "lite_rm.json").write_text("{}")
    assert "already holds a checkpoint; pass --overwrite" in _handled([str(teacher), "-o", out, "--layers", "1"])
    assert not (tmp_path / ".state").exists()
