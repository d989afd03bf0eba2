"""A small Bradley-Terry fine-tune of MiniLM on DSP train, only to give the scoring benchmark a reward
model with realistic (small) margins. Not part of the package: ``lite-rm train`` is the real trainer.

    .venv/bin/python bench/score_finetune.py --domain academy --epochs 1 --output bench/.work/bt-academy

A random head gives near-zero, nearly random score gaps; int8 quantization noise then flips many pair
orders and says nothing about a trained model. One epoch on one domain's pairs trains real (if small)
margins, which is what the quantization study needs to measure.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from lite_rm.data import load_preferences
from lite_rm.data.locations import DSP_TRAIN, resolve_data_dir
from lite_rm.files import atomic_dir
from lite_rm.scoring.encoding import InputRule, encode_pairs, load_tokenizer, pad_batch, pad_id_of
from lite_rm.training.checkpoint import write_meta
from lite_rm.training.encoders import default_encoder_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domain", default="academy")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-pairs", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--output", default="bench/.work/bt-academy")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    # Seed before loading: the classification head is created randomly at load time.
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    encoder = default_encoder_path()
    model = AutoModelForSequenceClassification.from_pretrained(encoder, num_labels=1)
    tokenizer = load_tokenizer(encoder)
    rule = InputRule(max_length=args.max_length)
    pairs = load_preferences(resolve_data_dir(None) / DSP_TRAIN, domain=args.domain).pairs
    prompts = [p.prompt for p in pairs]
    enc_c = encode_pairs(tokenizer, prompts, [p.chosen for p in pairs], rule)
    enc_r = encode_pairs(tokenizer, prompts, [p.rejected for p in pairs], rule)
    pad = pad_id_of(tokenizer)
    optim = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    steps = args.epochs * ((len(pairs) + args.batch_pairs - 1) // args.batch_pairs)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min(1.0, (s + 1) / (0.1 * steps)) *
                                              max(0.0, (steps - s) / steps))
    model.train()
    step, t0 = 0, time.time()
    for _epoch in range(args.epochs):
        order = list(range(len(pairs)))
        random.shuffle(order)
        for start in range(0, len(order), args.batch_pairs):
            idx = order[start:start + args.batch_pairs]
            bc, br = pad_batch(enc_c, idx, pad), pad_batch(enc_r, idx, pad)
            width = max(bc["input_ids"].shape[1], br["input_ids"].shape[1])
            both = {k: torch.from_numpy(np.concatenate([np.pad(bc[k], ((0, 0), (0, width - bc[k].shape[1]))),
                                                        np.pad(br[k], ((0, 0), (0, width - br[k].shape[1])))]))
                    for k in bc}
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(**both).logits.float().squeeze(-1)
            margin = out[: len(idx)] - out[len(idx):]
            loss = -torch.nn.functional.logsigmoid(margin).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            sched.step()
            optim.zero_grad()
            step += 1
            if step % 10 == 0:
                print(f"step {step}/{steps} loss {loss.item():.4f} acc {(margin > 0).float().mean():.3f} "
                      f"{step * args.batch_pairs / (time.time() - t0):.1f} pairs/s", flush=True)
    model.eval()
    with atomic_dir(args.output) as tmp:
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(encoder).save_pretrained(tmp)
        write_meta(tmp, rule, stage="bench-bt", domains=[args.domain], data=DSP_TRAIN, epochs=args.epochs,
                   lr=args.lr, seed=args.seed)
    print(f"saved {args.output} after {time.time() - t0:.0f}s")


if __name__ == "__main__":
    Path("bench/.work").mkdir(parents=True, exist_ok=True)
    main()
