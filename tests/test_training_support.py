"""Synthetic preference files and small configs for the training tests (written under tmp_path)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

WORDS = ["river", "table", "green", "music", "window", "paper", "stone", "cloud", "seven", "light", "garden"]
DOMAIN_WORD = {"academy": "theorem", "business": "revenue", "entertainment": "movie", "literature": "poem",
               "normal": "okay"}


def write_pairs(path: Path, n: int, seed: int = 0) -> Path:
    """A trivially separable pairs JSONL: the preferred response says 'excellent', the other 'terrible'."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            filler = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12)))
            prompt = f"question {i}: {filler}?"
            fh.write(json.dumps({"prompt": prompt, "chosen": f"excellent {filler}",
                                 "rejected": f"terrible {filler}"}) + "\n")
    return path


def write_dsp(path: Path, n: int, seed: int = 0) -> Path:
    """A DSP-format file: each domain's response carries its domain word."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        filler = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8)))
        items.append({"query": f"query {i} {filler}",
                      "responses": {d: f"{w} {filler} {rng.choice(WORDS)}" for d, w in DOMAIN_WORD.items()}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


def synthetic_config(tmp_path: Path, checkpoint: Path, **overrides: Any) -> dict[str, Any]:
    """A config dict for a fast run of the tiny model on synthetic data (general + custom)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    data_dir = tmp_path / "data"
    general = write_pairs(tmp_path / "general.jsonl", 96, seed=1)
    test = write_pairs(tmp_path / "test.jsonl", 32, seed=2)
    write_dsp(data_dir / "dsp" / "train.json", 48, seed=3)
    config: dict[str, Any] = {
        "output_dir": str(tmp_path / "run"), "model": str(checkpoint), "data_dir": str(data_dir),
        "stages": ["general", "custom"], "max_length": 64, "bf16": False, "threads": 1, "log_every": 2,
        "save_every": 2, "eval_sets": {"syn": str(test)},
        "base": {"max_texts": 64, "batch_size": 16, "max_steps": 3},
        "general": {"sets": {"syn": str(general)}, "epochs": 1.0, "batch_size": 16, "lr": 5e-3,
                    "valid_fraction": 0.1},
        "custom": {"domains": ["academy"], "epochs": 1.0, "batch_size": 8, "lr": 5e-3, "valid_fraction": 0.2,
                   "eval_every": 0, "patience": 0, "interpolate": "off"},
    }
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        (config.setdefault(section, {}) if section else config)[name] = value
    return config
