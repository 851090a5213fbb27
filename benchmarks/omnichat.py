"""OmniChat benchmark (issue 8), CPU, tiny config, bounded (~3-5 min by default).

1. **Fusion cost**: Mix-Former forward per second of user audio vs the LLM work of the same
   turn (prefill of the turn's sequence + greedy generation of the reply), medians over
   repeats. Goal: fusion < 10 % of the turn's compute (``fusion_fraction_of_turn``).
   The experts' own cost is reported too (frozen, cacheable, not part of the fusion).
2. **Emotion F1**: the tiny model (configs/omnichat_tiny.yaml sizes) trained with plain AdamW
   for a fixed CPU-time budget on espeak-voiced ShareChatX-style emotion dialogues, scored on
   held-out dialogues of the same catalogue: macro-F1 of the reply's emotion tag vs always
   answering the training set's most frequent emotion. Goal: >= 2x the baseline.

    python benchmarks/omnichat.py [--train-cpu-budget-s 60] [--dialogues 60] [--repeats 20]

Last line: one JSON object (units in key names).
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omni.config import load_config  # noqa: E402
from omni.model import build_model  # noqa: E402
from omni.omnichat.data import Segment, turn_examples  # noqa: E402
from omni.omnichat.evaluate import generate_responses, macro_f1  # noqa: E402
from omni.omnichat.model import OmniChatModel  # noqa: E402
from omni.omnichat.synthetic import emotion_records, tiny_vocab  # noqa: E402
from omni.omnichat.train import fit_plain  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "omnichat_tiny.yaml"


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1000 * statistics.median(ts)


def fusion_cost(model: OmniChatModel, example, repeats: int) -> dict:
    audio = [s for s in example.segments if s.kind == "audio"][-1]
    seconds = len(audio.wave) / 16000
    feats = {n: e.features(audio.wave) for n, e in model.experts.items()}
    lens = {n: torch.tensor([f.shape[0]]) for n, f in feats.items()}
    batched = {n: f[None] for n, f in feats.items()}
    prefix = example.segments[:-1]
    model.eval()
    with torch.no_grad():
        experts_ms = _median_ms(lambda: [e.features(audio.wave) for e in model.experts.values()], max(3, repeats // 4))
        fusion_ms = _median_ms(lambda: model.mixformer(batched, lens), repeats)
        x, m, _ = model.build_inputs([prefix], with_labels=False)
        prefill_ms = _median_ms(lambda: model.llm(inputs_embeds=x, attention_mask=m), repeats)
        n_new = len(model.generate(prefix))
        gen_ms = _median_ms(lambda: model.generate(prefix), max(3, repeats // 4))
    # generate() includes its own fusion + prefill; the LLM part of the turn is gen - fusion
    llm_turn_ms = max(gen_ms - fusion_ms, prefill_ms)
    return {"turn_audio_s": round(seconds, 3), "turn_tokens": int(x.shape[1]), "reply_tokens": n_new,
            "experts_ms_per_audio_s": experts_ms / seconds, "fusion_ms_per_audio_s": fusion_ms / seconds,
            "fusion_ms": fusion_ms, "llm_prefill_ms": prefill_ms, "llm_turn_ms": llm_turn_ms,
            "fusion_fraction_of_prefill": fusion_ms / (fusion_ms + prefill_ms),
            "fusion_fraction_of_turn": fusion_ms / (fusion_ms + llm_turn_ms)}


def _split(recs, heldout_fraction=0.25):
    train, held = [], []
    for r in recs:
        (held if zlib.crc32(r["key"].encode()) % 1000 < heldout_fraction * 1000 else train).append(r)
    return train, held


def emotion_f1(cfg, dialogues: int, cpu_budget_s: float, wall_cap_s: float, seed: int = 0) -> dict:
    t0 = time.time()
    recs, tok = emotion_records(dialogues, seed=seed)
    vocab = tiny_vocab(tok)
    synth_s = time.time() - t0
    train_recs, held_recs = _split(recs)
    oc = cfg.omnichat
    torch.manual_seed(seed)
    model = OmniChatModel(oc, build_model(cfg.model, vocab, lora=oc.lora), vocab)
    train = [e for r in train_recs for e in turn_examples(r, vocab, oc)]
    held = [e for r in held_recs for e in turn_examples(r, vocab, oc)]
    t1 = time.time()
    for e in train + held:  # frozen experts: features once per turn (cached by the model)
        for s in e.segments:
            if s.kind == "audio":
                model.expert_features(s)
    features_s = time.time() - t1
    rng = random.Random(seed)

    def forever():
        while True:
            order = train[:]
            rng.shuffle(order)
            yield from order
    fit = fit_plain(model, forever(), max_steps=10 ** 9, lr=oc.lr, micro_batch=oc.micro_batch_size,
                    cpu_budget_s=cpu_budget_s, time_budget_s=wall_cap_s)
    res = generate_responses(model, tok, held, max_new_tokens=24)
    refs = [r[2]["emotion"] for r in res]
    preds = [r[3]["emotion"] for r in res]
    majority = Counter(e.style["emotion"] for e in train).most_common(1)[0][0]
    base = macro_f1(refs, [majority] * len(refs))
    f1 = macro_f1(refs, preds)
    return {"dialogues": len(recs), "train_turns": len(train), "heldout_turns": len(held),
            "synthesis_s": synth_s, "expert_features_s": features_s, "train_steps": fit["steps"],
            "train_wall_s": fit["wall_s"], "train_cpu_s": fit["cpu_s"], "final_train_loss_nats": fit["loss"],
            "emotion_f1_macro": f1, "majority_emotion": majority, "majority_f1_macro": base,
            "emotion_f1_over_majority_ratio": f1 / base if base > 0 else float("inf"),
            "emotion_accuracy": sum(a == b for a, b in zip(refs, preds)) / max(1, len(refs)),
            "predicted_emotions": dict(Counter(preds)), "expert_weights": model.mixformer.expert_weights()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-cpu-budget-s", type=float, default=60.0,
                    help="training budget in CPU seconds of this process (robust to a busy machine)")
    ap.add_argument("--train-wall-cap-s", type=float, default=150.0, help="stop training after this wall time anyway")
    ap.add_argument("--dialogues", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: tiny ops lose to thread sync)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = load_config(CONFIG)
    t0 = time.time()
    emo = emotion_f1(cfg, a.dialogues, a.train_cpu_budget_s, a.train_wall_cap_s)
    print("emotion:", json.dumps(emo), flush=True)
    # fusion cost on a held-out-like turn of the trained-size model (weights do not change cost)
    recs, tok = emotion_records(2, seed=7, start=1000)
    vocab = tiny_vocab(tok)
    model = OmniChatModel(cfg.omnichat, build_model(cfg.model, vocab, lora=cfg.omnichat.lora), vocab)
    ex = max((e for r in recs for e in turn_examples(r, vocab, cfg.omnichat)),
             key=lambda e: len([s for s in e.segments if s.kind == "audio"][-1].wave))
    cost = fusion_cost(model, ex, a.repeats)
    print("fusion:", json.dumps(cost), flush=True)
    out = {"fusion_ms_per_audio_s": round(cost["fusion_ms_per_audio_s"], 3),
           "experts_ms_per_audio_s": round(cost["experts_ms_per_audio_s"], 2),
           "llm_turn_ms": round(cost["llm_turn_ms"], 2), "llm_prefill_ms": round(cost["llm_prefill_ms"], 3),
           "fusion_fraction_of_turn": round(cost["fusion_fraction_of_turn"], 4),
           "fusion_fraction_of_prefill": round(cost["fusion_fraction_of_prefill"], 4),
           "fusion_goal_met": cost["fusion_fraction_of_turn"] < 0.10,
           "emotion_f1_macro": round(emo["emotion_f1_macro"], 4), "majority_f1_macro": round(emo["majority_f1_macro"], 4),
           "emotion_f1_over_majority_ratio": round(emo["emotion_f1_over_majority_ratio"], 3),
           "emotion_goal_met": emo["emotion_f1_over_majority_ratio"] >= 2.0,
           "train_cpu_budget_s": a.train_cpu_budget_s, "train_cpu_s": round(emo["train_cpu_s"], 1),
           "train_steps": emo["train_steps"],
           "heldout_turns": emo["heldout_turns"], "total_wall_s": round(time.time() - t0, 1)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
