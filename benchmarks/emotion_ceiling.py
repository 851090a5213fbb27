"""The emotion ceiling of the synthetic data: a plain classifier on pitch/energy/rhythm statistics.

    python benchmarks/emotion_ceiling.py [--backends espeak piper mixed] [--train-sentences 3]
                                         [--test-sentences 2] [--seed 9001] [--goal-x 2.0]

Template sentences from a seed the data sets do not use, each voiced by each voice of a backend
in all 7 emotions, pitch and speed tags drawn uniformly per utterance (as user turns draw them:
the tags are nuisance, independent of the emotion). Features: ``prosody_features`` (F0
mean/std/range/slope/velocity, energy mean/std/range/peak, voiced and pause fractions, syllable
rate, tremolo), z-scored per voice. Classifier: logistic regression or random forest, whichever
cross-validates better across training voices. Scored: macro-F1 on utterances whose voice AND
sentence were held out, beside the uniform-random, stratified-random and majority baselines.
``mixed`` pools both backends (train and test voices of each). JSON on the last line.

Goal per backend (``benchmarks/_goals.py`` form): ``ceiling_over_stratified_x`` (the ceiling's
macro-F1 over the stratified-random baseline's, same run, same test rows) ``>= --goal-x``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
from _goals import judge  # benchmarks/_goals.py: a script's folder is on sys.path

from data_prep.synth import emotion_ceiling as EC
from data_prep.synth.scripts import TemplateWriter
from data_prep.synth.tts import ASSISTANT_VOICES, USER_VOICES, get_tts

# held-out voices: two of each espeak family (male/female variants), two joe variants
HELDOUT = {"espeak": ("en+m4", "en-us+f4", "en-us+m5", "en+linda"), "piper": ("joe-low", "joe-bright")}


def sentences(n: int, seed: int, min_words: int = 5, max_words: int = 14) -> list[str]:
    rng, writer, out = np.random.default_rng(seed), TemplateWriter(), []
    while len(out) < n:
        for t in writer.write(rng, str(rng.choice(["chitchat", "emotion", "event", "music"])), 4).turns:
            if min_words <= len(t.text.split()) <= max_words and t.text not in out:
                out.append(t.text)
    return out[:n]


def corpus(kind: str, train_s: list[str], test_s: list[str], seed: int) -> dict:
    tts = get_tts(kind)
    pool = list(getattr(tts, "user_voices", USER_VOICES)) + list(getattr(tts, "assistant_voices", ASSISTANT_VOICES))
    test_v = [v for v in pool if v in HELDOUT[kind]]
    train_v = [v for v in pool if v not in HELDOUT[kind]]
    rows, t0, audio_s = [], time.perf_counter(), 0.0
    for voices, sents, off, tag in ((train_v, train_s, 0, "train"), (test_v, test_s, len(train_s), "test")):
        for r in EC.style_corpus(tts, voices, sents, seed=seed + off):
            audio_s += len(r["wave"]) / EC.SR
            r["x"] = EC.prosody_features(r["wave"])
            r["sentence"] = r["sentence"] + off
            r["voice"] = f"{kind}:{r['voice']}"
            del r["wave"]
            rows.append(r)
    print(f"{kind}: {len(rows)} utterances, {audio_s:.0f} s of audio, synthesised and measured in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    return {"rows": rows, "test_voices": [f"{kind}:{v}" for v in test_v],
            "test_sentences": list(range(len(train_s), len(train_s) + len(test_s))),
            "audio_s": audio_s, "synth_and_features_s": time.perf_counter() - t0}


def score(rows, test_voices, test_sentences, seed, goal):
    X = np.stack([r["x"] for r in rows])
    y = [r["emotion"] for r in rows]
    spk = [r["voice"] for r in rows]
    sen = [r["sentence"] for r in rows]
    res = EC.ceiling(X, y, spk, sen, test_voices, test_sentences, seed=seed)
    raw = EC.ceiling(X, y, spk, sen, test_voices, test_sentences, seed=seed, normalise=False)
    b = res["baselines"]
    out = {"macro_f1": res["macro_f1"], "classifier": res["classifier"],
            "macro_f1_without_speaker_norm": raw["macro_f1"],
            "uniform_random_macro_f1": round(b["uniform_random"], 4),
            "stratified_random_macro_f1": round(b["stratified_random"], 4),
            "majority_macro_f1": round(b["majority"], 4),
            "per_class_f1": res["per_class_f1"], "train_rows": res["train_rows"], "test_rows": res["test_rows"],
            "cv_macro_f1": res["cv_macro_f1"], "confusion": res["confusion"]}
    judge(out, "ceiling_over_stratified_x", ">=", goal,
          figure=round(res["macro_f1"] / max(b["stratified_random"], 1e-9), 2))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backends", nargs="+", default=["espeak", "piper", "mixed"])
    ap.add_argument("--train-sentences", type=int, default=3)
    ap.add_argument("--test-sentences", type=int, default=2)
    ap.add_argument("--seed", type=int, default=9001)
    ap.add_argument("--goal-x", type=float, default=2.0,
                    help="goal: ceiling macro-F1 >= this many times the stratified-random baseline's")
    a = ap.parse_args()
    t_start = time.perf_counter()
    sents = sentences(a.train_sentences + a.test_sentences, a.seed)
    train_s, test_s = sents[:a.train_sentences], sents[a.train_sentences:]
    kinds = [k for k in ("espeak", "piper") if k in a.backends or "mixed" in a.backends]
    data = {k: corpus(k, train_s, test_s, a.seed) for k in kinds}
    out = {"benchmark": "emotion_ceiling", "classes": 7, "features": list(EC.FEATURES),
           "train_sentences": len(train_s), "test_sentences": len(test_s), "load_avg_1m": round(os.getloadavg()[0], 2)}
    for k in kinds:
        out[f"{k}_audio_s"] = round(data[k]["audio_s"], 1)
        out[f"{k}_synth_and_features_s"] = round(data[k]["synth_and_features_s"], 1)
    for b in a.backends:
        if b == "mixed":
            rows = [r for k in kinds for r in data[k]["rows"]]
            tv = [v for k in kinds for v in data[k]["test_voices"]]
            res = score(rows, tv, data[kinds[0]]["test_sentences"], a.seed, a.goal_x)
        else:
            res = score(data[b]["rows"], data[b]["test_voices"], data[b]["test_sentences"], a.seed, a.goal_x)
        print(f"{b}: macro-F1 {res['macro_f1']:.3f} ({res['classifier']}; without per-speaker norm "
              f"{res['macro_f1_without_speaker_norm']:.3f}); stratified {res['stratified_random_macro_f1']:.3f}, "
              f"uniform {res['uniform_random_macro_f1']:.3f}, majority {res['majority_macro_f1']:.3f}; "
              f"per class {res['per_class_f1']}")
        out[b] = res
        out[f"{b}_ceiling_macro_f1"] = res["macro_f1"]
        out[f"{b}_stratified_random_macro_f1"] = res["stratified_random_macro_f1"]
        out[f"{b}_utterances"] = res["train_rows"] + res["test_rows"]
    out["wall_s"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
