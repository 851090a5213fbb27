"""Cost of the evaluation suite: each text metric per sentence, turn-taking metrics per
conversation, and the per-record model evaluation vs. the audio it covers.

In one run: BLEU, ROUGE-L, METEOR and BERTScore (embedded MiniLM) on the same ``--sentences``
pairs (one-off load time reported apart), ``omni.metrics.duplex.duplex_metrics`` on
``--conversations`` random timelines, and ``RecordEvaluator`` (tiny random export) on two
constructed two-channel conversations: seconds per record and the streaming engine's RTF.
Ratios compare figures of this run (e.g. BERTScore cost / BLEU cost). Goal: the duplex engine
inside evaluation meets the engine's own real-time target (RTF <= 0.1 on one core,
``benchmarks/_goals.ENGINE_RTF_GOAL``, as duplex_engine.py judges it).

    python benchmarks/evaluate.py [--sentences 100] [--conversations 500]

The last line printed is a JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _goals import ENGINE_RTF_GOAL, judge  # benchmarks/_goals.py: a script's folder is on sys.path

SR = 16000


def sentence_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    from serve_app.tiny_export import SENTENCES

    rng = np.random.default_rng(seed)
    refs, hyps = [], []
    for i in range(n):
        words = SENTENCES[i % len(SENTENCES)].split()
        refs.append(" ".join(words))
        hyp = [w for w in words if rng.random() > 0.15]
        if rng.random() < 0.5:
            hyp.insert(int(rng.integers(0, len(hyp) + 1)), "well")
        hyps.append(" ".join(hyp))
    return refs, hyps


def time_text_metrics(n: int) -> dict:
    from omni.metrics import nlg

    refs, hyps = sentence_pairs(n)
    out = {}
    for name, fn in (("bleu", nlg.bleu), ("rouge_l", nlg.rouge_l), ("meteor", nlg.meteor),
                     ("bertscore", lambda r, h: nlg.bertscore(r, h)["f1"])):
        t0 = time.perf_counter()
        fn(["the cat sat"], ["a dog stood"])       # first call: imports, WordNet / encoder load
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        score = fn(refs, hyps)
        out[name] = {"load_s": round(load, 2), "ms_per_sentence": round(1000 * (time.perf_counter() - t0) / n, 3),
                     "score_0_100": round(score, 2)}
    return out


def time_duplex_metrics(n: int) -> dict:
    from omni.metrics.duplex import duplex_metrics

    rng = np.random.default_rng(0)
    convs = []
    for _ in range(n):
        t, user, asst = 0.0, [], []
        for _ in range(6):
            d = float(rng.uniform(1, 4))
            user.append({"start_s": t, "end_s": t + d, "kind": "turn", "expects_response": True})
            t += d + float(rng.normal(0.3, 0.15))
            a = float(rng.uniform(1, 4))
            asst.append((max(0.0, t), t + a))
            t += a + float(rng.uniform(0.2, 0.8))
        convs.append({"user_turns": user, "assistant": asst, "duration_s": t})
    t0 = time.perf_counter()
    m = duplex_metrics(convs)
    dt = time.perf_counter() - t0
    return {"ms_per_conversation": round(1000 * dt / n, 4), "conversation_minutes": round(m["duration_s"] / 60, 1),
            "response_latency_p50_s": round(m["response_latency_p50_s"], 3)}


def time_record_eval() -> dict:
    import torch

    from omni.config import Config
    from omni.metrics.model_eval import RecordEvaluator
    from serve_app.tiny_export import SENTENCES, build_tiny_export, demo_wave

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        export = build_tiny_export(Path(tmp) / "export", num_units=32, speech_chunk=10)
        cfg = Config()
        cfg.eval.max_new_tokens, cfg.eval.tts_max_units = 16, 50
        ev = RecordEvaluator(export, cfg)
        recs = []
        for k in range(2):
            dur, turns, ch = 8.0, [], {"user": np.zeros(8 * SR, np.float32), "assistant": np.zeros(8 * SR, np.float32)}
            for i, (spk, s, e) in enumerate([("user", 0.2, 1.8), ("assistant", 2.1, 3.9), ("user", 4.2, 5.6),
                                             ("assistant", 5.9, 7.6)]):
                a, b = round(s * SR), round(e * SR)
                ch[spk][a:b] = demo_wave((b - a) / SR + 0.01, seed=10 * k + i)[: b - a]
                text = SENTENCES[(k + i) % len(SENTENCES)]
                turns.append({"speaker": spk, "text": text, "start_s": s, "end_s": e, "emotion": "neutral",
                              "pitch": "normal", "speed": "normal", "kind": "turn",
                              "text_ids": ev.exp.text_tokenizer.encode(text)})
            rec = {"key": f"bench-{k}", "meta": {"turns": turns, "duration_s": dur}, **ch,
                   **{f"{c}_units": np.asarray(ev.speech.encode(ch[c]), np.int64) for c in ch}}
            recs.append(rec)
        t0 = time.perf_counter()
        rows = [ev(r, duplex=True) for r in recs]
        dt = time.perf_counter() - t0
    audio_s = sum(r["duplex"]["duration_s"] for r in rows)
    compute_s = sum(r["duplex"]["compute_s"] for r in rows)
    return {"records": len(rows), "s_per_record": round(dt / len(rows), 2),
            "eval_s_per_audio_s": round(dt / audio_s, 3), "duplex_rtf": round(compute_s / audio_s, 3),
            "duplex_share_of_eval_time": round(compute_s / dt, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", type=int, default=100)
    ap.add_argument("--conversations", type=int, default=500)
    args = ap.parse_args()
    t0 = time.time()
    text = time_text_metrics(args.sentences)
    result = {"benchmark": "evaluate", "sentences": args.sentences, "text_metrics": text,
              "bertscore_to_bleu_cost_ratio": round(text["bertscore"]["ms_per_sentence"] /
                                                    max(text["bleu"]["ms_per_sentence"], 1e-6), 1),
              "meteor_to_bleu_cost_ratio": round(text["meteor"]["ms_per_sentence"] /
                                                 max(text["bleu"]["ms_per_sentence"], 1e-6), 1),
              "duplex_metrics": time_duplex_metrics(args.conversations),
              "record_eval": time_record_eval()}
    judge(result, "duplex_rtf", "<=", ENGINE_RTF_GOAL, figure=result["record_eval"]["duplex_rtf"])
    result["wall_s"] = round(time.time() - t0, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
