"""Streamed general sets (issue 17): shard globs, bounded buffers, the same plan as in memory, resume."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_training_support import synthetic_config, write_pairs

from lite_rm.data import DataError, load_preferences, streaming
from lite_rm.data.readers import read_rows
from lite_rm.scoring.encoding import InputRule, load_tokenizer
from lite_rm.training.batching import StreamedPlan, encode_preferences, plan_epochs
from lite_rm.training.config import TrainConfig
from lite_rm.training.pipeline import train


def _shards(folder: Path, name: str, sizes: list[int], bad: tuple[int, int] | None = None) -> str:
    """Gzip JSONL shards ``{name}-00.jsonl.gz``...; ``bad`` = (shard, line) holds a broken record."""
    folder.mkdir(parents=True, exist_ok=True)
    for s, size in enumerate(sizes):
        lines = [json.dumps({"prompt": f"{name} shard {s} question {i}?", "chosen": f"excellent {name} {i}",
                             "rejected": f"terrible {name} {i}"}) for i in range(size)]
        if bad is not None and bad[0] == s:
            lines[bad[1] - 1] = json.dumps({"prompt": "p", "chosen": "a"})  # no 'rejected'
        with gzip.open(folder / f"{name}-{s:02d}.jsonl.gz", "wt", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    return str(folder / f"{name}-*.jsonl.gz")


def test_a_glob_reads_its_shards_in_order_naming_each_file(tmp_path: Path) -> None:
    pattern = _shards(tmp_path / "s", "big", [3, 2, 4])
    locations = [row.location for row in read_rows(pattern)]
    assert locations[0].endswith("big-00.jsonl.gz line 1") and locations[3].endswith("big-01.jsonl.gz line 1")
    assert locations[-1].endswith("big-02.jsonl.gz line 4") and len(locations) == 9
    pairs = load_preferences(pattern).pairs
    assert [p.prompt for p in pairs][:4] == ["big shard 0 question 0?", "big shard 0 question 1?",
                                             "big shard 0 question 2?", "big shard 1 question 0?"]
    with pytest.raises(DataError, match="no file matches"):
        load_preferences(str(tmp_path / "none-*.jsonl"))


def test_a_bad_line_in_shard_three_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    pattern = _shards(tmp_path / "s", "big", [4, 4, 4, 4], bad=(2, 3))  # the third shard, line 3
    with pytest.raises(DataError, match=r"big-02\.jsonl\.gz line 3: .*rejected") as caught:
        streaming.survey({"big": pattern}, 0.1, seed=0)
    assert caught.value.location.endswith("big-02.jsonl.gz line 3")


def test_streaming_is_chosen_for_globs_and_large_sets(tmp_path: Path) -> None:
    small = str(write_pairs(tmp_path / "p.jsonl", 20))
    assert streaming.wants_streaming({"a": _shards(tmp_path / "s", "g", [2])})
    assert not streaming.wants_streaming({"a": small})
    assert streaming.wants_streaming({"a": small, "b": small}, threshold=40)
    assert streaming.wants_streaming({"a": small}, mode="on") and not streaming.wants_streaming({"a": small}, "off")
    # the default data (JSON documents) stays in memory: its training is unchanged
    assert not streaming.wants_streaming({"a": str(tmp_path / "missing.json")})


def _plan(tmp_path: Path, checkpoint: Path, pattern: str, buffer: int, epochs: float, fractions: list[float],
          valid_fraction: float = 0.0) -> tuple[StreamedPlan, streaming.Survey]:
    found = streaming.survey({"a": pattern}, valid_fraction, seed=3)
    return StreamedPlan(lambda i, skip: streaming.train_stream(pattern, valid_fraction, 3, skip),
                        [found.train_pairs], fractions, load_tokenizer(checkpoint), InputRule(max_length=64),
                        batch_size=8, epochs=epochs, seed=3, buffer_pairs=buffer), found


def test_one_buffer_holding_everything_gives_the_in_memory_plan(tmp_path: Path, tiny_checkpoint: Path) -> None:
    pattern = _shards(tmp_path / "s", "a", [30, 25, 45])
    plan, _ = _plan(tmp_path, tiny_checkpoint, pattern, buffer=1000, epochs=2.5, fractions=[1.5])
    data = encode_preferences(load_tokenizer(tiny_checkpoint), InputRule(max_length=64),
                              load_preferences(pattern).pairs)
    expected, per_epoch = plan_epochs(data, 8, 2.5, 3, [1.5] * 100)
    assert [plan[k] for k in range(len(plan))] == expected and plan.steps_per_epoch == per_epoch


def test_small_buffers_mix_the_sets_and_honour_proportions(tmp_path: Path, tiny_checkpoint: Path) -> None:
    a, b = _shards(tmp_path / "a", "a", [40, 20]), _shards(tmp_path / "b", "b", [40])
    sources = {"a": a, "b": b}
    found = streaming.survey(sources, 0.0, seed=0)
    plan = StreamedPlan(lambda i, skip: streaming.train_stream(list(sources.values())[i], 0.0, 0, skip),
                        [s.train_pairs for s in found.sets], [2.0, 0.5], load_tokenizer(tiny_checkpoint),
                        InputRule(max_length=64), batch_size=4, epochs=1.0, seed=0, buffer_pairs=20)
    assert len(plan.buffers) == 5
    used: dict[str, int] = {"a": 0, "b": 0}
    for k in range(len(plan)):
        units = plan[k]
        assert plan.data is not None and max(len(u) for u in plan.data.units) == 1
        for u in units:
            prompt_ids = plan.data.texts.input_ids[plan.data.pairs[plan.data.units[u][0]][0]]
            used["a" if 1037 in prompt_ids else "b"] += 1  # 1037 = "a"
    assert used["a"] == 120  # 60 pairs, twice each
    assert abs(used["b"] - 20) <= len(plan.buffers)  # half of 40, rounded per buffer
    draws = np.array([buf.draws for buf in plan.buffers])
    assert (draws > 0).all()  # every buffer holds both sets
    assert draws.sum(axis=0).tolist() == [60, 40]


def test_a_plan_indexed_at_any_step_gives_the_same_batches(tmp_path: Path, tiny_checkpoint: Path) -> None:
    pattern = _shards(tmp_path / "s", "a", [33, 40, 27])
    straight, _ = _plan(tmp_path, tiny_checkpoint, pattern, buffer=24, epochs=2.0, fractions=[1.0],
                        valid_fraction=0.2)

    def texts(plan: StreamedPlan, k: int) -> list[list[int]]:
        units = plan[k]
        assert plan.data is not None
        return [plan.data.texts.input_ids[plan.data.pairs[plan.data.units[u][0]][0]] for u in units]

    sequence = [texts(straight, k) for k in range(len(straight))]
    epoch = [t for batch in sequence[: straight.steps_per_epoch] for t in batch]
    assert len(epoch) == sum(s.draws[0] for s in straight.buffers if s.epoch == 0)  # each pair once an epoch
    assert len({tuple(t) for t in epoch}) == len(epoch)
    for start in (5, 13, len(straight) - 1):  # a fresh plan (a resumed run) jumps to the step
        fresh, _ = _plan(tmp_path, tiny_checkpoint, pattern, buffer=24, epochs=2.0, fractions=[1.0],
                         valid_fraction=0.2)
        assert [texts(fresh, k) for k in range(start, len(fresh))] == sequence[start:]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _config(tmp_path: Path, checkpoint: Path, name: str, sets: dict[str, str], **overrides: object) -> TrainConfig:
    raw = synthetic_config(tmp_path, checkpoint, stages=["general"], **{"general.epochs": 2.0, **overrides})
    raw["general"]["sets"] = sets
    raw["output_dir"] = str(tmp_path / name)
    return TrainConfig.from_dict(raw)


def test_streamed_training_equals_in_memory_when_one_buffer_holds_the_set(tmp_path: Path,
                                                                          tiny_checkpoint: Path) -> None:
    pattern = _shards(tmp_path / "s", "a", [50, 46])
    whole = tmp_path / "whole.jsonl"
    whole.write_text("".join(gzip.open(f, "rt", encoding="utf-8").read()
                             for f in sorted((tmp_path / "s").glob("*.gz"))), encoding="utf-8")
    streamed = train(_config(tmp_path, tiny_checkpoint, "streamed", {"syn": pattern}))
    loaded = train(_config(tmp_path, tiny_checkpoint, "loaded", {"syn": str(whole)}))
    s, m = streamed["training"]["general"], loaded["training"]["general"]
    assert s.get("streamed") and not m.get("streamed")
    assert s["train_pairs"] == m["train_pairs"] and s["valid_pairs"] == m["valid_pairs"] > 0
    a, b = _weights(tmp_path / "streamed" / "general"), _weights(tmp_path / "loaded" / "general")
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same batches in the same order: bitwise equal
    assert s["valid_curve"] == m["valid_curve"]


def test_a_streamed_run_killed_mid_epoch_resumes_where_it_stopped(tmp_path: Path, tiny_checkpoint: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import lite_rm.training.steps as steps

    sets = {"syn": _shards(tmp_path / "s", "a", [40, 40, 16])}
    small = {"general.epochs": 1.0, "general.buffer_pairs": 24}  # several buffers per epoch
    straight = train(_config(tmp_path, tiny_checkpoint, "straight", sets, **small))
    assert straight["training"]["general"]["buffer_pairs"] == 24
    assert straight["training"]["general"]["steps"] >= 6
    real_step, calls = steps.reward_step, {"n": 0}
    seen: list[list[int]] = []

    def interrupted(model, sources, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 6:  # the state was saved at step 4 (save_every 2), mid-epoch, in buffer 2
            raise KeyboardInterrupt
        seen.append([len(sources[0].data.texts.input_ids[t]) for u in sources[0].units
                     for t in sources[0].data.pairs[sources[0].data.units[u][0]]])
        return real_step(model, sources, *args, **kwargs)

    monkeypatch.setattr(steps, "reward_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(_config(tmp_path, tiny_checkpoint, "resumed", sets, **small))
    calls["n"] = -10**6  # no more interrupts
    train(_config(tmp_path, tiny_checkpoint, "resumed", sets, **small), resume=True)
    a, b = _weights(tmp_path / "straight" / "general"), _weights(tmp_path / "resumed" / "general")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the resumed run took the steps after the saved state (5, 6, ...), not the epoch from its start
    assert len(seen) == 5 + straight["training"]["general"]["steps"] - 4


def test_a_saved_dataset_folder_streams_like_its_file(tmp_path: Path) -> None:
    """Hugging Face datasets stream from disk (a save_to_disk folder here; a hub name from the local
    cache), through the same parsing."""
    from datasets import Dataset

    path = write_pairs(tmp_path / "p.jsonl", 30)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    folder = tmp_path / "saved"
    Dataset.from_list(rows).save_to_disk(str(folder))
    assert streaming.source_records(str(folder)) == 30
    assert streaming.wants_streaming({"a": str(folder)}, threshold=30)
    found = streaming.survey({"a": str(folder)}, 0.2, seed=1)
    from_file = streaming.survey({"a": str(path)}, 0.2, seed=1)
    assert found.train_pairs == from_file.train_pairs > 0
    assert [(p.prompt, p.chosen, p.rejected) for p in found.valid] == \
        [(p.prompt, p.chosen, p.rejected) for p in from_file.valid] != []
    streamed = [p.prompt for p in streaming.train_stream(str(folder), 0.2, 1, skip=3)]
    assert streamed == [p.prompt for p in streaming.train_stream(str(path), 0.2, 1)][3:]
