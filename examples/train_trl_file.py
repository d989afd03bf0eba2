"""Train a reward model on a TRL-format preference file, export it, and score its test file.

    python examples/train_trl_file.py train.jsonl test.jsonl -o runs/mine --bundle mine-bundle

TRL's preference rows work as they are: standard ``{"prompt", "chosen", "rejected"}`` and conversational
``{"chosen": [messages], "rejected": [messages]}`` (the shared turns become the prompt). The same run from the
command line:

    lite-rm train -o runs/mine --skip-base --stages general --general-set mine=train.jsonl \
        --eval-set mine=test.jsonl
    lite-rm export runs/mine/general --output mine-bundle
    lite-rm eval mine-bundle --data mine=test.jsonl

Needs ``lite-rm[train,export]``. ``--model`` starts from another encoder (default: all-MiniLM-L6-v2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lite_rm import Scorer, TrainConfig, export_bundle, load_preferences, train
from lite_rm.scoring.evaluation import pairwise_accuracy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="train, export and evaluate on TRL-format files")
    parser.add_argument("train_file")
    parser.add_argument("test_file")
    parser.add_argument("-o", "--output", default="runs/trl", help="the run folder (checkpoints, results)")
    parser.add_argument("--bundle", default=None, help="the exported bundle (default: OUTPUT/bundle)")
    parser.add_argument("--model", default="default", help="the encoder to start from (folder or hub id)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (a quick try)")
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args(argv)

    general = {"sets": {"mine": args.train_file}, "epochs": args.epochs}
    if args.max_steps:
        general["max_steps"] = args.max_steps
    config = TrainConfig.from_dict({
        "output_dir": args.output, "model": args.model, "stages": ["general"], "max_length": args.max_length,
        "eval_sets": {"mine": args.test_file}, "general": general, "save_every": 0,
    })
    results = train(config)
    print(f"trained: held-out accuracy {results['results']['general']['mine']['acc']:.3f}")

    bundle = Path(args.bundle or Path(args.output) / "bundle")
    export_bundle(Path(args.output) / "general", bundle)
    pairs = load_preferences(args.test_file).pairs
    scorer = Scorer(bundle)
    chosen = scorer.predict([(p.prompt, p.chosen) for p in pairs])
    rejected = scorer.predict([(p.prompt, p.rejected) for p in pairs])
    accuracy = pairwise_accuracy(chosen, rejected)  # as lite-rm eval counts it: a tie is half right
    print(f"exported -> {bundle}: pairwise accuracy of the bundle on {len(pairs)} test pairs {accuracy:.3f}")


if __name__ == "__main__":
    main()
