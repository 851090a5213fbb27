"""Packing efficiency and data-path throughput vs. the tiny model's training consumption.

For every stage: flatten a set of synthetic dialogues, pack them into rows of ``seq_len``
tokens with ``StreamingPacker`` and report the non-pad token fraction packed vs. packed per
pool of examples (``pack_examples`` on each pool) vs. unpacked (one sequence window per row), and flatten+pack+collate throughput in non-pad tokens/s. In the same run it times
forward+backward+AdamW steps of the tiny Qwen2 (``omni.config.ModelConfig`` defaults) on
packed rows and reports the ratio data-path tokens/s : training tokens/s.
Goals (issue 4): packed non-pad fraction >= 0.97 for every stage; ratio >= 10.

Dialogues are random but shaped like the synthetic data: 2-8 turns of 1-6 s at 25 Hz,
pauses ~ N(0.4 s, 0.2 s), 20 % interruptions / backchannels, ~4 text tokens per second of
speech; units are random (their values do not matter here). Both sides run on one thread.

    python benchmarks/packing.py [--dialogues 200] [--seq-len 512] [--train-steps 6]

The last line printed is a JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _goals import judge  # benchmarks/_goals.py: a script's folder is on sys.path
from omni.config import STAGES, ModelConfig, StageConfig
from omni.formats import Dialogue, Turn, flatten
from omni.model import build_model
from omni.packing import StreamingPacker, collate, model_inputs, pack_examples, packed_loss, pad_rows
from omni.vocab import Vocab

FRAME_RATE_HZ = 25.0


def synthetic_dialogue(rng: np.random.Generator, vocab: Vocab, index: int) -> Dialogue:
    turns, t_s = [], 0.0
    n_turns = int(rng.integers(2, 9))
    for k in range(n_turns):
        speaker = "user" if k % 2 == 0 else "assistant"
        dur_s = float(rng.uniform(1.0, 6.0))
        kind = "turn"
        if k > 0 and rng.random() < 0.2:  # interruption / backchannel: starts before the previous turn ends
            t_s = max(turns[-1][2] - float(rng.uniform(0.2, 1.0)), turns[-1][1] + 0.2)
            if rng.random() < 0.5:
                kind, dur_s = "backchannel", float(rng.uniform(0.3, 0.8))
        start_s, end_s = t_s, t_s + dur_s
        turns.append((speaker, start_s, end_s, kind))
        t_s = end_s + max(0.05, float(rng.normal(0.4, 0.2)))
    n_frames = round(t_s * FRAME_RATE_HZ)
    out = []
    for speaker, s, e, kind in turns:
        n_text = max(1, round((e - s) * 4))
        out.append(Turn(speaker, rng.integers(0, vocab.text_size, n_text), round(s * FRAME_RATE_HZ),
                        min(n_frames, round(e * FRAME_RATE_HZ)), kind=kind,
                        emotion=str(rng.choice(["neutral", "happy", "sad"]))))
    units = rng.integers(0, vocab.num_units, (2, n_frames))
    return Dialogue(out, units[0], units[1], silence_unit=0, key=f"bench-{index}")


def flatten_or_skip(stage, d, vocab, cfg):
    """Like the training loop: a dialogue that cannot form an example of this stage is skipped."""
    try:
        return flatten(stage, d, vocab, cfg)
    except ValueError:
        return []


def nonpad_fraction(rows) -> float:
    total = sum(len(r["input_ids"]) for r in rows)
    return 1.0 - sum(r["num_pad"] for r in rows) / total


def data_path(dialogues, vocab, stage, cfg, seq_len, micro_batch, pool):
    """Flatten -> StreamingPacker (pools of ``pool`` examples) -> collate, timed."""
    t0 = time.perf_counter()
    packer = StreamingPacker(seq_len, vocab.special("pad"))
    rows, pending = [], []
    for d in dialogues:
        pending += flatten_or_skip(stage, d, vocab, cfg)
        if len(pending) >= pool:
            rows += packer.add(pending)
            pending = []
    rows += packer.add(pending) + packer.flush()
    for i in range(0, len(rows), micro_batch):
        collate(rows[i:i + micro_batch])
    dt = time.perf_counter() - t0
    tokens = sum(len(r["input_ids"]) - r["num_pad"] for r in rows)
    return rows, tokens / dt


def per_pool_rows(examples, seq_len, pad_id, pool):
    """Baseline: each pool packed on its own (part-filled rows are not carried over)."""
    return [r for i in range(0, len(examples), pool) for r in pack_examples(examples[i:i + pool], seq_len, pad_id)]


def train_tokens_per_s(vocab, rows, micro_batch, steps) -> float:
    model = build_model(ModelConfig(), vocab)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = [collate(rows[i:i + micro_batch]) for i in range(0, micro_batch * (steps + 1), micro_batch)]

    def step(b):
        loss, _ = packed_loss(model(**model_inputs(b)).logits, b)
        loss.backward()
        opt.step()
        opt.zero_grad()

    step(batches[0])  # warm-up
    t0 = time.perf_counter()
    tokens = 0
    for b in batches[1:]:
        step(b)
        tokens += int(b["input_ids"].numel()) - b["num_pad"]
    return tokens / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dialogues", type=int, default=200)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--micro-batch", type=int, default=2)
    ap.add_argument("--pool", type=int, default=32, help="examples packed together (training loop's pool)")
    ap.add_argument("--train-steps", type=int, default=6)
    ap.add_argument("--num-units", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    vocab = Vocab(512, args.num_units)
    rng = np.random.default_rng(args.seed)
    dialogues = [synthetic_dialogue(rng, vocab, i) for i in range(args.dialogues)]
    cfg = StageConfig()
    result = {"seq_len": args.seq_len, "dialogues": args.dialogues, "pool_examples": args.pool,
              "audio_hours": round(sum(d.num_frames for d in dialogues) / FRAME_RATE_HZ / 3600, 3)}
    stages, all_rows = {}, {}
    for stage in STAGES:
        rows, tps = data_path(dialogues, vocab, stage, cfg, args.seq_len, args.micro_batch, args.pool)
        examples = [e for d in dialogues for e in flatten_or_skip(stage, d, vocab, cfg)]
        unpacked = pad_rows(examples, args.seq_len, vocab.special("pad"))
        per_pool = per_pool_rows(examples, args.seq_len, vocab.special("pad"), args.pool)
        stages[stage] = {"examples": len(examples), "rows_packed": len(rows), "rows_unpacked": len(unpacked),
                         "nonpad_fraction_packed": round(nonpad_fraction(rows), 4),
                         "nonpad_fraction_packed_per_pool": round(nonpad_fraction(per_pool), 4),
                         "nonpad_fraction_unpacked": round(nonpad_fraction(unpacked), 4),
                         "flatten_collate_tokens_per_s": round(tps)}
        all_rows[stage] = rows
        print(stage, json.dumps(stages[stage]), flush=True)
    train_tps = train_tokens_per_s(vocab, all_rows["full_duplex_3"], args.micro_batch, args.train_steps)
    min_data_tps = min(s["flatten_collate_tokens_per_s"] for s in stages.values())
    result.update({
        "stages": stages,
        "train_tokens_per_s": round(train_tps, 1),
        "min_flatten_collate_tokens_per_s": min_data_tps,
        "min_ratio_data_to_train": round(min_data_tps / train_tps, 1),
        "min_nonpad_fraction_packed": min(s["nonpad_fraction_packed"] for s in stages.values()),
    })
    judge(result, "min_nonpad_fraction_packed", ">=", 0.97)
    judge(result, "min_ratio_data_to_train", ">=", 10)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
