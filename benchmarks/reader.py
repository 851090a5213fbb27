"""Training reader throughput vs. the tiny model's training consumption (issue 6 goal: >= 10x).

Prepares a small DailyTalk-layout corpus with the real pipeline (in-process engine), then in
the same run measures, on one process:

* ``reader_tokens_per_s``: ``ShardStream`` records/s x (speech units of both channels + text ids);
  the stream verifies each shard's sha256 on its first read (``verify=True``), as training does;
* ``input_path_tokens_per_s``: what training really consumes: ``ShardStream`` → flatten
  (``full_duplex_3``) → pack → collate, counted in non-pad tokens/s;
* ``train_tokens_per_s``: forward + backward + AdamW of the tiny model (``configs/tiny.yaml``)
  on those packed micro-batches, non-pad tokens/s (plain torch, no DeepSpeed set-up cost).

    python benchmarks/reader.py [--dialogues 24] [--records 400] [--train-steps 6]

The last line printed is a JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _goals import judge  # benchmarks/_goals.py: a script's folder is on sys.path
from data_prep import pipeline as P
from data_prep.sources import fixtures as F
from omni.config import SourceConfig, load_config
from omni.packing import model_inputs
from omni.shards import ShardStream
from omni.train_loop import load_assets, packed_batches, stage_examples, stream_losses


def prepare(work: Path, dialogues: int):
    F.make_dailytalk(work / "dt", dialogues=dialogues, turns=6, seconds=1.5)
    cfg = load_config(ROOT / "configs/tiny.yaml", [f"data.output_dir={work / 'data'}", "data.heldout_fraction=0.0",
                                                   "data.shard_max_samples=8"])
    cfg.data.sources = [SourceConfig(kind="dailytalk", name="dt", path=str(work / "dt"))]
    P.run(cfg, engine="local", progress=False)
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dialogues", type=int, default=24)
    ap.add_argument("--records", type=int, default=400, help="records read per reader measurement")
    ap.add_argument("--train-steps", type=int, default=6)
    ap.add_argument("--stage", default="full_duplex_3")
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cfg = prepare(Path(tmp), args.dialogues)
        prep_s = time.perf_counter() - t0
        data = cfg.data.output_dir

        stream = iter(ShardStream(data, "train", seed=0, shuffle_buffer=cfg.data.shuffle_buffer, verify=True))
        next(stream)
        t0, tokens = time.perf_counter(), 0
        for rec in islice(stream, args.records):
            tokens += len(rec["user_units"]) + len(rec["assistant_units"])
            tokens += sum(len(t["text_ids"]) for t in rec["meta"]["turns"])
        reader_tps = tokens / (time.perf_counter() - t0)
        records_per_s = args.records / (time.perf_counter() - t0)

        vocab, _, speech, _ = load_assets(cfg)
        tr, _ = cfg.stage_train(args.stage)
        pad = vocab.special("pad")
        batches = packed_batches(stage_examples(cfg, args.stage, vocab, speech,
                                                iter(ShardStream(data, "train", seed=1, verify=True))), tr.seq_len,
                                 tr.micro_batch_size, pad)
        next(batches)
        t0, tokens, n = time.perf_counter(), 0, 0
        while time.perf_counter() - t0 < 3.0 or n < 20:
            b = next(batches)
            tokens += int((b["input_ids"] != pad).sum())
            n += 1
        input_tps = tokens / (time.perf_counter() - t0)

        from omni.model import build_model
        model = build_model(cfg.model, vocab)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        train_batches = [next(batches) for _ in range(args.train_steps + 1)]

        def step(b):
            loss, _ = stream_losses(model(**model_inputs(b)).logits, b["labels"], b["stream"])
            loss.backward()
            opt.step()
            opt.zero_grad()

        step(train_batches[0])  # warm-up
        t0, tokens = time.perf_counter(), 0
        for b in train_batches[1:]:
            step(b)
            tokens += int((b["input_ids"] != pad).sum())
        train_tps = tokens / (time.perf_counter() - t0)

    result = {"benchmark": "reader", "stage": args.stage, "seq_len": tr.seq_len, "micro_batch": tr.micro_batch_size,
              "prep_s": round(prep_s, 1), "reader_records_per_s": round(records_per_s, 1),
              "reader_tokens_per_s": round(reader_tps), "input_path_tokens_per_s": round(input_tps),
              "train_tokens_per_s": round(train_tps), "ratio_input_path_to_train": round(input_tps / train_tps, 1),
              "torch_threads": torch.get_num_threads()}
    judge(result, "ratio_input_path_to_train", ">=", 10)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
