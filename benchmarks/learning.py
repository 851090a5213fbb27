"""Does the tiny curriculum learn? Held-out loss per stage and stream vs a unigram baseline.

    .venv/bin/python benchmarks/learning.py [--dialogues 600] [--steps 1500] [--data DIR]

Trains the four stages in order (plain loop, one process: Ray Train adds nothing to what is
learned and is measured in train_overhead.py), each from the previous export, on a fixed
synthetic set. For every stage and stream it reports the model's held-out cross-entropy and
the cross-entropy of a unigram model of that stream fitted on the training tokens (add-½
smoothing) on the same held-out tokens; goal: model ≤ 0.7 × unigram for every stream. Also the
align stage's ASR CER (greedy, the model's own transcripts of held-out user turns).
Budget: ≤ 20 CPU-minutes with the defaults (measured 2026-11-25 on 2 cores: 343 s wall, so at most
11.4 CPU-minutes, max ratio 0.62, align ASR CER 0.78). Fewer dialogues overfit: at 240 dialogues
the half-duplex assistant speech stayed at 0.95x its unigram baseline. JSON last line.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _goals import judge  # benchmarks/_goals.py: a script's folder is on sys.path
STAGES = ("align", "half_duplex", "full_duplex_3", "full_duplex_2")
NAMES = {1: "user_speech", 2: "user_text", 3: "assistant_text", 4: "assistant_speech"}


def unigram_baseline(train_ex, held_ex) -> dict[str, float]:
    """Per stream: cross-entropy (nats) of held-out loss tokens under train-token frequencies."""
    counts: dict[int, Counter] = {c: Counter() for c in NAMES}
    for ex in train_ex:
        for tok, st, m in zip(ex.input_ids, ex.stream, ex.loss_mask):
            if m and st in counts:
                counts[st][int(tok)] += 1
    out = {}
    for code, name in NAMES.items():
        held = [int(t) for ex in held_ex for t, st, m in zip(ex.input_ids, ex.stream, ex.loss_mask) if m and st == code]
        if not held or not counts[code]:
            continue
        support = set(counts[code]) | set(held)
        total = sum(counts[code].values()) + 0.5 * len(support)
        out[name] = -sum(math.log((counts[code][t] + 0.5) / total) for t in held) / len(held)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dialogues", type=int, default=600)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--data", default=None)
    a = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import torch

    from omni.shards import ShardStream
    from omni.config import load_config, resolve_paths
    from omni.formats import Dialogue, align_pairs
    from omni.metrics.text import cer
    from omni.model import greedy_decode as greedy
    from omni.model import load_export
    from omni.train_loop import LoopContext, load_assets, stage_examples, train_loop

    t_start, cpu_start = time.time(), time.process_time()
    tmp = Path(tempfile.mkdtemp(prefix="omni-bench-learn-"))
    data = Path(a.data) if a.data else tmp / "data"
    if not (data / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "jobs.prepare_data", "--config", "configs/tiny.yaml", "--no-progress",
                        f"data.output_dir={data}", f"synth.num_dialogues={a.dialogues}",
                        "data.heldout_fraction=0.15"], cwd=ROOT, check=True)
    cfg = resolve_paths(load_config(ROOT / "configs" / "tiny.yaml", [
        f"data.output_dir={data}", f"train.output_dir={tmp}/ckpt", "train.num_workers=1", "train.lr=3e-3",
        "train.warmup_steps=20", "train.log_every=50", "train.eval_batches=1000",
        *[f"stages.{s}.max_steps={a.steps}" for s in STAGES]]))
    vocab, _, speech, _ = load_assets(cfg)
    train_recs = list(ShardStream(data, "train", loop=False, shuffle_buffer=1))
    held_recs = list(ShardStream(data, "heldout", loop=False, shuffle_buffer=1, audio=False))
    report, prev = {}, None
    for stage in STAGES:
        t0 = time.time()
        export = str(tmp / "exports" / stage)
        ctx = LoopContext()
        final = train_loop({"config": cfg.model_dump(mode="json"), "stage": stage, "init_from": prev,
                            "export_dir": export}, ctx)
        prev = export
        base = unigram_baseline(list(stage_examples(cfg, stage, vocab, speech, iter(train_recs))),
                                list(stage_examples(cfg, stage, vocab, speech, iter(held_recs))))
        streams = {}
        for name, uni in base.items():
            model_loss = final.get(f"heldout_loss_{name}")
            if model_loss is not None:
                streams[name] = {"heldout_nats": round(model_loss, 4), "unigram_nats": round(uni, 4),
                                 "ratio": round(model_loss / uni, 3)}
        report[stage] = {"streams": streams, "train_loss_last": round(final["loss"], 4),
                         "wall_s": round(time.time() - t0, 1)}
        print(f"[{stage}] " + ", ".join(f"{k}: {v['heldout_nats']:.2f} vs unigram {v['unigram_nats']:.2f} "
                                        f"({v['ratio']:.2f}x)" for k, v in streams.items()), flush=True)
        if stage == "align":
            exp = load_export(export)
            allowed = torch.zeros(vocab.size, dtype=torch.bool)
            allowed[: vocab.text_size] = True
            allowed[vocab.special("eot")] = True
            refs, hyps = [], []
            for rec in held_recs:
                d = Dialogue.from_record(rec, frame_rate_hz=speech.frame_rate_hz, silence_unit=speech.silence_unit)
                for p in itertools.islice(align_pairs(d, asr_speakers=("user",), tts_speakers=()), 3):
                    prompt = [vocab.special("asr"), *vocab.units_to_ids(p.units).tolist(), vocab.special("text")]
                    refs.append(exp.text_tokenizer.decode(p.text_ids.tolist()))
                    hyps.append(exp.text_tokenizer.decode(greedy(exp.model, prompt, allowed, vocab.special("eot"), 48)))
            report[stage]["asr_cer"] = round(cer(refs, hyps), 4)
            report[stage]["asr_utterances"] = len(refs)
    ratios = [v["ratio"] for st in report.values() for v in st["streams"].values()]
    out = {"dialogues": a.dialogues, "steps_per_stage": a.steps, "stages": report,
           "max_ratio_vs_unigram": max(ratios), "wall_s": round(time.time() - t_start, 1),
           "cpu_minutes_training": round((time.process_time() - cpu_start) / 60, 2),
           # data prep runs in a Ray subprocess: bound the total by wall time x cores (the budget is
           # judged on this bound, so "met" never rests on CPU time this process cannot see)
           "cpu_minutes_upper_bound": round((time.time() - t_start) * (os.cpu_count() or 1) / 60, 2)}
    judge(out, "max_ratio_vs_unigram", "<=", 0.7)
    judge(out, "cpu_minutes_upper_bound", "<=", 20)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
